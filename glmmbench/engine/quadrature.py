"""Gauss-Hermite rules and adaptive Gauss-Hermite quadrature (AGQ) over one grouping factor.

With a single grouping factor the groups are independent given ``(theta, beta)``,
and the marginal likelihood is a product of q-dimensional integrals over each
group's spherical random effects ``u_j ~ N(0, I_q)``:

    L_j = int f(y_j | u) phi_q(u) du.

AGQ (Pinheiro & Bates 1995; lme4's ``nAGQ``; Liu & Pierce 1994) substitutes
``u = u*_j + C_j z`` with ``u*_j`` the conditional mode from PIRLS and
``C_j C_j' = (L_j L_j')^{-1}`` the conditional covariance from the group's block
``L_j`` of the factor (``C_j = L_j^{-T}``), and applies the k-point rule in each
of the q directions (product rule, ``k^q`` nodes ``z_m`` with normalized
weights ``w_m``, ``sum w_m = 1``):

    -2 log L_j ~= log|L_j|^2
                  - 2 log sum_m w_m exp(log f(y_j | u_m) - |u_m|^2 / 2 + |z_m|^2 / 2).

With ``k = 1`` (one node, ``z = 0``) this is the Laplace approximation
``-2 log f(y_j | u*_j) + |u*_j|^2 + log|L_j|^2`` exactly. The log-density is the
full one, constants included, so that values are comparable across ``k`` and
with Laplace (lme4 uses deviance residuals at ``nAGQ > 1``; see
``reference_r/known_discrepancies.py``).

The only thing asked of the response is the conditional log-density of each
group at given random effects (``group_loglik``), so every response type plugs in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import logsumexp

from glmmbench.errors import GLMMError

__all__ = ["MAX_NODES", "GHRule", "gh_rule", "check_nagq", "agq_deviance"]

# Nodes per group of the product rule. Beyond this, k^q evaluations of every
# observation's density per deviance evaluation make a fit impractically slow
# (e.g. k = 11 in q = 4 dimensions is 14641 nodes); lower nagq instead.
MAX_NODES = 10_000
# Observation x node values held at once when evaluating the densities.
_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class GHRule:
    """A product Gauss-Hermite rule for ``E[g(Z)]``, ``Z ~ N(0, I_q)``.

    ``z``: ``(K, q)`` nodes; ``logw``: ``(K,)`` log weights, ``sum exp(logw) = 1``.
    """

    z: np.ndarray
    logw: np.ndarray

    @property
    def nnodes(self) -> int:
        return self.z.shape[0]

    @property
    def q(self) -> int:
        return self.z.shape[1]


@lru_cache(maxsize=64)
def gh_rule(k: int, q: int = 1) -> GHRule:
    """The k-point rule for the standard normal, as a product rule in q dimensions.

    From the probabilists' Hermite polynomials (weight ``exp(-z^2 / 2)``), so the
    weights divided by ``sqrt(2 pi)`` sum to 1; the same nodes as lme4's ``GHrule``.
    """
    k, q = int(k), int(q)
    if k == 1:
        z1, w1 = np.zeros(1), np.ones(1)
    else:
        z1, w1 = hermegauss(k)
        w1 = w1 / np.sqrt(2.0 * np.pi)
    grids = np.meshgrid(*([z1] * q), indexing="ij")
    z = np.stack([g.reshape(-1) for g in grids], axis=1)
    lw = np.meshgrid(*([np.log(w1)] * q), indexing="ij")
    logw = np.sum([g.reshape(-1) for g in lw], axis=0)
    z.setflags(write=False)
    logw.setflags(write=False)
    return GHRule(z, np.asarray(logw, dtype=float))


def check_nagq(nagq: object) -> int:
    """``nagq`` as an int >= 1, or a GLMMError that says what was given."""
    if isinstance(nagq, bool) or not isinstance(nagq, int | np.integer) or nagq < 1:
        raise GLMMError(f"nagq must be a non-negative integer (0 = lme4's fast fit with beta "
                        f"from PIRLS, 1 = Laplace, k > 1 = adaptive Gauss-Hermite quadrature "
                        f"with k nodes), not {nagq!r}")
    return int(nagq)


def check_nodes(nagq: int, q: int) -> None:
    """Stop before a product rule with more than ``MAX_NODES`` nodes per group."""
    nodes = nagq**q
    if nodes > MAX_NODES:
        raise GLMMError(
            f"nagq = {nagq} with {q} random effects per group needs {nagq}^{q} = {nodes} "
            f"quadrature nodes per group, more than the limit of {MAX_NODES}; "
            f"use a smaller nagq (at most {int(MAX_NODES ** (1 / q) + 1e-9)} here)"
        )


def agq_deviance(rule: GHRule, u: np.ndarray, L: np.ndarray, Linv: np.ndarray,
                 group_loglik: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 nobs: int) -> float:
    """``-2 log`` of the marginal likelihood by AGQ (module docstring).

    Parameters
    ----------
    rule : the product rule (``rule.q == q``).
    u : ``(G, q)`` conditional modes ``u*_j``.
    L, Linv : ``(G, q, q)`` lower blocks ``L_j`` of the factor and their inverses.
    group_loglik : ``(z, C)`` -> the ``(G, M)`` conditional log-densities
        ``log f(y_j | u*_j + C_j z_m)`` at the M standardized nodes ``z`` (``(M, q)``),
        with ``C`` the ``(G, q, q)`` scalings (the caller forms the linear
        predictor as it likes, e.g. ``eta* + (Z_j C_j) z``).
    nobs : observations behind ``group_loglik``; nodes are taken in chunks so that
        about ``2^22`` observation-node values are held at once.
    """
    G, q = u.shape
    ldL2 = 2.0 * float(np.sum(np.log(np.einsum("jkk->jk", L))))
    C = np.swapaxes(Linv, 1, 2)  # C_j = L_j^{-T}
    half_z2 = 0.5 * np.sum(rule.z**2, axis=1)
    acc = np.empty((G, rule.nnodes))
    step = max(1, _CHUNK_CELLS // max(nobs, G, 1))
    for s in range(0, rule.nnodes, step):
        z = rule.z[s:s + step]
        U = u[:, None, :] + np.einsum("jab,mb->jma", C, z)
        acc[:, s:s + step] = (group_loglik(z, C) - 0.5 * np.sum(U**2, axis=2)
                              + (half_z2[s:s + step] + rule.logw[s:s + step])[None, :])
    return ldL2 - 2.0 * float(np.sum(logsumexp(acc, axis=1)))
