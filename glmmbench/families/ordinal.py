"""The ordinal response: cumulative link models as ``ordinal::clmm``.

For an observation in category ``k`` (0-based, of K ordered categories),

    P(Y = k | eta) = F(theta_k - eta) - F(theta_{k-1} - eta),
    theta_{-1} = -inf, theta_{K-1} = +inf,

with ``eta = offset + X beta + Z b`` (X without an intercept: the thresholds take
its place) and F the distribution of the link (clmm's sign convention:
``P(Y <= j) = F(theta_j - eta)``). The thresholds are ``theta = tJac alpha`` with
clmm's threshold structures (flexible, equidistant, symmetric). The response's
outer parameters, optimised with the covariance parameters (beta joins PIRLS as
for every response), are ``q`` with ``alpha = C e(q)``: ``e`` takes the exponential
of the increments (threshold gaps, spacings) and ``C`` sums them, so that every
``q`` gives increasing thresholds and the optimizer never meets an invalid model.

PIRLS needs, per observation, the derivatives of ``l(eta) = w log P(Y = y | eta)``.
With ``a = theta_y - eta``, ``b = theta_{y-1} - eta`` and ``p = F(a) - F(b)``:

    dl/deta      = -w (f(a) - f(b)) / p,
    -d2l/deta2   =  w [(f(a) - f(b))^2 / p^2 - (f'(a) - f'(b)) / p],

the exact (observed) information, which clmm's Laplace approximation uses; it is
positive for the log-concave F (logit, probit, cloglog, loglog). Where it is not
(cauchit tails) PIRLS steps use the outer-product part ``(f(a) - f(b))^2 / p^2``.
The saturated log-likelihood of categorical data is 0, so the PIRLS deviance is
``-2 sum w log p``.

Fast path (logit, the default link): with ``f = F (1 - F)`` and ``f' = f (1 - 2F)``
the ratios above reduce to polynomials in ``F(a)`` and ``F(b)``,

    (f(a) - f(b)) / p = 1 - F(a) - F(b),     -d2l/deta2 = w (f(a) + f(b)) > 0,

and ``p = F(a) (1 - F(b)) (1 - exp(b - a))``, a product of positive terms whose
last factor depends on the category only. No division by ``p`` and no
cancellation (exact in the tails, where the general path falls back to the
outer-product weight): two exponentials and one logarithm per observation. A test
checks it against the general path (``fast=False``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from glmmbench.errors import FamilyError
from glmmbench.families.base import (
    CodedResponse,
    ResponseFamily,
    ResponseVariable,
    categorical_support,
    code_categorical,
)
from glmmbench.families.glm import CDF_LINKS
from glmmbench.families.response import CategoricalResponse, WorkingValues

__all__ = ["CumulativeLink", "OrdinalFamily", "OrdinalResponse", "CUMULATIVE_LINKS",
           "THRESHOLDS", "threshold_jacobian"]

THRESHOLDS = ("flexible", "equidistant", "symmetric")
# Newton weights at or below this are 0 in all but name (far tails): the working
# residual g / w would overflow, so PIRLS takes the outer-product weight there
TINY_WEIGHT = 1e-250
# central-difference step in a cut point (param_gradient's derivatives); errors of
# order step^2, far below PIRLS's
DELTA_CUT = 1e-5


@dataclass(frozen=True)
class CumulativeLink:
    """A link of a cumulative link model: the distribution F of the latent residual.

    ``cdf`` F, ``sf`` 1 - F (accurate in the upper tail), ``pdf`` f, ``dpdf`` f',
    ``ppf`` F^{-1}.
    """

    name: str
    cdf: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    sf: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    pdf: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    dpdf: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    ppf: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    fused: Callable[[np.ndarray], tuple] | None = field(default=None, repr=False)

    def __reduce__(self):
        # pickled by name, rebuilt from the registry (its members are lambdas)
        return (get_cumulative_link, (self.name,))

    def parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(F, 1 - F, f, f')`` at ``x`` (``+-inf`` allowed), in one pass where fused."""
        if self.fused is not None:
            return self.fused(x)
        return self.cdf(x), self.sf(x), self.pdf(x), self.dpdf(x)


def _logistic_pdf(x):
    p = special.expit(x)
    return p * (1.0 - p)


def _logistic_dpdf(x):
    p = special.expit(x)
    return p * (1.0 - p) * (1.0 - 2.0 * p)


def _logistic_parts(x):
    # one exponential: the smaller tail m = expit(-|x|), exact in both tails
    m = special.expit(-np.abs(x))
    neg = x < 0
    F = np.where(neg, m, 1.0 - m)
    S = np.where(neg, 1.0 - m, m)
    f = m * (1.0 - m)
    return F, S, f, f * (S - F)


def _logistic_pair(minus_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(F(x), 1 - F(x))`` of the logistic from ``-x`` (overwritten): with ``e = exp(-x)``,
    ``F = 1 / (1 + e)`` and ``1 - F = e F``, exact in both tails. Where ``e`` is inf
    (``x = -inf``, or overflow), ``e F`` is nan and ``fmin`` (which skips nan) gives
    the limit 1; ``e F < 1`` everywhere else."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(minus_x, out=minus_x)
        F = e + 1.0
        np.reciprocal(F, out=F)
        e *= F
    return F, np.fmin(e, 1.0, out=e)


def _norm_pdf(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def _gumbel_min_pdf(x):  # cloglog: F = 1 - exp(-exp(x))
    e = np.exp(np.minimum(x, 700.0))
    return np.exp(x - e)


def _gumbel_max_pdf(x):  # loglog: F = exp(-exp(-x))
    e = np.exp(np.minimum(-x, 700.0))
    return np.exp(-x - e)


def _cauchy_sf(x):
    # 1/2 - atan(x)/pi loses digits for large x; atan(1/x)/pi does not
    with np.errstate(divide="ignore"):
        return np.where(x > 0, np.arctan(1.0 / x) / np.pi, 0.5 - np.arctan(x) / np.pi)


def _with_inf(fn):
    """Evaluate at finite points only; 0 at +-inf (the pdf and its derivative)."""
    def wrapped(x):
        x = np.asarray(x, dtype=float)
        out = np.zeros_like(x)
        fin = np.isfinite(x)
        out[fin] = fn(x[fin])
        return out
    return wrapped


CUMULATIVE_LINKS = {
    link.name: link for link in (
        CumulativeLink("logit", special.expit, lambda x: special.expit(-x),
                       _with_inf(_logistic_pdf), _with_inf(_logistic_dpdf), special.logit,
                       _logistic_parts),
        CumulativeLink("probit", special.ndtr, lambda x: special.ndtr(-x), _with_inf(_norm_pdf),
                       _with_inf(lambda x: -x * _norm_pdf(x)), special.ndtri),
        CumulativeLink("cloglog", lambda x: -np.expm1(-np.exp(x)), lambda x: np.exp(-np.exp(x)),
                       _with_inf(_gumbel_min_pdf),
                       _with_inf(lambda x: _gumbel_min_pdf(x) * (1.0 - np.exp(x))),
                       lambda p: np.log(-np.log1p(-p))),
        CumulativeLink("loglog", lambda x: np.exp(-np.exp(-x)), lambda x: -np.expm1(-np.exp(-x)),
                       _with_inf(_gumbel_max_pdf),
                       _with_inf(lambda x: _gumbel_max_pdf(x) * (np.exp(-x) - 1.0)),
                       lambda p: -np.log(-np.log(p))),
        CumulativeLink("cauchit", lambda x: 0.5 + np.arctan(x) / np.pi, _cauchy_sf,
                       _with_inf(lambda x: 1.0 / (np.pi * (1.0 + x * x))),
                       _with_inf(lambda x: -2.0 * x / (np.pi * (1.0 + x * x) ** 2)),
                       lambda p: np.tan(np.pi * (p - 0.5))),
    )
}


def get_cumulative_link(name: str | None) -> CumulativeLink:
    name = "logit" if name is None else name
    if name not in CUMULATIVE_LINKS:
        raise FamilyError(f"link {name!r} is not available for family 'ordinal'; valid links: "
                          f"{', '.join(CUMULATIVE_LINKS)}")
    return CUMULATIVE_LINKS[name]


@dataclass(frozen=True)
class OrdinalFamily(ResponseFamily):
    """The ``family`` of an ordinal fit: its cumulative link and threshold structure
    (the plug-in interface: ``families.base``)."""

    link: CumulativeLink
    threshold: str = "flexible"
    name: str = "ordinal"
    dispersion: None = None

    thresholds = True  # the cut points take the intercept's place
    fast_fit = False  # the thresholds are not in PIRLS: no nAGQ = 0
    predict_types = ("prob", "cumprob", "class", "link")
    title = "Cumulative Link Mixed Model"
    r_engines = ("ordinal",)

    @property
    def separation_cone(self) -> str | None:
        return "ordinal" if self.link.name in CDF_LINKS else None

    def code_response(self, var: ResponseVariable, weights: np.ndarray) -> CodedResponse:
        """An ordered factor's 0-based codes (clmm's ``ordered`` response)."""
        return code_categorical(var, weights, self.name, ordered=True)

    def make_response(self, design) -> OrdinalResponse:
        return OrdinalResponse(design.y, design.weights, design.offset, self,
                               design.response_levels)

    def simulate(self, rng, eta, weights, dispersion, levels, thresholds, *, replicate=1):
        """The latent variable ``eta + e``, ``e ~ F`` (the link's distribution), cut at
        the thresholds."""
        latent = eta + self.link.ppf(rng.uniform(size=eta.size))
        codes = np.searchsorted(np.asarray(thresholds), latent)
        return pd.Categorical.from_codes(codes, categories=list(levels), ordered=True)

    def outside_support(self, y, levels=None):
        return categorical_support(y, levels)


def threshold_jacobian(nlevels: int, threshold: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """clmm's ``tJac`` (thresholds = tJac @ alpha) and the names of alpha.

    flexible: the identity; equidistant: ``theta_j = alpha_1 + j alpha_2``;
    symmetric: thresholds symmetric around a central one (odd count) or around the
    midpoint of two central ones (even count), as ``ordinal:::makeThresholds``.
    """
    J = nlevels - 1
    if threshold == "flexible":
        return np.eye(J), ()
    if J < 2:
        raise FamilyError(f"{threshold} thresholds are only meaningful for responses with 3 "
                          "or more levels")
    if threshold == "equidistant":
        return np.column_stack([np.ones(J), np.arange(J)]), ("threshold.1", "spacing")
    if threshold != "symmetric":
        raise FamilyError(f"threshold must be one of {', '.join(THRESHOLDS)}, "
                          f"not {threshold!r}")
    if J % 2:
        nalpha, mid = (J + 1) // 2, (J - 1) // 2
        T = np.zeros((J, nalpha))
        T[:, 0] = 1.0
        for k in range(1, nalpha):
            T[mid - k, k], T[mid + k, k] = -1.0, 1.0
        names = ("central", *(f"spacing.{k}" for k in range(1, nalpha)))
        return T, names
    h = J // 2
    nalpha = h + 1
    T = np.zeros((J, nalpha))
    T[:h, 0] = 1.0
    T[h:, 1] = 1.0
    for k in range(1, h):
        T[h - 1 - k, 1 + k], T[h + k, 1 + k] = -1.0, 1.0
    names = ("central.1", "central.2", *(f"spacing.{k}" for k in range(1, nalpha - 1)))
    return T, names


def increment_map(nlevels: int, threshold: str) -> tuple[np.ndarray, np.ndarray]:
    """``(C, positive)``: ``alpha = C e(q)`` with ``e_i = exp(q_i)`` where ``positive``
    (a gap or spacing that must be > 0) and ``e_i = q_i`` otherwise."""
    nalpha = threshold_jacobian(nlevels, threshold)[0].shape[1]
    positive = np.ones(nalpha, dtype=bool)
    positive[0] = False
    if threshold == "flexible":  # theta_1, then the gaps
        return np.tril(np.ones((nalpha, nalpha))), positive
    if threshold == "equidistant":  # theta_1, spacing
        return np.eye(nalpha), positive
    C = np.zeros((nalpha, nalpha))
    C[0, 0] = 1.0
    first = 1
    if (nlevels - 1) % 2 == 0:  # two central thresholds: central.2 = central.1 + gap
        C[1, :2] = 1.0
        first = 2
    m = nalpha - first  # spacings from the centre, increasing
    C[first:, first:] = np.tril(np.ones((m, m)))
    return C, positive


@dataclass(frozen=True)
class OrdinalWorkingValues(WorkingValues):
    """WorkingValues plus the exact-Hessian weights and ``-2 w log p`` at ``eta``."""

    w_obs: np.ndarray
    dev: np.ndarray


@dataclass(frozen=True)
class OrdinalResponse(CategoricalResponse):
    """An ordered categorical response (module docstring); ``y`` holds 0-based codes."""

    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    family: OrdinalFamily
    levels: tuple[str, ...]
    q: np.ndarray | None = None
    observed: bool = True  # clmm's Laplace: the exact Hessian
    fast: bool = True  # the logit kernel (module docstring); False: the general path
    tJac: np.ndarray = field(init=False, repr=False)
    alpha_names: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        T, names = threshold_jacobian(len(self.levels), self.family.threshold)
        object.__setattr__(self, "tJac", T)
        object.__setattr__(self, "alpha_names", names or self.threshold_names)
        object.__setattr__(self, "_codes", self.y.astype(np.intp))
        object.__setattr__(self, "_incr", increment_map(len(self.levels),
                                                         self.family.threshold))
        object.__setattr__(self, "_logit", self.fast and self.family.link.name == "logit")
        # per observation, from q: theta_y, theta_{y-1} and log(1 - exp(b - a))
        object.__setattr__(self, "_cuts", None if self.q is None else self._make_cuts())
        # the last ``working`` eta and its -2 w log p: the Laplace value at the mode
        # reuses PIRLS's last deviance (an identity check: arrays are never modified)
        object.__setattr__(self, "_last_dev", [None, None])

    def _make_cuts(self) -> np.ndarray:
        """Per observation (rows): ``theta_y``, ``theta_{y-1}``, ``log(1 - exp(b - a))``."""
        ext = np.concatenate([[-np.inf], self.thresholds, [np.inf]])
        with np.errstate(invalid="ignore", divide="ignore"):
            logk = np.log(-np.expm1(ext[:-1] - ext[1:]))  # 0 at the end categories
        return np.take(np.stack([ext[1:], ext[:-1], logk]), self._codes, axis=1)

    @property
    def threshold_names(self) -> tuple[str, ...]:
        return tuple(f"{a}|{b}" for a, b in zip(self.levels[:-1], self.levels[1:],
                                                 strict=True))

    @property
    def alpha(self) -> np.ndarray:
        """clmm's threshold parameters at ``q``."""
        C, positive = self._incr
        return C @ np.where(positive, np.exp(np.minimum(self.q, 700.0)), self.q)

    @property
    def thresholds(self) -> np.ndarray:
        return self.tJac @ self.alpha

    def threshold_jacobian_q(self) -> np.ndarray:
        """``d thresholds / d q`` (for the thresholds' covariance by the delta method)."""
        C, positive = self._incr
        return self.tJac @ C @ np.diag(np.where(positive, np.exp(self.q), 1.0))

    # ---- outer parameters: the thresholds' q

    @property
    def nparams(self) -> int:
        return self.tJac.shape[1]

    # q[0] adds to every threshold (theta_1, central, central.1): eta's intercept with
    # sign -1, which stage 2 whitens with beta (fit.optimize_glmm)
    shift_param = 0

    def param_start(self) -> np.ndarray:
        """Thresholds at the link's quantiles of the cumulative category shares
        (the model without covariates), projected on the structure by least squares."""
        share = np.bincount(self._codes, weights=self.weights, minlength=len(self.levels))
        cum = np.cumsum(share)[:-1] / share.sum()
        theta0 = self.family.link.ppf(np.clip(cum, 1e-4, 1 - 1e-4))
        alpha0 = np.linalg.lstsq(self.tJac, theta0, rcond=None)[0]
        C, positive = self._incr
        e = np.linalg.solve(C, alpha0)
        return np.where(positive, np.log(np.maximum(e, 1e-2)), e)

    def param_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(self.nparams, -np.inf), np.full(self.nparams, np.inf)

    def with_params(self, params: np.ndarray) -> OrdinalResponse:
        """The response at threshold parameters ``params``: a copy with its own ``q``
        and per-observation cut table (the structure parts are shared, not rebuilt:
        this runs at every evaluation of the deviance)."""
        new = copy.copy(self)
        object.__setattr__(new, "q", np.asarray(params, dtype=float))
        object.__setattr__(new, "_cuts", new._make_cuts())
        object.__setattr__(new, "_last_dev", [None, None])
        return new

    # ---- the likelihood as a function of eta
    def _bounds(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``a = theta_y - eta`` and ``b = theta_{y-1} - eta`` (``+-inf`` at the ends)."""
        upper, lower, _ = self._cuts
        if eta.ndim == 2:
            upper, lower = upper[:, None], lower[:, None]
        return upper - eta, lower - eta

    def _logit_parts(self, eta: np.ndarray):
        """Logit: ``F(a), 1 - F(a), F(b), 1 - F(b)`` and ``log p`` (module docstring)."""
        upper, lower, logk = self._cuts
        if eta.ndim == 2:
            upper, lower, logk = upper[:, None], lower[:, None], logk[:, None]
        Fa, Sa = _logistic_pair(eta - upper)
        Fb, Sb = _logistic_pair(eta - lower)
        with np.errstate(divide="ignore"):
            logp = np.log(Fa * Sb)
        logp += logk
        return Fa, Sa, Fb, Sb, logp

    def _parts(self, eta: np.ndarray):
        """``p``, ``g = (f(a) - f(b)) / p`` and ``(f'(a) - f'(b)) / p`` at ``eta``."""
        a, b = self._bounds(eta)
        Fa, Sa, fa, da = self.family.link.parts(a)
        Fb, Sb, fb, db = self.family.link.parts(b)
        with np.errstate(invalid="ignore", divide="ignore"):
            # the upper tail as a difference of survival functions: no cancellation
            p = np.where(b > 0, Sb - Sa, Fa - Fb)
            return p, (fa - fb) / p, (da - db) / p

    @staticmethod
    def _log(p: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -np.inf)

    def loglik_obs(self, eta: np.ndarray) -> np.ndarray:
        """``w log P(Y = y | eta)``, term by term; ``eta`` is ``(n,)`` or ``(n, M)``."""
        w = self.weights if eta.ndim == 1 else self.weights[:, None]
        if self._logit:
            return w * self._logit_parts(eta)[4]
        a, b = self._bounds(eta)
        link = self.family.link
        with np.errstate(invalid="ignore"):
            p = np.where(b > 0, link.sf(b) - link.sf(a), link.cdf(a) - link.cdf(b))
        return w * self._log(p)

    def working(self, eta: np.ndarray) -> WorkingValues:
        """Newton's weights and residual (module docstring). ``mu`` is ``eta`` itself;
        ``WorkingValues`` also carries ``-2 w log p``, so the deviance is free."""
        if self._logit:
            Fa, Sa, Fb, Sb, logp = self._logit_parts(eta)
            g = Sa - Fb
            w_obs = self.weights * (Fa * Sa + Fb * Sb)
        else:
            p, g, dg = self._parts(eta)
            logp = self._log(p)
            with np.errstate(invalid="ignore"):
                w_obs = self.weights * (g * g - dg)
        w = w_obs
        with np.errstate(invalid="ignore"):
            if not np.all(w_obs > TINY_WEIGHT):
                w = np.where(w_obs > TINY_WEIGHT, w_obs, self.weights * g * g)
                w = np.where(np.isfinite(w) & (w > TINY_WEIGHT), w, 1e-12)
            wres = -self.weights * g / w  # (dl/deta) / w
        dev = -2.0 * self.weights * logp
        self._last_dev[:] = [eta, dev]
        return OrdinalWorkingValues(eta, eta, w, wres, w_obs, dev)

    def _cut_values(self, upper: np.ndarray, lower: np.ndarray, eta: np.ndarray):
        """``(-2 w log p, s, w_obs)`` per observation with the cut points ``upper`` and
        ``lower`` of each observation's category (the general path: module docstring)."""
        a, b = upper - eta, lower - eta
        Fa, Sa, fa, da = self.family.link.parts(a)
        Fb, Sb, fb, db = self.family.link.parts(b)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(b > 0, Sb - Sa, Fa - Fb)
            g, dg = (fa - fb) / p, (da - db) / p
        w = self.weights
        return -2.0 * w * self._log(p), -w * g, w * (g * g - dg)

    def param_gradient(self, params: np.ndarray, eta: np.ndarray, h: np.ndarray,
                       rho: np.ndarray) -> np.ndarray:
        """The Laplace deviance's derivative in the threshold parameters ``q``
        (``response.param_gradient_by_differences`` gives the formula).

        A cut point ``theta_j`` is the upper one of category j and the lower one of
        category j + 1, so each observation's terms move with two cut points only: one
        central difference in its upper and one in its lower cut point (four
        evaluations in all, whatever the number of thresholds) summed by category give
        ``dD/dtheta``, and ``dD/dq = (dtheta/dq)' dD/dtheta``. ``self`` is the response
        at ``params``."""
        upper, lower, _ = self._cuts
        J = len(self.levels) - 1
        step = DELTA_CUT

        def part(moved_upper: bool) -> np.ndarray:
            hi = self._cut_values(upper + step, lower, eta) if moved_upper else \
                self._cut_values(upper, lower + step, eta)
            lo = self._cut_values(upper - step, lower, eta) if moved_upper else \
                self._cut_values(upper, lower - step, eta)
            with np.errstate(invalid="ignore"):
                return ((hi[0] - lo[0]) + h * (hi[2] - lo[2]) + rho * (hi[1] - lo[1])) / (
                    2 * step)

        codes = self._codes
        has_upper, has_lower = codes < J, codes > 0
        d_theta = (np.bincount(codes[has_upper], part(True)[has_upper], minlength=J)
                   + np.bincount(codes[has_lower] - 1, part(False)[has_lower], minlength=J))
        return self.threshold_jacobian_q().T @ d_theta[:J]

    def curvature_weights(self, wv: WorkingValues) -> np.ndarray:
        if isinstance(wv, OrdinalWorkingValues):
            return wv.w_obs
        _, g, dg = self._parts(wv.eta)
        return self.weights * (g * g - dg)

    def dev_resids(self, mu: np.ndarray) -> np.ndarray:
        """``-2 w log p`` per observation (``mu`` is eta; the saturated term is 0)."""
        return -2.0 * self.loglik_obs(mu)

    def deviance(self, mu: np.ndarray) -> float:
        return float(np.sum(self.dev_resids(mu)))

    def deviance_at(self, wv: OrdinalWorkingValues) -> float:
        return float(np.sum(wv.dev))

    def minus2loglik(self, mu: np.ndarray) -> float:
        eta, dev = self._last_dev
        return float(np.sum(dev)) if mu is eta else self.deviance(mu)

    # ---- predictions
    def cumprob(self, eta: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """``P(Y <= j)`` for every threshold: ``(n, K - 1)``."""
        return self.family.link.cdf(thresholds[None, :] - eta[:, None])
