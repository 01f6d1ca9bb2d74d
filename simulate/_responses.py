"""Response draws given the conditional linear predictor, one function per family.

Each takes ``(rng, scenario, eta)`` and returns the response columns. ``eta`` is
``(nobs,)``, or ``(nobs, n_categories - 1)`` for multinomial.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._links import LINKS
from ._scenario import Scenario
from ._truth import category_labels


def _gaussian(rng, s: Scenario, eta):
    return {"y": eta + s.sigma * rng.standard_normal(eta.size)}


def _binomial(rng, s: Scenario, eta):
    p = LINKS[s.resolved_link].linkinv(eta)
    y = rng.binomial(s.trials, p)
    if s.trials == 1:
        return {"y": y}
    return {"y": y, "n": np.full(eta.size, s.trials, dtype=np.int64)}


def _poisson(rng, s: Scenario, eta):
    return {"y": rng.poisson(np.exp(eta))}


def _negative_binomial(rng, s: Scenario, eta):
    # numpy's (n, p) parametrisation: mean n (1 - p) / p, so p = theta / (theta + mu)
    mu = np.exp(eta)
    return {"y": rng.negative_binomial(s.nb_theta, s.nb_theta / (s.nb_theta + mu))}


def _nbinom1(rng, s: Scenario, eta):
    # NB1 (glmmTMB): Var = mu (1 + phi) is an NB with size mu / phi, so
    # p = size / (size + mu) = 1 / (1 + phi); the floor keeps size > 0 if exp underflows
    size = np.maximum(np.exp(eta) / s.nb_phi, np.finfo(float).tiny)
    return {"y": rng.negative_binomial(size, 1.0 / (1.0 + s.nb_phi))}


def _gamma(rng, s: Scenario, eta):
    # shape k, scale mu / k: mean mu, Var mu^2 / k. R's Gamma family needs y > 0: a draw
    # that underflows to 0 (only for shapes far below 0.1) becomes the smallest double.
    y = rng.gamma(s.gamma_shape, LINKS[s.resolved_link].linkinv(eta) / s.gamma_shape)
    return {"y": np.maximum(y, np.finfo(float).tiny)}


def _ordinal(rng, s: Scenario, eta):
    # latent Y* = eta + e with e ~ F, Y = k when theta_{k-1} < Y* <= theta_k,
    # so P(Y <= k) = F(theta_k - eta) (clmm's convention)
    link = LINKS[s.resolved_link]
    latent = eta + link.quantile(rng.uniform(size=eta.size))
    codes = np.searchsorted(np.asarray(s.resolved_thresholds), latent, side="left")
    return {"y": _categorical(codes, category_labels(s), ordered=True)}


def _multinomial(rng, s: Scenario, eta):
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
    "ordinal": _ordinal,
    "multinomial": _multinomial,
}
