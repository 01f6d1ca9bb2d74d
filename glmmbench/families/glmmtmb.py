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
    FAMILIES,
    Array,
    Family,
    FamilyDef,
    Link,
    _binomial_mustart,
    _check_binomial,
    _check_counts,
    _check_dispersion,
    _f,
    _mean_finite,
    _mean_nonnegative,
    _mean_unit,
    _missing,
    _nb_mustart,
    _positive_mu,
    _start_nb1,
    _start_nb2,
    _support_counts,
    _support_unit,
    register,
    trigamma,
)

__all__ = ["TRUNCATED"]


def _dev_from(logf, reference=None):
    """``dev_resids`` from a log-density per unit weight (module docstring):
    ``2 wt (log f(y | ref) - log f(y | mu))`` with the reference mean ``ref = y``, or
    ``reference(y)`` where ``mu = y`` is outside the mean's range. Its first term is free
    of mu: kept for the last y (PIRLS evaluates the deviance at many means of the same
    response, whose arrays are never changed in place)."""
    saturated: list = [None, None]

    def dev_resids(y, mu, wt):
        y = _f(y)
        if y is not saturated[0]:
            saturated[:] = [y, logf(y, y if reference is None else reference(y))]
        return 2.0 * _f(wt) * (saturated[1] - logf(y, mu))
    return dev_resids


def _from_logf(name: str, link: Link, phi, logf, score, info, variance, validmu, mustart,
               canonical: str, psi=(), missing: str = "phi") -> Family:
    """A `Family` from its log-density per unit weight ``logf(y, mu)`` (``loglik_obs``
    weights it, ``dev_resids`` is `_dev_from` it) and its score, information and
    variance; where the dispersion (or ``psi``) is not set yet, the members that need
    it raise instead."""
    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return logf(y, mu) * _f(wt)

    dev_resids = _dev_from(logf)
    if phi is None:
        variance = dev_resids = loglik_obs = score = info = _missing(name, missing,
                                                                     "dispersion")
    return Family(name, link, variance, dev_resids, loglik_obs, validmu, mustart, info,
                  canonical, phi, score, tuple(psi))


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

    last: list = [None, None]  # the information at the last mu (PIRLS asks twice)

    def info(y, mu):  # free of y: the expected information too
        mu = _f(mu)
        if mu is not last[0]:
            a = mu * phi
            last[:] = [mu, phi * phi * (trigamma(a) + trigamma(phi - a))]
        return last[1]

    def variance(mu):  # 1 / Fisher information: PIRLS's Fisher steps are exact
        return 1.0 / info(None, mu)

    def score(y, mu):
        a = _f(mu) * phi
        y = _f(y)
        return phi * (np.log(y) - np.log1p(-y) - special.digamma(a) + special.digamma(phi - a))

    return _from_logf("beta", link, phi, logf, score, info, variance, _unit_mean,
                      _beta_mustart, "logit")


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


# -------------------------------------------------------------------- ordered beta

def _ordbeta(link: Link, phi: float | None, psi=()) -> Family:
    """glmmTMB's ``ordbeta()`` (Kubinec's ordered beta): proportions on [0, 1] with
    exact 0s and 1s, cut points ``k1 = psi[0]``, ``k2 = psi[1]`` on the logit scale and
    ``F = expit``, ``eta = logit(mu)``:

        log f(0) = log(1 - F(eta - k1)),   log f(1) = log F(eta - k2),
        log f(y) = log(F(eta - k1) - F(eta - k2)) + log dbeta(y, mu phi, (1 - mu) phi).

    The score and information in mu come from those in eta (``_ordbeta_eta``) by
    the chain rule, ``d eta / d mu = 1 / (mu (1 - mu))``."""
    if phi is not None:
        phi = _check_dispersion("ordbeta", "phi", phi)
    k1, k2 = (float(psi[0]), float(psi[1])) if len(psi) else (None, None)
    last: list = [None, None, None]  # (y, mu, parts) of the last call: PIRLS asks for the
    # score and the information at the same arrays, which are never changed in place

    def parts(y, mu):
        """``(ll, d ll / d eta, d2 ll / d eta2, mu)`` per observation."""
        if y is last[0] and mu is last[1]:
            return last[2]
        out = _parts(y, mu)
        last[:] = [y, mu, out]
        return out

    def _parts(y, mu):
        y, mu = np.broadcast_arrays(_f(y), _f(mu))
        eta = special.logit(mu)
        F1, F2 = special.expit(eta - k1), special.expit(eta - k2)
        f1, f2 = F1 * (1.0 - F1), F2 * (1.0 - F2)
        zero, one = y == 0, y == 1
        mid = ~(zero | one)
        with np.errstate(divide="ignore", invalid="ignore"):
            # log(F1 - F2) = log F1 + log(1 - exp(log F2 - log F1))
            lp1, lp2 = special.log_expit(eta - k1), special.log_expit(eta - k2)
            gap = lp1 + _log1m_exp(np.minimum(lp2 - lp1, 0.0))
            D = F1 - F2
            g_mid = (f1 - f2) / D
            h_mid = (f1 * (1 - 2 * F1) - f2 * (1 - 2 * F2)) / D - g_mid**2
            a = mu * phi
            ys = np.where(mid, y, 0.5)
            beta_ll = (a - 1.0) * np.log(ys) + (phi - a - 1.0) * np.log1p(-ys) \
                - special.betaln(a, phi - a)
            dmu = mu * (1.0 - mu)  # d mu / d eta
            s_mu = phi * (np.log(ys) - np.log1p(-ys) - special.digamma(a)
                          + special.digamma(phi - a))
            i_mu = phi * phi * (trigamma(a) + trigamma(phi - a))
            beta_g = s_mu * dmu
            beta_h = -i_mu * dmu * dmu + s_mu * dmu * (1.0 - 2.0 * mu)
        ll = np.where(zero, special.log_expit(-(eta - k1)), np.where(one, lp2, gap + beta_ll))
        g = np.where(zero, -F1, np.where(one, 1.0 - F2, g_mid + beta_g))
        h = np.where(zero, -f1, np.where(one, -f2, h_mid + beta_h))
        return ll, g, h, mu

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return parts(y, mu)[0] * _f(wt)

    def score(y, mu):
        _, g, _, mu = parts(y, mu)
        return g / (mu * (1.0 - mu))

    def info(y, mu):
        _, g, h, mu = parts(y, mu)
        e1 = 1.0 / (mu * (1.0 - mu))
        e2 = (2.0 * mu - 1.0) * e1 * e1  # d2 eta / d mu2
        return -(h * e1 * e1 + g * e2)

    def variance(mu):  # the beta's: PIRLS's Fisher steps where the curvature is not positive
        mu = _f(mu)
        return mu * (1.0 - mu) / (1.0 + phi)

    # against mu = 1/2: a term free of mu (module docstring)
    dev_resids = _dev_from(lambda y, mu: parts(y, mu)[0], lambda y: np.full(y.shape, 0.5))

    if phi is None or k1 is None:
        variance = dev_resids = loglik_obs = score = info = _missing("ordbeta", "phi and cut "
                                                                     "points", "dispersion")
    return Family("ordbeta", link, variance, dev_resids, loglik_obs, _unit_mean,
                  _ordbeta_mustart, info, "logit", phi, score, tuple(psi))


def _ordbeta_mustart(y, wt):
    y = _f(y)
    inner = y[(y > 0) & (y < 1)]
    centre = float(np.mean(inner)) if inner.size else 0.5
    return np.clip(0.5 * (y + centre), 0.02, 0.98)


def _start_ordbeta_phi(y, m, w):
    inner = (y > 0) & (y < 1)
    if inner.sum() < 2:
        return 1.0
    return _start_beta(y[inner], m[inner], w[inner])


def _start_ordbeta_cuts(y, m, w):
    """``k1 = eta - logit(1 - P(0))``, ``k2 = eta - logit(P(1))`` at the mean's
    predictor, with a share of 1/(2n) where there are no 0s or no 1s."""
    n = max(float(np.sum(w > 0)), 1.0)
    p0 = max(float(np.mean(y == 0)), 0.5 / n)
    p1 = max(float(np.mean(y == 1)), 0.5 / n)
    eta = float(special.logit(np.clip(np.average(m, weights=w), 0.02, 0.98)))
    return np.array([eta - special.logit(1.0 - p0), eta - special.logit(p1)])


def _check_ordbeta(y, name, w, family):
    out = (y < 0) | (y > 1)
    if out.any():
        raise DataError(f"ordbeta response {name!r} has {int(out.sum())} value(s) outside "
                        f"[0, 1] (from {y.min():g} to {y.max():g})")
    return []


def _support_closed_unit(y):
    return (y < 0) | (y > 1) | ~np.isfinite(y), "[0, 1]", "proportions in [0, 1]"


def _draw_ordbeta(rng, mu, wt, phi, psi):
    eta = special.logit(mu)
    u = rng.uniform(size=np.shape(mu))
    p0 = 1.0 - special.expit(eta - psi[0])
    p1 = special.expit(eta - psi[1])
    y = np.clip(rng.beta(mu * phi, (1.0 - mu) * phi), 1e-12, 1.0 - 1e-12)
    return np.where(u < p0, 0.0, np.where(u > 1.0 - p1, 1.0, y))


# ------------------------------------------------------------------- beta-binomial

def _log_dbetabinom(k, N, mu, phi):
    """glmmTMB's ``dbetabinom(k, mu phi, (1 - mu) phi, N, log = TRUE)``: ``log C(N, k) +
    log B(k + a, N - k + b) - log B(a, b)``, ``a = mu phi``, ``b = (1 - mu) phi``."""
    a = _f(mu) * phi
    b = phi - a
    k, N = _f(k), _f(N)
    return (special.gammaln(N + 1.0) - special.gammaln(k + 1.0) - special.gammaln(N - k + 1.0)
            + special.betaln(k + a, N - k + b) - special.betaln(a, b))


def _betabinomial(link: Link, phi: float | None) -> Family:
    """glmmTMB's ``betabinomial()``: k successes of N trials with a Beta(mu phi,
    (1 - mu) phi) probability; ``var(k / N) = mu (1 - mu) (1 + (N - 1) / (phi + 1)) / N``.
    Its functions are per unit of the prior weight ``wt = N`` (a ``cbind()`` response or
    a proportion with ``weights = N``), as the binomial's, and take the trials ``n``."""
    if phi is not None:
        phi = _check_dispersion("betabinomial", "phi", phi)

    def counts(y, n):
        n = _f(n)
        return np.round(_f(y) * n), n

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        wt = _f(wt)
        N = wt if n is None else _f(n)
        k, N = counts(y, N)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(N > 0, wt / N * _log_dbetabinom(k, N, mu, phi), 0.0)

    def score(y, mu, n=1.0):
        k, N = counts(y, n)
        a = _f(mu) * phi
        b = phi - a
        return phi * (special.digamma(k + a) - special.digamma(N - k + b)
                      - special.digamma(a) + special.digamma(b)) / N

    def info(y, mu, n=1.0):
        k, N = counts(y, n)
        a = _f(mu) * phi
        b = phi - a
        return -phi * phi * (trigamma(k + a) + trigamma(N - k + b)
                             - trigamma(a) - trigamma(b)) / N

    def variance(mu, n=1.0):  # N var(k / N): the binomial's times the overdispersion
        mu = _f(mu)
        return mu * (1.0 - mu) * (1.0 + (_f(n) - 1.0) / (phi + 1.0))

    def dev_resids(y, mu, wt, n=None):
        # against the mean (k + 1/2) / (N + 1), inside (0, 1) for every k: a term free of
        # mu, as for nbinom1 (module docstring)
        wt = _f(wt)
        N = wt if n is None else _f(n)
        k, N = counts(y, N)
        ref = (k + 0.5) / (N + 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(N > 0, 2.0 * wt / N * (_log_dbetabinom(k, N, ref, phi)
                                                 - _log_dbetabinom(k, N, mu, phi)), 0.0)

    if phi is None:
        variance = dev_resids = loglik_obs = score = info = _missing("betabinomial", "phi",
                                                                     "dispersion")
    return Family("betabinomial", link, variance, dev_resids, loglik_obs, _unit_mean,
                  _binomial_mustart, info, "logit", phi, score)


def _start_betabinomial(y, m, w):
    """phi from the overdispersion ``r = mean (y - mu)^2 N / (mu (1 - mu)) = 1 + (N - 1)
    rho``, ``rho = 1 / (phi + 1)`` (w = N)."""
    r = np.mean((y - m) ** 2 * w / (m * (1.0 - m)))
    rho = (r - 1.0) / max(float(np.mean(w)) - 1.0, 1e-8)
    return float(1.0 / rho - 1.0) if rho > 0 else 1e3


def _draw_betabinomial(rng, mu, wt, phi):
    trials = np.round(wt).astype(np.int64)
    p = rng.beta(mu * phi, (1.0 - mu) * phi)
    return rng.binomial(trials, p) / np.maximum(trials, 1)


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
                  _y_mustart, info, "log", parent.dispersion, score)


def _y_mustart(y, wt):  # the response itself: inside the mean's range for these families
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
    return FAMILIES[name].make(link, dispersion)


def _undispersed(name: str, link: Link, param: str) -> Family:
    """A family whose dispersion is not set yet: its members raise until it is."""
    fail = _missing(name, param, "dispersion")
    return Family(name, link, fail, fail, fail, _positive_mu, _y_mustart, fail, "log",
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

    return _from_logf("genpois", link, phi, logf, score, info, variance, _positive_mu,
                      _nb_mustart, "log")


def _start_phi_mu(y, m, w):  # phi from E (y - mu)^2 = phi mu (genpois; COM-Poisson's
    # variance at large means)
    return float(np.sum(w * (y - m) ** 2) / np.sum(w * m))


def _draw_genpois(rng, mu, wt, phi):
    """By inversion of the cumulative probabilities (``_log_dgenpois``) on 0..K, K
    thirty standard deviations above the largest mean; for underdispersion (``phi <
    1``) the support ends where ``theta + lambda y`` reaches 0 (no probability beyond),
    and a draw stays at its last value."""
    mu = np.ravel(mu)
    phi = np.broadcast_to(phi, mu.shape)
    top = int(np.max(mu + 30.0 * np.sqrt(phi * mu), initial=0.0)) + 30
    k = np.arange(top + 1, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.exp(_log_dgenpois(k[None, :], mu[:, None], phi[:, None]))
    p = np.where(np.isfinite(p), p, 0.0)
    cdf = np.cumsum(p, axis=1)
    u = rng.uniform(size=mu.shape)
    last = np.max(np.where(p > 0, k, 0.0), axis=1)
    return np.minimum((u[:, None] > cdf).sum(axis=1), last).astype(float)


# ------------------------------------------------------------------------- Student t

T_DF_MAX = 1e4  # a t's df beyond this is the Gaussian limit (psi_boundary): its excess
# kurtosis 6 / (df - 4) is below 1e-3, and the likelihood within O(n / df) of the limit


def _t(link: Link, sigma: float | None, psi=()) -> Family:
    """glmmTMB's ``t_family()``: ``log f = log dt((y - mu) / sigma, df) - log sigma``,
    ``sigma = exp(betad)`` (its ``sigma()``), ``df = exp(psi)``."""
    if sigma is not None:
        sigma = _check_dispersion("t", "sigma", sigma)
    df = float(np.exp(psi[0])) if len(psi) else None

    def logf(y, mu):
        e = _f(y) - _f(mu)
        return (special.gammaln((df + 1.0) / 2.0) - special.gammaln(df / 2.0)
                - 0.5 * np.log(df * np.pi) - np.log(sigma)
                - (df + 1.0) / 2.0 * np.log1p(e * e / (df * sigma * sigma)))

    def score(y, mu):
        e = _f(y) - _f(mu)
        return (df + 1.0) * e / (df * sigma * sigma + e * e)

    def info(y, mu):  # negative beyond |e| = sqrt(df) sigma: the t is not log-concave
        e = _f(y) - _f(mu)
        s2 = df * sigma * sigma
        return (df + 1.0) * (s2 - e * e) / (s2 + e * e) ** 2

    def variance(mu):  # 1 / Fisher information: (df + 3) sigma^2 / (df + 1)
        return np.full(np.shape(mu), 1.0) * (df + 3.0) * sigma * sigma / (df + 1.0)

    def dev_resids(y, mu, wt):
        e = _f(y) - _f(mu)
        return _f(wt) * (df + 1.0) * np.log1p(e * e / (df * sigma * sigma))

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return logf(y, mu) * _f(wt)

    if sigma is None or df is None:
        variance = dev_resids = loglik_obs = score = info = _missing("t", "sigma and df",
                                                                     "dispersion")
    return Family("t", link, variance, dev_resids, loglik_obs, _finite_mean, _y_mustart,
                  info, "identity", sigma, score, tuple(psi))


def _finite_mean(mu) -> bool:
    return bool(np.all(np.isfinite(_f(mu))))


def _start_t_sigma(y, m, w):  # the sd of the residuals, shrunk for heavy tails
    return float(np.sqrt(np.average((y - m) ** 2, weights=w)) * 0.8)


def _start_t_df(y, m, w):
    """``log df`` from the residuals' excess kurtosis, ``6 / (df - 4)`` for a t."""
    r = y - m
    v = np.average(r * r, weights=w)
    kurt = np.average(r**4, weights=w) / v**2 - 3.0 if v > 0 else 0.0
    df = 4.0 + 6.0 / kurt if kurt > 0.06 else 100.0
    return np.array([np.log(np.clip(df, 2.5, 100.0))])


def _boundary_t(psi) -> str | None:
    if np.exp(psi[0]) > T_DF_MAX:
        return ("df -> infinity: the residuals show no heavy tails given the random effects, "
                "and the Gaussian model is the limit")
    return None


def _draw_t(rng, mu, wt, sigma, psi):
    return mu + sigma * rng.standard_t(np.exp(psi[0]), size=np.shape(mu))


def _support_finite(y):
    return ~np.isfinite(y), "the real numbers", "real numbers"


# ------------------------------------------------------------------ COM-Poisson

COMPOIS_DIGITS = 37.0  # series terms kept: within e^-37 of the largest
COMPOIS_NEWTON = 60  # Newton steps at most for log(lambda) given the mean
COMPOIS_TOL = 1e-12  # |mean(lambda) - mu| relative to (1 + mu)


def _compois_moments(loglam: Array, nu: Array) -> tuple[Array, Array, Array, Array]:
    """``(log Z, mean, variance, third central moment)`` of the COM-Poisson
    ``P(j) = lambda^j / (j!)^nu / Z`` (Shmueli et al. 2005), by summing the terms
    ``j log(lambda) - nu lgamma(j + 1)`` around their largest, ``j* = lambda^(1 / nu)``,
    within ``COMPOIS_DIGITS``. They are log-concave in j with curvature about ``nu / j``,
    flattening to the right: the half-width h reaches that drop where ``h^2 = 2 digits
    (j* + h) / nu``. Observations are summed in groups of similar width (powers of
    two)."""
    loglam, nu = np.broadcast_arrays(_f(loglam), _f(nu))
    shape = loglam.shape
    loglam, nu = loglam.ravel(), nu.ravel()
    jstar = np.floor(np.exp(np.minimum(loglam / nu, 700.0)))
    a = 2.0 * COMPOIS_DIGITS / nu
    width = np.ceil(0.5 * (a + np.sqrt(a * a + 4.0 * a * jstar))) + 4.0
    group = np.ceil(np.log2(width)).astype(int)
    out = np.empty((4, loglam.size))
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        out[:, rows] = _compois_window(loglam[rows], nu[rows], jstar[rows], int(2**g))
    return tuple(v.reshape(shape) for v in out)


def _compois_window(loglam: Array, nu: Array, jstar: Array, half: int) -> Array:
    """`_compois_moments` over ``j* -+ half``, doubled until both ends are negligible."""
    while True:
        J = np.maximum(jstar[:, None] + np.arange(-half, half + 1), -1.0)
        hi = int(J.max())
        G = special.gammaln(np.arange(hi + 1, dtype=float) + 1.0)
        inside = J >= 0
        terms = J * loglam[:, None] - nu[:, None] * G[np.maximum(J, 0).astype(np.intp)]
        terms[~inside] = -np.inf
        peak = np.max(terms, axis=1)
        lo_edge = np.where(J[:, 0] > 0, terms[:, 0], -np.inf)
        if (np.all(lo_edge < peak - COMPOIS_DIGITS)
                and np.all(terms[:, -1] < peak - COMPOIS_DIGITS)) or half > 1e6:
            break
        half *= 2
    p = np.exp(terms - peak[:, None])
    total = p.sum(axis=1)
    p /= total[:, None]
    Jf = np.where(inside, J, 0.0)
    mean = np.sum(p * Jf, axis=1)
    dev = Jf - mean[:, None]
    p_dev = p * dev
    var = np.sum(p_dev * dev, axis=1)
    k3 = np.sum(p_dev * dev * dev, axis=1)
    return np.stack([peak + np.log(total), mean, var, k3])


def _compois_loglambda(mu: Array, nu: Array, start: Array | None = None
                       ) -> tuple[Array, Array, Array, Array, Array]:
    """``log(lambda)`` whose COM-Poisson mean is ``mu`` (glmmTMB's mean
    parametrisation, its ``compois_calc_loglambda``), by Newton's method on
    ``mean(log lambda) - mu`` (``d mean / d log lambda`` is the variance) from
    ``start`` or the asymptotic ``lambda = (mu + (nu - 1) / (2 nu))^nu``; returns it
    with the moments there."""
    mu, nu = np.broadcast_arrays(_f(mu), _f(nu))
    loglam = (nu * np.log(np.maximum(mu + (nu - 1.0) / (2.0 * nu), 0.5 * mu))
              if start is None else start)
    for _ in range(COMPOIS_NEWTON):
        logz, mean, var, k3 = _compois_moments(loglam, nu)
        step = (mean - mu) / np.maximum(var, 1e-300)
        loglam = loglam - np.clip(step, -5.0, 5.0)
        if np.all(np.abs(mean - mu) <= COMPOIS_TOL * (1.0 + mu)):
            break
    logz, mean, var, k3 = _compois_moments(loglam, nu)
    return loglam, logz, mean, var, k3


def _compois(link: Link, phi: float | None) -> Family:
    """glmmTMB's ``compois()``: the Conway-Maxwell-Poisson with mean ``mu`` and
    ``nu = 1 / phi`` (``phi = exp(betad)``, its ``sigma()``; ``phi > 1``:
    overdispersion), ``log f = y log(lambda) - nu log(y!) - log Z(lambda, nu)`` with
    ``lambda`` solved from the mean. As an exponential family in ``log(lambda)`` its
    score in mu is ``(y - mu) / V`` and its information ``1 / V + (y - mu) k3 / V^3``
    with V the variance and k3 the third central moment at ``lambda``. The solution
    for the last ``mu`` is kept: PIRLS asks for the score, the information and the
    log-density at the same means."""
    if phi is not None:
        phi = _check_dispersion("compois", "phi", phi)
    nu = None if phi is None else 1.0 / phi
    cache: list = [None, None]  # (mu, its solution)

    def solve(mu):
        mu = _f(mu)
        start = None
        if cache[0] is not None and cache[0].shape == mu.shape:
            if mu is cache[0] or np.array_equal(cache[0], mu):
                return cache[1]
            # near the last means (PIRLS's steps): log(lambda) moves about nu d log(mu)
            with np.errstate(divide="ignore", invalid="ignore"):
                start = cache[1][0] + nu * (np.log(mu) - np.log(cache[0]))
            if not np.all(np.isfinite(start)):
                start = None
        out = _compois_loglambda(mu, nu, start)
        cache[:] = [mu.copy(), out]
        return out

    def logf(y, mu):
        loglam, logz, *_ = solve(mu)
        y = _f(y)
        return y * loglam - nu * special.gammaln(y + 1.0) - logz

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        return logf(y, mu) * _f(wt)

    def variance(mu):
        return solve(mu)[3]

    def score(y, mu):
        _, _, _, var, _ = solve(mu)
        return (_f(y) - _f(mu)) / var

    def info(y, mu):
        _, _, _, var, k3 = solve(mu)
        return 1.0 / var + (_f(y) - _f(mu)) * k3 / var**3

    # against mu = y + 1/2 (> 0 also for y = 0): a term free of mu
    dev_resids = _dev_from(logf, lambda y: y + 0.5)

    if phi is None:
        variance = dev_resids = loglik_obs = score = info = _missing("compois", "phi",
                                                                     "dispersion")
    return Family("compois", link, variance, dev_resids, loglik_obs, _positive_mu,
                  _nb_mustart, info, "log", phi, score)


def _draw_compois(rng, mu, wt, phi):
    """By inversion of the probabilities on 0..K (``_compois_moments``' terms)."""
    nu = 1.0 / np.broadcast_to(phi, np.shape(mu))
    loglam, logz, *_ = _compois_loglambda(mu, nu)
    top = int(np.max(mu + 30.0 * np.sqrt(np.maximum(mu, 1.0) * np.max(1.0 / nu)))) + 30
    k = np.arange(top + 1, dtype=float)
    logp = k * loglam[..., None] - nu[..., None] * special.gammaln(k + 1.0) - logz[..., None]
    cdf = np.cumsum(np.exp(logp), axis=-1)
    u = rng.uniform(size=np.shape(mu))
    return (u[..., None] > cdf).sum(axis=-1).astype(float)


# --------------------------------------------------------------------------- Tweedie

TWEEDIE_SERIES_DIGITS = 37.0  # series terms kept: within e^-37 (1e-16) of the largest


def _log_tweedie_series(y: Array, phi: Array, p: float, moments: bool = False) -> Array:
    """``log W(y, phi, p)`` of Dunn & Smyth (2005, Statistics and Computing 15:267) for
    ``y > 0`` and ``1 < p < 2``: ``W = sum_j W_j`` with

        log W_j = j c - lgamma(j + 1) - lgamma(-alpha j),   alpha = (2 - p) / (1 - p),
        c = -alpha log y + alpha log(p - 1) - (1 - alpha) log phi - log(2 - p),

    summed (log-sum-exp) over the j around the largest term ``j_max = y^(2 - p) /
    (phi (2 - p))`` whose terms are within ``TWEEDIE_SERIES_DIGITS`` of it. The terms
    are log-concave in j with curvature about ``(1 - alpha) / j``, so an observation
    needs a half-width of about ``sqrt(2 digits j_max / (1 - alpha))``: observations
    are summed in groups of similar width (powers of two), each window doubled until
    both its ends are below that drop. The two lgamma's depend on j and p only:
    computed once per j, not per observation."""
    y, phi = np.broadcast_arrays(_f(y), _f(phi))
    shape = y.shape
    y, phi = y.ravel(), phi.ravel()
    alpha = (2.0 - p) / (1.0 - p)
    c = (-alpha * np.log(y) + alpha * np.log(p - 1.0) - (1.0 - alpha) * np.log(phi)
         - np.log(2.0 - p))
    jmax = np.maximum(1.0, np.round(y ** (2.0 - p) / (phi * (2.0 - p))))
    reach = 2.0 * TWEEDIE_SERIES_DIGITS / (1.0 - alpha)
    width = np.ceil(np.sqrt(reach * jmax)) + 4.0
    group = np.ceil(np.log2(width)).astype(int)
    out = np.empty((3, y.size) if moments else y.size)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        if moments:
            out[:, rows] = _tweedie_window(c[rows], jmax[rows], alpha, int(2**g), True)
        else:
            out[rows] = _tweedie_window(c[rows], jmax[rows], alpha, int(2**g))
    return out if moments else out.reshape(shape)


def _tweedie_window(c: Array, jmax: Array, alpha: float, half: int,
                    moments: bool = False) -> Array:
    """``log sum_j W_j`` over ``j_max -+ half``, doubled until both ends are negligible;
    with ``moments``, also the terms' weighted means of ``j`` and of ``j psi(-alpha j)``
    (``(3, n)``: what the derivatives in phi and p need)."""
    while True:
        J = jmax[:, None] + np.arange(-half, half + 1)
        lo, hi = max(1, int(J.min())), int(J.max())
        js = np.arange(lo, hi + 1, dtype=float)
        G = special.gammaln(js + 1.0) + special.gammaln(-alpha * js)
        Jc = np.maximum(J, lo).astype(np.intp) - lo
        terms = J * c[:, None] - G[Jc]
        terms[J < 1] = -np.inf
        peak = np.max(terms, axis=1)
        lo_edge = np.where(J[:, 0] > 1, terms[:, 0], -np.inf)
        if (np.all(lo_edge < peak - TWEEDIE_SERIES_DIGITS)
                and np.all(terms[:, -1] < peak - TWEEDIE_SERIES_DIGITS)) or half > 1e5:
            weights = np.exp(terms - peak[:, None])
            total = weights.sum(axis=1)
            logw = peak + np.log(total)
            if not moments:
                return logw
            weights /= total[:, None]
            Jv = np.where(J >= 1, J, 0.0)
            dg = special.digamma(-alpha * js)[Jc]
            return np.stack([logw, np.sum(weights * Jv, axis=1),
                             np.sum(weights * Jv * np.where(J >= 1, dg, 0.0), axis=1)])
        half *= 2


def _log_series_part(y, phi, p, moments: bool = False):
    """``log W(y, phi, p) - log y`` where ``y > 0``, 0 elsewhere: the part of the
    Tweedie log-density that does not depend on the mean; with ``moments`` also the
    series' ``E[j]`` and ``E[j psi(-alpha j)]`` per observation (0 where y = 0)."""
    y, phi = np.broadcast_arrays(_f(y), _f(phi))
    out = np.zeros((3,) + y.shape if moments else y.shape)
    pos = y > 0
    if np.any(pos):
        if moments:
            out[:, pos] = _log_tweedie_series(y[pos], phi[pos], p, moments=True)
            out[0, pos] -= np.log(y[pos])
        else:
            out[pos] = _log_tweedie_series(y[pos], phi[pos], p) - np.log(y[pos])
    return out


def _log_dtweedie(y, mu, phi, p, series=None):
    """glmmTMB's ``dtweedie(y, mu, phi, p, log = TRUE)``, ``var = phi mu^p``: at 0
    ``-mu^(2 - p) / (phi (2 - p))``; above, ``log W - log y + (y theta - kappa) / phi``
    with ``theta = mu^(1 - p) / (1 - p)``, ``kappa = mu^(2 - p) / (2 - p)``. ``series``
    is ``_log_series_part(y, phi, p)`` where the caller has it (it is free of mu)."""
    y = _f(y)
    w = _log_series_part(y, phi, p) if series is None else series
    y, mu, phi, w = np.broadcast_arrays(y, _f(mu), _f(phi), w)
    kappa = mu ** (2.0 - p) / (2.0 - p)
    with np.errstate(divide="ignore"):
        theta = mu ** (1.0 - p) / (1.0 - p)
    out = np.where(y > 0, w + (y * theta - kappa) / phi, -kappa / phi)
    return np.where(y < 0, -np.inf, out)


def _tweedie(link: Link, phi: float | None, psi=()) -> Family:
    """glmmTMB's ``tweedie()``: mean ``mu``, ``var = phi mu^p``, ``phi = exp(betad)``, the
    power ``p = 1 + invlogit(psi)`` in (1, 2): a compound Poisson-gamma with exact 0s."""
    if phi is not None:
        phi = _check_dispersion("tweedie", "phi", phi)
    p = 1.0 + float(special.expit(psi[0])) if len(psi) else None

    series: list = [None, None]  # (y, (log W(y) - log y, E[j], E[j psi(-alpha j)])): free
    # of mu, so computed once per y, with what the derivatives in phi and p need

    def series_of(y):
        y = _f(y)
        if y is not series[0] and not (series[0] is not None and series[0].shape == y.shape
                                       and np.array_equal(series[0], y)):
            series[:] = [y, _log_series_part(y, phi, p, moments=y.ndim == 1)]
        return series[1]

    def loglik_obs(y, mu, wt, dispersion=1.0, *, n=None):
        s = series_of(y)
        return _log_dtweedie(y, mu, phi, p, s[0] if _f(y).ndim == 1 else s) * _f(wt)

    loglik_obs.series_of = series_of  # for _tweedie_loglik_grad

    def score(y, mu):
        mu = _f(mu)
        return (_f(y) - mu) / (phi * mu**p)

    def info(y, mu):
        mu = _f(mu)
        return (p * _f(y) * mu ** (-p - 1.0) + (1.0 - p) * mu ** (-p)) / phi

    def variance(mu):
        return phi * _f(mu) ** p

    def dev_resids(y, mu, wt):  # the Tweedie deviance over phi: 2 (l(y; y) - l(y; mu))
        y, mu = _f(y), _f(mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            sat = np.where(y > 0, y ** (2.0 - p) / ((1.0 - p) * (2.0 - p)), 0.0)
        d = 2.0 * (sat - y * mu ** (1.0 - p) / (1.0 - p) + mu ** (2.0 - p) / (2.0 - p))
        return _f(wt) * d / phi

    if phi is None or p is None:
        variance = dev_resids = loglik_obs = score = info = _missing("tweedie", "phi and power",
                                                                     "dispersion")
    return Family("tweedie", link, variance, dev_resids, loglik_obs, _positive_mu,
                  _nb_mustart, info, "log", phi, score, tuple(psi))


def _tweedie_loglik_grad(family: Family, y: Array, mu: Array) -> tuple[Array, Array]:
    """``(dl/dlog phi, dl/dpsi)`` of the Tweedie log-density (``psi = logit(p - 1)``).
    With ``E[j]`` and ``E[j psi(-alpha j)]`` the series terms' weighted means
    (`_log_tweedie_series`), ``d log W/d log phi = -(1 - alpha) E[j]`` and
    ``d log W/dp = E[j] dc/dp + E[j psi(-alpha j)] dalpha/dp``, ``dalpha/dp = 1 / (1 -
    p)^2``; the rest, ``(y theta - kappa) / phi``, is differentiated directly."""
    phi = np.broadcast_to(_f(family.dispersion), np.shape(y)).astype(float)
    psi = family.psi[0]
    p = 1.0 + float(special.expit(psi))
    y, mu = _f(y), _f(mu)
    alpha = (2.0 - p) / (1.0 - p)
    dalpha = 1.0 / (1.0 - p) ** 2
    with np.errstate(divide="ignore"):
        theta = mu ** (1.0 - p) / (1.0 - p)
        kappa = mu ** (2.0 - p) / (2.0 - p)
        dtheta = mu ** (1.0 - p) * (-np.log(mu) / (1.0 - p) + 1.0 / (1.0 - p) ** 2)
        dkappa = mu ** (2.0 - p) * (-np.log(mu) / (2.0 - p) + 1.0 / (2.0 - p) ** 2)
    rest = y * theta - kappa
    d_logphi = -rest / phi
    d_p = (y * dtheta - dkappa) / phi
    pos = y > 0
    if np.any(pos):
        _, ej_all, ejd_all = family.loglik_obs.series_of(y)  # the family's, kept per y
        yp, fp, ej, ejd = y[pos], phi[pos], ej_all[pos], ejd_all[pos]
        dc = (dalpha * (-np.log(yp) + np.log(p - 1.0) + np.log(fp)) + alpha / (p - 1.0)
              + 1.0 / (2.0 - p))
        d_logphi[pos] += -(1.0 - alpha) * ej
        d_p[pos] += ej * dc + ejd * dalpha
    dp_dpsi = (p - 1.0) * (2.0 - p)
    return d_logphi, (d_p * dp_dpsi)[:, None]


def _start_tweedie_phi(y, m, w):  # phi from E (y - mu)^2 = phi mu^p at p = 1.5
    return float(np.sum(w * (y - m) ** 2) / np.sum(w * m**1.5))


def _start_tweedie_p(y, m, w):
    return np.array([0.0])  # p = 1.5


TWEEDIE_EDGE = 1e-4  # a power within this of 1 or 2 is the limit (psi_boundary)


def _boundary_tweedie(psi) -> str | None:
    p = 1.0 + float(special.expit(psi[0]))
    if p < 1.0 + TWEEDIE_EDGE:
        return ("power -> 1: the data are (over-dispersed) Poisson-like counts, the limit "
                "of the Tweedie family; consider a count family")
    if p > 2.0 - TWEEDIE_EDGE:
        return ("power -> 2: the data have (almost) no exact zeros and are Gamma-like, the "
                "limit of the Tweedie family; consider the Gamma family")
    return None


def _draw_tweedie(rng, mu, wt, phi, psi):
    """Compound Poisson-gamma: N ~ Poisson(mu^(2 - p) / (phi (2 - p))) gamma jumps of
    shape (2 - p) / (p - 1) and scale phi (p - 1) mu^(p - 1)."""
    p = 1.0 + float(special.expit(psi[0]))
    lam = mu ** (2.0 - p) / (phi * (2.0 - p))
    n = rng.poisson(lam)
    shape, scale = (2.0 - p) / (p - 1.0), phi * (p - 1.0) * mu ** (p - 1.0)
    y = rng.gamma(np.maximum(n * shape, 1e-300), scale)
    return np.where(n > 0, y, 0.0)


def _support_nonnegative(y):
    return (y < 0) | ~np.isfinite(y), "the non-negative numbers", "non-negative values"


def _check_nonnegative(y, name, w, family):
    if np.any(y < 0):
        raise DataError(f"{family} response {name!r} has {int(np.sum(y < 0))} negative "
                        "values: the Tweedie family needs y >= 0")
    return []


# ---------------------------------------------------------------------- registry

def _draw_from(name: str):
    def draw(rng, mu, wt, d):
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
    FamilyDef("ordbeta", ("logit",), "logit", _ordbeta, "phi", r_engines=("glmmTMB",),
              check=_check_ordbeta, draw=_draw_ordbeta, support=_support_closed_unit,
              mean_range=_mean_unit, dispersion_start=_start_ordbeta_phi,
              dispersion_text="precision phi of the continuous part",
              psi_names=("lower cutoff", "upper cutoff"), psi_start=_start_ordbeta_cuts,
              psi_value=special.expit, psi_bounds=((-30.0, 30.0), (-30.0, 30.0))),
    FamilyDef("betabinomial", ("logit", "probit", "cloglog"), "logit", _betabinomial, "phi",
              r_engines=("glmmTMB",), cbind=True, trials=True, check=_check_binomial,
              draw=_draw_betabinomial, support=_support_unit, mean_range=_mean_unit,
              dispersion_start=_start_betabinomial,
              dispersion_text="precision phi (var = mu (1 - mu) (1 + (N - 1) / (phi + 1)) / N)"),
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
    FamilyDef("t", ("identity", "log", "inverse"), "identity", _t, "sigma",
              r_engines=("glmmTMB",), units=True, draw=_draw_t, support=_support_finite,
              mean_range=_mean_finite, dispersion_start=_start_t_sigma,
              dispersion_text="scale sigma (sd = sigma sqrt(df / (df - 2)))",
              psi_names=("Student-t df",), psi_start=_start_t_df, psi_value=np.exp,
              psi_bounds=((np.log(0.2), np.log(1e8)),), psi_boundary=_boundary_t),
    FamilyDef("tweedie", ("log",), "log", _tweedie, "phi", r_engines=("glmmTMB",),
              units=True, check=_check_nonnegative, draw=_draw_tweedie,
              support=_support_nonnegative, mean_range=_mean_nonnegative,
              dispersion_start=_start_tweedie_phi,
              dispersion_text="phi (var = phi mu^power)",
              psi_names=("Tweedie power",), psi_start=_start_tweedie_p,
              psi_value=lambda psi: 1.0 + special.expit(psi),
              psi_bounds=((-30.0, 30.0),), psi_boundary=_boundary_tweedie,
              loglik_grad=_tweedie_loglik_grad),
    FamilyDef("compois", ("log",), "log", _compois, "phi", r_engines=("glmmTMB",),
              check=_check_counts, draw=_draw_compois, support=_support_counts,
              mean_range=_mean_nonnegative, dispersion_start=_start_phi_mu,
              dispersion_text="phi = 1 / nu (var about phi mu)"),
    FamilyDef("genpois", ("log",), "log", _genpois, "phi", r_engines=("glmmTMB",),
              check=_check_counts, draw=_draw_genpois, support=_support_counts,
              mean_range=_mean_nonnegative,
              dispersion_start=_start_phi_mu, dispersion_text="phi (var = phi mu)"),
)
