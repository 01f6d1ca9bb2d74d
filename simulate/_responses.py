"""Response draws given the conditional linear predictor, one function per family.

Each takes ``(rng, scenario, eta, k)`` and returns the response columns. ``eta`` is
``(nobs,)``, or ``(nobs, n_categories - 1)`` for multinomial; ``k`` is the factor
``exp(disp_slope * x)`` on glmmTMB's dispersion ``exp(betad)`` per observation (1
without a dispersion model): sigma^2, NB2's size, NB1's phi, Gamma's shape and
beta's precision are multiplied by it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats

from ._links import LINKS
from ._scenario import Scenario
from ._truth import category_labels


def _gaussian(rng, s: Scenario, eta, k=1.0):
    return {"y": eta + s.sigma * np.sqrt(k) * rng.standard_normal(eta.size)}


def _binomial(rng, s: Scenario, eta, k=1.0):
    p = LINKS[s.resolved_link].linkinv(eta)
    y = rng.binomial(s.trials, p)
    if s.trials == 1:
        return {"y": y}
    return {"y": y, "n": np.full(eta.size, s.trials, dtype=np.int64)}


def _poisson(rng, s: Scenario, eta, k=1.0):
    return {"y": rng.poisson(np.exp(eta))}


def _negative_binomial(rng, s: Scenario, eta, k=1.0):
    # numpy's (n, p) parametrisation: mean n (1 - p) / p, so p = theta / (theta + mu)
    mu, theta = np.exp(eta), s.nb_theta * k
    return {"y": rng.negative_binomial(theta, theta / (theta + mu))}


def _nbinom1(rng, s: Scenario, eta, k=1.0):
    # NB1 (glmmTMB): Var = mu (1 + phi) is an NB with size mu / phi, so
    # p = size / (size + mu) = 1 / (1 + phi); the floor keeps size > 0 if exp underflows
    phi = s.nb_phi * k
    size = np.maximum(np.exp(eta) / phi, np.finfo(float).tiny)
    return {"y": rng.negative_binomial(size, 1.0 / (1.0 + phi))}


def _gamma(rng, s: Scenario, eta, k=1.0):
    # shape k, scale mu / k: mean mu, Var mu^2 / k. R's Gamma family needs y > 0: a draw
    # that underflows to 0 (only for shapes far below 0.1) becomes the smallest double.
    shape = s.gamma_shape * k
    y = rng.gamma(shape, LINKS[s.resolved_link].linkinv(eta) / shape)
    return {"y": np.maximum(y, np.finfo(float).tiny)}


def _beta(rng, s: Scenario, eta, k=1.0):
    # shapes mu phi and (1 - mu) phi; a draw that rounds to 0 or 1 is moved inside
    mu = LINKS[s.resolved_link].linkinv(eta)
    phi = s.beta_phi * k
    y = rng.beta(mu * phi, (1.0 - mu) * phi)
    tiny = np.finfo(float).eps
    return {"y": np.clip(y, tiny, 1.0 - tiny)}


def _compois(rng, s: Scenario, eta, k=1.0):
    # P(j) ~ lambda^j / (j!)^nu on 0..K, lambda found by bisection on log(lambda) so that
    # the mean is exp(eta) (the mean increases with lambda), then inversion
    mu, nu = np.exp(eta), 1.0 / s.cp_phi
    j = np.arange(int(np.max(mu) * 3 + 60 * np.sqrt(np.max(mu) + 1) + 60), dtype=float)
    lgam = special.gammaln(j + 1.0)

    def pmf(loglam):
        logp = loglam[:, None] * j - nu * lgam
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    lo, hi = np.full(mu.size, -50.0), np.full(mu.size, 50.0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = pmf(mid) @ j > mu
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    cdf = np.cumsum(pmf(0.5 * (lo + hi)), axis=1)
    u = rng.uniform(size=mu.size)
    return {"y": (u[:, None] > cdf).sum(axis=1).astype(float)}


def _ordbeta(rng, s: Scenario, eta, k=1.0):
    # an ordered logistic draw between the two cut points decides 0, 1 or a beta value
    latent = eta + rng.logistic(size=eta.size)
    low, high = s.ob_cuts
    mu = LINKS[s.resolved_link].linkinv(eta)
    phi = s.beta_phi * k
    y = np.clip(rng.beta(mu * phi, (1.0 - mu) * phi), 1e-12, 1 - 1e-12)
    return {"y": np.where(latent < low, 0.0, np.where(latent > high, 1.0, y))}


def _betabinomial(rng, s: Scenario, eta, k=1.0):
    # successes of `trials` with a Beta(mu phi, (1 - mu) phi) probability per observation
    mu = LINKS[s.resolved_link].linkinv(eta)
    phi = s.beta_phi * k
    p = rng.beta(mu * phi, (1.0 - mu) * phi)
    y = rng.binomial(s.trials, p)
    return {"y": y, "n": np.full(eta.size, s.trials, dtype=np.int64)}


def _zero_truncated(rng, dist):
    """A draw of ``dist`` (a frozen scipy distribution) given y >= 1: the quantile of a
    uniform on ``(P(0), 1)``, as glmmTMB's simulate draws the truncated families."""
    p0 = dist.pmf(0)
    u = p0 + rng.uniform(size=np.shape(p0)) * (1.0 - p0)
    return np.maximum(dist.ppf(u), 1.0)


def _truncated_poisson(rng, s: Scenario, eta, k=1.0):
    return {"y": _zero_truncated(rng, stats.poisson(np.exp(eta)))}


def _truncated_nbinom2(rng, s: Scenario, eta, k=1.0):
    mu = np.exp(eta)
    return {"y": _zero_truncated(rng, stats.nbinom(s.nb_theta, s.nb_theta / (s.nb_theta + mu)))}


def _truncated_nbinom1(rng, s: Scenario, eta, k=1.0):
    size = np.exp(eta) / s.nb_phi
    return {"y": _zero_truncated(rng, stats.nbinom(size, 1.0 / (1.0 + s.nb_phi)))}


def _genpois(rng, s: Scenario, eta, k=1.0):
    # Consul's generalized Poisson, P(y) = t (t + l y)^(y - 1) exp(-t - l y) / y!, with
    # t = mu / sqrt(phi), l = 1 - 1 / sqrt(phi) (mean mu, variance phi mu): the
    # quantile of a uniform, from the probabilities on 0..K summed
    mu = np.exp(eta)
    t, lam = mu / np.sqrt(s.gp_phi), 1.0 - 1.0 / np.sqrt(s.gp_phi)
    sd = np.sqrt(s.gp_phi * mu)
    k = np.arange(int(np.max(mu + 30.0 * sd)) + 30, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = (np.log(t)[:, None] + (k - 1.0) * np.log(t[:, None] + lam * k)
                - t[:, None] - lam * k - special.gammaln(k + 1.0))
    logp[:, 0] = -t
    cdf = np.cumsum(np.exp(logp), axis=1)
    u = rng.uniform(size=mu.size) * cdf[:, -1]
    return {"y": (u[:, None] > cdf).sum(axis=1).astype(float)}


def _t(rng, s: Scenario, eta, k=1.0):
    return {"y": eta + s.sigma * rng.standard_t(s.t_df, size=eta.size)}


def _tweedie(rng, s: Scenario, eta, k=1.0):
    # a Poisson number of gamma jumps: rate mu^(2 - p) / (phi (2 - p)), each of mean
    # phi (2 - p) mu^(p - 1) (shape (2 - p) / (p - 1)): mean mu, variance phi mu^p
    mu, phi, p = np.exp(eta), s.tw_phi, s.tw_power
    n = rng.poisson(mu ** (2 - p) / (phi * (2 - p)))
    shape, scale = (2 - p) / (p - 1), phi * (p - 1) * mu ** (p - 1)
    y = np.zeros(eta.size)
    pos = n > 0
    y[pos] = rng.gamma(n[pos] * shape, scale[pos])
    return {"y": y}


def _ordinal(rng, s: Scenario, eta, k=1.0):
    # latent Y* = eta + e with e ~ F, Y = k when theta_{k-1} < Y* <= theta_k,
    # so P(Y <= k) = F(theta_k - eta) (clmm's convention)
    link = LINKS[s.resolved_link]
    latent = eta + link.quantile(rng.uniform(size=eta.size))
    codes = np.searchsorted(np.asarray(s.resolved_thresholds), latent, side="left")
    return {"y": _categorical(codes, category_labels(s), ordered=True)}


def _multinomial(rng, s: Scenario, eta, k=1.0):
    full = np.column_stack([np.zeros(eta.shape[0]), eta])
    p = np.exp(full - full.max(axis=1, keepdims=True))
    cum = np.cumsum(p, axis=1)
    u = rng.uniform(size=eta.shape[0]) * cum[:, -1]
    codes = (u[:, None] >= cum[:, :-1]).sum(axis=1)
    return {"y": _categorical(codes, category_labels(s), ordered=False)}


def _categorical(codes: np.ndarray, labels: list[str], ordered: bool) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=labels, ordered=ordered)


RESPONSES = {
    "gaussian": _gaussian,
    "binomial": _binomial,
    "poisson": _poisson,
    "negative_binomial": _negative_binomial,
    "nbinom1": _nbinom1,
    "Gamma": _gamma,
    "beta": _beta,
    "betabinomial": _betabinomial,
    "ordbeta": _ordbeta,
    "compois": _compois,
    "truncated_poisson": _truncated_poisson,
    "truncated_nbinom2": _truncated_nbinom2,
    "truncated_nbinom1": _truncated_nbinom1,
    "genpois": _genpois,
    "t": _t,
    "tweedie": _tweedie,
    "ordinal": _ordinal,
    "multinomial": _multinomial,
}
