"""Deviance functions: closures over a frozen model that take only parameters.

``make_devfun(design, response, nagq, reml)`` returns

- for a Gaussian identity-link model, ``LMMDevfun``: ``f(theta)``, the profiled
  ML or REML deviance of ``glmmbench.engine.pls``;
- otherwise ``GLMMDevfun``: ``f(concat(theta, beta))``, the Laplace
  approximation to ``-2 log L``

      -2 l(theta, beta) ~= -2 sum_i log f(y_i | u*) + ||u*||^2 + log|L_Z|^2

  at the conditional mode ``u*`` found by PIRLS (full conditional log-density,
  constants included, so that ``loglik`` equals R's). ``f.stage1(theta)``
  profiles ``beta`` inside PIRLS (lme4's ``nAGQ = 0`` objective).

Both can be evaluated at R's optimum: the sharpest parity test there is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import sparse

from glmmbench.engine.linalg import (
    DENSE_LMM_SIZE,
    DenseSystem,
    ReIndex,
    _solve_lower,
    crossproducts,
    scale_crossproducts,
)
from glmmbench.engine.pirls import PIRLSFailure, PIRLSResult, checked_factor, pirls
from glmmbench.engine.pls import (
    PLSSolution,
    deviance_at_sigma,
    lmm_deviance,
    profiled_deviance,
    solve_pls,
)
from glmmbench.engine.quadrature import agq_deviance, check_nagq, check_nodes, gh_rule
from glmmbench.errors import GLMMError
from glmmbench.families.response import GLMResponse, param_differences
from glmmbench.model.design import Design
from glmmbench.model.theta import CovBlock, lambdas, ntheta, theta_lower, theta_start

__all__ = ["LMMDevfun", "GLMMDevfun", "make_devfun", "z_lambda"]


def z_lambda(design: Design, theta: np.ndarray) -> list[np.ndarray]:
    """Observation-level values of ``Z Lambda(theta)``, one ``(n, q)`` array per term."""
    return [t.Xr * L[0, 0] if t.smooth is not None else t.Xr @ L
            for t, L in zip(design.terms, lambdas(theta, design.cov_blocks), strict=True)]


@dataclass
class LMMDevfun:
    """``f(theta)``: profiled (RE)ML deviance of a linear mixed model."""

    design: Design
    reml: bool
    ix: ReIndex = field(init=False)

    def __post_init__(self):
        d = self.design
        self.ix = ReIndex.from_design(d)
        self._y = d.y - d.offset
        self._sum_log_w = float(np.sum(np.log(d.weights)))
        self._yWy = float(np.dot(d.weights * self._y, self._y))
        # the weights are fixed: the cross products of [Z, X, y], formed once
        self._raw = crossproducts(self.ix, [t.Xr for t in d.terms], d.weights, d.X, self._y)
        self._last_theta: np.ndarray | None = None
        self._last: PLSSolution | None = None
        # small models: the deviance from one dense factor; the solution on demand
        self._dense = (DenseSystem.from_design(d, d.weights, self._y)
                       if self.ix.m + d.p + 1 <= DENSE_LMM_SIZE else None)
        self._pending: np.ndarray | None = None

    @property
    def last(self) -> PLSSolution | None:
        """The solution at the last theta evaluated (solved now if only its deviance
        was computed, by ``DenseSystem``)."""
        if self._pending is not None:
            self.solve(self._pending)
        return self._last

    @property
    def blocks(self) -> tuple[CovBlock, ...]:
        return self.design.cov_blocks

    @property
    def lower(self) -> np.ndarray:
        return theta_lower(self.blocks)

    def solve(self, theta: np.ndarray) -> PLSSolution:
        theta = np.asarray(theta, dtype=float)
        d = self.design
        cp = scale_crossproducts(self._raw, self.ix, lambdas(theta, self.blocks))

        def residuals(u, beta):
            r = self._y - d.X @ beta - self.ix.Zu(z_lambda(d, theta), u)
            return np.sqrt(d.weights) * r

        self._pending = None
        self._last = solve_pls(cp, self.ix.q1, self._yWy, residuals)
        self._last_theta = theta.copy()
        return self._last

    def __call__(self, theta: np.ndarray) -> float:
        d = self.design
        if self._dense is not None:
            theta = np.asarray(theta, dtype=float)
            try:
                ldL2, ldRX2, pwrss = self._dense.profiled_terms(theta)
            except np.linalg.LinAlgError:  # r2 cancels at a near-perfect fit: solve
                pwrss = 0.0
            if pwrss > 0:
                self._pending = theta.copy()
                return profiled_deviance(ldL2, ldRX2, pwrss, d.n, d.p, self.reml,
                                         self._sum_log_w)
        return lmm_deviance(self.solve(theta), d.n, d.p, self.reml, self._sum_log_w)

    def at_sigma(self, theta: np.ndarray, sigma: float) -> float:
        """The (RE)ML deviance at ``(theta, sigma)``, beta profiled out
        (``pls.deviance_at_sigma``): what Satterthwaite's df and the likelihood
        profiles differentiate or minimise."""
        d = self.design
        return deviance_at_sigma(self.solve(theta), sigma, d.n, d.p, self.reml,
                                 self._sum_log_w)

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        """The analytic gradient of the profiled deviance.

        With ``C = Z' W Z``, ``A = Lambda' C Lambda + I`` and ``Lambda_k = d Lambda /
        d theta_k`` (``I (x) E_ij`` on term t's levels), ``Lambda' C Lambda_k =
        (A - I) Lambda^{-1} Lambda_k`` and ``Lambda' Z' W r = u`` give, for a term whose
        ``L_t`` is invertible,

            d log|A| / d theta_ij = 2 [(nlev I - sum_l V_l) L_t^{-1}]_ji,
            d r2 / d theta_ij     = -2 sum_l (L_t^{-T} u_l)_i (u_l)_j,

        with ``V_l`` level l's diagonal block of ``A^{-1}`` (ML) or of the u-block of
        the whole system's inverse (REML: ``A^{-1} + G'G``, ``G = L_XX^{-1} L_XZ L_Z^{-1}``,
        as ``log|L_Z|^2 + log|R_X|^2`` is the whole log-determinant); and
        ``d(-2 l)/d theta = d log|.| + (n'/r2) d r2`` with ``n' = n`` or ``n - p``.
        For ``Lambda_t = theta_t I`` (scalar terms, smooths) this is
        ``[2 (m_t - tr_t V) - (n'/r2) 2 ||u_t||^2] / theta_t``, which needs only the
        traces (``BlockedCholesky.inverse_traces``). The deviance is even in a scalar
        theta: 0 at ``theta_t = 0``; a vector term with a zero on ``L_t``'s diagonal
        gets central differences.
        """
        theta = np.asarray(theta, dtype=float)
        same = (self._pending is None and self._last_theta is not None
                and np.array_equal(theta, self._last_theta))
        sol = self._last if same else self.solve(theta)
        fac, ix = sol.fac, self.ix
        d = self.design
        nprime = d.n - d.p if self.reml else d.n
        bounds = d.term_bounds
        sizes = np.diff(bounds)
        G = fac.fixed_rows() if self.reml and d.p else None
        scalar = all(b.scaled_identity or b.q == 1 for b in self.blocks)
        if scalar:
            traces = fac.inverse_traces(ix)
            if G is not None:
                G2 = np.sum(G * G, axis=0)
                traces = traces + np.array([G2[a:b].sum() for a, b in
                                            zip(bounds[:-1], bounds[1:], strict=True)])
        else:
            vblocks = fac.inverse_diag_blocks(ix)
        grad = np.zeros(theta.size)
        pos, moved = 0, False
        for k, (t, L) in enumerate(zip(d.terms, lambdas(theta, self.blocks), strict=True)):
            a, b = bounds[k], bounds[k + 1]
            U = sol.u[a:b].reshape(t.nlevels, t.q)
            if t.cov_block.ntheta == 1:  # theta_t I
                th = theta[pos]
                if th > 0:
                    tr = (traces[k] if scalar else float(np.einsum("jaa->", vblocks[k]))
                          + (0.0 if G is None else float(np.sum(G[:, a:b] ** 2))))
                    grad[pos] = (2.0 * (sizes[k] - tr)
                                 - nprime / sol.pwrss * 2.0 * float(np.sum(U * U))) / th
                pos += 1
                continue
            nt = t.cov_block.ntheta
            if np.min(np.abs(np.diag(L))) <= 0:
                grad[pos:pos + nt] = self._central_differences(theta, pos, nt)
                pos, moved = pos + nt, True
                continue
            V = vblocks[k].sum(axis=0)
            if G is not None:
                Gt = G[:, a:b].reshape(d.p, t.nlevels, t.q)
                V = V + np.einsum("rla,rlb->ab", Gt, Gt)
            Linv = _solve_lower(L, np.eye(t.q))
            T1 = (t.nlevels * np.eye(t.q) - V) @ Linv
            R = (U @ Linv).T @ U  # R[i, j] = sum_l (L^{-T} u_l)_i (u_l)_j
            for j in range(t.q):
                for i in range(j, t.q):
                    grad[pos] = 2.0 * T1[j, i] - nprime / sol.pwrss * 2.0 * R[i, j]
                    pos += 1
        if moved:  # the differences left the state elsewhere
            self.solve(theta)
        return grad

    def _central_differences(self, theta: np.ndarray, start: int, count: int,
                             h: float = 1e-6) -> np.ndarray:
        out = np.empty(count)
        for i in range(count):
            e = np.zeros(theta.size)
            e[start + i] = h
            lo = np.maximum(theta - e, self.lower)
            out[i] = (self(theta + e) - self(lo)) / (theta[start + i] + h - lo[start + i])
        return out


# central-difference step of the gradient's w' (in eta; a response parameter's is
# families.response.DELTA_PARAM); errors of order step^2, far below PIRLS's
DELTA_ETA = 1e-5
ETA_STEP_FLOOR = 1e-2  # w' steps: DELTA_ETA * max(|eta|, this in eta's units)


@dataclass
class GLMMDevfun:
    """``f(concat(theta, beta))``: Laplace deviance of a GLMM (see module docstring).

    Families with a dispersion parameter carry its logarithm among the
    covariance parameters: ``concat(theta, [log d], beta)`` with ``d`` the
    residual sd of a Gaussian with a non-identity link, NB2's theta, NB1's phi or
    Gamma's coefficient of variation (glmmTMB's ``sigma()``), estimated jointly
    with ``theta`` and ``beta`` as glmmTMB does. (lme4's glmer leaves a Gaussian
    sigma out of the penalized problem and shrinks the random effects to zero;
    glmer.nb alternates between theta and glmer.) These parameters belong to the
    response (``nparams``, ``param_start``, ``param_bounds``, ``with_params``); an
    ordinal response's are its threshold parameters.

    The conditional mode of the previous call warm-starts PIRLS; the state
    (``last``) depends on the order of calls only through that start.
    """

    design: Design
    response: GLMResponse
    nagq: int = 1
    tol: float = 1e-12  # PIRLS tolerance; see ``pirls``
    ix: ReIndex = field(init=False)
    last: PIRLSResult | None = field(init=False, default=None)

    def __post_init__(self):
        self.nagq = check_nagq(self.nagq)
        self.ix = ReIndex.from_design(self.design)
        self.rule = None
        if self.nagq > 1:
            _check_agq_design(self.design)
            check_nodes(self.nagq, self.ix.q1)
            self.rule = gh_rule(self.nagq, self.ix.q1)
            self._group_sum = sparse.csr_matrix(
                (np.ones(self.design.n), (self.ix.codes1, np.arange(self.design.n))),
                shape=(self.ix.n1, self.design.n))
        self._u = None
        self._start = None
        self._agq_loglik = None  # (PIRLS result, its (groups, nodes) log-densities)
        self._eta_floor = None  # w' steps' floor, in eta's units (_weight_slopes)
        self._beta0 = self._safe_beta()
        self._resp = self.response
        self._at: tuple | None = None  # (x, joint, PIRLS result) of the last evaluation

    @property
    def blocks(self) -> tuple[CovBlock, ...]:
        return self.design.cov_blocks

    @property
    def ntheta(self) -> int:
        return ntheta(self.blocks)

    @property
    def ncov(self) -> int:
        """Number of parameters before beta: theta, then the response's (a
        log-dispersion; an ordinal model's threshold parameters)."""
        return self.ntheta + self.response.nparams

    @property
    def lower(self) -> np.ndarray:
        return np.concatenate([theta_lower(self.blocks), self.response.param_bounds()[0],
                               np.full(self.design.p, -np.inf)])

    @property
    def upper(self) -> np.ndarray:
        return np.concatenate([np.full(self.ntheta, np.inf), self.response.param_bounds()[1],
                               np.full(self.design.p, np.inf)])

    def _safe_beta(self) -> np.ndarray:
        """Start for joint PIRLS: the intercept at the weighted mean of ``g(mustart)``.

        A constant predictor inside the link's domain, from which PIRLS can halve
        steps (starting at ``beta = 0`` means ``eta = offset``, outside the domain of
        e.g. Poisson-identity or binomial-log models).
        """
        r = self.response
        beta = np.zeros(self.design.p)
        if "(Intercept)" in self.design.fixef_names:
            eta0 = r.eta_start()
            w = r.weights if np.sum(r.weights) > 0 else np.ones_like(r.weights)
            beta[self.design.fixef_names.index("(Intercept)")] = np.average(eta0, weights=w)
        return beta

    @property
    def param_scale(self) -> np.ndarray:
        """The units of each parameter, for the optimizer: the linear predictor's
        (``GLMResponse.eta_scale``) for theta and beta, 1 for the response's own
        (log-scale) parameters. All ones except for Gaussian and Gamma responses with
        an identity, inverse or sqrt link."""
        scale = getattr(self.response, "eta_scale", lambda: 1.0)()
        return np.concatenate([np.full(self.ntheta, scale), np.ones(self.response.nparams),
                               np.full(self.design.p, scale)])

    @property
    def units_deviance(self) -> float:
        """The deviance's constant from the units of y (``GLMResponse.units_deviance``;
        0 for responses without units)."""
        return getattr(self.response, "units_deviance", lambda: 0.0)()

    def cov_start(self) -> np.ndarray:
        """lme4's theta start, then the start of the response's parameters.

        A dispersion starts from the moments of y about the fixed-effects fit (PIRLS at
        theta = 0 from the raw moments), not about the grand mean: where the covariates
        explain most of the variation of y the raw moments are far off (an NB1 phi of
        e^8.45 on counts in the thousands), and the searches from there depended on the
        order of the rows and levels. The start depends on neither.
        """
        if self._start is None:
            start = np.concatenate([theta_start(self.blocks), self.response.param_start()])
            if getattr(self.response, "dispersion_name", None) is not None:
                mu = self._fixed_effects_mean(start)
                if mu is not None:
                    start[self.ntheta:self.ncov] = self.response.param_start(mu)
            self._start = start
        return self._start.copy()

    def _fixed_effects_mean(self, start: np.ndarray) -> np.ndarray | None:
        """The mean of the GLM without random effects (PIRLS at theta = 0 from
        ``start``'s response parameters), None where PIRLS fails there."""
        cov = start.copy()
        cov[:self.ntheta] = 0.0
        try:
            value = self.stage1(cov)
        except (PIRLSFailure, np.linalg.LinAlgError, FloatingPointError):
            value = np.inf
        mu = self.last.working.mu if self.last is not None and np.isfinite(value) else None
        self.last, self._u, self._at = None, None, None  # no warm start from here
        return mu

    def sigma(self, cov: np.ndarray) -> float:
        """glmmTMB's ``sigma()``: the dispersion parameter, 1 for families without one."""
        return self.response.sigma(cov[self.ntheta:self.ncov])

    def _set_params(self, cov: np.ndarray) -> None:
        if self.response.nparams:
            self._resp = self.response.with_params(cov[self.ntheta:self.ncov])

    @property
    def fitted_response(self) -> GLMResponse:
        """The response at the dispersion of the last evaluation."""
        return self._resp

    def laplace(self, res: PIRLSResult | None) -> float:
        if res is None:
            return np.inf
        return self._resp.minus2loglik(res.working.mu) + float(res.u @ res.u) + res.ldL2

    def agq(self, res: PIRLSResult | None) -> float:
        """The AGQ deviance (``glmmbench.engine.quadrature``) around the mode of ``res``."""
        if res is None:
            return np.inf
        ix = self.ix
        eta_star, V1, codes = res.working.eta, self._V[0], ix.codes1

        def group_loglik(z: np.ndarray, C: np.ndarray) -> np.ndarray:
            # eta at u*_j + C_j z is eta* + A z with A_i = (Z Lambda)_i C_j
            A = (V1 * C[codes, 0, 0][:, None] if ix.q1 == 1
                 else np.einsum("ia,iab->ib", V1, C[codes]))
            out = self._group_sum @ self._resp.loglik_affine(eta_star, A, z)
            if z.shape[0] == self.rule.nnodes:  # all nodes at once: agq_gradient reuses it
                self._agq_loglik = (res, out)
            return out

        value = agq_deviance(self.rule, res.u.reshape(ix.n1, ix.q1), res.fac.L11,
                             res.fac.L11inv, group_loglik, self.design.n)
        return value if np.isfinite(value) else np.inf

    def objective(self, res: PIRLSResult | None) -> float:
        """The deviance at a PIRLS result: Laplace for ``nagq = 1``, AGQ otherwise."""
        return self.laplace(res) if self.nagq == 1 else self.agq(res)

    def _run(self, cov, beta, joint):
        """PIRLS at ``cov`` from the previous mode; from a cold start if that fails.

        Returns None when PIRLS fails from both starts (the deviance is then inf).
        """
        cov = np.asarray(cov, dtype=float)
        self._set_params(cov)
        V = self._V = z_lambda(self.design, cov[: self.ntheta])
        cold_beta = self._beta0 if joint else beta
        starts = [(self._u, beta if beta is not None else self._beta0), (None, cold_beta)]
        if self._u is None:
            starts = starts[1:]
        res = None
        for u0, b0 in starts:
            try:
                res = pirls(self.ix, V, self.design.X, self._resp, b0, u0, joint=joint,
                            tol=self.tol)
            except PIRLSFailure:
                continue
            if np.isfinite(res.pdev):
                break
        if res is None or not np.isfinite(res.pdev):
            return None
        if self._resp.observed or self._resp.newton:
            try:
                res = replace(res, fac=self._curvature_factor(res, V, joint))
            except PIRLSFailure:
                return None
        self._u = res.u
        self.last = res
        return res

    def _curvature_factor(self, res: PIRLSResult, V: list[np.ndarray], joint: bool):
        """``L`` with the exact-Hessian weights at the mode (``GLMResponse.observed``).

        PIRLS's own factor is at the mode with its Newton weights: it is that factor
        unless some exact weight was not positive there (Fisher weights used instead).
        """
        w = self._resp.curvature_weights(res.working)
        if np.array_equal(w, res.working.w):
            return res.fac
        cp = crossproducts(self.ix, V, w, self.design.X if joint else None, None)
        return checked_factor(cp, self.ix.q1)

    def restore(self, res: PIRLSResult) -> None:
        """Make ``res`` the last result and the warm start of the next PIRLS."""
        self.last = res
        self._u = res.u

    def stage1(self, cov: np.ndarray) -> float:
        """Laplace deviance with ``beta`` updated jointly in PIRLS (lme4's nAGQ = 0)."""
        res = self._run(cov, self.last.beta if self.last is not None else None, joint=True)
        self._at = (np.array(cov, dtype=float), True, res)
        return self.laplace(res)

    def pirls_at(self, params: np.ndarray) -> PIRLSResult | None:
        params = np.asarray(params, dtype=float)
        k = self.ncov
        res = self._run(params[:k], params[k:], joint=False)
        self._at = (params.copy(), False, res)
        return res

    @property
    def has_gradient(self) -> bool:
        """Whether ``gradient`` applies: the Laplace deviance (``nagq = 1``) of a
        response with a positive definite exact curvature at the mode
        (``laplace_gradient``: the exact-Hessian GLM
        families, negative binomials, Gamma, Gaussian with a link; canonical links;
        lme4's probit and cloglog binomial links, whose Fisher weights in ``L`` give
        the log-determinant while the mode moves with the exact ones; ordinal
        responses, whose thresholds are response parameters like a dispersion;
        multinomial responses, whose weights are (K - 1) x (K - 1) blocks:
        ``curvature_blocks``). Links whose predictor must stay in a bounded domain
        (identity, sqrt, inverse) search with it too; where PIRLS fails wherever the
        search goes, ``fit.optimize_glmm`` falls back to the derivative-free search.
        AGQ (``nagq > 1``, one term, scalar or vector): for responses with the exact
        curvature in ``L`` and one weight per observation (``agq_gradient``)."""
        r = self.response
        if not r.laplace_gradient:
            return False
        return self.nagq == 1 or (self._one_term_agq and not r.fisher_in_L
                                  and not r.weight_blocks)

    @property
    def _one_term_agq(self) -> bool:
        """AGQ over one random-effects term, scalar or vector (``agq_gradient``'s case)."""
        return self.nagq > 1 and len(self.design.terms) == 1

    def gradient(self, params: np.ndarray) -> np.ndarray:
        """The analytic gradient of the Laplace deviance over ``concat(theta, beta)``.

        ``D = -2 sum log f(y | eta) + ||u||^2 + log|A|`` at the mode ``u`` of the first
        two terms, ``A = Lambda' Z' W Z Lambda + I = L L'``, ``eta = offset + X beta +
        Z Lambda u``. With the score ``s = d log f / d eta``, the weights ``w = -ds/deta``
        and their derivative ``w'``, the mode moves by ``du = A^{-1} (Lambda_k' Z' s -
        Lambda' Z' W d_eta)`` for a direct change ``d_eta`` of the predictor, and
        ``d log|A| = tr(A^{-1} dA)`` has a direct part and one through ``w(eta)``. With
        the leverages ``h_i = v_i' A^{-1} v_i`` (``v_i`` row i of ``Z Lambda``),
        ``c = w' h``, ``r = A^{-1} Lambda' Z' c``, ``rho = Z Lambda r`` and
        ``a = c - 2 s - w rho``. (Where ``L`` has lme4's Fisher weights ``w_F`` for a
        non-canonical link, ``A``, ``w`` and ``w'`` in the log-determinant are
        Fisher's, and the mode's movement, ``r`` and the ``w rho`` in ``a``, takes the
        exact weights ``w_E = -ds/deta``: ``A_E = Lambda' Z' W_E Z Lambda + I``.)

            dD/dbeta    = X' a,
            dD/dtheta_k = a' (Z Lambda_k u) + s' (Z Lambda_k r)
                          + 2 sum_i w_i v_i' A^{-1} (Z Lambda_k)_i',

        ``Lambda_k = d Lambda / d theta_k`` (``Lambda`` is linear in theta). The first
        part is the envelope theorem at the mode; the selected entries of ``A^{-1}``
        come from ``BlockedCholesky.inverse_blocks``. A response parameter ``p`` (a
        log-dispersion; an ordinal model's threshold parameters) moves ``-2 log f``,
        ``s`` and ``w`` at a fixed predictor and the mode through ``s``:

            dD/dp = d(-2 sum log f)/dp + h' dw/dp + rho' ds/dp.

        For ``has_gradient`` models.
        """
        params = np.asarray(params, dtype=float)
        res = self._cached(params, False)
        if res is None:
            return np.full(params.size, np.nan)
        if self.nagq > 1:
            return self.agq_gradient(res, params[:self.ncov])
        g_cov, g_beta = self._gradient(res, params[:self.ncov], joint=False)
        return np.concatenate([g_cov, g_beta])

    def _weight_slopes(self, resp, wv, w: np.ndarray) -> np.ndarray:
        """``w' = dw/deta`` of L's weights ``w`` at ``wv``: the canonical pairs' closed
        form ``w V'(mu)``, else central differences of the response's own functions."""
        fam = resp.family
        if not resp.observed and getattr(fam, "canonical_fast", False):
            return w * fam.dvariance(wv.mu)  # w = wt V(mu), dw/deta = w V'(mu)
        # a step relative to eta (above a floor): an inverse or identity link's eta
        # may sit close to the pole of its weights (Gamma(inverse): eta = 0.002 for
        # the largest means), where a fixed step of 1e-5 is 0.5 % of the distance
        if self._eta_floor is None:
            self._eta_floor = ETA_STEP_FLOOR * float(self.param_scale[0])
        step = DELTA_ETA * np.maximum(np.abs(wv.eta), self._eta_floor)
        return (resp.curvature_weights(resp.working(wv.eta + step))
                - resp.curvature_weights(resp.working(wv.eta - step))) / (2 * step)

    def agq_gradient(self, res: PIRLSResult, cov: np.ndarray) -> np.ndarray:
        """The gradient of the AGQ deviance over ``concat(theta, beta)`` for one term
        ``V_i u_j`` (``V = Z Lambda``, ``q`` effects per group; ``_one_term_agq``).

        Group j's nodes are ``U_jk = u_j + C_j z_k`` around its mode ``u_j``, with
        ``C_j = L_j^{-T}`` from the exact curvature ``A_j = I + sum_i w_i V_i' V_i =
        L_j L_j'`` (``has_gradient``), ``eta_ik = x_i' beta + o_i + V_i U_jk`` and

            D = sum_j [log|A_j| - 2 log sum_k exp(acc_jk)],
            acc_jk = sum_i log f(y_i | eta_ik) - |U_jk|^2 / 2 + |z_k|^2 / 2 + log omega_k.

        Along a parameter ``p`` (``d_p eta_i = e_i`` at a fixed ``u``, ``d_p V_i``) the
        nodes move with the mode and the curvature: ``du_j = A_j^{-1} sum_i (s_i d_p V_i'
        - w_i V_i' e_i)`` (the mode's implicit derivative), ``dA_j = sum_i [w'_i
        (e_i + V_i du_j) V_i' V_i + w_i (d_p V_i' V_i + V_i' d_p V_i)]`` (``w'`` as the
        Laplace gradient), ``dL = L Phi(L^{-1} dA L^{-T})`` (Phi: the lower triangle,
        half the diagonal), ``dC = -C dL' C``. With the scores ``s_ik`` at the nodes,
        ``g_jk = sum_i s_ik V_i' - U_jk`` (``h_j'`` there) and the nodes' posterior
        weights ``pi_jk = softmax_k acc_jk``:

            dD/dp = sum_j [tr(A_j^{-1} dA_j) - 2 sum_k pi_jk (sum_i s_ik d_p eta_ik|_U
                                                       + g_jk' (du_j + dC_j z_k))],

        ``d_p eta_ik|_U`` = ``x_i`` for beta, ``d_p V_i U_jk`` for theta. The scores
        at the nodes are central differences of the response's log-density (two more
        evaluations at the nodes)."""
        d, ix = self.design, self.ix
        resp, wv = self._resp, res.working
        X, codes, G, q = d.X, ix.codes1, ix.n1, ix.q1
        Xr, V = d.terms[0].Xr, self._V[0]  # (n, q): V = Xr Lambda
        w = resp.curvature_weights(wv)
        s = wv.w * wv.wres
        dw = self._weight_slopes(resp, wv, w)

        def gsum(x: np.ndarray) -> np.ndarray:  # group sums over the first axis
            return (self._group_sum @ x.reshape(x.shape[0], -1)).reshape(G, *x.shape[1:])

        u = res.u.reshape(G, q)
        L = res.fac.L11
        C = np.swapaxes(res.fac.L11inv, 1, 2)  # C_j = L_j^{-T}
        z, logw = self.rule.z, self.rule.logw
        Cz = np.einsum("jab,kb->jka", C, z)  # (G, K, q)
        U = u[:, None, :] + Cz
        A = np.einsum("ia,iab->ib", V, C[codes])  # eta_ik = eta*_i + A_i z_k
        cached = self._agq_loglik
        gll = (cached[1] if cached is not None and cached[0] is res
               else gsum(resp.loglik_affine(wv.eta, A, z)))
        S = (resp.loglik_affine(wv.eta + DELTA_ETA, A, z)
             - resp.loglik_affine(wv.eta - DELTA_ETA, A, z)) / (2 * DELTA_ETA)
        acc = gll - 0.5 * np.sum(U**2, axis=2) + (0.5 * np.sum(z**2, axis=1) + logw)
        pi = np.exp(acc - np.max(acc, axis=1, keepdims=True))
        pi /= pi.sum(axis=1, keepdims=True)
        g = gsum(S[:, :, None] * V[:, None, :]) - U  # (G, K, q)
        pi_i = pi[codes]
        S_bar = np.sum(pi_i * S, axis=1)  # (n,)
        SU = np.einsum("ik,ika->ia", pi_i * S, U[codes])  # (n, q)
        g_bar = np.einsum("jk,jka->ja", pi, g)
        Gz = np.einsum("jk,jka,kb->jab", pi, g, z)  # sum_k pi g z'
        A_inv = np.einsum("jab,jcb->jac", C, C)  # C C'
        half = np.tril(np.ones((q, q)), -1) + 0.5 * np.eye(q)

        VV = V[:, :, None] * V[:, None, :]  # (n, q, q)

        def directions(E: np.ndarray, dV: np.ndarray | None = None,
                       response_part: tuple | None = None) -> np.ndarray:
            """dD/dp for P directions at once: ``d_p eta|_u = E[:, p]`` (``(n, P)``) and
            ``d_p V = dV[:, p]`` (``(n, P, q)``; None: 0, as for beta). A response
            parameter adds ``(ds, dw_p, dll)``: its moves of the scores and weights at
            the mode (``(n, P)``) and of the nodes' log-densities, weighted by ``pi``
            and summed (``(P,)``)."""
            rhs = -gsum((w[:, None] * E)[:, :, None] * V[:, None, :])  # (G, P, q)
            if dV is not None:
                rhs += gsum(s[:, None, None] * dV)
            if response_part is not None:
                rhs += gsum(response_part[0][:, :, None] * V[:, None, :])
            du = np.einsum("jab,jpb->jpa", A_inv, rhs)
            deta = E + np.einsum("ia,ipa->ip", V, du[codes])
            dA = gsum((dw[:, None] * deta)[:, :, None, None] * VV[:, None])  # (G, P, q, q)
            if dV is not None:
                VdV = w[:, None, None, None] * dV[:, :, :, None] * V[:, None, None, :]
                dA += gsum(VdV + np.swapaxes(VdV, 2, 3))
            if response_part is not None:
                dA += gsum(response_part[1][:, :, None, None] * VV[:, None])
            M = np.einsum("jba,jpbc,jcd->jpad", C, dA, C)  # L^{-1} dA L^{-T}
            dL = np.einsum("jab,jpbc->jpac", L, M * half)
            dC = -np.einsum("jab,jpcb,jcd->jpad", C, dL, C)
            direct = (response_part[2] if response_part is not None
                      else S_bar @ E if dV is None else np.einsum("ia,ipa->p", SU, dV))
            nodes = np.einsum("ja,jpa->p", g_bar, du) + np.einsum("jpab,jab->p", dC, Gz)
            return np.einsum("jab,jpab->p", A_inv, dA) - 2.0 * (direct + nodes)

        def response_parameters() -> np.ndarray:
            """A response parameter (a log-dispersion, an ordinal threshold parameter)
            at a fixed predictor, by central differences of the response's functions:
            ``(ds, dw_p, dll)`` for ``directions``."""
            diffs = param_differences(self.response, cov[self.ntheta:], wv.eta, lambda r, v: (
                v.w * v.wres, r.curvature_weights(v),
                float(np.sum(pi_i * r.loglik_affine(wv.eta, A, z)))))
            ds, dwp, dll = (np.array(x) for x in zip(*diffs, strict=True))
            return directions(np.zeros((len(s), len(dll))), None, (ds.T, dwp.T, dll))

        rows, cols = np.tril_indices(q)
        order = np.lexsort((rows, cols))  # theta's column-major lower triangle
        dV = np.zeros((V.shape[0], order.size, q))
        for m, (r_, c_) in enumerate(zip(rows[order], cols[order], strict=True)):
            dV[:, m, c_] = Xr[:, r_]  # d(Xr Lambda)/d Lambda_rc
        g_theta = directions(np.einsum("ipa,ia->ip", dV, u[codes]), dV)
        g_params = response_parameters() if self.response.nparams else np.empty(0)
        return np.concatenate([g_theta, g_params, directions(X)])

    def stage1_gradient(self, cov: np.ndarray) -> np.ndarray:
        """The gradient of ``stage1``, where beta is at its joint mode with ``u``.

        As ``gradient`` with ``(u, beta)`` moving together: ``X' s = 0`` at the joint
        mode, and ``(r, r_beta)`` solves the joint system for ``(Lambda' Z' c, X' c)``
        with ``rho = Z Lambda r + X r_beta``; the log-determinant is still ``log|A|``.
        """
        cov = np.asarray(cov, dtype=float)
        res = self._cached(cov, True)
        if res is None:
            return np.full(cov.size, np.nan)
        return self._gradient(res, cov[:self.ncov], joint=True)[0]

    def _cached(self, x: np.ndarray, joint: bool) -> PIRLSResult | None:
        """The PIRLS result at ``x`` from the last evaluation, or a new one."""
        if (self._at is not None and self._at[1] == joint
                and np.array_equal(x, self._at[0])):
            return self._at[2]
        if joint:
            self.stage1(x)
        else:
            self.pirls_at(x)
        return self._at[2]

    def _gradient(self, res: PIRLSResult, cov: np.ndarray, joint: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``(dD/dcov, dD/dbeta)`` at a PIRLS result (see ``gradient``); ``cov`` is theta
        and the response's dispersion. ``w'``, and the dispersion's derivatives at a
        fixed predictor, by central differences of the response's own functions
        (O(n) each), except the canonical pairs' closed form ``w V'(mu)``."""
        d, ix, nt = self.design, self.ix, self.ntheta
        V = z_lambda(d, cov[:nt])
        resp, wv = self._resp, res.working
        Vc = np.hstack(V)
        PV = ix.cell_products(*res.fac.inverse_blocks(ix), Vc)  # rows of A^{-1} v_i
        fac = res.fac
        if not resp.weight_blocks:
            w = resp.curvature_weights(wv)  # L's weights: -ds/deta (``has_gradient``)
            s = wv.w * wv.wres
            h = np.sum(Vc * PV, axis=1)  # leverages v_i' A^{-1} v_i
            c = self._weight_slopes(resp, wv, w) * h
            # the mode moves with its exact curvature: L's factor where its weights
            # are that, else (lme4's Fisher weights in L) one with the exact weights
            w_mode = resp.mode_weights(wv, w)
            if w_mode is not w:
                fac = checked_factor(crossproducts(ix, V, w_mode, d.X if joint else None,
                                                   None), ix.q1)
            W_rho, W_PV = (lambda x: w_mode * x), w[:, None] * PV
        else:
            # blocks W_i over an observation's K rows (multinomial): h_i becomes the
            # block H_i = V_i A^{-1} V_i', c_ik = tr(H_i dW_i/deta_ik), and w times a
            # row vector the block product
            s, W, dW = resp.curvature_blocks(wv.eta)
            K = W.shape[1]
            PVr = PV.reshape(-1, K, PV.shape[1])
            H = np.einsum("ikm,ilm->ikl", Vc.reshape(PVr.shape), PVr)
            c = np.einsum("iab,ikba->ik", H, dW).reshape(-1)
            h = None  # no response parameters (param_gradient is empty)

            def W_rho(x: np.ndarray) -> np.ndarray:
                return np.einsum("ikl,il->ik", W, x.reshape(-1, K)).reshape(-1)

            W_PV = np.einsum("ikl,ilm->ikm", W, PVr).reshape(PV.shape)
        c1, c2, cX = fac.forward(*np.split(ix.Ztv(V, c), [ix.m1]),
                                 d.X.T @ c if joint else None)
        r, r_beta = fac.backward(c1, c2, cX)
        rho = ix.Zu(V, r) if r_beta is None else ix.Zu(V, r) + d.X @ r_beta
        a = c - 2.0 * s - W_rho(rho)
        # a response parameter moves -2 log f, s and w at a fixed predictor; the mode
        # follows s: dD/dp = d(-2 log f)/dp + h' dw/dp + rho' ds/dp
        g_params = resp.param_gradient(cov[nt:], wv.eta, h, rho)
        # dD/dtheta_k = <Z Lambda_k, M> with M = a U + s R + 2 W PV (U, R: each
        # observation's u and r under the columns); Z Lambda_k = Xr_t E_k for the
        # unit E_k, so it is entry E_k of Xr_t' M_t
        M = a[:, None] * ix.gather(res.u) + s[:, None] * ix.gather(r) + 2.0 * W_PV
        g_theta = np.empty(nt)
        pos, col = 0, 0
        for t, block in zip(d.terms, self.blocks, strict=True):
            G = t.Xr.T @ M[:, col:col + t.q]
            if block.scaled_identity:
                g_theta[pos] = np.trace(G)
            else:
                rows, cols = np.tril_indices(t.q)
                order = np.lexsort((rows, cols))  # theta's column-major lower triangle
                g_theta[pos:pos + block.ntheta] = G[rows[order], cols[order]]
            pos += block.ntheta
            col += t.q
        return np.concatenate([g_theta, g_params]), d.X.T @ a

    def __call__(self, params: np.ndarray) -> float:
        return self.objective(self.pirls_at(params))


def _check_agq_design(design: Design) -> None:
    """AGQ integrates over the effects of one grouping factor (as lme4's nAGQ)."""
    if len(design.terms) != 1 and len({t.group for t in design.terms}) == 1:
        raise GLMMError(
            "adaptive Gauss-Hermite quadrature (nagq > 1) needs a single random-effects "
            f"term; this model splits the effects of {design.terms[0].group!r} into "
            f"{len(design.terms)} independent terms (a double-bar term, or independent "
            "multinomial category effects). Use nagq=1 (Laplace), or one correlated term "
            f"such as (1 + x | {design.terms[0].group})")
    if len(design.terms) != 1:
        terms = ", ".join(f"({t.term})" if t.term else t.group for t in design.terms)
        raise GLMMError(
            "adaptive Gauss-Hermite quadrature (nagq > 1) needs a single random-effects "
            f"term over one grouping factor; this model has {len(design.terms)}: {terms}. "
            "Use nagq=1 (Laplace), or write correlated effects of one factor as one term "
            "such as (1 + x | g)"
        )


def make_devfun(design: Design, response: GLMResponse | None = None, nagq: int = 1,
                reml: bool = False) -> LMMDevfun | GLMMDevfun:
    """The deviance function of the model: LMM when ``response`` is None."""
    if response is None:
        if nagq == 0 or check_nagq(nagq) != 1:
            raise GLMMError(f"nagq = {nagq} applies to generalized models: a linear mixed "
                            "model's likelihood is exact, with no integral to approximate")
        return LMMDevfun(design, reml)
    return GLMMDevfun(design, response, nagq)
