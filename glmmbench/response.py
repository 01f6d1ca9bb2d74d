"""Response objects: what the deviance needs from y, separate from the predictor.

``GLMResponse`` holds ``y``, prior weights, offset and a Family, and maps a linear
predictor ``eta`` to everything PIRLS uses. Ordinal and multinomial responses are
other classes with the same role.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glmmbench.families import Family

__all__ = ["GLMResponse", "WorkingValues"]


@dataclass(frozen=True)
class WorkingValues:
    """IRLS quantities at one ``eta``.

    ``sqrtW``: square roots of the working weights ``wt * mu_eta^2 / V(mu)``;
    ``wres``: the working residual ``(y - mu) / mu_eta``.
    """

    eta: np.ndarray
    mu: np.ndarray
    w: np.ndarray
    wres: np.ndarray


@dataclass(frozen=True)
class GLMResponse:
    """Response of a GLMM with an exponential-family conditional distribution."""

    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    family: Family

    def working(self, eta: np.ndarray) -> WorkingValues:
        link, fam = self.family.link, self.family
        mu = link.linkinv(eta)
        d = link.mu_eta(eta)
        var = fam.variance(mu)
        w = self.weights * d * d / var
        return WorkingValues(eta, mu, w, (self.y - mu) / d)

    def dev_resids(self, mu: np.ndarray) -> np.ndarray:
        return self.family.dev_resids(self.y, mu, self.weights)

    def minus2loglik(self, mu: np.ndarray, dispersion: float = 1.0) -> float:
        """``-2 sum log f(y_i | mu_i)`` with every constant R's ``family$aic`` carries."""
        return -2.0 * float(np.sum(self.family.loglik_obs(self.y, mu, self.weights, dispersion)))

    def mustart(self) -> np.ndarray:
        return self.family.mustart(self.y, self.weights)
