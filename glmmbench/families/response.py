"""Response objects: what the deviance needs from y, separate from the predictor.

``GLMResponse`` holds ``y``, prior weights, offset and a Family, and maps a linear
predictor ``eta`` to everything PIRLS uses. Ordinal and multinomial responses are
other classes with the same role.

Fast path: for binomial and Poisson the log-density is
``log f(y | mu) = c(y) + K(mu)`` with the kernel
``K = sum wt (y log mu + (1 - y) log(1 - mu))`` (binomial) or
``sum wt (y log mu - mu)`` (Poisson), so that the deviance
``sum d(y, mu) = 2 (K(y) - K(mu))`` and ``-2 log L = -2 (c + K(mu))`` both come
from one evaluation of ``K``; ``c`` and ``K(y)`` are computed once with the
family's general (R-exact) functions. A test checks the two paths agree.

Dispersion: a family with a dispersion parameter (gaussian's sigma; NB2's theta,
NB1's phi, Gamma's sigma; see ``Family.dispersion``) gets it through
``with_dispersion``. PIRLS minimises ``sum d(y, mu) / scale + ||u||^2`` with
``scale = sigma^2`` for gaussian and Gamma (1 otherwise), i.e. the conditional
log-density up to terms free of ``mu``.

Laplace curvature: ``observed`` chooses the weights of the factor ``L`` whose
log-determinant enters the Laplace approximation (and whose blocks scale AGQ):
the expected (Fisher) information, lme4's choice, or the exact Hessian of the
conditional log-density, glmmTMB's. They coincide for canonical links.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from glmmbench.families.glm import FAMILIES, Family

__all__ = ["GLMResponse", "WorkingValues", "DISPERSION_BOUND", "RESTRICTED_LINKS",
           "param_gradient_by_differences", "param_differences", "DELTA_PARAM",
           "CategoricalResponse"]

_KERNEL_FAMILIES = ("binomial", "poisson")
RESTRICTED_LINKS = ("identity", "sqrt", "inverse")
# |log d| bound of a dispersion parameter (d = theta, phi, sigma): e^18.4 = 1e8
DISPERSION_BOUND = float(np.log(1e8))


@dataclass(frozen=True)
class WorkingValues:
    """IRLS quantities at one ``eta``: ``mu`` (what ``deviance`` and ``minus2loglik``
    take: the mean of a GLM response), the working weights ``w`` (``wt mu_eta^2 / V(mu)``
    for a GLM) and the working residual (``(y - mu) / mu_eta``), with ``w * wres`` the
    gradient of the log-density in ``eta``."""

    eta: np.ndarray
    mu: np.ndarray
    w: np.ndarray
    wres: np.ndarray


@dataclass(frozen=True)
class ExactWorkingValues(WorkingValues):
    """Working values whose weights are the exact curvature ``-d2 log f / d eta2``
    everywhere (Newton's weights, all positive): ``curvature_weights`` of an
    exact-Hessian response is then ``w`` itself, not computed again."""


@dataclass(frozen=True)
class GLMResponse:
    """Response of a GLMM with an exponential-family conditional distribution."""

    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    family: Family
    fast: bool = True
    trials: np.ndarray | None = None  # cbind() trials, R's ``n`` in binomial()$aic
    scale: float | np.ndarray = 1.0  # sigma^2 for gaussian and Gamma: PIRLS's deviance is
    # d / scale (per observation with a dispformula)
    observed: bool = False  # exact-Hessian (True) or Fisher (False) weights in L
    disp_X: np.ndarray | None = None  # a dispformula's model matrix (see ``nparams``)
    _consts: tuple | None = field(init=False, default=None, repr=False)
    _binary: bool = field(init=False, default=False, repr=False)
    _minus_sign: np.ndarray | None = field(init=False, default=None, repr=False)
    _minus_weights: np.ndarray | None = field(init=False, default=None, repr=False)

    def __post_init__(self):
        if self.fast and self.family.name in _KERNEL_FAMILIES:
            mu0 = self.mustart()
            wy = self.weights * self.y
            w1y = self.weights - wy
            # binary responses need one log per observation: log(mu) or log(1 - mu)
            binary = (self.family.name == "binomial"
                      and bool(np.all((wy == 0) | (w1y == 0))))
            object.__setattr__(self, "_binary", binary)
            # binary responses: the probability of the observed outcome is o + s mu
            # (mu for y = 1, 1 - mu for y = 0), with the same rounding as np.where
            # but a third of its cost
            object.__setattr__(self, "_outcome", (np.where(wy > 0, 0.0, 1.0),
                                                  np.where(wy > 0, 1.0, -1.0)))
            object.__setattr__(self, "_minus_sign", np.where(wy > 0, -1.0, 1.0))
            object.__setattr__(self, "_minus_weights", -self.weights)
            k0 = self._kernel(mu0, wy, w1y)
            loglik0 = self._loglik_obs(mu0, 1.0)
            c_obs = loglik0 - self._kernel_obs(mu0, wy, w1y)
            c = float(np.sum(loglik0)) - k0
            # log f(y | y) = log f(y | mu0) + d(y, mu0) / 2 = c + K(y)
            ksat = c + k0 + float(np.sum(self.family.dev_resids(self.y, mu0, self.weights))) / 2
            object.__setattr__(self, "_consts", (wy, w1y, c, ksat, c_obs))

    def _kernel(self, mu: np.ndarray, wy: np.ndarray, w1y: np.ndarray) -> float:
        if self.family.name == "binomial":
            if self._binary:
                # R's dev.resids also takes log(1 - mu) for y = 0
                o, sgn = self._outcome
                return float(self.weights @ np.log(o + sgn * mu))
            return float(wy @ np.log(mu) + w1y @ np.log1p(-mu))
        return float(wy @ np.log(mu) - self.weights @ mu)

    def _kernel_obs(self, mu: np.ndarray, wy: np.ndarray, w1y: np.ndarray) -> np.ndarray:
        """The kernel term by term; ``mu`` is ``(n,)`` or ``(n, M)``."""
        if mu.ndim == 2:
            wy, w1y = wy[:, None], w1y[:, None]
        w = self.weights if mu.ndim == 1 else self.weights[:, None]
        if self.family.name == "binomial":
            if self._binary:
                o, sgn = self._outcome
                if mu.ndim == 2:
                    o, sgn = o[:, None], sgn[:, None]
                return w * np.log(o + sgn * mu)
            return wy * np.log(mu) + w1y * np.log1p(-mu)
        return wy * np.log(mu) - w * mu

    @property
    def newton(self) -> bool:
        """Whether PIRLS takes Newton steps (exact curvature where it is positive):
        for the exact-Hessian Laplace factor, and for every non-canonical link, where
        Fisher scoring converges only linearly. The mode is the same either way;
        the Laplace factor's weights are ``curvature_weights``."""
        return self.observed or not self.family.canonical_fast

    def working(self, eta: np.ndarray) -> WorkingValues:
        link = self.family.link
        mu, d = (link.linkinv_and_mu_eta(eta) if self.fast
                 else (link.linkinv(eta), link.mu_eta(eta)))
        fam = self.family
        n = self.n_trials
        if self.newton:
            # Newton steps where the exact curvature is positive (quadratic convergence
            # near the mode; Fisher scoring is only linear for non-canonical links),
            # Fisher elsewhere; w * wres is the exact gradient either way, and the Fisher
            # weights are computed only where they are needed
            grad, w_obs = fam.observed_parts(self.y, eta, mu, self.weights, mu_eta=d, n=n)
            newton = w_obs > 0
            w = w_obs
            exact = bool(newton.all())
            if not exact:
                w = np.where(newton, w_obs, fam.working_weights(eta, mu, self.weights,
                                                                mu_eta=d, n=n))
            with np.errstate(invalid="ignore", divide="ignore"):
                wres = grad / w
            if exact:
                return ExactWorkingValues(eta, mu, w / self.scale if self._scaled else w, wres)
        else:
            w = fam.working_weights(eta, mu, self.weights, mu_eta=d, n=n)
            wres = ((self.y - mu) / d if self._consts is not None
                    else fam.working_residuals(self.y, mu, d, n=n))
        if self._scaled:
            w = w / self.scale
        return WorkingValues(eta, mu, w, wres)

    def whitened(self, wv: WorkingValues, V: list[np.ndarray], X: np.ndarray | None,
                 z: np.ndarray | None):
        """``(V, w, X, z)`` for ``crossproducts``: diagonal weights, nothing to whiten."""
        return V, wv.w, X, z

    def param_gradient(self, params: np.ndarray, eta: np.ndarray, h: np.ndarray,
                       rho: np.ndarray) -> np.ndarray:
        """The Laplace deviance's derivative in the dispersion parameter
        (`param_gradient_by_differences`)."""
        return param_gradient_by_differences(self, params, eta, h, rho)

    weight_blocks = False  # one weight per observation in L

    @property
    def fisher_in_L(self) -> bool:
        """lme4's expected information in ``L`` where it is not the mode's curvature
        (binomial and Poisson with a non-canonical link)."""
        return not self.observed and not self.family.canonical_fast

    @property
    def laplace_gradient(self) -> bool:
        """Whether the Laplace gradient applies (``engine.deviance.GLMMDevfun.
        has_gradient``): one weight per observation in ``L``, and a mode whose exact
        curvature (``mode_weights``) is positive definite: the exact-Hessian families,
        canonical links (Fisher's weights are the exact ones), and lme4's
        non-canonical links whose log-likelihood is concave in eta
        (``FamilyDef.concave_links``: binomial probit and cloglog)."""
        return not self.fisher_in_L or self.family.link.name in FAMILIES[
            self.family.name].concave_links

    def mode_weights(self, wv: WorkingValues, w: np.ndarray) -> np.ndarray:
        """``-ds/deta`` at ``wv``, the curvature that moves the mode, given ``L``'s
        weights ``w`` (returned as they are where they are that curvature)."""
        if not self.fisher_in_L:
            return w
        w_exact = self.family.observed_weights(self.y, wv.eta, wv.mu, self.weights,
                                               n=self.n_trials)
        return w_exact / self.scale if self._scaled else w_exact

    def curvature_weights(self, wv: WorkingValues) -> np.ndarray:
        """The weights of the Laplace factor ``L`` at ``wv`` (see ``observed``)."""
        if self.observed:
            if isinstance(wv, ExactWorkingValues):
                return wv.w
            w = self.family.observed_weights(self.y, wv.eta, wv.mu, self.weights,
                                             n=self.n_trials)
        elif self.newton:  # Newton iterations, Fisher information in L
            w = self.family.working_weights(wv.eta, wv.mu, self.weights, n=self.n_trials)
        else:
            return wv.w
        return w / self.scale if self._scaled else w

    def at_curvature(self, wv: WorkingValues) -> WorkingValues:
        """``wv`` with the Fisher weights when PIRLS iterated with Newton's but ``L`` has
        the expected information (lme4's ``R_X`` for non-canonical binomial and Poisson
        links); else ``wv`` (an exact-Hessian response keeps PIRLS's positive weights)."""
        if self.newton and not self.observed:
            return replace(wv, w=self.curvature_weights(wv))
        return wv

    # ---- outer parameters: the dispersion, on the log scale (none for binomial, Poisson)
    @property
    def dispersion_name(self) -> str | None:
        """``"sigma"`` (gaussian, Gamma), ``"theta"`` (NB2), ``"phi"`` (NB1) or None."""
        return "sigma" if self.family.name == "gaussian" else self.family.dispersion_name

    @property
    def ndisp(self) -> int:
        """The dispersion's parameters: ``log d`` if any, or with a ``dispformula``
        its coefficients (``disp_X``'s columns)."""
        if self.disp_X is not None:
            return self.disp_X.shape[1]
        return int(self.dispersion_name is not None)

    @property
    def npsi(self) -> int:
        """The family's own parameters (``FamilyDef.psi_names``)."""
        return len(FAMILIES[self.family.name].psi_names)

    @property
    def nparams(self) -> int:
        """Parameters of the response optimised with theta: the dispersion's
        (``ndisp``), then the family's own (``npsi``, on their internal scale)."""
        return self.ndisp + self.npsi

    def minus2loglik_param_gradient(self, params: np.ndarray, eta: np.ndarray
                                    ) -> np.ndarray | None:
        """``d(-2 sum wt log f)/dp`` at the fixed predictor ``eta`` for each response
        parameter, where the family gives its log-density's derivatives in closed form
        (``FamilyDef.loglik_grad``: per observation, in log d and in psi); None where
        it does not (the caller takes central differences). The dispersion's part is
        ``dl/dlog d`` for ``log d``, and ``power Xd' dl/dlog d`` for a dispformula's
        coefficients."""
        grad = FAMILIES[self.family.name].loglik_grad
        if grad is None or not self.nparams:
            return None
        # the engine asks the response it evaluated at ``params`` (its family keeps
        # what it computed there); a response not yet at them is moved there
        fam = self.family if self.family.dispersion is not None else \
            self.with_params(params).family
        mu = fam.link.linkinv(eta)
        d_logd, d_psi = grad(fam, self.y, mu)
        w = self.weights
        out = []
        if self.ndisp:
            g = w * d_logd
            out.append(self.betad_power * (self.disp_X.T @ g) if self.disp_X is not None
                       else np.array([g.sum()]))
        if self.npsi:
            out.append((w[:, None] * d_psi).sum(axis=0))
        return -2.0 * np.concatenate(out)

    def psi_limit(self, psi: np.ndarray) -> str | None:
        """Why the family's own parameters ``psi`` (internal scale) are at a limit of the
        model (``FamilyDef.psi_boundary``), None where they are not."""
        check = FAMILIES[self.family.name].psi_boundary
        return None if check is None else check(np.asarray(psi, dtype=float))

    def psi_values(self, psi: np.ndarray) -> dict[str, float]:
        """``psi`` by glmmTMB's names on its natural scale (``family_params()``)."""
        fdef = FAMILIES[self.family.name]
        values = fdef.psi_value(np.asarray(psi, dtype=float))
        return {k: float(v) for k, v in zip(fdef.psi_names, values, strict=True)}

    @property
    def betad_power(self) -> float:
        """glmmTMB's dispersion ``exp(betad)`` is ``d^(1 / power)``: ``d = exp(power
        betad)`` (``FamilyDef.betad_power``: 1/2 for a Gaussian sd, -1/2 for Gamma's
        coefficient of variation, 1 for the rest)."""
        return self.family.betad_power

    def dispersion_at(self, params: np.ndarray) -> float | np.ndarray:
        """The dispersion at the response's parameters: ``exp(params[0])``, or with a
        ``dispformula`` one per observation, ``exp(power disp_X params)``."""
        if self.disp_X is not None:
            return np.exp(self.betad_power * (self.disp_X @ params[:self.ndisp]))
        return float(np.exp(params[0]))

    def param_start(self, mu: np.ndarray | None = None) -> np.ndarray:
        """The log of a moment estimate of the dispersion about the mean ``mu``
        (``_dispersion_start``; the grand mean of y when ``mu`` is None); with a
        ``dispformula``, the coefficients of that constant on glmmTMB's scale."""
        psi = np.empty(0)
        if self.npsi:
            fdef = FAMILIES[self.family.name]
            y, w = self.y, self.average_weights
            m = np.full(y.shape, float(np.average(y, weights=w))) if mu is None else mu
            psi = np.asarray(fdef.psi_start(y, m, w), dtype=float)
        if not self.ndisp:
            return psi
        log_d = float(np.log(_dispersion_start(self, mu)))
        if self.disp_X is None:
            return np.concatenate([[log_d], psi])
        target = np.full(self.disp_X.shape[0], log_d / self.betad_power)
        return np.concatenate([np.linalg.lstsq(self.disp_X, target, rcond=None)[0], psi])

    @property
    def average_weights(self) -> np.ndarray:
        """The prior weights, or ones where they are all 0: the weights of an average
        of y (a start, a scale)."""
        return self.weights if np.sum(self.weights) > 0 else np.ones_like(self.weights)

    def eta_scale(self) -> float:
        """The units of the linear predictor: ``|g(ybar)| / |g(1)|`` for a response with
        units (Gaussian, Gamma) under a link that carries them (identity, inverse, sqrt:
        ``y -> c y`` takes eta to ``c eta``, ``eta / c``, ``sqrt(c) eta``), 1 otherwise
        (log moves eta by a constant; counts and proportions have no units). theta and
        beta are on this scale; the optimizer works in units of it, so that a fit does
        not depend on whether y is in seconds or milliseconds."""
        link = self.family.link.name
        if not FAMILIES[self.family.name].units or link not in ("identity", "inverse",
                                                                  "sqrt"):
            return 1.0
        ybar = np.average(self.y, weights=self.average_weights)
        g = self.family.link.linkfun
        scale = float(np.abs(g(np.array([ybar]))[0]) / np.abs(g(np.array([1.0]))[0]))
        return scale if np.isfinite(scale) and scale > 0 else 1.0

    def units_deviance(self) -> float:
        """The part of the deviance that only the units of y make: ``y -> c y`` adds
        ``2 n log c`` (n the observations with a positive weight) for a response with
        units (Gaussian, Gamma), so the deviance is ``2 n log(ybar)`` plus a unit-free
        part; 0 for responses without units. The optimizer's relative tolerances are
        applied to that unit-free part."""
        if not FAMILIES[self.family.name].units:
            return 0.0
        ybar = float(np.average(np.abs(self.y), weights=self.average_weights))
        n = int(np.sum(self.weights > 0))
        return 2.0 * n * np.log(ybar) if np.isfinite(ybar) and ybar > 0 else 0.0

    def param_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``|log d| <= DISPERSION_BOUND``, except a Gaussian sigma (the response's units)."""
        bound = (np.inf if self.family.name == "gaussian" or self.disp_X is not None
                 else DISPERSION_BOUND)
        lower, upper = np.full(self.ndisp, -bound), np.full(self.ndisp, bound)
        if self.npsi:
            lo, hi = np.array(FAMILIES[self.family.name].psi_bounds, dtype=float).T
            lower, upper = np.concatenate([lower, lo]), np.concatenate([upper, hi])
        return lower, upper

    def with_params(self, params: np.ndarray) -> GLMResponse:
        if not self.nparams:
            return self
        if not self.npsi:
            return self.with_dispersion(self.dispersion_at(params))
        k = self.ndisp
        d = self.dispersion_at(params[:k]) if k else None
        family = self.family.with_parameters(d, params[k:])
        return replace(self, family=family)

    def sigma(self, params: np.ndarray) -> float:
        """glmmTMB's ``sigma()``: the dispersion, 1 for families without one, NaN where a
        ``dispformula`` makes it vary (glmmTMB's NA)."""
        if not self.ndisp:
            return 1.0
        if self.disp_X is not None:
            d = self.dispersion_at(params[:self.ndisp])
            return float(d[0]) if np.ptp(d) <= 1e-12 * d[0] else np.nan
        return float(np.exp(params[0]))

    def eta_start(self) -> np.ndarray:
        """A linear predictor (without offset) inside the link's domain: ``g(mustart)``."""
        return self.family.link.linkfun(self.mustart()) - self.offset

    def valid(self, eta: np.ndarray, mu: np.ndarray) -> bool:
        """Whether ``eta`` and ``mu`` lie in the link's and family's domains (checked,
        as R's glm.fit does, only for links whose inverse can leave the mean space)."""
        link, fam = self.family.link, self.family
        restricted = (link.name in RESTRICTED_LINKS
                      or (fam.name, link.name) == ("binomial", "log"))
        return not restricted or bool(link.valideta(eta) and fam.validmu(mu))

    def with_dispersion(self, value: float) -> GLMResponse:
        """The response with the family's dispersion parameter set to ``value``
        (gaussian: the residual sd sigma, which only sets ``scale``)."""
        value = np.asarray(value, dtype=float) if np.ndim(value) else float(value)
        if self.family.name == "gaussian":
            return replace(self, scale=value**2)
        family = self.family.with_dispersion(value)
        scale = value**2 if family.name == "Gamma" else 1.0
        return replace(self, family=family, scale=scale)

    @property
    def _scaled(self) -> bool:
        """Whether PIRLS's weights are divided by ``scale`` (not all 1)."""
        return np.ndim(self.scale) > 0 or self.scale != 1.0

    def dev_resids(self, mu: np.ndarray) -> np.ndarray:
        if FAMILIES[self.family.name].trials:
            return self.family.dev_resids(self.y, mu, self.weights, n=self.n_trials)
        return self.family.dev_resids(self.y, mu, self.weights)

    @property
    def n_trials(self) -> np.ndarray:
        """Each observation's trials: ``cbind()``'s ``s + f``, else the prior weights (a
        proportion with ``weights = trials``, as R's binomial)."""
        return self.trials if self.trials is not None else self.weights

    def deviance(self, mu: np.ndarray) -> float:
        """``sum_i d(y_i, mu_i) / scale``: the part of ``-2 log f`` that depends on mu."""
        if self._consts is not None:
            wy, w1y, c, ksat, _ = self._consts
            # K(y) - K(mu) = (c + K(y)) - (c + K(mu)); c + K(y) is ksat
            return 2.0 * (ksat - c - self._kernel(mu, wy, w1y))
        return float(np.sum(self.dev_resids(mu) / self.scale))

    def deviance_at(self, wv: WorkingValues) -> float:
        """``deviance`` at the working values' mean (PIRLS's objective)."""
        return self.deviance(wv.mu)

    def minus2loglik(self, mu: np.ndarray) -> float:
        """``-2 sum log f(y_i | mu_i)`` with every constant R's ``family$aic`` carries."""
        if self._consts is not None:
            wy, w1y, c, _, _ = self._consts
            return -2.0 * (c + self._kernel(mu, wy, w1y))
        return -2.0 * float(np.sum(self._loglik_obs(mu, self.scale)))

    def loglik_obs(self, eta: np.ndarray) -> np.ndarray:
        """``log f(y_i | eta_i)`` term by term, constants included (as ``minus2loglik``).

        ``eta`` is ``(n,)`` or ``(n, M)``: M linear predictors per observation, as
        adaptive quadrature evaluates them at M nodes.
        """
        if self._consts is None:
            return self._loglik_obs(self.family.link.linkinv(eta), self.scale)
        wy, w1y, _, _, c_obs = self._consts
        col = (lambda a: a) if eta.ndim == 1 else (lambda a: a[:, None])
        link = self.family.link.name
        if self.family.name == "poisson" and link == "log":
            return col(c_obs) + col(wy) * eta - col(self.weights) * np.exp(eta)
        return col(c_obs) + self._kernel_obs(self.family.link.linkinv(eta), wy, w1y)

    def loglik_affine(self, eta0: np.ndarray, A: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``loglik_obs`` at the ``(n, M)`` predictors ``eta0[:, None] + A @ z.T``.

        Adaptive quadrature's predictors are affine in the nodes ``z`` (``(M, q)``);
        for binary logit models the sign and the overflow check are then applied
        to the n-vectors, and the rest is done in place: ``w log mu`` is
        ``-w log(1 + exp(-eta))`` for ``y = 1`` and ``-w log(1 + exp(eta))`` for
        ``y = 0``. A test checks this path against ``loglik_obs``.
        """
        if not (self._binary and self.family.link.name == "logit"):
            return self.loglik_obs(eta0[:, None] + A @ z.T)
        sign = self._minus_sign
        t = (np.multiply.outer(sign * A[:, 0], z[:, 0]) if A.shape[1] == 1
             else (sign[:, None] * A) @ z.T)
        t += (sign * eta0)[:, None]
        bound = np.max(np.abs(eta0)) + np.max(np.abs(A).sum(axis=1)) * np.max(np.abs(z))
        if bound < 700.0:  # exp cannot overflow
            np.exp(t, out=t)
            np.log1p(t, out=t)
        else:
            t = np.logaddexp(0.0, t)
        t *= self._minus_weights[:, None]
        c_obs = self._consts[4]
        return t if not np.any(c_obs) else t + c_obs[:, None]

    def _loglik_obs(self, mu: np.ndarray, dispersion: float) -> np.ndarray:
        col = (lambda a: a) if mu.ndim == 1 else (lambda a: a[:, None])
        if self.trials is not None:
            return self.family.loglik_obs(col(self.y), mu, col(self.weights), dispersion,
                                          n=col(self.trials))
        return self.family.loglik_obs(col(self.y), mu, col(self.weights), dispersion)

    def mustart(self) -> np.ndarray:
        return self.family.mustart(self.y, self.weights)


# central-difference step of a response parameter (a log-dispersion; an ordinal cut
# point) in ``param_gradient``
DELTA_PARAM = 1e-5


def param_differences(response, params: np.ndarray, eta: np.ndarray,
                      values: Callable[[object, WorkingValues], tuple]) -> list[tuple]:
    """For each response parameter, the central differences (step ``DELTA_PARAM``) of
    ``values(response at the moved parameters, its working values at eta)``, a tuple
    of arrays or numbers, at the fixed predictor ``eta``."""
    out = []
    for j in range(response.nparams):
        parts = []
        for step in (DELTA_PARAM, -DELTA_PARAM):
            q = np.array(params, dtype=float)
            q[j] += step
            r_q = response.with_params(q)
            parts.append(values(r_q, r_q.working(eta)))
        out.append(tuple((hi - lo) / (2 * DELTA_PARAM) for hi, lo in zip(*parts,
                                                                          strict=True)))
    return out


def param_gradient_by_differences(response, params: np.ndarray, eta: np.ndarray,
                                  h: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``dD/dp`` of the Laplace deviance for each response parameter ``p``
    (``engine.deviance.GLMMDevfun.gradient``): ``p`` moves ``-2 log f``, the score
    ``s`` and the weights ``w`` at the fixed predictor ``eta``, and the mode through
    ``s``, so

        dD/dp = d(-2 sum log f)/dp + h' dw/dp + rho' ds/dp,

    with the leverages ``h`` and ``rho = Z Lambda A^{-1} Lambda' Z' (w' h)``; the
    three derivatives by central differences of the response's own functions
    (`param_differences`: O(n) each, two evaluations per parameter)."""
    analytic = getattr(response, "minus2loglik_param_gradient", lambda p, e: None)(params, eta)
    if analytic is not None:  # the log-density's part in closed form (`FamilyDef.loglik_grad`)
        diffs = param_differences(response, params, eta, lambda r, wv: (
            wv.w * wv.wres, r.curvature_weights(wv)))
        return np.array([dm + h @ dw + rho @ ds
                         for dm, (ds, dw) in zip(analytic, diffs, strict=True)])
    diffs = param_differences(response, params, eta, lambda r, wv: (
        r.minus2loglik(wv.mu), wv.w * wv.wres, r.curvature_weights(wv)))
    return np.array([dm + h @ dw + rho @ ds for dm, ds, dw in diffs])


def _dispersion_start(response: GLMResponse, mu: np.ndarray | None = None) -> float:
    """The family's moment estimate of its dispersion (``FamilyDef.dispersion_start``)
    about the mean ``mu`` (the weighted grand mean of y when None); 1 where it is not a
    positive number (no overdispersion to measure)."""
    y, w = response.y, response.weights
    if np.sum(w) <= 0:
        return 1.0
    m = np.full(y.shape, float(np.average(y, weights=w))) if mu is None else mu
    with np.errstate(divide="ignore", invalid="ignore"):
        d = FAMILIES[response.family.name].dispersion_start(y, m, w)
    return d if np.isfinite(d) and d > 0 else 1.0


class CategoricalResponse:
    """What the categorical responses (ordinal, multinomial) share: no dispersion, a
    linear predictor that is valid everywhere, and a start at ``eta = 0``."""

    dispersion_name = None
    newton = False  # PIRLS's own weights (see each response's ``curvature_weights``)
    # the Laplace gradient applies (GLMResponse's twin): the exact curvature is L's,
    # one weight per observation (ordinal: clmm's exact Hessian) or (K - 1) x (K - 1)
    # blocks (multinomial: ``curvature_blocks``)
    laplace_gradient = True
    fisher_in_L = False
    weight_blocks = False  # L's weights: one per row (multinomial: blocks of K - 1 rows)

    def param_gradient(self, params: np.ndarray, eta: np.ndarray, h: np.ndarray,
                       rho: np.ndarray) -> np.ndarray:
        return param_gradient_by_differences(self, params, eta, h, rho)

    def mode_weights(self, wv: WorkingValues, w: np.ndarray) -> np.ndarray:
        return w

    def sigma(self, params: np.ndarray) -> float:
        return 1.0

    def at_curvature(self, wv: WorkingValues) -> WorkingValues:
        return wv

    def eta_start(self) -> np.ndarray:
        return np.zeros_like(self.offset)

    def valid(self, eta: np.ndarray, mu: np.ndarray) -> bool:
        return True

    def loglik_affine(self, eta0: np.ndarray, A: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.loglik_obs(eta0[:, None] + A @ z.T)

    def whitened(self, wv: WorkingValues, V: list[np.ndarray], X: np.ndarray | None,
                 z: np.ndarray | None):
        """``(V, w, X, z)`` for ``crossproducts``: diagonal weights, nothing to whiten."""
        return V, wv.w, X, z
