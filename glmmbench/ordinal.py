"""The ordinal response: cumulative link models as ``ordinal::clmm``.

For an observation in category ``k`` (0-based, of K ordered categories),

    P(Y = k | eta) = F(theta_k - eta) - F(theta_{k-1} - eta),
    theta_{-1} = -inf, theta_{K-1} = +inf,

with ``eta = offset + X beta + Z b`` (X without an intercept: the thresholds take
its place) and F the distribution of the link (clmm's sign convention:
``P(Y <= j) = F(theta_j - eta)``). The thresholds are ``theta = tJac alpha`` with
clmm's threshold structures (flexible, equidistant, symmetric); ``alpha`` are the
response's outer parameters, optimised with the covariance parameters, while beta
joins PIRLS as for every response.

PIRLS needs, per observation, the derivatives of ``l(eta) = w log P(Y = y | eta)``.
With ``a = theta_y - eta``, ``b = theta_{y-1} - eta`` and ``p = F(a) - F(b)``:

    dl/deta      = -w (f(a) - f(b)) / p,
    -d2l/deta2   =  w [(f(a) - f(b))^2 / p^2 - (f'(a) - f'(b)) / p],

the exact (observed) information, which clmm's Laplace approximation uses; it is
positive for the log-concave F (logit, probit, cloglog, loglog). Where it is not
(cauchit tails) PIRLS steps use the outer-product part ``(f(a) - f(b))^2 / p^2``.
The saturated log-likelihood of categorical data is 0, so the PIRLS deviance is
``-2 sum w log p``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import special

from glmmbench.errors import FamilyError
from glmmbench.response import WorkingValues

__all__ = ["CumulativeLink", "OrdinalFamily", "OrdinalResponse", "CUMULATIVE_LINKS",
           "THRESHOLDS", "threshold_jacobian"]

THRESHOLDS = ("flexible", "equidistant", "symmetric")


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


def _logistic_pdf(x):
    p = special.expit(x)
    return p * (1.0 - p)


def _logistic_dpdf(x):
    p = special.expit(x)
    return p * (1.0 - p) * (1.0 - 2.0 * p)


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
                       _with_inf(_logistic_pdf), _with_inf(_logistic_dpdf), special.logit),
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
class OrdinalFamily:
    """The ``family`` of an ordinal fit: its cumulative link and threshold structure."""

    link: CumulativeLink
    threshold: str = "flexible"
    name: str = "ordinal"
    dispersion: None = None


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


@dataclass(frozen=True)
class OrdinalResponse:
    """An ordered categorical response (module docstring); ``y`` holds 0-based codes."""

    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    family: OrdinalFamily
    levels: tuple[str, ...]
    alpha: np.ndarray | None = None
    observed: bool = True  # clmm's Laplace: the exact Hessian
    tJac: np.ndarray = field(init=False, repr=False)
    alpha_names: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        T, names = threshold_jacobian(len(self.levels), self.family.threshold)
        object.__setattr__(self, "tJac", T)
        object.__setattr__(self, "alpha_names", names or self.threshold_names)
        object.__setattr__(self, "_codes", self.y.astype(np.intp))

    @property
    def threshold_names(self) -> tuple[str, ...]:
        return tuple(f"{a}|{b}" for a, b in zip(self.levels[:-1], self.levels[1:],
                                                 strict=True))

    @property
    def thresholds(self) -> np.ndarray:
        return self.tJac @ self.alpha

    # ---- outer parameters: alpha
    dispersion_name = None

    @property
    def nparams(self) -> int:
        return self.tJac.shape[1]

    def param_start(self) -> np.ndarray:
        """Thresholds at the link's quantiles of the cumulative category shares
        (the model without covariates), projected on the structure by least squares."""
        share = np.bincount(self._codes, weights=self.weights, minlength=len(self.levels))
        cum = np.cumsum(share)[:-1] / share.sum()
        theta0 = self.family.link.ppf(np.clip(cum, 1e-4, 1 - 1e-4))
        return np.linalg.lstsq(self.tJac, theta0, rcond=None)[0]

    def param_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(self.nparams, -np.inf), np.full(self.nparams, np.inf)

    def with_params(self, params: np.ndarray) -> OrdinalResponse:
        return replace(self, alpha=np.asarray(params, dtype=float))

    def sigma(self, params: np.ndarray) -> float:
        return 1.0

    def eta_start(self) -> np.ndarray:
        return np.zeros_like(self.offset)

    def valid(self, eta: np.ndarray, mu: np.ndarray) -> bool:
        return True

    # ---- the likelihood as a function of eta
    def _bounds(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``a = theta_y - eta`` and ``b = theta_{y-1} - eta`` (``+-inf`` at the ends)."""
        ext = np.concatenate([[-np.inf], self.thresholds, [np.inf]])
        upper, lower = ext[self._codes + 1], ext[self._codes]
        if eta.ndim == 2:
            upper, lower = upper[:, None], lower[:, None]
        return upper - eta, lower - eta

    def _prob(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        F, S = self.family.link.cdf, self.family.link.sf
        with np.errstate(invalid="ignore"):
            # the upper tail as a difference of survival functions: no cancellation
            return np.where(b > 0, S(b) - S(a), F(a) - F(b))

    def loglik_obs(self, eta: np.ndarray) -> np.ndarray:
        """``w log P(Y = y | eta)``, term by term; ``eta`` is ``(n,)`` or ``(n, M)``."""
        p = self._prob(*self._bounds(eta))
        w = self.weights if eta.ndim == 1 else self.weights[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p > 0, w * np.log(np.where(p > 0, p, 1.0)), -np.inf)

    def loglik_affine(self, eta0: np.ndarray, A: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.loglik_obs(eta0[:, None] + A @ z.T)

    def working(self, eta: np.ndarray) -> WorkingValues:
        """Newton's weights and residual (module docstring); ``mu`` is ``eta`` itself."""
        a, b = self._bounds(eta)
        link = self.family.link
        p = self._prob(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = (link.pdf(a) - link.pdf(b)) / p
            w_obs = g * g - (link.dpdf(a) - link.dpdf(b)) / p
            w = np.where(w_obs > 0, w_obs, g * g)
            w = np.where(np.isfinite(w) & (w > 0), w, 1e-12) * self.weights
            wres = -self.weights * g / w  # (dl/deta) / w
        return WorkingValues(eta, eta, w, wres)

    def curvature_weights(self, wv: WorkingValues) -> np.ndarray:
        a, b = self._bounds(wv.eta)
        link = self.family.link
        p = self._prob(a, b)
        g = (link.pdf(a) - link.pdf(b)) / p
        return self.weights * (g * g - (link.dpdf(a) - link.dpdf(b)) / p)

    def dev_resids(self, mu: np.ndarray) -> np.ndarray:
        """``-2 w log p`` per observation (``mu`` is eta; the saturated term is 0)."""
        return -2.0 * self.loglik_obs(mu)

    def deviance(self, mu: np.ndarray) -> float:
        return float(np.sum(self.dev_resids(mu)))

    def minus2loglik(self, mu: np.ndarray) -> float:
        return self.deviance(mu)

    # ---- predictions
    def cumprob(self, eta: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """``P(Y <= j)`` for every threshold: ``(n, K - 1)``."""
        return self.family.link.cdf(thresholds[None, :] - eta[:, None])
