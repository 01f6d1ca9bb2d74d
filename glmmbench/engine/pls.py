"""Penalized least squares for linear mixed models (lme4's profiled deviance).

For fixed ``theta`` the conditional modes ``u`` and ``beta`` minimise the
penalized weighted residual sum of squares

    r2(theta) = || W^{1/2} (y - offset - X beta - Z Lambda u) ||^2 + || u ||^2 .

With ``L`` the blocked Cholesky factor (``glmmbench.engine.linalg``) the profiled
deviances (Bates et al. 2015, eqs. 34 and 41) are

    -2 l_ML(theta)   = log|L_Z|^2 + n (1 + log(2 pi r2 / n))            - sum log w
    -2 l_REML(theta) = log|L_Z|^2 + log|R_X|^2 + (n-p)(1 + log(2 pi r2/(n-p))) - sum log w

and ``sigma^2 = r2 / n`` (ML) or ``r2 / (n - p)`` (REML).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glmmbench.engine.linalg import BlockedCholesky, CrossProducts, factorize

__all__ = ["PLSSolution", "solve_pls", "lmm_deviance", "profiled_deviance"]


@dataclass(frozen=True)
class PLSSolution:
    u: np.ndarray
    beta: np.ndarray
    pwrss: float
    ldL2: float
    ldRX2: float
    fac: BlockedCholesky


def solve_pls(cp: CrossProducts, q1: int, yWy: float,
              residuals: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> PLSSolution:
    """Solve the penalized least-squares problem from the cross products ``cp`` of
    ``[Z Lambda, X, y]`` (``y`` the response minus the offset; ``yWy = y' W y``).

    ``residuals(u, beta)`` gives ``W^{1/2}`` times the residuals, used only when
    ``r2 = y'Wy - |c|^2`` cancels (a near-perfect fit).
    """
    fac = factorize(cp, q1)
    c1, c2, cX = fac.forward(cp.r1, cp.r2, cp.rX)
    u, beta = fac.backward(c1, c2, cX)
    # r2 = y'Wy - |c|^2 (the normal equations' Pythagoras)
    pwrss = float(yWy - c1 @ c1 - c2 @ c2 - cX @ cX)
    if pwrss <= 0:
        # cancellation at a near-perfect fit: recompute directly
        resid = residuals(u, beta)
        pwrss = float(resid @ resid + u @ u)
    return PLSSolution(u, beta, pwrss, fac.logdet_Z(), fac.logdet_X(), fac)


def lmm_deviance(sol: PLSSolution, n: int, p: int, reml: bool, sum_log_w: float) -> float:
    """Profiled ML or REML deviance (see module docstring)."""
    return profiled_deviance(sol.ldL2, sol.ldRX2, sol.pwrss, n, p, reml, sum_log_w)


def profiled_deviance(ldL2: float, ldRX2: float, pwrss: float, n: int, p: int, reml: bool,
                      sum_log_w: float) -> float:
    """The profiled deviance from ``log|L_Z|^2``, ``log|R_X|^2`` and ``r2``."""
    nmp = n - p if reml else n
    dev = ldL2 + nmp * (1.0 + np.log(2.0 * np.pi * pwrss / nmp)) - sum_log_w
    if reml:
        dev += ldRX2
    return float(dev)


def deviance_at_sigma(sol: PLSSolution, sigma: float, n: int, p: int, reml: bool,
                      sum_log_w: float) -> float:
    """The ML or REML deviance at a given sigma, beta profiled out but not sigma:
    ``log|L_Z|^2 [+ log|R_X|^2] + n' log(2 pi sigma^2) + r2 / sigma^2 - sum log w``,
    ``n' = n - p`` for REML, ``n`` for ML (minimised over sigma it is
    `profiled_deviance`)."""
    nmp = n - p if reml else n
    dev = (sol.ldL2 + nmp * np.log(2.0 * np.pi * sigma**2) + sol.pwrss / sigma**2
           - sum_log_w)
    if reml:
        dev += sol.ldRX2
    return float(dev)
