"""Links and families: small frozen dataclasses of vectorized functions, keyed by R's names.

Every member mirrors the member of the same name of R's ``family`` objects
(``stats::make.link``, ``binomial()``, ``poisson()``, ``gaussian()``,
``MASS::negative.binomial()``), including R's safeguards: ``linkinv`` and ``mu_eta``
clamp exactly where R does, so PIRLS iterates and deviances built from them equal R's.

Log densities use the saddle-point form of Loader (2000), *Fast and accurate
computation of binomial probabilities*, the form behind R's ``dbinom``/``dpois``/
``dnbinom``: ``log f = -stirlerr - bd0 - log(2 pi x) / 2`` stays accurate to a few ulps
for large counts, where ``y log(mu) - mu - lgamma(y + 1)`` loses digits to cancellation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from glmmbench.errors import DataError, FamilyError

__all__ = ["Link", "Family", "FamilyDef", "LINKS", "FAMILIES", "get_link", "get_family"]

Array = NDArray[np.float64]

EPS = float(np.finfo(np.float64).eps)
_DBL_MIN = float(np.finfo(np.float64).tiny)
_LOG_2PI = float(np.log(2.0 * np.pi))
_LOGIT_THRESH = 30.0  # R's C logit_linkinv / logit_mu_eta cut-off
_PROBIT_THRESH = 8.125890664701906  # R's -qnorm(.Machine$double.eps); scipy's ndtri is 2 ulp off
_CAUCHIT_THRESH = float(1.0 / np.tan(np.pi * EPS))  # R's -qcauchy(.Machine$double.eps)


def _f(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class Link:
    """A link function ``eta = g(mu)`` as R's ``make.link(name)``.

    Attributes
    ----------
    name : R's name of the link.
    linkfun : ``g(mu)``.
    linkinv : ``g^{-1}(eta)``, clamped where R clamps it.
    mu_eta : ``d mu / d eta`` at ``eta``, floored where R floors it.
    valideta : whether R accepts the linear predictor.
    fused : optional ``eta -> (linkinv(eta), mu_eta(eta))`` sharing the work of the
        two (one exponential for logit; for log, ``mu_eta`` is ``linkinv``).
    """

    name: str
    linkfun: Callable[[ArrayLike], Array] = field(repr=False)
    linkinv: Callable[[ArrayLike], Array] = field(repr=False)
    mu_eta: Callable[[ArrayLike], Array] = field(repr=False)
    valideta: Callable[[ArrayLike], bool] = field(repr=False)
    fused: Callable[[ArrayLike], tuple[Array, Array]] | None = field(default=None, repr=False)

    def linkinv_and_mu_eta(self, eta: ArrayLike) -> tuple[Array, Array]:
        """``(linkinv(eta), mu_eta(eta))``, through ``fused`` where the link has one."""
        if self.fused is not None:
            return self.fused(eta)
        return self.linkinv(eta), self.mu_eta(eta)


def _always_valid(x: ArrayLike) -> bool:
    return True


def _logit_linkfun(mu: ArrayLike) -> Array:
    mu = _f(mu)
    with np.errstate(divide="ignore"):
        return np.log(mu / (1.0 - mu))


def _logit_linkinv(eta: ArrayLike) -> Array:
    eta = _f(eta)
    t = np.exp(np.clip(eta, -_LOGIT_THRESH, _LOGIT_THRESH))
    t = np.where(eta < -_LOGIT_THRESH, EPS, np.where(eta > _LOGIT_THRESH, 1.0 / EPS, t))
    return t / (1.0 + t)


def _logit_mu_eta(eta: ArrayLike) -> Array:
    eta = _f(eta)
    e = np.exp(np.clip(eta, -_LOGIT_THRESH, _LOGIT_THRESH))
    return np.where(np.abs(eta) > _LOGIT_THRESH, EPS, e / ((1.0 + e) * (1.0 + e)))


def _logit_fused(eta: ArrayLike) -> tuple[Array, Array]:
    """``_logit_linkinv`` and ``_logit_mu_eta`` from one exponential, with R's clamps."""
    eta = _f(eta)
    big = np.abs(eta) > _LOGIT_THRESH
    t = np.exp(np.clip(eta, -_LOGIT_THRESH, _LOGIT_THRESH))
    if big.any():
        t = np.where(eta < -_LOGIT_THRESH, EPS, np.where(eta > _LOGIT_THRESH, 1.0 / EPS, t))
    one_t = 1.0 + t
    mu = t / one_t
    d = mu / one_t
    if big.any():
        d = np.where(big, EPS, d)
    return mu, d


def _log_fused(eta: ArrayLike) -> tuple[Array, Array]:
    mu = _log_linkinv(eta)
    return mu, mu  # R's log link: mu.eta is linkinv, pmax(exp(eta), eps)


def _dnorm(x: Array) -> Array:
    # x = hi + lo with hi on a 2^-16 grid, so hi*hi is exact and exp(-x^2/2) keeps full
    # relative accuracy in the tails (plain exp(-0.5*x*x) loses ~x^2 ulps).
    hi = np.round(x * 65536.0) / 65536.0
    lo = x - hi
    return np.exp(-0.5 * hi * hi) * np.exp(-(0.5 * lo + hi) * lo) / np.sqrt(2.0 * np.pi)


def _probit_linkinv(eta: ArrayLike) -> Array:
    return special.ndtr(np.clip(_f(eta), -_PROBIT_THRESH, _PROBIT_THRESH))


def _probit_mu_eta(eta: ArrayLike) -> Array:
    return np.maximum(_dnorm(_f(eta)), EPS)


def _cloglog_linkfun(mu: ArrayLike) -> Array:
    # log1p: R's log(-log(1 - mu)) loses digits for small mu; same value otherwise.
    with np.errstate(divide="ignore"):
        return np.log(-np.log1p(-_f(mu)))


def _cloglog_linkinv(eta: ArrayLike) -> Array:
    return np.clip(-np.expm1(-np.exp(_f(eta))), EPS, 1.0 - EPS)


def _cloglog_mu_eta(eta: ArrayLike) -> Array:
    e = np.exp(np.minimum(_f(eta), 700.0))
    return np.maximum(e * np.exp(-e), EPS)


def _cauchit_linkfun(mu: ArrayLike) -> Array:
    # R's qcauchy: -1/tan(pi p) on the smaller tail, so both tails keep relative accuracy.
    mu = _f(mu)
    p = np.where(mu > 0.5, 1.0 - mu, mu)
    tan = np.where(p == 0.25, 1.0, np.tan(np.pi * p))
    with np.errstate(divide="ignore"):
        q = 1.0 / tan
    out = np.where(mu > 0.5, q, -q)
    return np.where(mu == 0.5, 0.0, np.where((mu < 0.0) | (mu > 1.0), np.nan, out))


def _cauchit_linkinv(eta: ArrayLike) -> Array:
    x = np.clip(_f(eta), -_CAUCHIT_THRESH, _CAUCHIT_THRESH)
    big = np.abs(x) > 1.0
    with np.errstate(divide="ignore"):
        tail = np.arctan(1.0 / x) / np.pi
    return np.where(big, np.where(x > 0, 0.5 - tail + 0.5, -tail), 0.5 + np.arctan(x) / np.pi)


def _cauchit_mu_eta(eta: ArrayLike) -> Array:
    eta = _f(eta)
    return np.maximum(1.0 / (np.pi * (1.0 + eta * eta)), EPS)


def _log_linkfun(mu: ArrayLike) -> Array:
    with np.errstate(divide="ignore"):
        return np.log(_f(mu))


def _log_linkinv(eta: ArrayLike) -> Array:
    return np.maximum(np.exp(_f(eta)), EPS)


def _identity(x: ArrayLike) -> Array:
    return np.array(x, dtype=np.float64)


def _ones(eta: ArrayLike) -> Array:
    return np.ones_like(_f(eta))


def _reciprocal(x: ArrayLike) -> Array:
    with np.errstate(divide="ignore"):
        return 1.0 / _f(x)


def _inverse_mu_eta(eta: ArrayLike) -> Array:
    with np.errstate(divide="ignore"):
        return -1.0 / _f(eta) ** 2


def _inverse_valideta(eta: ArrayLike) -> bool:
    eta = _f(eta)
    return bool(np.all(np.isfinite(eta)) and np.all(eta != 0))


def _sqrt_valideta(eta: ArrayLike) -> bool:
    eta = _f(eta)
    return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))


LINKS: Mapping[str, Link] = MappingProxyType(
    {
        link.name: link
        for link in (
            Link("logit", _logit_linkfun, _logit_linkinv, _logit_mu_eta, _always_valid,
                 _logit_fused),
            Link("probit", lambda mu: special.ndtri(_f(mu)), _probit_linkinv, _probit_mu_eta,
                 _always_valid),
            Link("cloglog", _cloglog_linkfun, _cloglog_linkinv, _cloglog_mu_eta, _always_valid),
            Link("cauchit", _cauchit_linkfun, _cauchit_linkinv, _cauchit_mu_eta, _always_valid),
            Link("log", _log_linkfun, _log_linkinv, _log_linkinv, _always_valid, _log_fused),
            Link("identity", _identity, _identity, _ones, _always_valid),
            Link("inverse", _reciprocal, _reciprocal, _inverse_mu_eta, _inverse_valideta),
            Link("sqrt", lambda mu: np.sqrt(_f(mu)), lambda eta: _f(eta) ** 2,
                 lambda eta: 2.0 * _f(eta), _sqrt_valideta),
        )
    }
)


def get_link(name: str) -> Link:
    """The link R calls ``name``; :class:`FamilyError` naming the valid links otherwise."""
    try:
        return LINKS[name]
    except (KeyError, TypeError):
        raise FamilyError(f"unknown link {name!r}; valid links: {', '.join(LINKS)}") from None


# ------------------------------------------------- log densities (Loader 2000)

# Stirling series coefficients B_{2k} / (2k (2k-1)): 1/12, 1/360, 1/1260, 1/1680, 1/1188.
_S0, _S1, _S2, _S3, _S4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188


def _stirling_series(n: Array) -> Array:
    nn = n * n
    return (_S0 - (_S1 - (_S2 - (_S3 - _S4 / nn) / nn) / nn) / nn) / n


def _stirlerr_recursive(n: Array) -> Array:
    # stirlerr(n) = stirlerr(n + 1) + (n + 1/2) log1p(1/n) - 1, stepped up past 15 where the
    # five-term series is exact to double precision; each step adds only ~1 ulp of 1.
    m = n.copy()
    acc = np.zeros_like(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(16):
            step = m <= 15.0
            acc += np.where(step, (m + 0.5) * np.log1p(1.0 / m) - 1.0, 0.0)
            m = np.where(step, m + 1.0, m)
    return acc + _stirling_series(m)


_STIRLERR_HALVES = _stirlerr_recursive(np.arange(31) / 2.0)  # n = 0, 1/2, ..., 15


def _stirlerr(n: Array) -> Array:
    """``log Gamma(n + 1) - log(sqrt(2 pi n) (n / e)^n)``, the error of Stirling's formula."""
    n = _f(n)
    out = np.full(n.shape, np.nan)
    big = n > 15.0
    out[big] = _stirling_series(n[big])
    twice = 2.0 * n
    half = (n >= 0) & (n <= 15.0) & (twice == np.rint(twice))
    out[half] = _STIRLERR_HALVES[twice[half].astype(np.intp)]
    other = (n > 0) & (n <= 15.0) & ~half
    if np.any(other):
        out[other] = _stirlerr_recursive(n[other])
    return out


def _bd0(x: Array, m: Array, d: Array) -> Array:
    """``x log(x / m) + m - x`` (>= 0), given ``d = x - m`` computed accurately by the caller.

    Near ``x == m`` the direct form cancels; there it sums the series in
    ``v = d / (x + m)``: ``d v + 2 x sum_j v^(2j+1) / (2j+1)``.
    """
    x, m, d = np.broadcast_arrays(_f(x), _f(m), _f(d))
    out = np.empty(x.shape)
    s = x + m
    near = np.abs(d) < 0.1 * s
    far = ~near
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out[far] = special.xlogy(x[far], x[far] / m[far]) - d[far]
    if np.any(near):
        xn, dn = x[near], d[near]
        v = dn / s[near]
        v2 = v * v
        series = dn * v
        term = 2.0 * xn * v
        # term j over the sum is below 2 |v|^(2j-1); stop once that is below eps/16.
        vmax = float(np.sqrt(v2.max()))
        nterms = 0 if vmax == 0 else int(np.ceil((np.log(EPS / 16) / np.log(vmax) + 1) / 2))
        for j in range(1, nterms + 1):
            term = term * v2
            series = series + term / (2 * j + 1)
        out[near] = series
    return out


def _log_dbinom(x: Array, n: Array, p: Array) -> Array:
    """``log dbinom(x, n, p)`` for integer-valued ``x`` and ``n``, as R's dbinom."""
    x, n, p = np.broadcast_arrays(_f(x), _f(n), _f(p))
    q = 1.0 - p
    out = np.full(x.shape, np.nan)  # stays NaN where an input is NaN
    p0 = p == 0
    q0 = ~p0 & (q == 0)
    out[p0] = np.where(x[p0] == 0, 0.0, -np.inf)
    out[q0] = np.where(x[q0] == n[q0], 0.0, -np.inf)
    rest = ~(p0 | q0)
    at0 = rest & (x == 0)
    atn = rest & (x == n) & ~at0
    out[rest & ((x < 0) | (x > n))] = -np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        nz, pz, qz = n[at0], p[at0], q[at0]
        out[at0] = np.where(nz == 0, 0.0, np.where(
            pz < 0.1, -_bd0(nz, nz * qz, nz * pz) - nz * pz, nz * np.log(qz)))
        nz, pz, qz = n[atn], p[atn], q[atn]
        out[atn] = np.where(qz < 0.1, -_bd0(nz, nz * pz, nz * qz) - nz * qz, nz * np.log(pz))
    gen = rest & (x > 0) & (x < n)
    if np.any(gen):
        xg, ng, pg, qg = x[gen], n[gen], p[gen], q[gen]
        d = xg - ng * pg
        lc = (_stirlerr(ng) - _stirlerr(xg) - _stirlerr(ng - xg)
              - _bd0(xg, ng * pg, d) - _bd0(ng - xg, ng * qg, -d))
        out[gen] = lc - 0.5 * (_LOG_2PI + np.log(xg) + np.log1p(-xg / ng))
    return out


def _log_dpois(x: Array, lam: Array) -> Array:
    """``log dpois(x, lam)`` as R: -Inf for non-integer ``x`` (R also warns)."""
    x, lam = np.broadcast_arrays(_f(x), _f(lam))
    xr = np.rint(x)
    out = np.full(x.shape, np.nan)
    with np.errstate(invalid="ignore"):
        bad = (np.abs(x - xr) > 1e-7 * np.maximum(1.0, np.abs(x))) | (xr < 0) | np.isinf(x)
    out[bad] = -np.inf
    ok = ~bad
    lam0 = ok & (lam == 0)
    out[lam0] = np.where(xr[lam0] == 0, 0.0, -np.inf)
    ok &= ~lam0
    out[ok & np.isposinf(lam)] = -np.inf
    ok &= np.isfinite(lam)
    small_x = ok & (xr <= lam * _DBL_MIN)  # x == 0 in practice
    out[small_x] = -lam[small_x]
    ok &= ~small_x
    tiny = ok & (lam < xr * _DBL_MIN)
    with np.errstate(divide="ignore"):
        out[tiny] = -lam[tiny] + xr[tiny] * np.log(lam[tiny]) - special.gammaln(xr[tiny] + 1.0)
    gen = ok & ~tiny & (lam > 0)
    xg, lg = xr[gen], lam[gen]
    out[gen] = -0.5 * np.log(2.0 * np.pi * xg) + (-_stirlerr(xg) - _bd0(xg, lg, xg - lg))
    return out


def _log_dnbinom(y: Array, theta: float, mu: Array) -> Array:
    """``log dnbinom(y, size=theta, mu=mu)``, continuous in ``y`` as MASS's aic.

    Written as ``log(theta/(theta+y)) + log dbinom(theta; theta+y, theta/(theta+mu))``
    with ``(theta + y) - theta`` and the bd0 differences formed analytically, so it stays
    accurate as ``theta -> Inf`` (the Poisson limit), where R's dnbinom and MASS's
    lgamma formula lose digits in proportion to ``theta``.
    """
    y, mu = np.broadcast_arrays(_f(y), _f(mu))
    out = np.full(y.shape, np.nan)
    out[y < 0] = -np.inf
    at0 = y == 0
    out[at0] = -theta * np.log1p(mu[at0] / theta)
    gen = y > 0
    yg, mg = y[gen], mu[gen]
    s = theta + mg
    d = theta * (mg - yg) / s  # theta - theta (theta + y) / s  ==  -(y - mu (theta + y) / s)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[gen] = (
            -0.5 * (_LOG_2PI + np.log(yg) + np.log1p(yg / theta))
            + _stirlerr(theta + yg) - _stirlerr(np.array(theta)) - _stirlerr(yg)
            - _bd0(theta, theta * (theta + yg) / s, d)
            - _bd0(yg, mg * (theta + yg) / s, -d)
        )
    return out


# -------------------------------------------------------------------------- families


@dataclass(frozen=True, eq=False)
class Family:
    """A GLM family with its link, as R's ``family`` object.

    Attributes
    ----------
    name : ``"gaussian"``, ``"binomial"``, ``"poisson"`` or ``"negative_binomial"``.
    link : the :class:`Link`.
    variance : ``V(mu)``.
    dev_resids : ``(y, mu, wt) -> wt * unit deviance``, R's ``dev.resids``.
    loglik_obs : ``(y, mu, wt, dispersion=1.0, *, n=None)`` -> per-observation log
        density with all constants, weighted as R's ``family$aic`` so that
        ``-2 * sum(loglik_obs) == aic(y, n, mu, wt, dev)``:

        - binomial: ``(wt/m) * log dbinom(round(m*y), round(m), mu)``, ``m = n`` if
          ``any(n > 1)`` else ``wt`` (``wt`` = trials x prior weight, ``n`` = trials);
          0 where ``m == 0``;
        - poisson: ``wt * log dpois(y, mu)`` (``-Inf`` for non-integer ``y``, as R);
        - negative_binomial: ``wt * log dnbinom(y, size=theta, mu=mu)``;
        - gaussian: ``log N(y; mu, dispersion / wt)``. R's ``gaussian()$aic`` plugs in the
          ML ``dispersion = dev / nobs`` (nobs counting zero weights) and adds 2 for it:
          ``aic == -2 * sum(loglik_obs(y, mu, wt, dev / nobs)) + 2``. Weights are
          precision weights, not frequencies; a zero weight gives ``-Inf``, as in R.

        ``dispersion`` is used by gaussian only, ``n`` by binomial only.
    validmu : whether R accepts the mean.
    mustart : ``(y, wt) -> mu`` starting values of R's ``initialize``.
    canonical : the default link: the canonical one, except for negative_binomial whose
        canonical link ``log(mu / (mu + theta))`` R does not offer; its default is ``log``.
    theta : negative_binomial size (``var = mu + mu^2 / theta``); None otherwise.
    """

    name: str
    link: Link
    variance: Callable[[ArrayLike], Array] = field(repr=False)
    dev_resids: Callable[[ArrayLike, ArrayLike, ArrayLike], Array] = field(repr=False)
    loglik_obs: Callable[..., Array] = field(repr=False)
    validmu: Callable[[ArrayLike], bool] = field(repr=False)
    mustart: Callable[[ArrayLike, ArrayLike], Array] = field(repr=False)
    canonical: str
    theta: float | None = None

    def _key(self) -> tuple[str, str, float | None]:
        return (self.name, self.link.name, self.theta)

    def __eq__(self, other: object) -> bool:
        # The members are closures built per call: equal families are the same triple.
        return isinstance(other, Family) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def canonical_fast(self) -> bool:
        """True for a canonical pair, where ``mu_eta(eta) == V(mu)``."""
        return (self.name, self.link.name) in _CANONICAL_PAIRS

    def working_weights(self, eta: ArrayLike, mu: ArrayLike, wt: ArrayLike,
                        mu_eta: ArrayLike | None = None) -> Array:
        """PIRLS weights ``wt * mu_eta(eta)^2 / V(mu)`` (lme4's ``sqrtWrkWt`` squared).

        A canonical pair has ``mu_eta == V``, so the fused ``wt * mu_eta(eta)`` is used.
        ``mu_eta`` may be passed when already computed.
        """
        d = self.link.mu_eta(eta) if mu_eta is None else _f(mu_eta)
        if self.canonical_fast:
            return _f(wt) * d
        return _f(wt) * d * d / self.variance(mu)

    def with_theta(self, theta: float) -> Family:
        """The negative_binomial family with size ``theta`` and the same link."""
        if self.name != "negative_binomial":
            raise FamilyError(f"theta applies to negative_binomial only, not {self.name!r}")
        return _negative_binomial(self.link, theta)


_CANONICAL_PAIRS = frozenset({("gaussian", "identity"), ("binomial", "logit"),
                              ("poisson", "log")})


def _ylogy(y: Array, mu: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y != 0, y * np.log(y / mu), 0.0)


def _binomial(link: Link, theta: float | None) -> Family:
    def variance(mu):
        mu = _f(mu)
        return mu * (1.0 - mu)

    def dev_resids(y, mu, wt):
        y, mu = _f(y), _f(mu)
        return 2.0 * _f(wt) * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        y, mu, wt = _f(y), _f(mu), _f(wt)
        m = _f(n) if n is not None and np.any(_f(n) > 1) else wt
        ld = _log_dbinom(np.round(m * y), np.round(m), mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(m > 0, wt / m * ld, 0.0)

    def validmu(mu):
        mu = _f(mu)
        return bool(np.all(np.isfinite(mu)) and np.all((mu > 0) & (mu < 1)))

    def mustart(y, wt):
        wt = _f(wt)
        return (wt * _f(y) + 0.5) / (wt + 1.0)

    return Family("binomial", link, variance, dev_resids, loglik_obs, validmu, mustart, "logit")


def _poisson(link: Link, theta: float | None) -> Family:
    def dev_resids(y, mu, wt):
        y, mu, wt = np.broadcast_arrays(_f(y), _f(mu), _f(wt))
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = wt * (y * np.log(y / mu) - (y - mu))
        return 2.0 * np.where(y > 0, pos, mu * wt)

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return _log_dpois(y, mu) * _f(wt)

    def validmu(mu):
        mu = _f(mu)
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def mustart(y, wt):
        return _f(y) + 0.1

    return Family("poisson", link, _identity, dev_resids, loglik_obs, validmu, mustart, "log")


def _gaussian(link: Link, theta: float | None) -> Family:
    def dev_resids(y, mu, wt):
        r = _f(y) - _f(mu)
        return _f(wt) * (r * r)

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        r = _f(y) - _f(mu)
        wt = _f(wt)
        with np.errstate(divide="ignore"):
            return -0.5 * (np.log(2.0 * np.pi * dispersion) - np.log(wt)
                           + wt * (r * r) / dispersion)

    def mustart(y, wt):
        y = _f(y)
        if (link.name == "inverse" and np.any(y == 0)) or (link.name == "log" and np.any(y <= 0)):
            raise DataError(
                f"gaussian family with {link.name!r} link: cannot find valid starting values "
                f"(response has values {'== 0' if link.name == 'inverse' else '<= 0'})"
            )
        return y.copy()

    return Family("gaussian", link, _ones, dev_resids, loglik_obs, _always_valid, mustart,
                  "identity")


def _check_theta(theta: float | None) -> float | None:
    if theta is None:
        return None
    try:
        value = float(theta)
    except (TypeError, ValueError):
        value = np.nan
    if not (np.isfinite(value) and value > 0):
        raise FamilyError(f"negative_binomial theta must be finite and > 0, got {theta!r}")
    return value


def _theta_missing(*args, **kwargs):
    raise FamilyError("negative_binomial has no theta yet: use get_family(..., theta=) "
                      "or family.with_theta(theta)")


def _negative_binomial(link: Link, theta: float | None) -> Family:
    theta = _check_theta(theta)

    def variance(mu):
        mu = _f(mu)
        return mu + mu**2 / theta

    def dev_resids(y, mu, wt):
        # MASS writes y*log(pmax(1, y)/mu): the same for integer y. Its
        # log((y+theta)/(mu+theta)) loses ~theta*eps for large theta; log1p does not,
        # except where the ratio is far below 1 and the plain log is exact anyway.
        y, mu = _f(y), _f(mu)
        z = (y - mu) / (mu + theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.where(z > -0.5, np.log1p(z), np.log((y + theta) / (mu + theta)))
        return 2.0 * _f(wt) * (_ylogy(y, mu) - (y + theta) * log_ratio)

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return _log_dnbinom(y, theta, mu) * _f(wt)

    def validmu(mu):
        return bool(np.all(_f(mu) > 0))

    def mustart(y, wt):
        y = _f(y)
        return y + (y == 0) / 6.0

    if theta is None:
        variance = dev_resids = loglik_obs = _theta_missing
    return Family("negative_binomial", link, variance, dev_resids, loglik_obs, validmu, mustart,
                  "log", theta)


@dataclass(frozen=True)
class FamilyDef:
    """A registry entry: the links R's family allows (R's order) and the constructor."""

    name: str
    links: tuple[str, ...]
    canonical: str
    make: Callable[[Link, float | None], Family] = field(repr=False)


FAMILIES: Mapping[str, FamilyDef] = MappingProxyType(
    {
        d.name: d
        for d in (
            FamilyDef("gaussian", ("identity", "log", "inverse"), "identity", _gaussian),
            FamilyDef("binomial", ("logit", "probit", "cauchit", "log", "cloglog"), "logit",
                      _binomial),
            FamilyDef("poisson", ("log", "identity", "sqrt"), "log", _poisson),
            FamilyDef("negative_binomial", ("log", "identity", "sqrt"), "log",
                      _negative_binomial),
        )
    }
)


def get_family(name: str, link: str | None = None, *, theta: float | None = None) -> Family:
    """The family R calls ``name`` with ``link`` (default: its canonical/default link).

    ``theta`` is the negative_binomial size; it may be left None and set later with
    :meth:`Family.with_theta` (glmer.nb estimates it). Unknown names, links the family
    does not allow in R, and a theta for another family raise :class:`FamilyError`.
    """
    try:
        fdef = FAMILIES[name]
    except (KeyError, TypeError):
        raise FamilyError(
            f"unknown family {name!r}; valid families: {', '.join(FAMILIES)}"
        ) from None
    link_obj = get_link(fdef.canonical if link is None else link)
    if link_obj.name not in fdef.links:
        raise FamilyError(
            f"link {link!r} is not available for family {name!r}; "
            f"valid links: {', '.join(fdef.links)}"
        )
    if theta is not None and name != "negative_binomial":
        raise FamilyError(f"theta applies to negative_binomial only, not {name!r}")
    return fdef.make(link_obj, theta)
