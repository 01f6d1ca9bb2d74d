"""Intraclass correlation <-> random-intercept variance on the latent scale."""

from __future__ import annotations

import math

from ._links import FAMILY_LINKS, LINKS


def latent_residual_variance(family: str, link: str | None = None, *, sigma: float = 1.0,
                             mu: float | None = None, nb_theta: float | None = None,
                             nb_phi: float | None = None,
                             gamma_shape: float | None = None) -> float:
    """The level-1 variance an ICC is measured against.

    Gaussian: ``sigma^2``. Binomial, ordinal and multinomial: the variance of the
    latent error, ``pi^2 / 3`` (logit), 1 (probit), ``pi^2 / 6`` (cloglog).
    Poisson and the negative binomials (log link) have no fixed latent variance; the
    lognormal approximations of Nakagawa, Johnson & Schielzeth (2017), J. R. Soc.
    Interface 14: 20170213, need the mean ``mu``: ``log(1 + 1/mu)`` (Poisson),
    ``log(1 + 1/mu + 1/theta)`` (NB2), ``log(1 + (1 + phi)/mu)`` (NB1, whose
    ``Var / mu = 1 + phi``). Gamma (log link): ``log(1 + 1/shape)``, the same
    lognormal approximation (``Var / mu^2 = 1/shape``), free of ``mu``.
    """
    if family not in FAMILY_LINKS:
        raise ValueError(f"family: must be one of {sorted(FAMILY_LINKS)}, got {family!r}")
    link = link if link is not None else FAMILY_LINKS[family][0]
    if link not in FAMILY_LINKS[family]:
        raise ValueError(f"link: family {family!r} takes one of {FAMILY_LINKS[family]}, "
                         f"got {link!r}")
    if family == "gaussian":
        if not sigma > 0:
            raise ValueError(f"sigma: must be > 0, got {sigma!r}")
        return float(sigma) ** 2
    if family == "Gamma":
        if gamma_shape is None or not gamma_shape > 0:
            raise ValueError(f"gamma_shape: must be > 0, got {gamma_shape!r}")
        return math.log1p(1.0 / gamma_shape)
    if family in ("poisson", "negative_binomial", "nbinom1"):
        if mu is None or not mu > 0:
            raise ValueError(f"mu: a {family} ICC needs the mean mu > 0, got {mu!r}")
        per_mu, extra = 1.0, 0.0
        if family == "negative_binomial":
            if nb_theta is None or not nb_theta > 0:
                raise ValueError(f"nb_theta: must be > 0, got {nb_theta!r}")
            extra = 1.0 / nb_theta
        if family == "nbinom1":
            if nb_phi is None or not nb_phi > 0:
                raise ValueError(f"nb_phi: must be > 0, got {nb_phi!r}")
            per_mu = 1.0 + nb_phi
        return math.log1p(per_mu / mu + extra)
    return float(LINKS[link].latent_var)


def icc_to_variance(icc: float, family: str = "gaussian", link: str | None = None,
                    **kwargs) -> float:
    """Random-intercept variance ``tau^2`` with ``tau^2 / (tau^2 + r) = icc``, where
    ``r`` is :func:`latent_residual_variance` (keyword arguments go there).

    >>> round(icc_to_variance(0.2, "binomial"), 4)   # (0.2 / 0.8) * pi^2 / 3
    0.8225
    """
    if not 0 <= icc < 1:
        raise ValueError(f"icc: must be in [0, 1), got {icc!r}")
    return icc / (1 - icc) * latent_residual_variance(family, link, **kwargs)


def variance_to_icc(var_intercept: float, family: str = "gaussian", link: str | None = None,
                    **kwargs) -> float:
    """The inverse of :func:`icc_to_variance`."""
    if not var_intercept >= 0:
        raise ValueError(f"var_intercept: must be >= 0, got {var_intercept!r}")
    r = latent_residual_variance(family, link, **kwargs)
    return var_intercept / (var_intercept + r)
