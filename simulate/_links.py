"""Links, keyed by R's names, as the generators need them.

Each link is the inverse link (eta -> mean) plus, for the latent-variable view of
binary, ordinal and multinomial responses, the distribution of the latent error:
``P(Y <= k) = F(theta_k - eta)`` with ``F`` the latent CDF and ``F^-1`` its quantile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

Array = np.ndarray


@dataclass(frozen=True)
class Link:
    name: str
    linkinv: Callable[[Array], Array]
    #: CDF of the latent error (None when the link has no latent-variable reading)
    cdf: Callable[[Array], Array] | None = None
    #: quantile function of the latent error
    quantile: Callable[[Array], Array] | None = None
    #: variance of the latent error (the "residual" variance on the latent scale)
    latent_var: float | None = None


def _cloglog_cdf(t: Array) -> Array:
    return -np.expm1(-np.exp(t))


def _cloglog_quantile(p: Array) -> Array:
    return np.log(-np.log1p(-p))


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda eta: eta),
    "log": Link("log", np.exp),
    "logit": Link("logit", special.expit, special.expit, special.logit, math.pi**2 / 3),
    "probit": Link("probit", special.ndtr, special.ndtr, special.ndtri, 1.0),
    # the latent error of cloglog is minus a Gumbel (minimum extreme value) variable
    "cloglog": Link("cloglog", _cloglog_cdf, _cloglog_cdf, _cloglog_quantile, math.pi**2 / 6),
}

#: links each family accepts, the default first: the canonical link, except log for
#: the negative binomials and Gamma (Gamma's canonical inverse link, and identity,
#: cannot keep the mean positive under normal random effects, so they are not offered)
FAMILY_LINKS: dict[str, tuple[str, ...]] = {
    "gaussian": ("identity",),
    "binomial": ("logit", "probit", "cloglog"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
    "nbinom1": ("log",),
    "Gamma": ("log",),
    "beta": ("logit",),
    "betabinomial": ("logit",),
    "ordbeta": ("logit",),
    "compois": ("log",),
    "truncated_poisson": ("log",),
    "truncated_nbinom2": ("log",),
    "truncated_nbinom1": ("log",),
    "genpois": ("log",),
    "t": ("identity",),
    "tweedie": ("log",),
    "ordinal": ("logit", "probit", "cloglog"),
    "multinomial": ("logit",),
}


def default_thresholds(n_categories: int, link: str) -> tuple[float, ...]:
    """Thresholds that make the categories equally likely at ``eta = 0``."""
    p = np.arange(1, n_categories) / n_categories
    return tuple(float(v) for v in LINKS[link].quantile(p))

