"""mgcv-style smooth bases for GAMM terms and their mixed-model split.

``construct(term, data)`` builds what mgcv's
``smoothCon(s(...), data, absorb.cons = TRUE, scale.penalty = TRUE)`` builds: a
model matrix ``X`` and a penalty ``S`` such that the smooth is ``f = X gamma`` with
wiggliness ``lambda gamma' S gamma``. Three bases (mgcv's ``bs``):

- ``"tp"`` thin plate regression spline (Wood 2003, JRSS-B 65:95-114), any
  dimension ``d``;
- ``"cr"`` cubic regression spline with knots at quantiles of the unique
  covariate values (Wood 2017, *Generalized Additive Models*, section 5.3.1);
- ``"ps"`` P-spline: B-splines on equally spaced knots with a difference penalty
  (Eilers and Marx 1996).

Every basis goes through the same three steps, as in ``smoothCon``:

1. the raw basis ``B`` (``k`` columns) and penalty ``S0``;
2. ``scale.penalty``: ``S = S0 * ||B||_inf^2 / ||S0||_1`` (row-sum and column-sum
   norms), which fixes the scale of the smoothing parameter ``lambda`` (mgcv's ``sp``);
3. the identifiability constraint ``1' B gamma = 0`` absorbed with a Householder
   reflection ``H`` of ``c = colMeans(B)``: ``X = B Z``, ``S <- Z' S Z``,
   ``Z = H[:, 1:]``, which drops one column. Smooths with a numeric ``by`` variable
   are not constrained (mgcv's rule), unless the ``by`` variable is constant.

``by`` variables: a factor gives one smooth per level (rows of other levels zero;
an ordered factor skips its first level), a numeric one multiplies the rows.

``mixed_split(smooth)`` is mgcv's ``smooth2random``: with ``S = U diag(D) U'``, the
null space of ``S`` becomes fixed-effect columns and the range, scaled by
``D^{-1/2}``, a random term whose coefficients have identity covariance.

The bases span the same spaces as mgcv's and carry the same penalty up to a
reparametrisation, so penalised fits (and mgcv's ``sp``) agree; column signs and
rotations within the constraint may differ.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
from scipy.interpolate import BSpline
from scipy.sparse.linalg import eigsh
from scipy.spatial.distance import cdist

from glmmbench.errors import DataError, FormulaError, UnsupportedTermError
from glmmbench.model.formula import SmoothTerm

__all__ = ["SUPPORTED_BASES", "MAX_KNOTS", "Smooth", "MixedSplit", "construct", "mixed_split"]

SUPPORTED_BASES = ("tp", "cr", "ps")
MAX_KNOTS = 2000  # mgcv's xt$max.knots for "tp"
_OPTIONS = ("k", "bs", "m", "by")
_EVAL_BLOCK = 2_000_000  # entries of the radial-basis block evaluated at once
_DENSE_EIGEN = 60  # below this many knots, a full eigendecomposition (Lanczos above)


# ----------------------------------------------------------------------------
# Raw bases: each knows how to evaluate itself at new covariate values
# ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _TprsBasis:
    """Thin plate regression spline basis (mgcv's ``tprs.smooth``).

    With ``x`` centred by ``shift`` and knots ``x_j`` (the unique covariate values),
    ``B(x) = [eta(||x - x_j||)_j, t(x)] @ UZ / w``: ``eta(r) = c r^(2m-d)`` for odd
    ``d`` (``c r^(2m-d) log r`` for even ``d``), ``t`` the monomials of degree
    below ``m`` spanning the penalty's null space, ``UZ`` the truncated
    eigenbasis of ``E = [eta(||x_i - x_j||)]`` with the constraint ``T' delta = 0``
    absorbed, and ``w`` the columns' root mean squares on the fitting data.
    """

    shift: np.ndarray  # (d,)
    knots: np.ndarray  # (nk, d), centred
    powers: np.ndarray  # (M, d) monomial exponents
    m: int
    UZ: np.ndarray  # (nk + M, k)
    w: np.ndarray  # (k,)

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        xc = x - self.shift
        unique, inverse = np.unique(xc, axis=0, return_inverse=True)
        nk = len(self.knots)
        B = np.empty((len(unique), self.UZ.shape[1]))
        step = max(1, _EVAL_BLOCK // nk)
        for start in range(0, len(unique), step):
            u = unique[start:start + step]
            E = _tps_eta(cdist(u, self.knots, "sqeuclidean"), self.m, u.shape[1])
            B[start:start + step] = E @ self.UZ[:nk] + _monomials(u, self.powers) @ self.UZ[nk:]
        return B[inverse.ravel()] / self.w


@dataclass(frozen=True, eq=False)
class _CrBasis:
    """Cubic regression spline (mgcv's ``cr.smooth``), parametrised by its values at
    the knots. On ``[x_j, x_{j+1}]`` with ``h = x_{j+1} - x_j``, ``a- = (x_{j+1} - x)/h``,
    ``a+ = (x - x_j)/h``, ``c- = h^2 (a-^3 - a-) / 6``, ``c+ = h^2 (a+^3 - a+) / 6``:
    ``f(x) = a- beta_j + a+ beta_{j+1} + c- delta_j + c+ delta_{j+1}``, with second
    derivatives ``delta = F beta``; linear beyond the end knots.
    """

    knots: np.ndarray  # (k,)
    F: np.ndarray  # (k, k): beta -> second derivatives at the knots

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        x = x[:, 0]
        kn, F, K = self.knots, self.F, len(self.knots)
        rows = np.arange(len(x))
        j = np.clip(np.searchsorted(kn, x, side="left") - 1, 0, K - 2)
        h = kn[j + 1] - kn[j]
        am, ap = kn[j + 1] - x, x - kn[j]
        cm = am * (am * am / h - h) / 6
        cp = ap * (ap * ap / h - h) / 6
        X = cm[:, None] * F[j] + cp[:, None] * F[j + 1]
        X[rows, j] += am / h
        X[rows, j + 1] += ap / h
        X[x < kn[0]] = self._linear(x[x < kn[0]], 0)
        X[x > kn[-1]] = self._linear(x[x > kn[-1]], K - 1)
        return X

    def _linear(self, x: np.ndarray, end: int) -> np.ndarray:
        """``f(x_end) + (x - x_end) f'(x_end)`` from the cubic's end derivative."""
        kn, F, K = self.knots, self.F, len(self.knots)
        lo, hi = (0, 1) if end == 0 else (K - 2, K - 1)
        h = kn[hi] - kn[lo]
        dx = (x - kn[end])[:, None]
        slope = np.zeros(K)
        slope[lo], slope[hi] = -1 / h, 1 / h
        # f'(x_lo) = (b_hi - b_lo)/h - h (2 d_lo + d_hi)/6; f'(x_hi) = ... + h (d_lo + 2 d_hi)/6
        if end == 0:
            slope = slope - h * (2 * F[lo] + F[hi]) / 6
        else:
            slope = slope + h * (F[lo] + 2 * F[hi]) / 6
        return np.eye(K)[end] + dx * slope


@dataclass(frozen=True, eq=False)
class _PsBasis:
    """P-spline basis (mgcv's ``pspline.smooth``): B-splines of degree ``m1 + 1`` on
    equally spaced knots; linear beyond the interior knot range."""

    knots: np.ndarray
    degree: int

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        x = x[:, 0]
        k = len(self.knots) - self.degree - 1
        spline = BSpline(self.knots, np.eye(k), self.degree)
        lo, hi = self.knots[self.degree], self.knots[k]
        inside = (x >= lo) & (x <= hi)
        X = np.empty((len(x), k))
        X[inside] = spline(x[inside])
        slope = spline.derivative()
        for end, outside in ((lo, x < lo), (hi, x > hi)):
            X[outside] = spline(end) + (x[outside] - end)[:, None] * slope(end)
        return X


# ----------------------------------------------------------------------------
# Public objects
# ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Smooth:
    """One smooth of a GAMM, as mgcv's ``smoothCon(..., absorb.cons = TRUE)`` makes it.

    Attributes
    ----------
    label : str
        mgcv's label: ``s(x)``, ``s(x,z)``; factor ``by = f`` level ``a``: ``s(x):fa``;
        numeric ``by = z``: ``s(x):z``.
    term : str
        The ``SmoothTerm.text`` it came from.
    variables, bs, k, by, by_level
        Covariates, basis, mgcv's ``bs.dim`` (before the constraint), ``by`` column
        and, for a factor ``by``, this smooth's level.
    X : ndarray, shape (n, p)
        Model matrix on the fitting data (constraint absorbed, ``by`` applied).
    S : ndarray, shape (p, p)
        Penalty, scaled as ``smoothCon(scale.penalty = TRUE)``.
    rank : int
        Rank of ``S`` (structural, as mgcv's ``rank``); ``p - rank`` unpenalised
        directions.
    """

    label: str
    term: str
    variables: tuple[str, ...]
    bs: str
    k: int
    by: str | None
    by_level: str | None
    X: np.ndarray = field(repr=False)
    S: np.ndarray = field(repr=False)
    rank: int = 0
    basis: Any = field(default=None, repr=False)
    Z: np.ndarray | None = field(default=None, repr=False)  # constraint null space

    def predict_matrix(self, data: pd.DataFrame) -> np.ndarray:
        """The model matrix at new data (mgcv's ``PredictMat``), shape ``(m, p)``."""
        B = self.basis.evaluate(_covariates(data, self.variables, self.term))
        B = _by_multiplier(data, self)[:, None] * B
        return B if self.Z is None else B @ self.Z


@dataclass(frozen=True, eq=False)
class MixedSplit:
    """A smooth as fixed plus random effects (mgcv's ``smooth2random``).

    ``X @ T = [Xf, Zr]``; the smooth's coefficients are ``T @ [beta_f, b]`` and its
    penalty ``lambda gamma' S gamma = lambda b'b``, so ``b ~ N(0, sigma^2/lambda I)``.
    ``D`` holds the positive eigenvalues of ``S`` (descending); ``Zr = X U_r D^{-1/2}``
    and ``Xf = X U_0`` with ``U_0`` an orthonormal basis of the null space of ``S``
    (not rescaled, as in mgcv).
    """

    Xf: np.ndarray
    Zr: np.ndarray
    T: np.ndarray
    D: np.ndarray


def construct(term: SmoothTerm, data: pd.DataFrame) -> list[Smooth]:
    """Build the smooth(s) of ``term`` on ``data`` (the rows used in the fit).

    One ``Smooth`` per level of a factor ``by`` variable, else one.

    For ``bs = "tp"`` all unique covariate values are knots when there are at most
    ``MAX_KNOTS`` (2000) of them, as in mgcv. Above that mgcv draws a random
    subset with R's RNG; here the knots are an evenly spaced subset of the sorted
    unique values instead, so the basis differs from mgcv's (it is still a valid
    thin plate regression spline basis).

    Raises
    ------
    FormulaError
        ``te``/``ti``/``t2``, an unsupported ``bs`` or argument, a malformed ``k``/``m``,
        a multi-dimensional ``cr``/``ps``.
    DataError
        A missing or non-numeric covariate, a missing ``by`` column, missing
        values, or fewer unique covariate values than ``k``.
    """
    bs, k, m = _check_term(term)
    x = _covariates(data, term.variables, term.text)
    builder = {"tp": _tprs, "cr": _cr, "ps": _ps}[bs]
    basis, B, S0, k, rank = builder(x, k, m, term)
    S0 = _scale_penalty(B, S0)
    by = term.options.get("by")
    by = None if by in (None, "NA") else str(by)
    common = dict(term=term.text, variables=term.variables, bs=bs, k=k, by=by, basis=basis)
    base_label = f"{term.kind}({','.join(term.variables)})"
    if by is None:
        return [_finish(B, S0, rank, np.ones(len(x)), base_label, None, common)]
    values = _column(data, by, term.text, "by variable")
    if _is_factor(values):
        strings = values.astype(str).to_numpy()
        return [_finish(B, S0, rank, (strings == level).astype(float),
                        f"{base_label}:{by}{level}", level, common)
                for level in _by_levels(values)]
    mult = values.to_numpy(dtype=float)
    constant = np.std(mult, ddof=1) <= np.mean(mult) * np.finfo(float).eps * 1000
    return [_finish(B, S0, rank, mult, f"{base_label}:{by}", None, common,
                    constrain=bool(constant))]


def mixed_split(smooth: Smooth, X: np.ndarray | None = None) -> MixedSplit:
    """Split ``smooth`` into unpenalised and penalised parts (mgcv's ``smooth2random``).

    ``S = U diag(D) U'`` with eigenvalues descending; the first ``rank`` columns of
    ``U`` span the penalised range, the others its null space. ``X`` (default
    ``smooth.X``) may be a prediction matrix of the same smooth.
    """
    X = smooth.X if X is None else X
    values, vectors = np.linalg.eigh(smooth.S)
    values, vectors = values[::-1], vectors[:, ::-1]
    r = smooth.rank
    D = values[:r]
    T = np.hstack([vectors[:, r:], vectors[:, :r] / np.sqrt(D)])
    XT = X @ T
    nf = T.shape[1] - r
    return MixedSplit(Xf=XT[:, :nf], Zr=XT[:, nf:], T=T, D=D)


# ----------------------------------------------------------------------------
# Term checks and data access
# ----------------------------------------------------------------------------

def _check_term(term: SmoothTerm) -> tuple[str, int, tuple[int, ...] | None]:
    """Validate the term's kind and options; return ``bs``, ``k`` (-1: default), ``m``."""
    if term.kind != "s":
        raise UnsupportedTermError(
            f"smooth {term.text}: only s() smooths are supported, not tensor products "
            f"({term.kind}()); use s() with bs = one of {', '.join(SUPPORTED_BASES)}")
    opts = term.options
    unknown = [name for name in opts if name not in _OPTIONS]
    if unknown:
        raise FormulaError(f"smooth {term.text}: argument(s) {', '.join(unknown)} not "
                           f"supported (s() takes {', '.join(_OPTIONS)})")
    bs = opts.get("bs", "tp")
    if bs not in SUPPORTED_BASES:
        hint = " (for a random effect write (1 | x))" if bs == "re" else ""
        raise UnsupportedTermError(f"smooth {term.text}: basis bs = {bs!r} is not supported; "
                           f"supported bases are {', '.join(map(repr, SUPPORTED_BASES))}{hint}")
    if bs != "tp" and len(term.variables) != 1:
        raise FormulaError(f"smooth {term.text}: bs = {bs!r} handles 1-d smooths only "
                           "(use bs = \"tp\" for several covariates)")
    return bs, _parse_k(opts.get("k", -1), term), _parse_m(opts.get("m"), bs, term)


def _parse_k(value: Any, term: SmoothTerm) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not float(value).is_integer():
        raise FormulaError(f"smooth {term.text}: k must be a whole number, got {value!r}")
    return int(value)


def _parse_m(value: Any, bs: str, term: SmoothTerm) -> tuple[int, ...] | None:
    if value is None:
        return None
    if bs == "cr":
        raise FormulaError(f"smooth {term.text}: m has no meaning for bs = \"cr\"")
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    match = re.fullmatch(r"c\((\d+)(?:L)?,\s*(\d+)(?:L)?\)", str(value))
    if bs == "ps" and match:
        return (int(match.group(1)), int(match.group(2)))
    raise FormulaError(f"smooth {term.text}: m must be a whole number"
                       + (" or c(m1, m2)" if bs == "ps" else "") + f", got {value!r}")


def _column(data: pd.DataFrame, name: str, term: str, role: str) -> pd.Series:
    if name not in data.columns:
        hint = " (transform it into a data column first)" if "(" in name else ""
        raise DataError(f"smooth {term}: {role} {name!r} is not a column of the data{hint}")
    col = data[name]
    if col.isna().any():
        raise DataError(f"smooth {term}: {role} {name!r} has missing values")
    return col


def _covariates(data: pd.DataFrame, names: tuple[str, ...], term: str) -> np.ndarray:
    """The covariates as an ``(n, d)`` float array."""
    cols = []
    for name in names:
        col = _column(data, name, term, "covariate")
        if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            raise DataError(
                f"smooth {term}: covariate {name!r} is not numeric ({col.dtype}); a smooth "
                f"needs a numeric covariate. mgcv's s({name}, bs = \"re\") is not supported: "
                f"use a random effect (1 | {name})")
        cols.append(col.to_numpy(dtype=float))
    return np.column_stack(cols)


def _is_factor(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.CategoricalDtype) or not (
        pd.api.types.is_numeric_dtype(values.dtype))


def _by_levels(values: pd.Series) -> list[str]:
    """Levels that get a smooth: those present, in factor order (strings: sorted, which
    may differ from R's locale collation); an ordered factor's first level is the
    reference (mgcv)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.astype(str))
        levels = [str(c) for c in values.cat.categories if str(c) in present]
        return levels[1:] if values.cat.ordered and len(levels) > 1 else levels
    return sorted(set(values.astype(str)))


def _by_multiplier(data: pd.DataFrame, smooth: Smooth) -> np.ndarray:
    if smooth.by is None:
        return np.ones(len(data))
    values = _column(data, smooth.by, smooth.term, "by variable")
    if smooth.by_level is not None:
        return (values.astype(str).to_numpy() == smooth.by_level).astype(float)
    return values.to_numpy(dtype=float)


# ----------------------------------------------------------------------------
# Scaling, constraint and by
# ----------------------------------------------------------------------------

def _scale_penalty(B: np.ndarray, S: np.ndarray) -> np.ndarray:
    """``S ||B||_inf^2 / ||S||_1`` (smoothCon's ``scale.penalty``)."""
    size_x = np.abs(B).sum(axis=1).max() ** 2
    return S * size_x / np.abs(S).sum(axis=0).max()


def _sum_to_zero(c: np.ndarray) -> np.ndarray:
    """Orthonormal basis ``Z`` of ``{g : c'g = 0}``: the trailing columns of the
    Householder reflection mapping ``c`` onto the first axis (R's ``qr(t(C))``)."""
    norm = np.linalg.norm(c)
    sign = 1.0 if c[0] >= 0 else -1.0
    u = c / (sign * norm)
    u[0] += 1.0
    H = np.eye(len(c)) - np.outer(u, u) / u[0]
    return H[:, 1:]


def _finish(B, S, rank, mult, label, level, common, constrain=True) -> Smooth:
    """Apply ``by`` rows and the sum-to-zero constraint (from the unweighted basis)."""
    X = mult[:, None] * B
    Z = None
    if constrain:
        Z = _sum_to_zero(B.mean(axis=0))
        X, S = X @ Z, Z.T @ S @ Z
        rank = min(rank, X.shape[1])
    return Smooth(label=label, by_level=level, X=X, S=(S + S.T) / 2, rank=rank, Z=Z,
                  **common)


# ----------------------------------------------------------------------------
# Thin plate regression splines
# ----------------------------------------------------------------------------

def _tprs_order(m: tuple[int, ...] | None, d: int) -> int:
    """Penalty order: the given ``m`` if ``2m > d``, else the smallest with ``2m > d + 1``."""
    order = m[0] if m else 0
    if 2 * order <= d:
        order = 1
        while 2 * order < d + 2:
            order += 1
    return order


def _poly_powers(m: int, d: int) -> np.ndarray:
    """Exponents of the monomials of degree < m in d variables, in mgcv's order
    (first variable's exponent varying fastest)."""
    combos = (tuple(reversed(p)) for p in itertools.product(range(m), repeat=d))
    return np.array([p for p in combos if sum(p) < m], dtype=int).reshape(-1, d)


def _monomials(x: np.ndarray, powers: np.ndarray) -> np.ndarray:
    return np.prod(x[:, None, :] ** powers[None, :, :], axis=2)


def _tps_eta(r2: np.ndarray, m: int, d: int) -> np.ndarray:
    """Thin plate radial function of squared distances:
    ``Gamma(d/2 - m) / (2^2m pi^(d/2) (m-1)!) r^(2m-d)`` for odd ``d``,
    ``(-1)^(m+1+d/2) / (2^(2m-1) pi^(d/2) (m-1)! (m-d/2)!) r^(2m-d) log r`` for even."""
    if d % 2:
        c = math.gamma(d / 2 - m) / (4 ** m * math.pi ** (d / 2) * math.factorial(m - 1))
        return c * r2 ** ((2 * m - d) / 2)
    c = (-1) ** (m + 1 + d // 2) / (2 ** (2 * m - 1) * math.pi ** (d / 2)
                                    * math.factorial(m - 1) * math.factorial(m - d // 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = c * r2 ** (m - d // 2) * np.log(r2) / 2
    return np.where(r2 > 0, out, 0.0)


def _largest_eigen(E: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` eigenpairs of ``E`` of largest magnitude, eigenvalues descending."""
    n = len(E)
    if n <= _DENSE_EIGEN or k >= n - 1:
        values, vectors = scipy.linalg.eigh(E)
    else:
        # a fixed start vector keeps ARPACK deterministic
        values, vectors = eigsh(E, k=k, which="LM", v0=np.linspace(1.0, 2.0, n), tol=0)
    keep = np.sort(np.argsort(-np.abs(values), kind="stable")[:k])
    order = keep[np.argsort(-values[keep], kind="stable")]
    return values[order], vectors[:, order]


def _householder_qt(A: np.ndarray) -> np.ndarray:
    """Orthogonal ``Q`` with ``A Q = [0, R]`` (``A`` is M x k, ``R`` M x M), built as
    mgcv builds it: row ``i`` of ``A`` is reflected into column ``k - 1 - i``, the
    sign chosen against cancellation. The first ``k - M`` columns span the null
    space of ``A``; which basis of it depends on this exact sequence."""
    A = A.copy()
    M, k = A.shape
    Q = np.eye(k)
    for i in range(M):
        p = k - i
        u = A[i, :p].copy()
        norm = np.linalg.norm(u)
        if norm == 0:
            continue
        s = -norm if u[-1] < 0 else norm
        u[-1] += s
        g = 1.0 / (s * u[-1])
        A[i:, :p] -= np.outer(A[i:, :p] @ u * g, u)
        Q[:, :p] -= np.outer(Q[:, :p] @ u * g, u)
    return Q


def _knots_subset(unique: np.ndarray) -> np.ndarray:
    """At most MAX_KNOTS rows, evenly spaced through the (sorted) unique values."""
    if len(unique) <= MAX_KNOTS:
        return unique
    return unique[np.round(np.linspace(0, len(unique) - 1, MAX_KNOTS)).astype(int)]


def _tprs(x, k, m, term):
    """Thin plate regression spline (mgcv's ``smooth.construct.tp.smooth.spec``).

    ``E`` is truncated to its ``k`` largest-magnitude eigenpairs ``U diag(v) U'``;
    the constraint ``T'U delta = 0`` is absorbed by the null-space columns ``Z`` of
    mgcv's Householder sequence; then ``B = [E U Z, T]`` and
    ``S0 = blockdiag(Z' diag(v) Z, 0)``, every column scaled to unit root mean square.
    """
    n, d = x.shape
    order = _tprs_order(m, d)
    powers = _poly_powers(order, d)
    M = len(powers)
    k = M + (8, 27, 100)[min(d, 3) - 1] if k < 0 else k
    if k < M + 1:
        warnings.warn(f"smooth {term.text}: basis dimension k = {k} increased to the minimum "
                      f"possible, {M + 1} (as mgcv)", UserWarning, stacklevel=3)
        k = M + 1
    shift = x.mean(axis=0)
    unique = np.unique(x - shift, axis=0)
    _check_unique(len(unique), k, term)
    knots = _knots_subset(unique) if n > MAX_KNOTS else unique
    E = _tps_eta(cdist(knots, knots, "sqeuclidean"), order, d)
    if len(knots) == k:  # the full thin plate spline: no truncation
        U, core = np.eye(k), E
    else:
        values, U = _largest_eigen(E, k)
        core = np.diag(values)
    Q = _householder_qt(_monomials(knots, powers).T @ U)
    nr = k - M
    UZ = np.zeros((len(knots) + M, k))
    UZ[:len(knots), :nr] = U @ Q[:, :nr]
    UZ[len(knots):, nr:] = np.eye(M)
    S0 = np.zeros((k, k))
    S0[:nr, :nr] = (Q.T @ core @ Q)[:nr, :nr]
    raw = _TprsBasis(shift, knots, powers, order, UZ, np.ones(k))
    B = raw.evaluate(x)
    w = np.sqrt(np.mean(B * B, axis=0))
    basis = _TprsBasis(shift, knots, powers, order, UZ, w)
    return basis, B / w, S0 / np.outer(w, w), k, k - M


# ----------------------------------------------------------------------------
# Cubic regression splines and P-splines
# ----------------------------------------------------------------------------

def _cr(x, k, m, term):
    """Cubic regression spline (mgcv's ``smooth.construct.cr.smooth.spec``): ``k``
    knots at the quantiles of the unique values; with ``h_j`` the knot spacings,
    ``D`` ((k-2) x k, rows ``1/h_j, -1/h_j - 1/h_{j+1}, 1/h_{j+1}``) and ``B`` (tridiagonal,
    ``(h_j + h_{j+1})/3`` and ``h_{j+1}/6``): ``F = [0; B^-1 D; 0]``, ``S0 = D' B^-1 D``."""
    del m
    k = 10 if k < 0 else k
    if k < 3:
        warnings.warn(f"smooth {term.text}: basis dimension k = {k} increased to the minimum "
                      "possible, 3 (as mgcv)", UserWarning, stacklevel=3)
        k = 3
    unique = np.unique(x[:, 0])
    _check_unique(len(unique), k, term)
    knots = np.quantile(unique, np.linspace(0.0, 1.0, k))
    h = np.diff(knots)
    D = np.zeros((k - 2, k))
    i = np.arange(k - 2)
    D[i, i], D[i, i + 2] = 1 / h[:-1], 1 / h[1:]
    D[i, i + 1] = -1 / h[:-1] - 1 / h[1:]
    banded = np.zeros((2, k - 2))
    banded[0, 1:] = h[1:-1] / 6
    banded[1] = (h[:-1] + h[1:]) / 3
    BinvD = scipy.linalg.solveh_banded(banded, D)
    F = np.vstack([np.zeros(k), BinvD, np.zeros(k)])
    basis = _CrBasis(knots, F)
    return basis, basis.evaluate(x), D.T @ BinvD, k, k - 2


def _ps(x, k, m, term):
    """P-spline (mgcv's ``smooth.construct.ps.smooth.spec``), ``m = (m1, m2)``: ``k``
    B-splines of degree ``m1 + 1`` on ``k - m1`` equally spaced knots over the data
    range widened by 0.1 % each side (plus ``m1 + 1`` more each side);
    ``S0 = D'D`` with ``D`` the ``m2``-th order difference matrix."""
    m1, m2 = (2, 2) if m is None else (m * 2)[:2]
    k = max(10, m1 + 1) if k < 0 else k
    nk = k - m1
    if nk <= 1 or k <= m2:
        raise FormulaError(f"smooth {term.text}: basis dimension k = {k} too small for a "
                           f"P-spline of order m = c({m1}, {m2})")
    unique = np.unique(x[:, 0])
    _check_unique(len(unique), k, term)
    lo, hi = unique[0], unique[-1]
    lo, hi = lo - (hi - lo) * 0.001, hi + (hi - lo) * 0.001
    dx = (hi - lo) / (nk - 1)
    knots = np.linspace(lo - dx * (m1 + 1), hi + dx * (m1 + 1), nk + 2 * m1 + 2)
    basis = _PsBasis(knots, m1 + 1)
    Dm = np.diff(np.eye(k), n=m2, axis=0)
    return basis, basis.evaluate(x), Dm.T @ Dm, k, k - m2


def _check_unique(n_unique: int, k: int, term: SmoothTerm) -> None:
    if n_unique < k:
        names = ", ".join(repr(v) for v in term.variables)
        what = "has insufficient unique values" if len(term.variables) == 1 else \
            "have insufficient unique combinations"
        raise DataError(f"smooth {term.text}: {names} {what} ({n_unique}) to support "
                        f"k = {k} basis functions: reduce k")
