"""theta -> Lambda: lme4's parametrisation of the random-effect covariances.

For a term with q columns, ``theta`` holds the lower triangle of the q x q
relative covariance factor ``Lambda_k`` in column-major order, so that
``Var(b_kj) = sigma^2 Lambda_k Lambda_k'`` (sigma = 1 for non-Gaussian families).
Diagonal elements are bounded below by 0, the rest are free.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ntheta", "theta_lower", "theta_start", "lambdas"]


def _tril_colmajor(q: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = [], []
    for j in range(q):
        for i in range(j, q):
            rows.append(i)
            cols.append(j)
    return np.array(rows, dtype=int), np.array(cols, dtype=int)


def ntheta(qs: tuple[int, ...]) -> int:
    return sum(q * (q + 1) // 2 for q in qs)


def theta_lower(qs: tuple[int, ...]) -> np.ndarray:
    """Lower bounds: 0 on the diagonal of every Lambda_k, -inf elsewhere."""
    out = []
    for q in qs:
        r, c = _tril_colmajor(q)
        out.append(np.where(r == c, 0.0, -np.inf))
    return np.concatenate(out)


def theta_start(qs: tuple[int, ...]) -> np.ndarray:
    """lme4's start: identity Lambda_k."""
    return np.where(np.isfinite(theta_lower(qs)), 1.0, 0.0)


def lambdas(theta: np.ndarray, qs: tuple[int, ...]) -> list[np.ndarray]:
    """The lower-triangular ``Lambda_k`` of every term."""
    out, pos = [], 0
    for q in qs:
        k = q * (q + 1) // 2
        r, c = _tril_colmajor(q)
        L = np.zeros((q, q))
        L[r, c] = theta[pos:pos + k]
        out.append(L)
        pos += k
    return out

