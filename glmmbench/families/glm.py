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

from glmmbench.errors import DataError, FamilyError, NumericalError
from glmmbench.families.base import (
    CodedResponse,
    ResponseFamily,
    ResponseVariable,
    non_integer,
    reject_cbind,
)

__all__ = ["Link", "Family", "FamilyDef", "LINKS", "FAMILIES", "FAMILY_ALIASES", "get_link",
           "get_family"]

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
    dmu_eta : ``d mu_eta / d eta = d^2 mu / d eta^2`` (unclamped), for the observed
        information of non-canonical pairs (:meth:`Family.observed_weights`).
    fused : optional ``eta -> (linkinv(eta), mu_eta(eta))`` sharing the work of the
        two (one exponential for logit; for log, ``mu_eta`` is ``linkinv``).
    """

    name: str
    linkfun: Callable[[ArrayLike], Array] = field(repr=False)
    linkinv: Callable[[ArrayLike], Array] = field(repr=False)
    mu_eta: Callable[[ArrayLike], Array] = field(repr=False)
    valideta: Callable[[ArrayLike], bool] = field(repr=False)
    dmu_eta: Callable[[ArrayLike], Array] = field(repr=False)
    fused: Callable[[ArrayLike], tuple[Array, Array]] | None = field(default=None, repr=False)

    def __reduce__(self):
        # pickled by name, rebuilt from the registry (its members are closures)
        return (get_link, (self.name,))

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
    clamped = eta.size > 0 and (eta.max() > _LOGIT_THRESH or eta.min() < -_LOGIT_THRESH)
    if clamped:
        t = np.exp(np.clip(eta, -_LOGIT_THRESH, _LOGIT_THRESH))
        t = np.where(eta < -_LOGIT_THRESH, EPS, np.where(eta > _LOGIT_THRESH, 1.0 / EPS, t))
    else:
        t = np.exp(eta)
    one_t = 1.0 + t
    mu = t / one_t
    d = mu / one_t
    if clamped:
        d = np.where(np.abs(eta) > _LOGIT_THRESH, EPS, d)
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


def _logit_dmu_eta(eta: ArrayLike) -> Array:
    mu, d = _logit_fused(eta)
    return d * (1.0 - 2.0 * mu)


def _probit_linkinv(eta: ArrayLike) -> Array:
    return special.ndtr(np.clip(_f(eta), -_PROBIT_THRESH, _PROBIT_THRESH))


def _probit_mu_eta(eta: ArrayLike) -> Array:
    return np.maximum(_dnorm(_f(eta)), EPS)


def _probit_dmu_eta(eta: ArrayLike) -> Array:
    eta = _f(eta)
    return -eta * _dnorm(eta)


def _cloglog_linkfun(mu: ArrayLike) -> Array:
    # log1p: R's log(-log(1 - mu)) loses digits for small mu; same value otherwise.
    with np.errstate(divide="ignore"):
        return np.log(-np.log1p(-_f(mu)))


def _cloglog_linkinv(eta: ArrayLike) -> Array:
    return np.clip(-np.expm1(-np.exp(_f(eta))), EPS, 1.0 - EPS)


def _cloglog_mu_eta(eta: ArrayLike) -> Array:
    e = np.exp(np.minimum(_f(eta), 700.0))
    return np.maximum(e * np.exp(-e), EPS)


def _cloglog_dmu_eta(eta: ArrayLike) -> Array:
    e = np.exp(np.minimum(_f(eta), 700.0))
    return e * np.exp(-e) * (1.0 - e)


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


def _cauchit_dmu_eta(eta: ArrayLike) -> Array:
    eta = _f(eta)
    t = 1.0 + eta * eta
    return -2.0 * eta / (np.pi * t * t)


def _log_linkfun(mu: ArrayLike) -> Array:
    with np.errstate(divide="ignore"):
        return np.log(_f(mu))


def _log_linkinv(eta: ArrayLike) -> Array:
    return np.maximum(np.exp(_f(eta)), EPS)


def _identity(x: ArrayLike) -> Array:
    return np.array(x, dtype=np.float64)


def _ones(eta: ArrayLike) -> Array:
    return np.ones_like(_f(eta))


def _zeros(eta: ArrayLike) -> Array:
    return np.zeros_like(_f(eta))


def _exp(eta: ArrayLike) -> Array:
    return np.exp(_f(eta))


def _twos(eta: ArrayLike) -> Array:
    return np.full_like(_f(eta), 2.0)


def _reciprocal(x: ArrayLike) -> Array:
    with np.errstate(divide="ignore"):
        return 1.0 / _f(x)


def _inverse_mu_eta(eta: ArrayLike) -> Array:
    with np.errstate(divide="ignore"):
        return -1.0 / _f(eta) ** 2


def _inverse_dmu_eta(eta: ArrayLike) -> Array:
    with np.errstate(divide="ignore", over="ignore"):
        return 2.0 / _f(eta) ** 3


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
                 _logit_dmu_eta, _logit_fused),
            Link("probit", lambda mu: special.ndtri(_f(mu)), _probit_linkinv, _probit_mu_eta,
                 _always_valid, _probit_dmu_eta),
            Link("cloglog", _cloglog_linkfun, _cloglog_linkinv, _cloglog_mu_eta, _always_valid,
                 _cloglog_dmu_eta),
            Link("cauchit", _cauchit_linkfun, _cauchit_linkinv, _cauchit_mu_eta, _always_valid,
                 _cauchit_dmu_eta),
            Link("log", _log_linkfun, _log_linkinv, _log_linkinv, _always_valid, _exp,
                 _log_fused),
            Link("identity", _identity, _identity, _ones, _always_valid, _zeros),
            Link("inverse", _reciprocal, _reciprocal, _inverse_mu_eta, _inverse_valideta,
                 _inverse_dmu_eta),
            Link("sqrt", lambda mu: np.sqrt(_f(mu)), lambda eta: _f(eta) ** 2,
                 lambda eta: 2.0 * _f(eta), _sqrt_valideta, _twos),
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
        # R 4.2's stirlerr for n <= 15 off the half-integers: the lgamma form
        no = n[other]
        out[other] = (special.gammaln(no + 1.0) - (no + 0.5) * np.log(no) + no
                      - 0.5 * _LOG_2PI)
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


def _log_dnbinom(y: Array, theta: float | Array, mu: Array) -> Array:
    """``log dnbinom(y, size=theta, mu=mu)``, continuous in ``y`` as MASS's aic.

    Written as ``log(theta/(theta+y)) + log dbinom(theta; theta+y, theta/(theta+mu))``
    with ``(theta + y) - theta`` and the bd0 differences formed analytically, so it stays
    accurate as ``theta -> Inf`` (the Poisson limit), where R's dnbinom and MASS's
    lgamma formula lose digits in proportion to ``theta``. ``theta`` is a scalar (NB2)
    or an array broadcasting with ``y`` and ``mu`` (NB1: ``theta = mu / phi``).
    """
    if np.ndim(theta) == 0:
        y, mu = np.broadcast_arrays(_f(y), _f(mu))
        theta = np.full(y.shape, float(theta)) if y.ndim else np.array(float(theta))
        one_theta = True
    else:
        y, theta, mu = np.broadcast_arrays(_f(y), _f(theta), _f(mu))
        one_theta = False
    out = np.full(y.shape, np.nan)
    out[y < 0] = -np.inf
    at0 = y == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out[at0] = -theta[at0] * np.log1p(mu[at0] / theta[at0])
    gen = y > 0
    yg, mg, tg = y[gen], mu[gen], theta[gen]
    s = tg + mg
    d = tg * (mg - yg) / s  # theta - theta (theta + y) / s  ==  -(y - mu (theta + y) / s)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        st = _stirlerr(tg[:1]) if one_theta and tg.size else _stirlerr(tg)
        out[gen] = (
            -0.5 * (_LOG_2PI + np.log(yg) + np.log1p(yg / tg))
            + _stirlerr(tg + yg) - st - _stirlerr(yg)
            - _bd0(tg, tg * (tg + yg) / s, d)
            - _bd0(yg, mg * (tg + yg) / s, -d)
        )
    return out


TRIGAMMA_SHIFT = 6.0  # the asymptotic series is used from here (error < 1e-12)


def trigamma(x: ArrayLike) -> Array:
    """``psi'(x)`` for ``x > 0``: the recurrence ``psi'(x) = psi'(x + 1) + 1 / x^2`` up to
    ``TRIGAMMA_SHIFT``, then the asymptotic series ``1/x + 1/(2x^2) + 1/(6x^3) -
    1/(30x^5) + 1/(42x^7) - 1/(30x^9) + 5/(66x^11) - 691/(2730x^13) + 7/(6x^15)``.
    Several times faster than ``scipy.special.polygamma(1, x)`` (which goes through the
    Hurwitz zeta), and equal to it to 1e-12 relative (``tests/test_families.py``); NaN
    where x <= 0."""
    x = np.array(x, dtype=float, copy=True)
    bad = ~(x > 0)
    x = np.where(bad, 1.0, x)
    acc = np.zeros_like(x)
    for _ in range(int(TRIGAMMA_SHIFT)):  # whole arrays: cheaper than masked updates
        small = x < TRIGAMMA_SHIFT
        if not small.any():
            break
        acc += np.where(small, 1.0 / (x * x), 0.0)
        x += small
    z = 1.0 / x
    z2 = z * z
    series = z * (1.0 + z * (0.5 + z * (1.0 / 6.0 + z2 * (-1.0 / 30.0 + z2 * (
        1.0 / 42.0 + z2 * (-1.0 / 30.0 + z2 * (5.0 / 66.0 + z2 * (
            -691.0 / 2730.0 + z2 * 7.0 / 6.0))))))))
    return np.where(bad, np.nan, acc + series)


def _log_dnbinom1(y: Array, phi: float, mu: Array) -> Array:
    """glmmTMB's NB1: ``log dnbinom(y, size=mu/phi, mu=mu)``, ``var = mu (1 + phi)``.

    At ``y = 0`` it is ``-(mu/phi) log(1 + phi)`` exactly, 0 at ``mu = 0`` (the
    saturated value of ``y = 0``; R's dnbinom(0, size=0, mu=0) is 1).
    """
    y, mu, phi = np.broadcast_arrays(_f(y), _f(mu), _f(phi))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _log_dnbinom(y, mu / phi, mu)
    at0 = y == 0
    out[at0] = -(mu[at0] / phi[at0]) * np.log1p(phi[at0])
    return out


def _log_dpois_raw(x: Array, lam: Array, d: Array, log_lam: Array) -> Array:
    """R's ``dpois_raw(x, lam, log)`` for real ``x >= 0``, ``lam > 0``, given ``d = x - lam``
    and ``log(lam)`` computed accurately by the caller (``lam`` may be subnormal)."""
    out = np.where(x == 0, -lam, np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tiny = (x > 0) & (lam < x * _DBL_MIN)  # bd0's x / lam overflows: R's lgamma form
        xt = x[tiny]
        out[tiny] = -lam[tiny] + xt * log_lam[tiny] - special.gammaln(xt + 1.0)
        pos = (x > 0) & ~tiny
        xp = x[pos]
        out[pos] = -0.5 * np.log(2.0 * np.pi * xp) - _stirlerr(xp) - _bd0(xp, lam[pos], d[pos])
    return out


def _log_dgamma(y: Array, shape: float | Array, mu: Array) -> Array:
    """``log dgamma(y, shape, scale = mu / shape)`` as R's dgamma (Loader's dpois_raw form).

    ``log f = dpois_raw(shape - 1, y / scale) - log(scale)`` for ``shape >= 1`` and
    ``dpois_raw(shape, y / scale) + log(shape / y)`` below, with
    ``shape - 1 - y / scale`` formed as ``shape (mu - y) / mu - 1``: accurate for large
    shapes (small coefficients of variation), where the textbook
    ``(shape - 1) log y - y / scale - lgamma(shape) - shape log(scale)`` cancels.
    ``shape`` is one number or one per observation (a ``dispformula`` model's).
    """
    y, mu, shape = np.broadcast_arrays(_f(y), _f(mu), _f(shape))
    out = np.full(y.shape, np.nan)
    out[y < 0] = -np.inf
    at0 = y == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        k0 = shape[at0]
        out[at0] = np.where(k0 == 1.0, -np.log(mu[at0]), np.where(k0 < 1.0, np.inf, -np.inf))
        for big in (True, False):
            gen = (y > 0) & (mu > 0) & ((shape >= 1.0) == big)
            yg, mg, kg = y[gen], mu[gen], shape[gen]
            lam = kg * yg / mg
            log_lam = np.log(kg) + np.log(yg) - np.log(mg)
            d = kg * (mg - yg) / mg
            if big:
                out[gen] = _log_dpois_raw(kg - 1.0, lam, d - 1.0, log_lam) - np.log(mg / kg)
            else:
                # log(shape) - log(y): shape / y may overflow
                out[gen] = _log_dpois_raw(kg, lam, d, log_lam) + np.log(kg) - np.log(yg)
    return out


# -------------------------------------------------------------------------- families


def _registry_fact(attr: str) -> property:
    """A family's fact read from its registry entry (``FamilyDef.<attr>``)."""
    return property(lambda self: getattr(FAMILIES[self.name], attr),
                    doc=f"``FamilyDef.{attr}`` of the family's registry entry.")


@dataclass(frozen=True, eq=False)
class Family(ResponseFamily):
    """A GLM family with its link, as R's ``family`` object.

    Attributes
    ----------
    name : the registry name: ``"gaussian"``, ``"binomial"``, ``"poisson"``,
        ``"negative_binomial"`` (NB2), ``"nbinom1"`` or ``"Gamma"``.
    link : the :class:`Link`.
    variance : ``V(mu)``; the working weights are ``wt mu_eta^2 / V(mu)``.
    dev_resids : ``(y, mu, wt) -> wt * unit deviance``, R's ``dev.resids``. For every
        family but Gamma (and gaussian, whose sigma is not carried here)
        ``dev_resids = 2 (loglik_obs(y, y) - loglik_obs(y, mu))``; Gamma's, as R's, is
        free of sigma: ``2 (loglik_obs(y, y) - loglik_obs(y, mu)) = dev_resids / sigma^2``.
        nbinom1 is not an exponential family and has no standard deviance (glmmTMB's
        ``nbinom1()$dev.resids`` returns zeros): its ``dev_resids`` is defined as that
        log-density difference with the "saturated" mean ``mu = y``. Since ``mu = y`` does
        not maximise ``log f(y | mu)`` for NB1, it is slightly negative for ``mu`` just
        above ``y``; it still differs from ``-2 loglik_obs`` by a term free of ``mu``,
        which is what PIRLS needs.
    loglik_obs : ``(y, mu, wt, dispersion=1.0, *, n=None)`` -> per-observation log
        density with all constants, weighted as R's ``family$aic`` so that
        ``-2 * sum(loglik_obs) == aic(y, n, mu, wt, dev)``:

        - binomial: ``(wt/m) * log dbinom(round(m*y), round(m), mu)``, ``m = n`` if
          ``any(n > 1)`` else ``wt`` (``wt`` = trials x prior weight, ``n`` = trials);
          0 where ``m == 0``;
        - poisson: ``wt * log dpois(y, mu)`` (``-Inf`` for non-integer ``y``, as R);
        - negative_binomial: ``wt * log dnbinom(y, size=theta, mu=mu)``;
        - nbinom1: ``wt * log dnbinom(y, size=mu/phi, mu=mu)`` (glmmTMB's density);
        - Gamma: ``wt * log dgamma(y, shape=1/sigma^2, scale=mu*sigma^2)`` (glmmTMB's,
          and R's ``Gamma()$aic`` with its ``disp = sigma^2``:
          ``aic == -2 * sum(with_dispersion(sqrt(dev / sum(wt))).loglik_obs) + 2``);
        - gaussian: ``log N(y; mu, dispersion / wt)``. R's ``gaussian()$aic`` plugs in the
          ML ``dispersion = dev / nobs`` (nobs counting zero weights) and adds 2 for it:
          ``aic == -2 * sum(loglik_obs(y, mu, wt, dev / nobs)) + 2``. Weights are
          precision weights, not frequencies; a zero weight gives ``-Inf``, as in R.

        The ``dispersion`` argument is used by gaussian only (its variance sigma^2),
        ``n`` by binomial only; the other families take their parameter from the family.
        The arguments broadcast (``y``, ``wt`` of shape ``(n, 1)`` against ``mu`` of
        shape ``(n, M)`` evaluates M means per observation).
    validmu : whether R accepts the mean.
    mustart : ``(y, wt) -> mu`` starting values of R's ``initialize`` (MASS's for both
        negative binomials); gaussian and Gamma raise :class:`DataError` where R's
        ``initialize`` stops.
    canonical : the default link: the canonical one, except for the negative binomials
        whose canonical links R does not offer; their default is ``log``.
    dispersion : the value of the family's own dispersion parameter, named by
        :attr:`dispersion_name` and equal to glmmTMB's ``sigma()``; None where the family
        has none or it is not set yet (then the members that need it raise
        :class:`FamilyError`). Set it with :meth:`with_dispersion`:

        - negative_binomial (NB2): ``theta``, the size; ``var = mu + mu^2 / theta``;
        - nbinom1: ``phi``; ``var = mu (1 + phi)``, size ``mu / phi``;
        - Gamma: ``sigma``, the coefficient of variation; ``var = sigma^2 mu^2``, shape
          ``1 / sigma^2``. R's glm/``summary.glm`` dispersion of a Gamma fit is
          ``sigma^2``, not ``sigma``.

        gaussian's residual variance is not carried here: it enters ``loglik_obs``
        as ``dispersion`` and PIRLS through the prior weights (``wt / sigma^2``).
    info : ``(y, mu) -> -d^2 log f(y | mu) / d mu^2`` per unit prior weight, the observed
        information (for Gamma times ``sigma^2``, the scale of ``dev_resids``); needs no
        dispersion for the exponential families, nbinom1's needs ``phi``.
    score : ``(y, mu) -> d log f(y | mu) / d mu`` per unit prior weight where it is not
        ``(y - mu) / V(mu)`` (nbinom1); None for the exponential families.

    Notes
    -----
    The PIRLS members (``dev_resids``, :meth:`working_weights`,
    :meth:`working_residuals`, :meth:`observed_weights`) are on the scale of
    ``dev_resids``: ``-2 wt log f = dev_resids / c + (terms free of mu)`` with ``c = 1``,
    except ``c = sigma^2`` for Gamma (and gaussian, whose sigma is not carried here). The
    conditional mode then minimises ``sum dev_resids / c + ||u||^2``: for Gamma, PIRLS
    with prior weights ``wt / sigma^2``, as for gaussian.

    ``variance`` is ``1 / E[-d^2 log f / d mu^2]`` (on that scale) for the exponential
    families, so ``working_weights`` are Fisher weights. For nbinom1 the size
    ``mu / phi`` moves with ``mu``: the score is not ``(y - mu) / V(mu)`` and the
    information not ``1 / V(mu)``. ``V(mu) = mu (1 + phi)`` gives quasi-Fisher weights;
    they change PIRLS's steps only, provided the residual is the exact
    :meth:`working_residuals` (with ``(y - mu) / mu_eta`` PIRLS would stop at the
    quasi-likelihood mode, which for ``V = mu (1 + phi)`` is the Poisson mode). They
    are not fit for the Laplace log-determinant (3 log-likelihood units off on a
    40-group simulated model). glmmTMB's Laplace approximation uses the exact Hessian,
    :meth:`observed_weights`, for every family; glmer's uses ``working_weights``
    (expected information), the same for canonical pairs only.
    """

    name: str
    link: Link
    variance: Callable[[ArrayLike], Array] = field(repr=False)
    dev_resids: Callable[[ArrayLike, ArrayLike, ArrayLike], Array] = field(repr=False)
    loglik_obs: Callable[..., Array] = field(repr=False)
    validmu: Callable[[ArrayLike], bool] = field(repr=False)
    mustart: Callable[[ArrayLike, ArrayLike], Array] = field(repr=False)
    info: Callable[[ArrayLike, ArrayLike], Array] = field(repr=False)
    canonical: str
    dispersion: float | None = None
    score: Callable[[ArrayLike, ArrayLike], Array] | None = field(default=None, repr=False)
    psi: tuple[float, ...] = ()  # the family's own parameters (FamilyDef.psi_names)

    def _key(self) -> tuple:
        d = self.dispersion
        return (self.name, self.link.name, tuple(np.ravel(d)) if np.ndim(d) else d, self.psi)

    def __reduce__(self):
        # pickled by its key, rebuilt from the registry (its members are closures)
        return (_family_from_key, self._key())

    def __eq__(self, other: object) -> bool:
        # The members are closures built per call: equal families are the same triple.
        return isinstance(other, Family) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def theta(self) -> float | None:
        """The negative_binomial (NB2) size; None for every other family."""
        return self.dispersion if self.name == "negative_binomial" else None

    @property
    def dispersion_name(self) -> str | None:
        """``"theta"`` (NB2), ``"phi"`` (nbinom1), ``"sigma"`` (Gamma): the name of the
        estimated dispersion parameter the family carries; None for the others."""
        return FAMILIES[self.name].dispersion_name

    @property
    def canonical_fast(self) -> bool:
        """True for a canonical pair, where ``mu_eta(eta) == V(mu)``."""
        return (self.name, self.link.name) in _CANONICAL_PAIRS

    def _trials(self, n) -> dict:
        """``{"n": n}`` for a family whose functions take the trials (``FamilyDef.trials``:
        the beta-binomial), else {}."""
        return {"n": n} if n is not None and FAMILIES[self.name].trials else {}

    def working_weights(self, eta: ArrayLike, mu: ArrayLike, wt: ArrayLike,
                        mu_eta: ArrayLike | None = None, n: ArrayLike | None = None) -> Array:
        """PIRLS weights ``wt * mu_eta(eta)^2 / V(mu)`` (lme4's ``sqrtWrkWt`` squared).

        A canonical pair has ``mu_eta == V``, so the fused ``wt * mu_eta(eta)`` is used.
        ``mu_eta`` may be passed when already computed.
        """
        d = self.link.mu_eta(eta) if mu_eta is None else _f(mu_eta)
        if self.canonical_fast:
            return _f(wt) * d
        return _f(wt) * d * d / self.variance(mu, **self._trials(n))

    def working_residuals(self, y: ArrayLike, mu: ArrayLike, mu_eta: ArrayLike,
                          n: ArrayLike | None = None) -> Array:
        """PIRLS working residuals ``r``, with ``working_weights * r`` the exact gradient.

        ``r = (y - mu) / mu_eta`` for the exponential families;
        ``V(mu) * score(y, mu) / mu_eta`` for nbinom1, so that
        ``sum w r z = sum wt d log f / d eta z`` and PIRLS converges to the mode of the
        exact density, not of the quasi-likelihood with the same variance.
        """
        mu = _f(mu)
        kw = self._trials(n)
        num = (_f(y) - mu if self.score is None
               else self.variance(mu, **kw) * self.score(y, mu, **kw))
        return num / _f(mu_eta)

    def observed_weights(self, y: ArrayLike, eta: ArrayLike, mu: ArrayLike, wt: ArrayLike,
                         mu_eta: ArrayLike | None = None, n: ArrayLike | None = None) -> Array:
        """``-d^2 (wt log f(y | mu(eta))) / d eta^2`` on the scale of ``dev_resids``.

        ``wt (info(y, mu) mu_eta^2 - score(y, mu) dmu_eta(eta))``: the weights of the
        exact-Hessian Laplace approximation (glmmTMB's). They equal
        :meth:`working_weights` for canonical pairs and may be negative where
        ``score * dmu_eta`` is large, so PIRLS steps use :meth:`working_weights`.
        """
        y, mu = _f(y), _f(mu)
        d = self.link.mu_eta(eta) if mu_eta is None else _f(mu_eta)
        kw = self._trials(n)
        score = ((y - mu) / self.variance(mu) if self.score is None
                 else self.score(y, mu, **kw))
        return _f(wt) * (self.info(y, mu, **kw) * d * d - score * self.link.dmu_eta(eta))

    def observed_parts(self, y: ArrayLike, eta: ArrayLike, mu: ArrayLike, wt: ArrayLike,
                       mu_eta: ArrayLike | None = None, n: ArrayLike | None = None
                       ) -> tuple[Array, Array]:
        """``(d (wt log f) / d eta, observed_weights)`` with one evaluation of the score:
        what a Newton step of PIRLS needs."""
        y, mu = _f(y), _f(mu)
        d = self.link.mu_eta(eta) if mu_eta is None else _f(mu_eta)
        kw = self._trials(n)
        score = ((y - mu) / self.variance(mu) if self.score is None
                 else self.score(y, mu, **kw))
        wt = _f(wt)
        return (wt * score * d,
                wt * (self.info(y, mu, **kw) * d * d - score * self.link.dmu_eta(eta)))

    def with_dispersion(self, value: float) -> Family:
        """The family with its dispersion parameter (see ``dispersion``) set to ``value``.

        Raises :class:`FamilyError` for a family without one and for a value that is not
        finite and > 0.
        """
        fdef = FAMILIES[self.name]
        if fdef.dispersion_name is None:
            raise FamilyError(f"the {self.name} family has no dispersion parameter")
        return self.with_parameters(_check_dispersion(self.name, fdef.dispersion_name, value))

    def with_parameters(self, dispersion: float | Array | None, psi: Array | None = None
                        ) -> Family:
        """The family at a dispersion (None: none) and its own parameters ``psi`` on
        their internal scale (``FamilyDef.psi_names``; None: keep them)."""
        fdef = FAMILIES[self.name]
        d = None if dispersion is None else _check_dispersion(self.name, fdef.dispersion_name,
                                                              dispersion)
        return _make(fdef, self.link, d, self.psi if psi is None else psi)

    @property
    def family_params(self) -> dict[str, float]:
        """glmmTMB's ``family_params()``: the family's own parameters by glmmTMB's names
        (a t's df, Tweedie's power), on their natural scale; {} for the others."""
        fdef = FAMILIES[self.name]
        if not fdef.psi_names or not self.psi:
            return {}
        values = fdef.psi_value(np.asarray(self.psi, dtype=float))
        return {k: float(v) for k, v in zip(fdef.psi_names, values, strict=True)}

    def draw(self, rng: np.random.Generator, mu: ArrayLike, weights: ArrayLike,
             dispersion: float) -> Array:
        """Responses drawn from the family at means ``mu`` with prior ``weights`` and
        its dispersion (glmmTMB's ``sigma()``; 1 where it has none), on the scale of
        ``y`` (a binomial proportion of the rounded weights); a family with its own
        parameters draws at its ``psi``."""
        fdef = FAMILIES[self.name]
        if fdef.psi_names:
            return fdef.draw(rng, _f(mu), _f(weights), dispersion, self.psi)
        return fdef.draw(rng, _f(mu), _f(weights), dispersion)

    def outside_mean_range(self, mu: ArrayLike) -> tuple[Array, str]:
        """Which means ``mu`` lie outside the family's range, and what it needs."""
        return FAMILIES[self.name].mean_range(_f(mu))

    def outside_support(self, y: ArrayLike, levels: tuple[str, ...] | None = None
                        ) -> tuple[Array, str, str]:
        """Which values of ``y`` the family cannot take, the name of its range, and what
        it needs instead."""
        return FAMILIES[self.name].support(_f(y))

    def with_theta(self, theta: float) -> Family:
        """The negative_binomial family with size ``theta`` and the same link."""
        if self.name != "negative_binomial":
            raise FamilyError(f"theta applies to negative_binomial only, not {self.name!r}")
        return self.with_dispersion(theta)

    # ------------------------------------------------ the plug-in interface (base)
    # the registry entry's facts (FamilyDef)
    residual = _registry_fact("residual")
    units = _registry_fact("units")
    observed_information = _registry_fact("observed_information")
    saturated_loglik = _registry_fact("saturated")
    marginal = _registry_fact("marginal")
    betad_power = _registry_fact("betad_power")
    dispersion_text = _registry_fact("dispersion_text")

    @property
    def r_engines(self) -> tuple[str, ...]:
        fdef = FAMILIES[self.name]
        if fdef.lme4_links is None or self.link.name in fdef.lme4_links:
            return fdef.r_engines
        return tuple(e for e in fdef.r_engines if e != "lme4")

    def dvariance(self, mu: Array) -> Array:
        """``V'(mu)`` (``FamilyDef.dvariance``): with a canonical link (``canonical_fast``)
        the working weights' slope in eta is ``w V'(mu)``."""
        return FAMILIES[self.name].dvariance(mu)

    @property
    def separable(self) -> bool:
        return FAMILIES[self.name].separation is not None

    @property
    def separation_cone(self) -> str | None:
        fdef = FAMILIES[self.name]
        return fdef.separation if self.link.name in fdef.separation_links else None

    def code_response(self, var: ResponseVariable, weights: Array) -> CodedResponse:
        """A numeric response (a binomial one may also be a factor, whose first level
        is failure, or ``cbind(successes, failures)``), checked by the family's
        ``FamilyDef.check``; a constant response is an error except for the Gaussian
        family, whose design stage accepts it as lme4's ``lFormula`` does
        (``model.design.check_response_varies`` refuses it before the fit)."""
        fdef, name = FAMILIES[self.name], var.name
        if var.kind == "cbind" and fdef.cbind:
            return _code_cbind(var, weights)
        reject_cbind(var, self.name)
        if var.kind in ("fac", "chr") and fdef.cbind:  # binomial: a two-level factor
            codes, levels, _ = var.factor()
            if len(levels) < 2:
                raise DataError(f"response {name!r} is constant (only level {levels[0]!r})")
            return CodedResponse((codes > 0).astype(float), weights)
        if var.kind not in ("num", "lgl"):
            raise DataError(f"response {name!r} is categorical (a factor or text); the "
                            f"{self.name} family needs numbers")
        y = var.values.astype(float)
        if fdef.units:
            _check_response_scale(y, name)
        messages = fdef.check(y, name, weights, self.name) if fdef.check else ()
        if not fdef.residual and y.size and np.all(y == y[0]):
            raise DataError(f"response {name!r} is constant (all values {y[0]:g})")
        return CodedResponse(y, weights, messages=tuple(messages))

    def dispersion_boundary(self, value: float, mu_max: float) -> str | None:
        boundary = FAMILIES[self.name].boundary
        return boundary(value, mu_max) if boundary else None

    def simulate(self, rng: np.random.Generator, eta: Array, weights: Array,
                 dispersion: float, levels: tuple[str, ...] | None = None,
                 thresholds: Array | None = None, *, replicate: int = 1) -> Array:
        """Draws at the means ``linkinv(eta)``; a mean outside the family's range (a
        link that does not keep it there, e.g. Gamma's inverse link at ``eta <= 0``)
        is a `NumericalError` naming the link."""
        mu = self.link.linkinv(eta)
        bad, what = self.outside_mean_range(mu)
        if bad.any():
            raise NumericalError(
                f"simulate(): the {self.name} family's {self.link.name} link gives "
                f"{int(bad.sum())} observation(s) of replicate {replicate} a mean "
                f"outside its range (linear predictor {float(eta[bad][0]):.4g} -> mean "
                f"{float(mu[bad][0]):.4g}; the family needs {what}): with the random "
                "effects redrawn this link leaves the family's range, so the model cannot "
                "be simulated from as it stands")
        return self.draw(rng, mu, weights, dispersion)


_CANONICAL_PAIRS = frozenset({("gaussian", "identity"), ("binomial", "logit"),
                              ("poisson", "log")})


def _ylogy(y: Array, mu: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y != 0, y * np.log(y / mu), 0.0)


def _y_over_mu2(y, mu):
    mu = _f(mu)
    return _f(y) / (mu * mu)


def _binomial_mustart(y, wt):  # R's binomial()$initialize
    wt = _f(wt)
    return (wt * _f(y) + 0.5) / (wt + 1.0)


def _binomial(link: Link, dispersion: float | None) -> Family:
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

    def info(y, mu):
        y, mu = _f(y), _f(mu)
        return y / (mu * mu) + (1.0 - y) / ((1.0 - mu) * (1.0 - mu))

    return Family("binomial", link, variance, dev_resids, loglik_obs, validmu, _binomial_mustart,
                  info,
                  "logit")


def _poisson(link: Link, dispersion: float | None) -> Family:
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

    return Family("poisson", link, _identity, dev_resids, loglik_obs, validmu, mustart,
                  _y_over_mu2, "log")


def _gaussian(link: Link, dispersion: float | None) -> Family:
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

    def info(y, mu):
        return np.ones(np.broadcast_shapes(np.shape(y), np.shape(mu)))

    return Family("gaussian", link, _ones, dev_resids, loglik_obs, _always_valid, mustart, info,
                  "identity")


def _check_dispersion(family: str, param: str, value: object) -> float | Array:
    """A dispersion: one number, or one per observation (a ``dispformula`` model's),
    each finite and > 0."""
    if np.ndim(value) > 0:
        try:
            out = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            out = np.array([np.nan])
        if not (out.size and np.all(np.isfinite(out)) and np.all(out > 0)):
            raise FamilyError(f"{family} {param} must be finite and > 0 for every "
                              "observation")
        return out
    try:
        one = float(value)
    except (TypeError, ValueError):
        one = np.nan
    if not (np.isfinite(one) and one > 0):
        raise FamilyError(f"{family} {param} must be finite and > 0, got {value!r}")
    return one


def _missing(family: str, param: str, keyword: str):
    def fail(*args, **kwargs):
        raise FamilyError(f"{family} has no {param} yet: use get_family(..., {keyword}=) "
                          f"or family.with_dispersion({param})")
    return fail


def _nb_mustart(y, wt):
    y = _f(y)
    return y + (y == 0) / 6.0


def _positive_mu(mu) -> bool:
    return bool(np.all(_f(mu) > 0))


def _negative_binomial(link: Link, theta: float | None) -> Family:
    if theta is not None:
        theta = _check_dispersion("negative_binomial", "theta", theta)

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

    def info(y, mu):
        # -d^2/dmu^2 of y log(mu) - (y + theta) log(mu + theta)
        y, mu = _f(y), _f(mu)
        return y / (mu * mu) - (y + theta) / ((mu + theta) * (mu + theta))

    if theta is None:
        variance = dev_resids = loglik_obs = info = _missing("negative_binomial", "theta",
                                                            "theta")
    return Family("negative_binomial", link, variance, dev_resids, loglik_obs, _positive_mu,
                  _nb_mustart, info, "log", theta)


def _nbinom1(link: Link, phi: float | None) -> Family:
    if phi is not None:
        phi = _check_dispersion("nbinom1", "phi", phi)
    log1p_phi = None if phi is None else np.log1p(phi)

    def variance(mu):
        return _f(mu) * (1.0 + phi)

    def dev_resids(y, mu, wt):
        y = _f(y)
        return 2.0 * _f(wt) * (_log_dnbinom1(y, phi, y) - _log_dnbinom1(y, phi, mu))

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return _log_dnbinom1(y, phi, mu) * _f(wt)

    def score(y, mu):
        # d/dmu of lgamma(y + mu/phi) - lgamma(mu/phi) - (mu/phi) log(1 + phi)
        size = _f(mu) / phi
        with np.errstate(divide="ignore", invalid="ignore"):
            return (special.digamma(_f(y) + size) - special.digamma(size) - log1p_phi) / phi

    def info(y, mu):
        size = _f(mu) / phi
        with np.errstate(divide="ignore", invalid="ignore"):
            return (trigamma(size) - trigamma(_f(y) + size)) / phi**2

    if phi is None:
        variance = dev_resids = loglik_obs = score = info = _missing("nbinom1", "phi",
                                                                     "dispersion")
    return Family("nbinom1", link, variance, dev_resids, loglik_obs, _positive_mu, _nb_mustart,
                  info, "log", phi, score)


def _gamma(link: Link, sigma: float | None) -> Family:
    if sigma is not None:
        sigma = _check_dispersion("Gamma", "sigma", sigma)
    shape = None if sigma is None else 1.0 / (sigma * sigma)

    def variance(mu):
        mu = _f(mu)
        return mu * mu

    def dev_resids(y, mu, wt):
        # R: -2 wt (log(ifelse(y == 0, 1, y/mu)) - (y - mu)/mu). With t = y/mu that is
        # 2 wt bd0(1, t) = 2 wt (t - 1 - log t), summed as a series near t = 1, where
        # R's form cancels; y == 0 gives R's -2 wt.
        y, mu, wt = np.broadcast_arrays(_f(y), _f(mu), _f(wt))
        out = np.array(-2.0 * wt)  # 0-d for scalar input, writable
        pos = y != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = y[pos] / mu[pos]
            out[pos] = 2.0 * wt[pos] * _bd0(np.ones_like(t), t, (mu[pos] - y[pos]) / mu[pos])
        return out

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return _log_dgamma(y, shape, mu) * _f(wt)

    def validmu(mu):
        mu = _f(mu)
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def mustart(y, wt):
        y = _f(y)
        if np.any(y <= 0):
            raise DataError("non-positive values not allowed for the 'Gamma' family")
        return y.copy()

    def info(y, mu):
        # sigma^2 times -d^2/dmu^2 of shape (-log(mu) - y / mu)
        mu = _f(mu)
        return (2.0 * _f(y) - mu) / (mu * mu * mu)

    if sigma is None:
        loglik_obs = _missing("Gamma", "sigma", "dispersion")
    return Family("Gamma", link, variance, dev_resids, loglik_obs, validmu, mustart, info,
                  "inverse", sigma)


@dataclass(frozen=True)
class FamilyDef:
    """A registry entry: everything the layers above read of a GLM family
    (``families.base``), so that adding one is an entry here and its functions.

    name, links (R's order), canonical, make : the constructor ``make(link,
        dispersion)``; dispersion_name : its dispersion parameter's name;
    units : the response is a measurement with units (not counts or 0/1): its scale
        is checked, the log link's floor matters;
    residual : a residual variance (Gaussian): lme4's LMM checks, varcorr's Residual;
    observed_information : glmmTMB's exact Hessian in the Laplace factor (False:
        lme4's Fisher information, for the families whose reference is glmer);
    saturated : lme4's AGQ log-likelihood is relative to the saturated model;
    marginal : population-averaged coefficients exist for every link it allows;
    cbind : a ``cbind(successes, failures)`` or two-level factor response is allowed;
    separation, separation_links : Konis's cone that applies and the links it is
        checked on (``engine.separation``);
    check : ``(y, name, weights, family) -> messages``, the data checks beyond the
        response's kind (a `DataError` naming the column);
    dvariance : ``V'(mu)`` for the families with a canonical link in ``_CANONICAL_PAIRS``
        (there ``w = wt V(mu)`` and ``dw / deta = w V'(mu)``);
    concave_links : the links, besides the canonical one, whose log-likelihood is
        concave in eta (exact weights >= 0: the Laplace gradient of a Fisher-weighted
        ``L`` solves for the mode's movement with them);
    r_engines, lme4_links : the R engines that fit the family (``reference_r``), and
        the links lme4 fits where it fits fewer (glmer.nb: log);
    boundary : ``(value, mu_max) -> reason | None``, why an estimated dispersion sits
        on its boundary beyond reaching the optimizer's bound;
    draw, support, mean_range : ``Family.draw``, ``.outside_support``,
        ``.outside_mean_range``;
    dispersion_start : ``(y, mu, w) -> d``, a moment estimate of the dispersion
        parameter from the response about the means ``mu`` (prior weights ``w``): the
        search's start (``families.response.GLMResponse.param_start``);
    betad_power : the dispersion ``d`` is ``exp(betad_power * betad)`` with glmmTMB's
        ``betad`` (its ``fixef(m)$disp`` scale: the log variance for gaussian, the log
        shape for Gamma, log d for the others);
    dispersion_text : what the dispersion is, for the summary;
    psi_names, psi_start, psi_value, psi_bounds, psi_boundary : the family's own
        parameters beyond the dispersion (glmmTMB's ``psi``: a t's df, Tweedie's
        power), named as glmmTMB's ``family_params()``: their start ``(y, mu, w) ->
        psi`` and bounds on the internal scale the search uses, the map to their
        natural values, and why an estimate sits on a limit of the model
        (``psi -> reason | None``). ``make`` then takes ``(link, dispersion, psi)``;
    trials : the family's functions (``variance``, ``score``, ``info``, ``dev_resids``)
        take each observation's trials ``n`` (the beta-binomial: its density is not
        the binomial's scaled by the weights);
    loglik_grad : ``(family, y, mu) -> (dl/dlog d, dl/dpsi)``, the derivatives of the
        log-density per unit weight in the log dispersion ((n,)) and in ``psi``
        ((n, npsi)) at the family's values, where they have a closed form (Tweedie: its
        series' derivatives come with its terms); None: central differences.
    """

    name: str
    links: tuple[str, ...]
    canonical: str
    make: Callable[[Link, float | None], Family] = field(repr=False)
    dispersion_name: str | None = None
    units: bool = False
    residual: bool = False
    observed_information: bool = True
    saturated: bool = False
    marginal: bool = False
    cbind: bool = False
    separation: str | None = None
    separation_links: tuple[str, ...] = ()
    check: Callable[..., list[str]] | None = field(default=None, repr=False)
    dvariance: Callable[[Array], Array] | None = field(default=None, repr=False)
    concave_links: tuple[str, ...] = ()
    r_engines: tuple[str, ...] = ("lme4", "glmmTMB")
    lme4_links: tuple[str, ...] | None = None
    boundary: Callable[[float, float], str | None] | None = field(default=None, repr=False)
    draw: Callable[..., Array] | None = field(default=None, repr=False)
    support: Callable[[Array], tuple[Array, str, str]] | None = field(default=None,
                                                                      repr=False)
    mean_range: Callable[[Array], tuple[Array, str]] | None = field(default=None, repr=False)
    dispersion_start: Callable[[Array, Array, Array], float] | None = field(default=None,
                                                                            repr=False)
    betad_power: float = 1.0
    dispersion_text: str = ""
    psi_names: tuple[str, ...] = ()
    psi_start: Callable[[Array, Array, Array], Array] | None = field(default=None, repr=False)
    psi_value: Callable[[Array], Array] | None = field(default=None, repr=False)
    psi_bounds: tuple[tuple[float, float], ...] = ()
    psi_boundary: Callable[[Array], str | None] | None = field(default=None, repr=False)
    trials: bool = False
    loglik_grad: Callable | None = field(default=None, repr=False)


# ------------------------------------------------------------- the families' data

# A measured response whose largest value is below this is refused: its squares
# underflow double precision (see _check_response_scale).
MIN_ABS_RESPONSE = 1e-100

# NB2's theta (NB1's phi) counts as infinite (zero) when the extra variance,
# mu^2 / theta (phi mu), is below this share of the Poisson variance mu everywhere
NO_OVERDISPERSION = 1e-3

# Konis's cones (engine.separation) are checked on these links
CDF_LINKS = ("logit", "probit", "cloglog", "loglog", "cauchit")


def _check_response_scale(y: Array, name: str) -> None:
    """A measured response on a scale so small that its squares underflow: refused,
    naming it and the factor that brings it to a usable scale (lme4 "fits" a Gaussian
    response in units of 1e-200 with log-likelihood +Inf and a residual sd of 0)."""
    top = float(np.max(np.abs(y), initial=0.0))
    if not 0.0 < top < MIN_ABS_RESPONSE:
        return
    k = -int(np.floor(np.log10(top)))
    raise DataError(
        f"response {name!r} has values no larger than {top:.3g} in absolute value (below "
        f"{MIN_ABS_RESPONSE:g}): on that scale its squares, and the model's residual sum of "
        f"squares, underflow double precision; rescale it, e.g. {name} * 1e{k}, and fit "
        "that (the same model in other units: estimates and standard deviations on the "
        "response's scale are multiplied by the factor)")


def _code_cbind(var: ResponseVariable, weights: Array) -> CodedResponse:
    """``cbind(successes, failures)``: the proportion of successes, weights times the
    trials."""
    name, parts, messages = var.name, [], []
    for label, kind, values in var.parts:
        if kind not in ("num", "lgl"):
            raise DataError(f"{label!r} in response {name!r} must be numeric counts")
        if np.any(values < 0):
            raise DataError(f"{label!r} in response {name!r} has "
                            f"{int(np.sum(values < 0))} negative counts")
        parts.append(values)
    s, f = parts
    trials = s + f
    if non_integer(s) or non_integer(f):
        messages.append(f"non-integer counts in response {name!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(trials > 0, s / trials, 0.0)
    if np.unique(np.column_stack([s, f]), axis=0).shape[0] < 2:
        raise DataError(f"response {name!r} is constant")
    return CodedResponse(y, trials * weights, None, trials, tuple(messages))


def _check_binomial(y, name, w, family):
    out = (y < 0) | (y > 1)
    if out.any():
        raise DataError(
            f"binomial response {name!r} must lie in [0, 1] (found values from "
            f"{y.min():g} to {y.max():g}); for counts of successes use "
            "cbind(successes, failures), or a proportion with weights = trials")
    if non_integer(y * w):
        return [f"non-integer number of successes in binomial response {name!r}"]
    return []


def _check_positive(y, name, w, family):
    if np.any(y <= 0):
        raise DataError(f"{family} response {name!r} has {int(np.sum(y <= 0))} non-positive "
                        f"values (the {family} family needs y > 0, as R's {family}())")
    return []


def _check_counts(y, name, w, family):
    if np.any(y < 0):
        raise DataError(f"{family} response {name!r} has {int(np.sum(y < 0))} "
                        "negative counts")
    if non_integer(y):
        raise DataError(f"{family} response {name!r} has {int(np.sum(y != np.round(y)))} "
                        "non-integer counts (its log-likelihood is -Inf there, as R's "
                        "dpois / dnbinom)")
    return []


def _boundary_nb2(theta: float, mu_max: float) -> str | None:
    if mu_max / theta < NO_OVERDISPERSION:
        return ("theta -> infinity: the counts show no overdispersion given the random "
                "effects, and the Poisson model is the limit")
    return None


def _boundary_nb1(phi: float, mu_max: float) -> str | None:
    if phi < NO_OVERDISPERSION:
        return ("phi -> 0: the counts show no overdispersion given the random effects, "
                "and the Poisson model is the limit")
    return None


def _draw_gaussian(rng, mu, wt, sigma):
    return rng.normal(mu, sigma / np.sqrt(wt))


def _draw_binomial(rng, mu, wt, _):
    trials = np.round(wt).astype(np.int64)
    return rng.binomial(trials, mu) / np.maximum(trials, 1)


def _draw_poisson(rng, mu, wt, _):
    return rng.poisson(mu).astype(float)


def _draw_nb2(rng, mu, wt, theta):  # numpy's (n, p): mean n (1 - p) / p
    return rng.negative_binomial(theta, theta / (theta + mu)).astype(float)


def _draw_nb1(rng, mu, wt, phi):  # size mu / phi, p = 1 / (1 + phi)
    return rng.negative_binomial(mu / phi, 1.0 / (1.0 + phi)).astype(float)


def _draw_gamma(rng, mu, wt, sigma):  # shape 1 / sigma^2, scale mu sigma^2
    return rng.gamma(1.0 / sigma**2, mu * sigma**2)


def _start_sd(y, m, w):  # gaussian: sigma from E (y - mu)^2 = sigma^2
    return float(np.sqrt(np.average((y - m) ** 2, weights=w)))


def _start_cv(y, m, w):  # Gamma: sigma from E (y - mu)^2 = sigma^2 mu^2
    return float(np.sqrt(np.average((y - m) ** 2 / m**2, weights=w)))


def _start_nb2(y, m, w):  # NB2: theta from E (y - mu)^2 = mu + mu^2 / theta
    excess = float(np.sum(w * ((y - m) ** 2 - m)))
    return float(np.sum(w * m**2)) / excess if excess > 0 else 1.0


def _start_nb1(y, m, w):  # NB1: phi from E (y - mu)^2 = mu (1 + phi)
    excess = float(np.sum(w * ((y - m) ** 2 - m)))
    return excess / float(np.sum(w * m)) if excess > 0 else 1.0


def _mean_finite(mu):
    return ~np.isfinite(mu), "a finite mean"


def _mean_unit(mu):
    return ~((mu >= 0) & (mu <= 1)), "a mean in [0, 1]"


def _mean_nonnegative(mu):
    return ~(mu >= 0) | ~np.isfinite(mu), "a non-negative finite mean"


def _mean_positive(mu):
    return ~(mu > 0) | ~np.isfinite(mu), "a positive finite mean"


def _support_real(y):
    return np.zeros(y.shape, dtype=bool), "the real numbers", "real numbers"


def _support_unit(y):
    return (y < 0) | (y > 1), "0-1", ("proportions of successes out of the prior weights, "
                                      "as simulate() draws them")


def _support_counts(y):
    return ((y < 0) | (y != np.round(y)), "the family's range",
            "non-negative integer counts")


def _support_positive(y):
    return y <= 0, "the family's range", "positive values"


_REGISTRY: dict[str, FamilyDef] = {
    d.name: d
    for d in (
        FamilyDef("gaussian", ("identity", "log", "inverse"), "identity", _gaussian,
                  units=True, residual=True, dvariance=np.zeros_like, draw=_draw_gaussian,
                  support=_support_real, mean_range=_mean_finite,
                  dispersion_start=_start_sd, betad_power=0.5,
                  dispersion_text="residual standard deviation sigma (var = sigma^2)"),
        FamilyDef("binomial", ("logit", "probit", "cauchit", "log", "cloglog"), "logit",
                  _binomial, observed_information=False, saturated=True,
                  marginal=True, cbind=True, separation="binary",
                  dvariance=lambda mu: 1.0 - 2.0 * mu, concave_links=("probit", "cloglog"),
                  separation_links=CDF_LINKS, check=_check_binomial,
                  draw=_draw_binomial, support=_support_unit, mean_range=_mean_unit),
        FamilyDef("poisson", ("log", "identity", "sqrt"), "log", _poisson,
                  observed_information=False, saturated=True, marginal=True,
                  separation="counts", separation_links=("log",), check=_check_counts,
                  dvariance=np.ones_like,
                  draw=_draw_poisson, support=_support_counts,
                  mean_range=_mean_nonnegative),
        FamilyDef("negative_binomial", ("log", "identity", "sqrt"), "log",
                  _negative_binomial, "theta", marginal=True, separation="counts",
                  lme4_links=("log",),
                  separation_links=("log",), check=_check_counts,
                  boundary=_boundary_nb2, draw=_draw_nb2, support=_support_counts,
                  mean_range=_mean_nonnegative, dispersion_start=_start_nb2,
                  dispersion_text="size theta (var = mu + mu^2/theta)"),
        FamilyDef("nbinom1", ("log", "identity", "sqrt"), "log", _nbinom1, "phi",
                  r_engines=("glmmTMB",), marginal=True, separation="counts",
                  separation_links=("log",),
                  check=_check_counts, boundary=_boundary_nb1, draw=_draw_nb1,
                  support=_support_counts, mean_range=_mean_nonnegative,
                  dispersion_start=_start_nb1, dispersion_text="phi (var = mu (1 + phi))"),
        FamilyDef("Gamma", ("inverse", "log", "identity"), "inverse", _gamma, "sigma",
                  units=True, check=_check_positive, draw=_draw_gamma,
                  support=_support_positive, mean_range=_mean_positive,
                  dispersion_start=_start_cv, betad_power=-0.5,
                  dispersion_text="coefficient of variation sigma (var = sigma^2 mu^2)"),
    )
}
# the registry, read-only (`register` adds to it: `families.glmmtmb`)
FAMILIES: Mapping[str, FamilyDef] = MappingProxyType(_REGISTRY)


def register(*defs: FamilyDef) -> None:
    """Add GLM families to the registry (``FAMILIES``): a family is a `FamilyDef` and its
    functions, and nothing outside ``families/`` names it."""
    for d in defs:
        if d.name in _REGISTRY:
            raise FamilyError(f"family {d.name!r} is registered already")
        _REGISTRY[d.name] = d


# Other accepted names: glmmTMB's nbinom2, and the lower-case spelling of R's Gamma.
FAMILY_ALIASES: Mapping[str, str] = MappingProxyType(
    {"nbinom2": "negative_binomial", "gamma": "Gamma"})


def _family_from_key(name: str, link: str, dispersion, psi: tuple = ()) -> Family:
    return get_family(name, link, dispersion=dispersion, psi=psi)


def _make(fdef: FamilyDef, link: Link, dispersion, psi) -> Family:
    """``fdef.make``, with the family's own parameters where it has them."""
    if not fdef.psi_names:
        return fdef.make(link, dispersion)
    psi = tuple(float(v) for v in np.ravel(psi)) if psi is not None and len(psi) else ()
    if psi and len(psi) != len(fdef.psi_names):
        raise FamilyError(f"the {fdef.name} family has {len(fdef.psi_names)} parameter(s) "
                          f"({', '.join(fdef.psi_names)}), not {len(psi)}")
    return fdef.make(link, dispersion, psi)


def get_family(name: str, link: str | None = None, *, theta: float | None = None,
               dispersion: float | None = None, psi=()) -> Family:
    """The family R calls ``name`` (or an alias: ``"nbinom2"``, ``"gamma"``) with ``link``
    (default: its canonical/default link).

    ``dispersion`` sets the family's dispersion parameter (NB2 ``theta``, nbinom1
    ``phi``, Gamma ``sigma``; see :class:`Family`); it may be left None and set later
    with :meth:`Family.with_dispersion` when it is estimated. ``theta`` is the same for
    negative_binomial only (glmer.nb's name). Unknown names, links the family does not
    allow in R, and a dispersion for a family without one raise :class:`FamilyError`.
    """
    key = FAMILY_ALIASES.get(name, name) if isinstance(name, str) else name
    try:
        fdef = FAMILIES[key]
    except (KeyError, TypeError):
        raise FamilyError(
            f"unknown family {name!r}; valid families: {', '.join(FAMILIES)} "
            f"(aliases: {', '.join(FAMILY_ALIASES)})"
        ) from None
    link_obj = get_link(fdef.canonical if link is None else link)
    if link_obj.name not in fdef.links:
        raise FamilyError(
            f"link {link!r} is not available for family {fdef.name!r}; "
            f"valid links: {', '.join(fdef.links)}"
        )
    if theta is not None:
        if fdef.name != "negative_binomial":
            raise FamilyError(f"theta applies to negative_binomial only, not {name!r}")
        if dispersion is not None:
            raise FamilyError("give negative_binomial's size as theta= or dispersion=, "
                              "not both")
        dispersion = theta
    if dispersion is not None and fdef.dispersion_name is None:
        raise FamilyError(f"the {fdef.name} family has no dispersion parameter")
    return _make(fdef, link_obj, dispersion, psi)
