"""Kenward–Roger inference for the fixed effects of a linear mixed model.

Kenward & Roger (1997), Biometrics 53(3); in the formulation of pbkrtest (Halekoh &
Højsgaard 2014, JSS 59(9)), whose ``vcovAdj`` and ``Lb_ddf`` lmerTest's
``summary(m, ddf = "Kenward-Roger")`` reports.

The marginal covariance of ``y`` is linear in the variance parameters ``gamma``::

    Sigma = sum_r gamma_r G_r

with one ``G_r`` per element of each random term's covariance matrix: ``Z_a Z_a'``
for the variance of the term's column ``a`` and ``Z_a Z_b' + Z_b Z_a'`` for the
covariance of columns ``a`` and ``b`` (``Z_a``: the columns of ``Z`` of column ``a``
across the term's levels), and ``G = I`` for the residual variance. With
``Phi = (X' Sigma^-1 X)^-1`` (the REML ``vcov``)::

    P_r  = -X' Sigma^-1 G_r Sigma^-1 X
    Q_rs =  X' Sigma^-1 G_r Sigma^-1 G_s Sigma^-1 X
    K_rs =  tr(Sigma^-1 G_r Sigma^-1 G_s)
    IE_rs = K_rs - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s)    (twice the expected
                                                            REML information)
    W   = 2 IE^-1                                          (Var(gamma-hat))
    U   = sum_rs W_rs (Q_rs - P_r Phi P_s)
    Phi_A = Phi + 2 Phi U Phi                              (pbkrtest's vcovAdj)

For a contrast ``L`` (``l`` rows), with ``Theta = L' (L Phi L')^-1 L``::

    A1 = sum_rs W_rs tr(Theta Phi P_r Phi) tr(Theta Phi P_s Phi)
    A2 = sum_rs W_rs tr(Theta Phi P_r Phi Theta Phi P_s Phi)

and the denominator df is ``4 + (l + 2) / (l rho - 1)`` with ``rho`` a function of
``A1, A2`` (Kenward & Roger's eq. 11-13). For one coefficient, ``L = e_j``, ``Theta``
has rank one, so ``A1 = A2 = A = c' W c`` with ``c_r = (Phi P_r Phi)_jj / Phi_jj``,
and the formula reduces to ``df_j = 2 / A``: Satterthwaite's df with the expected
information and the unadjusted ``Phi``. That is what is computed here.

No n x n matrix is formed: ``Sigma = sigma^2 (I + Z Lambda Lambda' Z')``, so
``Sigma^-1 = sigma^-2 (I - Z Lambda M^-1 Lambda' Z')`` with ``M = Lambda' Z'Z Lambda + I``
(Woodbury; a q x q Cholesky), and every product and trace above is a block of
``Z' Sigma^-1 Z``, ``Z' Sigma^-2 Z`` (q x q), ``Sigma^-1 X``, ``Sigma^-2 X`` (n x p) or
``tr Sigma^-2 = sigma^-4 (n - q + ||M^-1||_F^2)``. Those q x q matrices are dense,
hence `MAX_RANDOM_EFFECTS`.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from glmmbench.errors import GLMMError
from glmmbench.results import GLMMResult

__all__ = ["kenward_roger", "MAX_RANDOM_EFFECTS"]

MAX_RANDOM_EFFECTS = 3000  # q: about eight dense q x q matrices (3000: 72 MB each)


def kenward_roger(res: GLMMResult) -> tuple[np.ndarray, np.ndarray]:
    """Kenward–Roger denominator df of each fixed effect and the adjusted covariance
    of the fixed effects (``Phi_A``, pbkrtest's ``vcovAdj``), of a REML-fitted LMM.

    Returns ``(df, vcov_adj)``: ``df`` of shape ``(p,)``, ``vcov_adj`` ``(p, p)``, in
    the order of ``res.fixef``. As lmerTest, refuses ML fits (pbkrtest's ``vcovAdj``
    would refit by REML; lmerTest stops with this error instead). Refuses prior weights
    (pbkrtest takes ``G = I`` for the residual whatever the weights, so R has no
    reference for them) and GAMM smooth terms.
    """
    _check(res)
    parts = _Marginal(res)
    Phi = np.linalg.inv(parts.X.T @ parts.T)
    P, Q, K = _derivatives(parts, _covariance_basis(res.design))
    ngamma = len(P)
    PhiP = [Phi @ Pr for Pr in P]
    IE = np.array([[K[r, s] - 2.0 * np.sum(Phi * Q[r][s]) + np.sum(PhiP[r] * PhiP[s].T)
                    for s in range(ngamma)] for r in range(ngamma)])
    W = 2.0 * _inverse(IE)
    U = sum(W[r, s] * (Q[r][s] - P[r] @ Phi @ P[s])
            for r in range(ngamma) for s in range(ngamma))
    vcov_adj = Phi + 2.0 * Phi @ U @ Phi
    # c[r, j] = (Phi P_r Phi)_jj / Phi_jj; df_j = 2 / (c_j' W c_j)
    c = np.array([np.diag(PhiPr @ Phi) for PhiPr in PhiP]) / np.diag(Phi)
    df = 2.0 / np.einsum("rj,rs,sj->j", c, W, c)
    return df, vcov_adj


def _check(res: GLMMResult) -> None:
    d = res.design
    if not res.is_lmm:
        raise GLMMError(f"Kenward-Roger's method is for linear mixed models, not a "
                        f"{res.family.name}({res.family.link.name}) model")
    if not res.reml:
        raise GLMMError("Kenward-Roger's method is only available for REML model fits "
                        "(as lmerTest): refit with reml=True")
    if d.smooths:
        raise GLMMError("Kenward-Roger's method is not implemented for models with "
                        "smooth terms")
    if not np.all(d.weights == 1.0):
        raise GLMMError("Kenward-Roger's method is not implemented for prior weights "
                        "(pbkrtest, which lmerTest uses, ignores them in the marginal "
                        "covariance)")
    q = int(d.term_bounds[-1])
    if q > MAX_RANDOM_EFFECTS:
        raise GLMMError(f"Kenward-Roger's method needs dense q x q matrices: this model "
                        f"has q = {q} random effects, more than {MAX_RANDOM_EFFECTS}")


class _Marginal:
    """Products with ``Sigma^-1`` at the estimates, by Woodbury (see module docstring).

    ``T = Sigma^-1 X``, ``T2 = Sigma^-2 X`` (n x p); ``A = Z' Sigma^-1 Z``,
    ``B = Z' Sigma^-2 Z`` (q x q); ``O = Z' T``, ``R = Z' T2`` (q x p); ``tr2 =
    tr Sigma^-2``.
    """

    def __init__(self, res: GLMMResult):
        d = res.design
        s2 = res.sigma**2
        Z = d.Z()
        Lam = d.Lambda(res.theta)
        self._ZLam = (Z @ Lam).tocsc()
        F = (Z.T @ Z).toarray()
        H = np.asarray(Lam.T @ F)  # Lambda' Z'Z
        M = H @ Lam + np.eye(F.shape[0])
        self._chol = sla.cho_factor(M, lower=True)
        self._s2 = s2
        Minv = sla.cho_solve(self._chol, np.eye(F.shape[0]))
        self.X = d.X
        self.T = self.solve(d.X)
        self.T2 = self.solve(self.T)
        self.A = (F - H.T @ Minv @ H) / s2
        self.B = (self.A - np.asarray(self.A @ Lam) @ Minv @ H) / s2
        self.O = Z.T @ self.T
        self.R = Z.T @ self.T2
        self.tr2 = (d.n - F.shape[0] + np.sum(Minv * Minv)) / s2**2

    def solve(self, V: np.ndarray) -> np.ndarray:
        """``Sigma^-1 V``."""
        inner = sla.cho_solve(self._chol, self._ZLam.T @ V)
        return (V - self._ZLam @ inner) / self._s2


def _covariance_basis(design) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """pbkrtest's ``G_r`` of the random terms, each as its pairs ``(a, b)`` of index
    sets into the random effects: ``G_r = sum Z_a Z_b'`` over its pairs, one pair
    ``(a, a)`` for a variance, ``(a, b), (b, a)`` for a covariance."""
    basis = []
    for t, start in zip(design.terms, design.term_bounds[:-1], strict=True):
        cols = [start + np.arange(t.nlevels) * t.q + a for a in range(t.q)]
        for b in range(t.q):  # lme4's lower triangle, column-major (VarCorr's order)
            for a in range(b, t.q):
                basis.append([(cols[a], cols[a])] if a == b
                             else [(cols[a], cols[b]), (cols[b], cols[a])])
    return basis


def _derivatives(m: _Marginal, basis) -> tuple[list, list, np.ndarray]:
    """``P_r``, ``Q_rs`` and ``K_rs`` of the random-term ``G_r`` and, last, of the
    residual's ``G = I``, from blocks of the products in ``m``."""
    def block(S, a, b):
        return S[np.ix_(a, b)]

    P = [-sum(m.O[a].T @ m.O[b] for a, b in Gr) for Gr in basis] + [-m.T.T @ m.T]
    k = len(basis)
    K = np.empty((k + 1, k + 1))
    Q = [[None] * (k + 1) for _ in range(k + 1)]
    for r, Gr in enumerate(basis):
        for s, Gs in enumerate(basis):
            # Z_a Z_b' Sigma^-1 Z_c Z_d': Q += O_a' A_bc O_d, K += tr(A_bc A_da)
            Q[r][s] = sum(m.O[a].T @ block(m.A, b, c) @ m.O[d]
                          for a, b in Gr for c, d in Gs)
            K[r, s] = sum(np.sum(block(m.A, b, c) * block(m.A, a, d))
                          for a, b in Gr for c, d in Gs)
        Q[r][k] = sum(m.O[a].T @ m.R[b] for a, b in Gr)
        Q[k][r] = Q[r][k].T
        K[r, k] = K[k, r] = sum(np.trace(block(m.B, b, a)) for a, b in Gr)
    Q[k][k] = m.T.T @ m.T2
    K[k, k] = m.tr2
    return P, Q, K


def _inverse(IE: np.ndarray) -> np.ndarray:
    """``IE^-1``; as pbkrtest, MASS::ginv's pseudo-inverse when an eigenvalue of ``IE``
    is within 1e-10 of 0 (a covariance parameter the data cannot inform)."""
    if np.min(np.abs(np.linalg.eigvalsh(IE))) > 1e-10:
        return np.linalg.inv(IE)
    return np.linalg.pinv(IE, rcond=np.sqrt(np.finfo(float).eps))
