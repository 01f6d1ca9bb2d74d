"""The blocked Cholesky factor of a mixed model: the only module that factors.

The penalized system of lme4 / MixedModels.jl (Bates et al. 2015, JSS 67(1);
Bates & Alday, "blocked Cholesky") is

    [ Lambda' Z' W Z Lambda + I    Lambda' Z' W X ]   [ u    ]   [ Lambda' Z' W z ]
    [ X' W Z Lambda                X' W X         ] * [ beta ] = [ X' W z         ]

With the random-effect terms ordered by decreasing number of levels, the first
term's block of ``Lambda' Z' W Z Lambda + I`` is block diagonal (one q1 x q1 block
per level: batched Cholesky), and the remaining terms form one dense block whose
Schur complement is factored densely. The lower factor is

    L = [ L11   0    0   ]        L11: block diagonal (nlev1 blocks of q1 x q1)
        [ L21   L22  0   ]        L22: dense (m2 x m2)
        [ LX1   LX2  LXX ]        LXX: dense (p x p), lme4's R_X'

Every group sum is an ``np.bincount``; nothing loops over groups or rows.

When the first two blocks are large (``m1 m2 >= SPARSE_L21``: InstEval's students
against lecturers), ``C21`` and ``L21`` are scipy sparse matrices: ``L21`` keeps
the pattern of ``Z_2' Z_1`` (one nonzero per pair of levels that meet), so
``L21 L21'`` costs its non-zeros instead of ``m2^2 m1`` flops (MixedModels.jl's
blocked sparse ``L21``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg as sla
from scipy import sparse
from scipy.linalg import lapack

if TYPE_CHECKING:
    from glmmbench.model.design import Design

SPARSE_L21 = 250_000  # entries of the m2 x m1 block from which it is kept sparse

__all__ = ["ReIndex", "CrossProducts", "BlockedCholesky", "DenseSystem", "crossproducts",
           "scale_crossproducts", "factorize", "batched_cholesky"]


@dataclass(frozen=True)
class ReIndex:
    """Column positions of the random effects, fixed by the design.

    ``b`` (and ``u``) is ordered term by term, level-major within a term
    (level j, component k at ``offset + j * q + k``), as in lme4.
    The first term occupies ``[0, m1)``; the rest ``[m1, m1 + m2)``.

    The rest's columns are *indexed* (a term over a grouping factor: one level per
    observation) or *dense* (a one-level term, such as a smooth's penalised part,
    whose column touches every observation); their cross products are group sums
    and matrix products respectively.
    """

    n1: int
    q1: int
    codes1: np.ndarray  # (n,) level of each observation in the first term
    m2: int
    idx2: np.ndarray  # (n, s2) position in the rest block for each rest column
    qs: tuple[int, ...]  # q of every term
    nlevs: tuple[int, ...]
    sparse2: np.ndarray  # rest columns (indices into idx2's columns) that are indexed
    dense2: np.ndarray  # rest columns that are dense
    # flat cell of every observation in the (m2 x m1) and (m2 x m2) blocks, per
    # pair of indexed columns
    cell21: tuple[tuple[np.ndarray, ...], ...] = ()
    cell22: tuple[tuple[np.ndarray, ...], ...] = ()

    @property
    def m1(self) -> int:
        return self.n1 * self.q1

    @property
    def m(self) -> int:
        return self.m1 + self.m2

    @classmethod
    def from_design(cls, design: Design) -> ReIndex:
        terms = design.terms
        first = terms[0]
        cols, dense, offset = [], [], 0
        for t in terms[1:]:
            for k in range(t.q):
                dense.append(t.nlevels == 1)
                cols.append(offset + t.codes * t.q + k)
            offset += t.nlevels * t.q
        idx2 = np.stack(cols, axis=1) if cols else np.zeros((design.n, 0), dtype=np.intp)
        idx2 = idx2.astype(np.intp)
        dense = np.asarray(dense, dtype=bool)
        sparse2, dense2 = np.flatnonzero(~dense), np.flatnonzero(dense)
        codes1 = np.asarray(first.codes, dtype=np.intp)
        m1 = first.nlevels * first.q
        # the dense m2 x m1 cells only where C21 is kept dense (see sparse21)
        cell21 = () if m1 * offset >= SPARSE_L21 else tuple(
            tuple(idx2[:, a] * m1 + codes1 * first.q + b for b in range(first.q))
            for a in sparse2)
        cell22 = tuple(tuple(idx2[:, a] * offset + idx2[:, b] for b in sparse2)
                       for a in sparse2)
        return cls(
            n1=first.nlevels,
            q1=first.q,
            codes1=codes1,
            m2=offset,
            idx2=idx2,
            qs=tuple(t.q for t in terms),
            nlevs=tuple(t.nlevels for t in terms),
            sparse2=sparse2,
            dense2=dense2,
            cell21=cell21,
            cell22=cell22,
        )

    @property
    def sparse21(self) -> bool:
        """Whether ``C21`` and ``L21`` are kept as sparse matrices."""
        return self.m2 > 0 and self.m1 * self.m2 >= SPARSE_L21

    @property
    def dense_pos(self) -> np.ndarray:
        """Positions in the rest block of the dense columns."""
        return self.idx2[0, self.dense2] if self.idx2.shape[0] else self.dense2

    def sparse_rest(self, values: np.ndarray) -> sparse.csr_matrix:
        """The indexed rest columns as an ``n x m2`` sparse matrix with ``values`` (n, s)."""
        n, s = values.shape
        return sparse.csr_matrix((values.ravel(), self.idx2[:, self.sparse2].ravel(),
                                  np.arange(0, n * s + 1, s)), shape=(n, self.m2))

    def first_matrix(self, V1: np.ndarray) -> sparse.csr_matrix:
        """The first term's columns as an ``n x m1`` sparse matrix."""
        n, q1 = V1.shape
        cols = (self.codes1[:, None] * q1 + np.arange(q1)).ravel()
        return sparse.csr_matrix((V1.ravel(), cols, np.arange(0, n * q1 + 1, q1)),
                                 shape=(n, self.m1))

    def split_V(self, V: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Split the per-term ``Z Lambda`` values into the first and the rest."""
        rest = np.hstack(V[1:]) if len(V) > 1 else np.zeros((V[0].shape[0], 0))
        return V[0], rest

    def Zu(self, V: list[np.ndarray], u: np.ndarray) -> np.ndarray:
        """``Z Lambda u`` for the observation-level values ``V`` of ``Z Lambda``."""
        V1 = V[0]
        # one 1-d gather per column: far cheaper than gathering (n, q) rows at once
        U1 = u[: self.m1].reshape(self.n1, self.q1)
        out = V1[:, 0] * U1[:, 0][self.codes1]
        for k in range(1, self.q1):
            out += V1[:, k] * U1[:, k][self.codes1]
        if self.m2:
            u2 = u[self.m1:]
            col = 0
            for Vk in V[1:]:
                for k in range(Vk.shape[1]):
                    out += Vk[:, k] * u2[self.idx2[:, col]]
                    col += 1
        return out


    def Ztv(self, V: list[np.ndarray], v: np.ndarray) -> np.ndarray:
        """``Lambda' Z' v`` for the observation-level values ``V`` of ``Z Lambda``."""
        V1, V2 = self.split_V(V)
        out = np.empty(self.m)
        for k in range(self.q1):
            out[k:self.m1:self.q1] = _gsum(self.codes1, V1[:, k] * v, self.n1)
        rest = np.zeros(self.m2)
        for a in range(V2.shape[1]):
            rest += _gsum(self.idx2[:, a], V2[:, a] * v, self.m2)
        out[self.m1:] = rest
        return out

    def gather(self, u: np.ndarray) -> np.ndarray:
        """``(n, S)``: each observation's entries of ``u`` (an m-vector over the random
        effects) under the S columns of ``Z Lambda`` (the first term's, then the rest's)."""
        U1 = u[:self.m1].reshape(self.n1, self.q1)
        cols = [U1[:, k][self.codes1] for k in range(self.q1)]
        u2 = u[self.m1:]
        cols += [u2[self.idx2[:, a]] for a in range(self.idx2.shape[1])]
        return np.stack(cols, axis=1)

    def cell_products(self, P11: np.ndarray, P21: np.ndarray, P22: np.ndarray,
                      Vc: np.ndarray) -> np.ndarray:
        """``(n, S)``: row i is ``P v_i`` restricted to observation i's S positions, for
        a symmetric ``P`` given by its blocks (``BlockedCholesky.inverse_blocks``) and
        ``v_i`` row i of ``Vc`` (the S columns of ``Z Lambda``, first term first);
        ``v_i' P v_i`` is then the row sum of ``Vc`` times it."""
        n, q1, s2 = self.codes1.size, self.q1, self.idx2.shape[1]
        out = np.zeros((n, q1 + s2))
        for a in range(q1):
            for b in range(q1):
                out[:, a] += P11[self.codes1, a, b] * Vc[:, b]
        for a in range(s2):
            rows = self.idx2[:, a]
            for b in range(q1):
                cell = P21[rows, self.codes1 * q1 + b]
                out[:, q1 + a] += cell * Vc[:, b]
                out[:, b] += cell * Vc[:, q1 + a]
            for b in range(s2):
                out[:, q1 + a] += P22[rows, self.idx2[:, b]] * Vc[:, q1 + b]
        return out


@dataclass
class CrossProducts:
    """Weighted cross products of ``[Z Lambda, X, z]`` (``W`` = diag(w))."""

    C11: np.ndarray  # (n1, q1, q1)
    C21: np.ndarray | sparse.csr_matrix  # (m2, m1)
    C22: np.ndarray  # (m2, m2)
    CX1: np.ndarray | None  # (p, m1)
    CX2: np.ndarray | None  # (p, m2)
    CXX: np.ndarray | None  # (p, p)
    r1: np.ndarray | None  # (m1,)  Lambda' Z' W z, first term
    r2: np.ndarray | None  # (m2,)
    rX: np.ndarray | None  # (p,)


def _gsum(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(index, weights=weights, minlength=size)


def _sparse_c21(ix: ReIndex, wV2: np.ndarray, V1: np.ndarray) -> sparse.csr_matrix:
    """``C21 = (W^(1/2) V_2)' (W^(1/2) V_1)`` as a sparse matrix (duplicates summed)."""
    n, s2 = wV2.shape
    q1 = ix.q1
    rows = np.repeat(ix.idx2[:, :, None], q1, axis=2)
    cols = np.broadcast_to((ix.codes1[:, None] * q1 + np.arange(q1))[:, None, :], (n, s2, q1))
    vals = wV2[:, :, None] * V1[:, None, :]
    return sparse.csr_matrix((vals.ravel(), (rows.ravel(), cols.ravel())),
                             shape=(ix.m2, ix.m1))


def crossproducts(ix: ReIndex, V: list[np.ndarray], w: np.ndarray, X: np.ndarray | None,
                  z: np.ndarray | None) -> CrossProducts:
    """Form the weighted cross products; ``X=None`` leaves out the fixed effects."""
    V1, V2 = ix.split_V(V)
    n1, q1, m1, m2 = ix.n1, ix.q1, ix.m1, ix.m2
    c1 = ix.codes1
    C11 = np.empty((n1, q1, q1))
    wV1 = V1 * w[:, None]
    if n1 == 1:  # a dense first term
        C11[0] = wV1.T @ V1
    else:
        for a in range(q1):
            for b in range(a + 1):
                C11[:, a, b] = C11[:, b, a] = _gsum(c1, wV1[:, a] * V1[:, b], n1)
    S, D = ix.sparse2, ix.dense2
    C22 = np.zeros(m2 * m2)
    wV2 = V2 * w[:, None]
    for i, a in enumerate(S):
        for j, b in enumerate(S):
            C22 += _gsum(ix.cell22[i][j], wV2[:, a] * V2[:, b], m2 * m2)
    C22 = C22.reshape(m2, m2)
    if ix.sparse21:
        C21 = _sparse_c21(ix, wV2, V1)
    else:
        C21 = np.zeros(m2 * m1)
        for i, a in enumerate(S):
            for b in range(q1):
                C21 += _gsum(ix.cell21[i][b], wV2[:, a] * V1[:, b], m2 * m1)
        C21 = C21.reshape(m2, m1)
    if D.size:
        pos = ix.dense_pos
        wVD = wV2[:, D]
        C22[np.ix_(pos, pos)] = wVD.T @ V2[:, D]
        if S.size:
            cross = ix.sparse_rest(V2[:, S]).T @ wVD  # (m2, nD), zero on the dense rows
            C22[:, pos] += cross
            C22[pos, :] += cross.T
        if not ix.sparse21:
            C21[pos, :] = (ix.first_matrix(V1).T @ wVD).T
    out = CrossProducts(C11, C21, C22, None, None, None, None, None, None)
    if X is not None:
        p = X.shape[1]
        wX = X * w[:, None]
        out.CXX = X.T @ wX
        CX1 = np.zeros((p, m1))
        for b in range(q1):
            for r in range(p):
                CX1[r, b::q1] = _gsum(c1, wX[:, r] * V1[:, b], n1)
        out.CX1 = CX1
        CX2 = np.zeros((p, m2))
        for a in S:
            for r in range(p):
                CX2[r] += _gsum(ix.idx2[:, a], wX[:, r] * V2[:, a], m2)
        if D.size:
            CX2[:, ix.dense_pos] = wX.T @ V2[:, D]
        out.CX2 = CX2
    if z is not None:
        r1 = np.empty(m1)
        for b in range(q1):
            r1[b::q1] = _gsum(c1, wV1[:, b] * z, n1)
        out.r1 = r1
        r2 = np.zeros(m2)
        for a in S:
            r2 += _gsum(ix.idx2[:, a], wV2[:, a] * z, m2)
        if D.size:
            r2[ix.dense_pos] = wV2[:, D].T @ z
        out.r2 = r2
        if X is not None:
            out.rX = X.T @ (w * z)
    return out


def _csr_rows(A: sparse.csr_matrix) -> np.ndarray:
    """The row of every stored value of a CSR matrix."""
    return np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))


def _is_scaled_identity(L: np.ndarray) -> bool:
    return bool(np.array_equal(L, L[0, 0] * np.eye(L.shape[0])))


def _right_lambda(A: np.ndarray, lams: list[np.ndarray], qs, nlevs) -> np.ndarray:
    """``A Lambda`` for ``Lambda = blockdiag(I_nlev (x) Lambda_k)`` over the terms given."""
    out = np.empty_like(A)
    start = 0
    for L, q, nlev in zip(lams, qs, nlevs, strict=True):
        size = q * nlev
        block = A[:, start:start + size]
        if _is_scaled_identity(L):  # scalar and smooth terms
            out[:, start:start + size] = block * L[0, 0]
        else:
            out[:, start:start + size] = (block.reshape(-1, nlev, q) @ L).reshape(-1, size)
        start += size
    return out


def _right_blocks(A: sparse.csr_matrix, blocks: np.ndarray) -> sparse.csr_matrix:
    """``A @ blockdiag(blocks)`` for a sparse ``A``; for 1 x 1 blocks a scaling of its
    stored values, with ``A``'s pattern kept."""
    if blocks.shape[1] == 1:
        out = A.copy()
        out.data = out.data * blocks[:, 0, 0][out.indices]
        return out
    return (A @ _block_diagonal(blocks)).tocsr()


def _block_diagonal(blocks: np.ndarray) -> sparse.bsr_matrix:
    """The block-diagonal sparse matrix of a stack of ``(n, q, q)`` blocks."""
    n, q, _ = blocks.shape
    return sparse.bsr_matrix((np.ascontiguousarray(blocks), np.arange(n), np.arange(n + 1)),
                             shape=(n * q, n * q))


def _scalar_scale(lams: list[np.ndarray], qs, nlevs) -> np.ndarray:
    """The diagonal of ``Lambda`` over the terms given, each ``Lambda_k = theta_k I``."""
    return np.concatenate([np.full(q * nl, L[0, 0]) for L, q, nl in
                           zip(lams, qs, nlevs, strict=True)])


def scale_crossproducts(raw: CrossProducts, ix: ReIndex, lams: list[np.ndarray]
                        ) -> CrossProducts:
    """The cross products of ``[Z Lambda, X, z]`` from those of ``[Z, X, z]``.

    With fixed weights (a linear mixed model) ``Lambda' Z' W Z Lambda`` is the raw
    ``Z' W Z`` scaled on both sides by the block-diagonal ``Lambda``: formed once,
    then each evaluation of the deviance costs ``O(nnz)`` of the cross products,
    not a pass over the data (lme4's approach).
    """
    L1, rest = lams[0], lams[1:]
    qs2, nl2 = ix.qs[1:], ix.nlevs[1:]
    C11 = np.einsum("ba,jbc,cd->jad", L1, raw.C11, L1)
    if sparse.issparse(raw.C21) and all(_is_scaled_identity(L) for L in lams):
        # every Lambda_k = theta_k I: scale the stored values by row and column
        rowscale = _scalar_scale(rest, qs2, nl2)
        C21 = raw.C21.copy()
        C21.data = C21.data * (L1[0, 0] * rowscale[_csr_rows(raw.C21)])
    elif sparse.issparse(raw.C21):
        Lam2 = sparse.block_diag([sparse.kron(sparse.identity(nl), L) for L, nl in
                                  zip(rest, nl2, strict=True)], format="csr")
        C21 = (Lam2.T @ raw.C21 @ _block_diagonal(np.broadcast_to(L1, (ix.n1, ix.q1, ix.q1))))
    else:
        C21 = _right_lambda(raw.C21, [L1], (ix.q1,), (ix.n1,))
        C21 = _right_lambda(C21.T, rest, qs2, nl2).T if ix.m2 else C21
    C22 = raw.C22
    if ix.m2:
        if all(_is_scaled_identity(L) for L in rest):
            scale = _scalar_scale(rest, qs2, nl2)
            C22 = C22 * scale[:, None]
            C22 *= scale[None, :]
        else:
            C22 = _right_lambda(_right_lambda(C22, rest, qs2, nl2).T, rest, qs2, nl2).T
    out = CrossProducts(C11, C21, C22, None, None, raw.CXX, None, None, raw.rX)
    if raw.CX1 is not None:
        out.CX1 = _right_lambda(raw.CX1, [L1], (ix.q1,), (ix.n1,))
        out.CX2 = _right_lambda(raw.CX2, rest, qs2, nl2) if ix.m2 else raw.CX2
    if raw.r1 is not None:
        out.r1 = _right_lambda(raw.r1[None, :], [L1], (ix.q1,), (ix.n1,))[0]
        out.r2 = (_right_lambda(raw.r2[None, :], rest, qs2, nl2)[0] if ix.m2 else raw.r2)
    return out


def _cholesky(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor by LAPACK's dpotrf (scipy.linalg's wrapper costs more than
    the factorization of the small blocks evaluated hundreds of times per fit)."""
    if A.shape[0] == 0:
        return np.zeros((0, 0))
    L, info = lapack.dpotrf(A, lower=1, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"matrix is not positive definite (dpotrf info {info})")
    return L


def _solve_lower(L: np.ndarray, b: np.ndarray, trans: bool = False) -> np.ndarray:
    """``L^{-1} b`` (``L^{-T} b`` with ``trans``) for lower-triangular ``L`` (dtrtrs)."""
    if L.shape[0] == 0:
        return np.array(b, dtype=float, copy=True)
    x, info = lapack.dtrtrs(L, b, lower=1, trans=1 if trans else 0)
    if info != 0:
        raise np.linalg.LinAlgError(f"singular triangular factor (dtrtrs info {info})")
    return x


@dataclass
class BlockedCholesky:
    """The lower factor ``L`` (see module docstring) and its solves."""

    q1: int
    L11: np.ndarray  # (n1, q1, q1)
    L11inv: np.ndarray  # (n1, q1, q1)
    L21: np.ndarray | sparse.csr_matrix  # (m2, m1)
    L22: np.ndarray  # (m2, m2)
    LX1: np.ndarray | None = None
    LX2: np.ndarray | None = None
    LXX: np.ndarray | None = None

    @property
    def m1(self) -> int:
        return self.L11.shape[0] * self.q1

    def logdet_Z(self) -> float:
        """``log |L_Z|^2``: twice the log-determinant of the random-effects factor."""
        d1 = np.einsum("jkk->jk", self.L11)
        return 2.0 * (np.log(d1).sum() + np.log(np.diag(self.L22)).sum())

    def logdet_X(self) -> float:
        """``log |R_X|^2``."""
        return 2.0 * np.log(np.diag(self.LXX)).sum()

    def _l11_solve(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        n1, q1 = self.L11.shape[0], self.q1
        rr = r.reshape(n1, q1)
        M = self.L11inv
        if q1 == 1:
            return r * M[:, 0, 0]
        Mt = M.transpose(0, 2, 1) if transpose else M
        return (Mt @ rr[:, :, None]).reshape(-1)

    def forward(self, r1: np.ndarray, r2: np.ndarray, rX: np.ndarray | None = None):
        """Solve ``L c = r``; returns ``(c1, c2, cX)``."""
        c1 = self._l11_solve(r1)
        c2 = _solve_lower(self.L22, r2 - self.L21 @ c1) if r2.size else r2
        cX = None
        if rX is not None:
            cX = _solve_lower(self.LXX, rX - self.LX1 @ c1 - self.LX2 @ c2)
        return c1, c2, cX

    def backward(self, c1: np.ndarray, c2: np.ndarray, cX: np.ndarray | None = None):
        """Solve ``L' x = c``; returns ``(u, beta)`` (beta None without X)."""
        beta = None
        if cX is not None:
            beta = _solve_lower(self.LXX, cX, trans=True)
            c1 = c1 - self.LX1.T @ beta
            c2 = c2 - self.LX2.T @ beta
        u2 = _solve_lower(self.L22, c2, trans=True) if c2.size else c2
        u1 = self._l11_solve(c1 - self.L21.T @ u2, transpose=True)
        return np.concatenate([u1, u2]), beta

    def inverse_diag_blocks(self, ix: ReIndex) -> list[np.ndarray]:
        """Diagonal blocks of ``(L_Z L_Z')^{-1}``, one ``(nlev, q, q)`` array per term: the
        first term's from `inverse_blocks`, the others cut from its ``(m2, m2)`` block."""
        P11, _, P22 = self.inverse_blocks(ix)
        blocks = [P11]
        start = 0
        for q, nlev in zip(ix.qs[1:], ix.nlevs[1:], strict=True):
            idx = start + np.arange(nlev)[:, None] * q + np.arange(q)
            blocks.append(P22[idx[:, :, None], idx[:, None, :]])
            start += q * nlev
        return blocks

    def inverse_blocks(self, ix: ReIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blocks of ``A^{-1} = (L_Z L_Z')^{-1}`` that observations touch: the first
        term's diagonal blocks ``(n1, q1, q1)``, and the dense ``(m2, m1)`` and
        ``(m2, m2)`` blocks below them.

        With ``M = L_Z^{-1}`` (``M11 = L11^{-1}``, ``M21 = -M22 B``, ``B = L21 M11``)
        and ``P22 = M22' M22`` (LAPACK's dpotri): ``P21 = M22' M21 = -P22 B`` and
        ``P11 = M11' M11 + B' P22 B``, of which the diagonal blocks; one product
        ``P22 B`` (``B`` may be sparse).
        """
        Li = self.L11inv
        P11 = np.einsum("jka,jkb->jab", Li, Li)
        n1, q1, m2 = Li.shape[0], self.q1, ix.m2
        if m2 == 0:
            return P11, np.zeros((0, ix.m1)), np.zeros((0, 0))
        P22, info = lapack.dpotri(self.L22, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"dpotri failed (info {info})")
        P22 += np.tril(P22, -1).T  # dpotri fills the lower triangle; _cholesky zeroed the upper
        if sparse.issparse(self.L21):
            B = _right_blocks(self.L21, Li)
            PB = np.asarray((B.T @ P22).T)
            Bd = B.toarray()
        else:
            Bd = np.einsum("rja,jab->rjb", self.L21.reshape(m2, n1, q1), Li).reshape(m2, -1)
            PB = P22 @ Bd
        P11 += np.einsum("rja,rjb->jab", Bd.reshape(m2, n1, q1), PB.reshape(m2, n1, q1))
        return P11, -PB, P22

    def fixed_rows(self) -> np.ndarray:
        """``G = L_XX^{-1} L_XZ L_Z^{-1}`` (p x m): the whole system's inverse has the
        random-effects block ``(L_Z L_Z')^{-1} + G' G``."""
        p = self.LXX.shape[0]
        G = np.empty((p, self.m1 + self.L22.shape[0]))
        for r in range(p):  # L_Z' y = L_XZ' row by row
            G[r], _ = self.backward(self.LX1[r], self.LX2[r])
        return _solve_lower(self.LXX, G)

    def inverse_traces(self, ix: ReIndex) -> np.ndarray:
        """Per term, the trace of its diagonal block of ``A^{-1} = (L_Z L_Z')^{-1}``.

        With ``M = L_Z^{-1}`` (``M11 = L11^{-1}``, ``M21 = -M22 L21 M11``) and
        ``S22^{-1} = M22' M22`` (LAPACK's dpotri): the first term's trace is
        ``||M11||_F^2 + ||M21||_F^2 = ||M11||_F^2 + <S22^{-1}, (L21 M11)(L21 M11)'>``,
        one sparse product like ``L21 L21'``; the other terms' come from the diagonal
        of ``S22^{-1}``.
        """
        Li = self.L11inv
        first = float(np.sum(Li * Li))
        m2 = self.L22.shape[0]
        if m2 == 0:
            return np.array([first])
        Sinv, info = lapack.dpotri(self.L22, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"dpotri failed (info {info})")
        if sparse.issparse(self.L21):
            B = _right_blocks(self.L21, Li)
            P = (B @ B.T).toarray()
        else:
            n1, q1 = Li.shape[0], self.q1
            B = np.einsum("rja,jab->rjb", self.L21.reshape(m2, n1, q1), Li).reshape(m2, -1)
            P = B @ B.T
        # dpotri fills the lower triangle and keeps the zeros _cholesky left above
        # it: <Sinv, P> from the lower triangle and P's symmetry
        d2 = np.diag(Sinv).copy()
        # (Sinv is Fortran-ordered: its transpose's C-order ravel is free; P = P')
        first += 2.0 * float(Sinv.T.ravel() @ P.ravel()) - float(d2 @ np.diag(P))
        sizes = [q * nlev for q, nlev in zip(ix.qs[1:], ix.nlevs[1:], strict=True)]
        bounds = np.cumsum([0, *sizes])
        return np.array([first] + [float(d2[a:b].sum()) for a, b in
                                   zip(bounds[:-1], bounds[1:], strict=True)])

    def dense_tail(self, start: int) -> np.ndarray:
        """The trailing block ``L[start:, start:]`` of the whole factor (random effects
        from position ``start`` on, then the fixed effects), as a dense matrix.

        Its inverse is the trailing block of ``L^{-1}``, so the trailing block of
        ``(L L')^{-1}`` is ``inv(tail)' inv(tail)``: the joint covariance of the last
        random effects and beta without touching the (large) first blocks.
        """
        m1 = self.m1
        blocks = [sla.block_diag(*self.L11) if m1 else np.zeros((0, 0)),
                  self.L21, self.L22]
        m2 = self.L22.shape[0]
        p = 0 if self.LXX is None else self.LXX.shape[0]
        L = np.zeros((m1 + m2 + p, m1 + m2 + p)) if start < m1 else None
        if L is not None:  # a dense first term (one level): assemble everything
            L[:m1, :m1] = blocks[0]
            L[m1:m1 + m2, :m1] = self.L21.toarray() if sparse.issparse(self.L21) else self.L21
        else:
            L = np.zeros((m2 + p, m2 + p))
            start -= m1
            m1 = 0
        L[m1:m1 + m2, m1:m1 + m2] = self.L22
        if p:
            if m1:
                L[m1 + m2:, :m1] = self.LX1
            L[m1 + m2:, m1:m1 + m2] = self.LX2
            L[m1 + m2:, m1 + m2:] = self.LXX
        return L[start:, start:]


DENSE_LMM_SIZE = 160  # m + p + 1 up to which DenseSystem evaluates an LMM's deviance


@dataclass
class DenseSystem:
    """A small LMM's augmented system ``[Z X y]' W [Z X y]`` as one dense matrix.

    MixedModels.jl's augmented Cholesky factor: with ``T = blockdiag(Lambda, I)``,
    the lower factor of ``T' R T + blockdiag(I_m, 0)`` holds ``L_Z``, ``R_X'`` and,
    in its last diagonal cell, ``sqrt(r2)``: one LAPACK call per evaluation, where
    the blocked factor's dozens of small array operations cost more than the
    arithmetic (sleepstudy: 150 -> 50 microseconds per evaluation). Used only for
    the deviance value; the blocked factor gives everything else.
    """

    R: np.ndarray  # (m + p + 1) square
    m: int
    p: int
    rows: np.ndarray  # Lambda's entries: row, column and theta index
    cols: np.ndarray
    index: np.ndarray

    @classmethod
    def from_design(cls, design: Design, w: np.ndarray, y: np.ndarray) -> DenseSystem:
        from glmmbench.model.theta import _tril_colmajor

        Z = design.Z().tocsc()
        WZ = Z.multiply(w[:, None]).tocsc()
        Xy = np.column_stack([design.X, y])
        m, p = Z.shape[1], design.p
        R = np.empty((m + p + 1, m + p + 1))
        R[:m, :m] = (Z.T @ WZ).toarray()
        R[m:, :m] = np.asarray(WZ.T @ Xy).T
        R[:m, m:] = R[m:, :m].T
        R[m:, m:] = Xy.T @ (w[:, None] * Xy)
        rows, cols, index = [], [], []
        start, pos = 0, 0
        for t, block in zip(design.terms, design.cov_blocks, strict=True):
            if block.scaled_identity:
                r = c = np.arange(t.q)
                k = np.zeros(t.q, dtype=int)
            else:
                r, c = _tril_colmajor(t.q)
                k = np.arange(r.size)
            base = start + np.arange(t.nlevels)[:, None] * t.q
            rows.append((base + r).ravel())
            cols.append((base + c).ravel())
            index.append(np.broadcast_to(pos + k, (t.nlevels, k.size)).ravel())
            start += t.nlevels * t.q
            pos += block.ntheta
        return cls(R, m, p, np.concatenate(rows), np.concatenate(cols), np.concatenate(index))

    def profiled_terms(self, theta: np.ndarray) -> tuple[float, float, float]:
        """``(log|L_Z|^2, log|R_X|^2, r2)`` at ``theta``."""
        m = self.m
        Lam = np.zeros((m, m))
        Lam[self.rows, self.cols] = theta[self.index]
        M = self.R.copy()
        M[:, :m] = M[:, :m] @ Lam
        M[:m, :] = Lam.T @ M[:m, :]
        M[np.arange(m), np.arange(m)] += 1.0
        L = _cholesky(M)
        d = np.log(np.diag(L)[:-1])
        return 2.0 * d[:m].sum(), 2.0 * d[m:].sum(), float(L[-1, -1] ** 2)


def batched_cholesky(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors and their inverses of a stack of small SPD blocks.

    Closed forms for q = 1 and q = 2 (the common random intercept and slope);
    LAPACK for larger blocks.
    """
    q = A.shape[1]
    if q == 1:
        L = np.sqrt(A)
        return L, 1.0 / L
    if q == 2:
        a = np.sqrt(A[:, 0, 0])
        b = A[:, 1, 0] / a
        c = np.sqrt(A[:, 1, 1] - b * b)
        L = np.zeros_like(A)
        Li = np.zeros_like(A)
        L[:, 0, 0], L[:, 1, 0], L[:, 1, 1] = a, b, c
        Li[:, 0, 0], Li[:, 1, 0], Li[:, 1, 1] = 1 / a, -b / (a * c), 1 / c
        return L, Li
    L = np.linalg.cholesky(A)
    Linv = np.linalg.inv(L)
    return L, Linv


def _right_l11_invT(A: np.ndarray, L11inv: np.ndarray) -> np.ndarray:
    """``A L11^{-T}``, blockwise over the first term's levels."""
    n1, q1 = L11inv.shape[0], L11inv.shape[1]
    if q1 == 1:
        return A * L11inv[:, 0, 0][None, :]
    Ar = A.reshape(A.shape[0], n1, q1).transpose(1, 0, 2)  # (n1, r, q1)
    out = Ar @ L11inv.transpose(0, 2, 1)
    return out.transpose(1, 0, 2).reshape(A.shape[0], n1 * q1)


def factorize(cp: CrossProducts, q1: int) -> BlockedCholesky:
    """Factor ``[Lambda'Z'WZLambda + I, .; X'WZLambda, X'WX]`` from its cross products."""
    A11 = cp.C11 + np.eye(q1)
    L11, L11inv = batched_cholesky(A11)
    m2 = cp.C22.shape[0]
    if sparse.issparse(cp.C21):
        L21 = _right_blocks(cp.C21, L11inv.transpose(0, 2, 1))
        L21L21t = (L21 @ L21.T).toarray()
    else:
        L21 = _right_l11_invT(cp.C21, L11inv)
        L21L21t = L21 @ L21.T
    if m2:
        S22 = cp.C22 - L21L21t
        S22[np.diag_indices(m2)] += 1.0
        L22 = _cholesky(S22)
    else:
        L22 = np.zeros((0, 0))
    fac = BlockedCholesky(q1, L11, L11inv, L21, L22)
    if cp.CXX is not None:
        LX1 = _right_l11_invT(cp.CX1, L11inv)
        if m2:
            LX2 = _solve_lower(L22, np.ascontiguousarray((cp.CX2 - (L21 @ LX1.T).T).T)).T
        else:
            LX2 = np.zeros((LX1.shape[0], 0))
        SXX = cp.CXX - LX1 @ LX1.T - LX2 @ LX2.T
        fac.LX1, fac.LX2 = LX1, LX2
        fac.LXX = _cholesky(SXX)
    return fac
