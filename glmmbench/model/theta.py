"""theta -> Lambda: lme4's parametrisation of the random-effect covariances.

For a term with q columns, ``theta`` holds the lower triangle of the q x q
relative covariance factor ``Lambda_k`` in column-major order, so that
``Var(b_kj) = sigma^2 Lambda_k Lambda_k'`` (sigma = 1 for non-Gaussian families).
Diagonal elements are bounded below by 0, the rest are free.

A smooth's penalised part (``glmmbench.model.smooths``) is a term whose q effects are
independent with one variance: ``Lambda_k = theta_k I`` (one theta, bounded below
by 0), as gamm4 and mgcv's ``smooth2random`` write it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CovBlock", "ntheta", "theta_lower", "theta_start", "lambdas"]


@dataclass(frozen=True)
class CovBlock:
    """The covariance structure of one term: unstructured q x q, or ``theta^2 I``."""

    q: int
    scaled_identity: bool = False

    @property
    def ntheta(self) -> int:
        return 1 if self.scaled_identity else self.q * (self.q + 1) // 2


def _tril_colmajor(q: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = [], []
    for j in range(q):
        for i in range(j, q):
            rows.append(i)
            cols.append(j)
    return np.array(rows, dtype=int), np.array(cols, dtype=int)


def ntheta(blocks: Sequence[CovBlock]) -> int:
    return sum(b.ntheta for b in blocks)


def theta_lower(blocks: Sequence[CovBlock]) -> np.ndarray:
    """Lower bounds: 0 on the diagonal of every Lambda_k, -inf elsewhere."""
    out = [np.zeros(0)]
    for b in blocks:
        if b.scaled_identity:
            out.append(np.zeros(1))
        else:
            r, c = _tril_colmajor(b.q)
            out.append(np.where(r == c, 0.0, -np.inf))
    return np.concatenate(out)


def theta_start(blocks: Sequence[CovBlock]) -> np.ndarray:
    """lme4's start: identity Lambda_k."""
    return np.where(np.isfinite(theta_lower(blocks)), 1.0, 0.0)


def lambdas(theta: np.ndarray, blocks: Sequence[CovBlock]) -> list[np.ndarray]:
    """The lower-triangular ``Lambda_k`` of every term."""
    out, pos = [], 0
    for b in blocks:
        k = b.ntheta
        if b.scaled_identity:
            L = theta[pos] * np.eye(b.q)
        else:
            r, c = _tril_colmajor(b.q)
            L = np.zeros((b.q, b.q))
            L[r, c] = theta[pos:pos + k]
        out.append(L)
        pos += k
    return out
