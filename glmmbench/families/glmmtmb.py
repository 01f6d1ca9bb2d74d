"""glmmTMB's families beyond R's GLM families: beta, zero-truncated counts, generalized
Poisson, each a `FamilyDef` registered with the GLM families (``glm.register``).

Each is written as glmmTMB 1.1.5 writes its log-density (its ``glmmTMB.cpp``), with the
mean ``mu = linkinv(eta)`` and glmmTMB's dispersion ``phi = exp(betad)``, which is what
glmmTMB's ``sigma()`` returns for these families:

- ``beta`` (``beta_family()``, Ferrari & Cribari-Neto): ``y ~ Beta(mu phi, (1 - mu) phi)``
  on (0, 1), the precision ``phi``: ``var = mu (1 - mu) / (1 + phi)``;
- ``truncated_poisson``, ``truncated_nbinom2``, ``truncated_nbinom1``: the Poisson, NB2
  (size ``phi``) and NB1 (``var = mu (1 + phi)``) densities of the counts y >= 1
  divided by ``1 - P(0)``; ``mu`` is the mean of the untruncated distribution, as in
  glmmTMB;
- ``genpois`` (Consul's generalized Poisson in glmmTMB's mean parametrisation):
  ``theta = mu / sqrt(phi)``, ``lambda = 1 - 1 / sqrt(phi)``,
  ``log f = log theta + (y - 1) log(theta + lambda y) - theta - lambda y - log y!``,
  mean ``mu`` and ``var = phi mu`` (``phi < 1``: underdispersion).

What the engine needs of a family (``glm.Family``): the log-density, its score
``d log f / d mu`` and its information ``-d^2 log f / d mu^2`` in closed form, and a
variance ``V`` for PIRLS's Fisher steps where the exact curvature is not positive
(glmmTMB's Laplace factor has the exact curvature, ``observed_information``). The
zero-truncated families follow from their parents: with ``P0 = P(y = 0 | mu)``,
``g = d log P0 / d mu`` and ``g' = dg / dmu``,

    log f_T = log f - log(1 - P0),
    score_T = score + g P0 / (1 - P0),
    info_T  = info - [(g^2 + g') P0 / (1 - P0) + (g P0 / (1 - P0))^2].

``dev_resids`` is ``2 wt (log f(y | mu = y) - log f(y | mu))``, as nbinom1's: for these
families ``mu = y`` need not maximise ``log f``, so it is not a deviance in the GLM
sense, but it differs from ``-2 wt log f`` by a term free of ``mu``, which is all PIRLS
uses.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from glmmbench.errors import DataError
from glmmbench.families.glm import (
    Family,
    FamilyDef,
    Link,
    _check_counts,
    _check_dispersion,
    _f,
    _mean_nonnegative,
    _mean_unit,
    _missing,
    _positive_mu,
    _start_nb1,
    _start_nb2,
    _support_counts,
    register,
)

__all__ = ["TRUNCATED"]


def _dev_from(logf):
    """``dev_resids`` from a log-density per unit weight (module docstring)."""
    def dev_resids(y, mu, wt):
        y = _f(y)
        return 2.0 * _f(wt) * (logf(y, y) - logf(y, mu))
    return dev_resids


def _unit_mean(mu) -> bool:
    mu = _f(mu)
    return bool(np.all((mu > 0) & (mu < 1)))


# ------------------------------------------------------------------------------ beta

def _log_dbeta(y, mu, phi):
    a = _f(mu) * phi
    b = phi - a
    return (a - 1.0) * np.log(y) + (b - 1.0) * np.log1p(-y) - special.betaln(a, b)


def _beta(link: Link, phi: float | None) -> Family:
    if phi is not None:
        phi = _check_dispersion("beta", "phi", phi)

    def logf(y, mu):
        return _log_dbeta(_f(y), mu, phi)

    def info(y, mu):  # free of y: the expected information too
        a = _f(mu) * phi
        return phi * phi * (special.polygamma(1, a) + special.polygamma(1, phi - a))

    def variance(mu):  # 1 / Fisher information: PIRLS's Fisher steps are exact
        return 1.0 / info(None, mu)

    def score(y, mu):
        a = _f(mu) * phi
        y = _f(y)
        return phi * (np.log(y) - np.log1p(-y) - special.digamma(a) + special.digamma(phi - a))

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return logf(y, mu) * _f(wt)

    dev_resids = _dev_from(logf)
    if phi is None:
        variance = dev_resids = loglik_obs = score = info = _missing("beta", "phi",
                                                                     "dispersion")
    return Family("beta", link, variance, dev_resids, loglik_obs, _unit_mean, _beta_mustart,
                  info, "logit", phi, score)


def _beta_mustart(y, wt):
    """Halfway between y and its weighted mean: inside (0, 1), away from its ends."""
    y = _f(y)
    return 0.5 * (y + np.average(y, weights=wt if np.sum(wt) > 0 else None))


def _check_beta(y, name, w, family):
    zeros, ones = int(np.sum(y == 0)), int(np.sum(y == 1))
    if zeros or ones:
        raise DataError(
            f"beta response {name!r} has {zeros} value(s) equal to 0 and {ones} equal to 1: "
            "the beta family needs 0 < y < 1; for proportions with exact 0s and 1s use "
            "family='ordbeta'")
    out = (y < 0) | (y > 1)
    if out.any():
        raise DataError(f"beta response {name!r} has {int(out.sum())} value(s) outside "
                        f"(0, 1) (from {y.min():g} to {y.max():g}): the beta family needs "
                        "proportions strictly between 0 and 1")
    return []


def _start_beta(y, m, w):  # phi from E (y - mu)^2 = mu (1 - mu) / (1 + phi)
    r = np.average((y - m) ** 2, weights=w)
    return float(np.average(m * (1.0 - m), weights=w) / r - 1.0)


def _draw_beta(rng, mu, wt, phi):
    return rng.beta(mu * phi, (1.0 - mu) * phi)


def _support_open_unit(y):
    return (y <= 0) | (y >= 1), "(0, 1)", "proportions strictly between 0 and 1"


# ------------------------------------------------------------------ truncated counts

def _log1m_exp(x):
    """``log(1 - exp(x))`` for ``x <= 0``, accurate at both ends (Maechler's rule)."""
    x = _f(x)
    with np.errstate(divide="ignore"):
        return np.where(x > -np.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _odds_zero(log_p0):
    """``P0 / (1 - P0)`` from ``log P0`` (``1 / expm1(-log P0)``)."""
    with np.errstate(divide="ignore", over="ignore"):
        return 1.0 / np.expm1(-_f(log_p0))


def _truncated(parent: Family, name: str, log_p0, dlog_p0, d2log_p0) -> Family:
    """The zero-truncated family of ``parent`` (module docstring): ``log_p0``,
    ``dlog_p0`` and ``d2log_p0`` are ``log P0`` and its first two derivatives in mu."""
    def logf(y, mu):
        return parent.loglik_obs(y, mu, 1.0) - _log1m_exp(log_p0(mu))

    def score(y, mu):
        base = (_f(y) - _f(mu)) / parent.variance(mu) if parent.score is None \
            else parent.score(y, mu)
        return base + dlog_p0(mu) * _odds_zero(log_p0(mu))

    def correction(mu):
        g, odds = dlog_p0(mu), _odds_zero(log_p0(mu))
        return (g * g + d2log_p0(mu)) * odds + (g * odds) ** 2

    def info(y, mu):
        return parent.info(y, mu) - correction(mu)

    def variance(mu):
        # the truncated mean mu / (1 - P0) in the parent's information where that is
        # linear in y (Poisson, NB2): the Fisher information; NB1's: its parent's
        mu = _f(mu)
        if parent.score is not None:
            return parent.variance(mu)
        ey = mu * (1.0 + _odds_zero(log_p0(mu)))
        return 1.0 / (parent.info(ey, mu) - correction(mu))

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        out = logf(y, mu)
        return np.where(_f(y) >= 1, out, -np.inf) * _f(wt)

    return Family(name, parent.link, variance, _dev_from(logf), loglik_obs, _positive_mu,
                  _truncated_mustart, info, "log", parent.dispersion, score)


def _truncated_mustart(y, wt):
    return _f(y).copy()


def _truncated_poisson(link: Link, dispersion: float | None) -> Family:
    parent = _parent("poisson", link, None)
    return _truncated(parent, "truncated_poisson", lambda mu: -_f(mu),
                      lambda mu: -np.ones_like(_f(mu)), lambda mu: np.zeros_like(_f(mu)))


def _truncated_nbinom2(link: Link, theta: float | None) -> Family:
    if theta is None:
        return _undispersed("truncated_nbinom2", link, "theta")
    parent = _parent("negative_binomial", link, theta)
    return _truncated(parent, "truncated_nbinom2",
                      lambda mu: -theta * np.log1p(_f(mu) / theta),
                      lambda mu: -theta / (theta + _f(mu)),
                      lambda mu: theta / (theta + _f(mu)) ** 2)


def _truncated_nbinom1(link: Link, phi: float | None) -> Family:
    if phi is None:
        return _undispersed("truncated_nbinom1", link, "phi")
    parent = _parent("nbinom1", link, phi)
    rate = np.log1p(phi) / phi  # log P0 = -mu log(1 + phi) / phi
    return _truncated(parent, "truncated_nbinom1", lambda mu: -rate * _f(mu),
                      lambda mu: -rate * np.ones_like(_f(mu)), lambda mu: np.zeros_like(_f(mu)))


def _parent(name: str, link: Link, dispersion: float | None) -> Family:
    from glmmbench.families.glm import FAMILIES

    return FAMILIES[name].make(link, dispersion)


def _undispersed(name: str, link: Link, param: str) -> Family:
    """A family whose dispersion is not set yet: its members raise until it is."""
    fail = _missing(name, param, "dispersion")
    return Family(name, link, fail, fail, fail, _positive_mu, _truncated_mustart, fail, "log",
                  None, fail)


def _check_truncated(y, name, w, family):
    _check_counts(y, name, w, family)
    zeros = int(np.sum(y == 0))
    if zeros:
        raise DataError(f"{family} response {name!r} has {zeros} zero(s): a zero-truncated "
                        "family needs counts of at least 1 (for counts with zeros use the "
                        "untruncated family)")
    return []


def _support_positive_counts(y):
    return ((y < 1) | (y != np.round(y)), "the family's range",
            "integer counts of at least 1")


def _draw_truncated(draw):
    """Draws of a zero-truncated family: its parent's draws, the zeros drawn again."""
    def sample(rng, mu, wt, d):
        y = draw(rng, mu, wt, d)
        zero = y == 0
        for _ in range(10_000):
            if not zero.any():
                break
            y[zero] = draw(rng, mu[zero], wt[zero], d)
            zero = y == 0
        return y
    return sample


# ------------------------------------------------------------ generalized Poisson

def _log_dgenpois(y, mu, phi):
    """glmmTMB's ``dgenpois(y, theta, lambda, log = TRUE)`` with ``theta = mu / sqrt(phi)``
    and ``lambda = 1 - 1 / sqrt(phi)``; at ``y = 0`` exactly ``-theta``."""
    y, mu = np.broadcast_arrays(_f(y), _f(mu))
    s = np.sqrt(phi)
    theta = mu / s
    lam = 1.0 - 1.0 / s
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.log(theta) + (y - 1.0) * np.log(theta + lam * y) - theta - lam * y
               - special.gammaln(y + 1.0))
    return np.where(y == 0, -theta, out)


def _genpois(link: Link, phi: float | None) -> Family:
    if phi is not None:
        phi = _check_dispersion("genpois", "phi", phi)
    c = None if phi is None else 1.0 / np.sqrt(phi)  # d theta / d mu
    lam = None if phi is None else 1.0 - c

    def logf(y, mu):
        return _log_dgenpois(y, mu, phi)

    def score(y, mu):
        y, mu = _f(y), _f(mu)
        theta = c * mu
        with np.errstate(divide="ignore", invalid="ignore"):
            return c * (1.0 / theta + (y - 1.0) / (theta + lam * y) - 1.0)

    def info(y, mu):
        y, mu = _f(y), _f(mu)
        theta = c * mu
        with np.errstate(divide="ignore", invalid="ignore"):
            return c * c * (1.0 / theta**2 + (y - 1.0) / (theta + lam * y) ** 2)

    def variance(mu):
        return phi * _f(mu)

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return logf(y, mu) * _f(wt)

    dev_resids = _dev_from(logf)
    if phi is None:
        variance = dev_resids = loglik_obs = score = info = _missing("genpois", "phi",
                                                                     "dispersion")
    return Family("genpois", link, variance, dev_resids, loglik_obs, _positive_mu,
                  _genpois_mustart, info, "log", phi, score)


def _genpois_mustart(y, wt):
    y = _f(y)
    return y + (y == 0) / 6.0


def _start_genpois(y, m, w):  # phi from E (y - mu)^2 = phi mu
    return float(np.sum(w * (y - m) ** 2) / np.sum(w * m))


def _draw_genpois(rng, mu, wt, phi):
    """Consul's branching draw: y = 0, 1, ... by inversion of the cumulative
    probabilities (``_log_dgenpois``), one observation at a time; for underdispersion
    (``phi < 1``) the support ends where ``theta + lambda y`` reaches 0."""
    out = np.empty(mu.shape)
    u = rng.uniform(size=mu.shape)
    phis = np.broadcast_to(phi, mu.shape).ravel()
    for i, (m, ui, ph) in enumerate(zip(mu.ravel(), u.ravel(), phis, strict=True)):
        k, total = 0, 0.0
        while True:
            p = float(np.exp(_log_dgenpois(np.array([k]), np.array([m]), ph)[0]))
            total += p if np.isfinite(p) else 0.0
            if total >= ui or not np.isfinite(p) or (p == 0.0 and k > m) or k > 1e6:
                break
            k += 1
        out.flat[i] = k
    return out


# ---------------------------------------------------------------------- registry

def _draw_from(name: str):
    def draw(rng, mu, wt, d):
        from glmmbench.families.glm import FAMILIES

        return FAMILIES[name].draw(rng, mu, wt, d)
    return draw


# the zero-truncated families by their parents (simulate, the harness)
TRUNCATED = {"truncated_poisson": "poisson", "truncated_nbinom2": "negative_binomial",
             "truncated_nbinom1": "nbinom1"}

register(
    FamilyDef("beta", ("logit", "probit", "cloglog"), "logit", _beta, "phi",
              r_engines=("glmmTMB",), check=_check_beta, draw=_draw_beta,
              support=_support_open_unit, mean_range=_mean_unit,
              dispersion_start=_start_beta,
              dispersion_text="precision phi (var = mu (1 - mu) / (1 + phi))"),
    FamilyDef("truncated_poisson", ("log",), "log", _truncated_poisson,
              r_engines=("glmmTMB",), check=_check_truncated,
              draw=_draw_truncated(_draw_from("poisson")), support=_support_positive_counts,
              mean_range=_mean_nonnegative),
    FamilyDef("truncated_nbinom2", ("log",), "log", _truncated_nbinom2, "theta",
              r_engines=("glmmTMB",), check=_check_truncated,
              draw=_draw_truncated(_draw_from("negative_binomial")),
              support=_support_positive_counts, mean_range=_mean_nonnegative,
              dispersion_start=_start_nb2,
              dispersion_text="size theta of the untruncated NB2 (var = mu + mu^2/theta)"),
    FamilyDef("truncated_nbinom1", ("log",), "log", _truncated_nbinom1, "phi",
              r_engines=("glmmTMB",), check=_check_truncated,
              draw=_draw_truncated(_draw_from("nbinom1")),
              support=_support_positive_counts, mean_range=_mean_nonnegative,
              dispersion_start=_start_nb1,
              dispersion_text="phi of the untruncated NB1 (var = mu (1 + phi))"),
    FamilyDef("genpois", ("log",), "log", _genpois, "phi", r_engines=("glmmTMB",),
              check=_check_counts, draw=_draw_genpois, support=_support_counts,
              mean_range=_mean_nonnegative,
              dispersion_start=_start_genpois, dispersion_text="phi (var = phi mu)"),
)
