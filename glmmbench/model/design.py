"""Design: formula + data -> the frozen matrices a model is fitted from.

Interface contract (shared by the engine stages):

- ``RandomTerm``: one random-effect term after lme4's expansion (``(x || g)``
  becomes two terms, ``(1 | a/b)`` becomes ``(1 | b:a)`` and ``(1 | a)``).
  Its random effects for level ``j`` and component ``k`` sit at
  ``b[offset + j * q + k]`` (lme4's level-major order).
- ``Design``: everything the deviance needs, with terms in lme4's order, so
  that ``theta`` is lme4's theta: for each term, the lower triangle of its
  q x q relative covariance factor in column-major order. lme4's order
  (``mkReTrms``): the formula's order unless some term has more levels than
  the one before it; then by decreasing number of levels, ties in *reverse*
  formula order (R's ``rev(order(nl))``).

``build_design`` follows lme4's ``lFormula``/``glFormula``: R's model frame
(variables evaluated on the whole data, then ``na.omit``, unused factor levels
dropped), R's ``model.matrix`` (treatment contrasts, ``contr.poly`` for ordered
factors, R's column names and order), lme4's checks, and lme4's dropping of
rank-deficient fixed-effect columns.

Text columns become factors with levels sorted as R's ``sort()`` sorts them in a
UTF-8 locale with ICU (``_collate_key``: letters first without accents or case, so
"Ärzte" sorts with "Arzt", not after "Z"; then accents; then lower case before
upper case); the first level is the reference level of treatment contrasts. R in
the C locale sorts by code point instead: pass a ``pd.Categorical`` to fix the level
order (and the reference level) yourself.
"""

from __future__ import annotations

import itertools
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from glmmbench.errors import DataError, FamilyError, FormulaError
from glmmbench.families import ResponseFamily, ResponseVariable, make_family
from glmmbench.model.formula import (
    BinOp,
    Call,
    Const,
    FormulaSpec,
    Name,
    Node,
    Num,
    Paren,
    RandomSpec,
    SmoothTerm,
    Str,
    TermSpec,
    Unary,
    deparse,
    format_number,
    parse_dispformula,
    parse_expr,
    parse_formula,
)
from glmmbench.model.smooths import Smooth, construct, mixed_split
from glmmbench.model.theta import CovBlock, lambdas

__all__ = ["RandomTerm", "SmoothPart", "Design", "build_design", "check_response_varies"]

# larger numbers overflow the cross products (their squares times n) or leave them
# without a digit of the other columns: refused, naming the column
MAX_ABS_VALUE = 1e100
EXACT_FIT_TOL = 1e-10  # a Gaussian response this close to X's column space is refused

RANK_TOL = 1e-7  # lme4's chkRank.drop.cols tolerance (qr, LINPACK dqrdc2)


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(cnames | group)``.

    Attributes
    ----------
    group : str
        Grouping factor's name as R's ``VarCorr`` shows it (``"Subject"``,
        ``"b:a"``); for ``||`` terms the duplicates keep the same name here
        (R prints ``g`` and ``g.1``; see ``varcorr_name``).
    varcorr_name : str
        The ``grp`` label of ``as.data.frame(VarCorr(m))``.
    cnames : tuple of str
        Names of the term's columns as R gives them (``"(Intercept)"``, ``"Days"``).
    levels : tuple of str
        Levels of the grouping factor that occur in the data, in R's order.
    codes : ndarray of int, shape (n,)
        Level index (0..nlevels-1) of every observation.
    Xr : ndarray, shape (n, q)
        The term's raw model matrix (columns ``cnames``).
    term : str
        lme4's name of the term (``names(reTrms$Ztlist)``), e.g. ``"0 + Days | Subject"``.
    smooth : str or None
        For the penalised part of a smooth (``glmmbench.model.smooths``): the smooth's
        label. Such a term has one level, a dense ``Xr`` and ``Lambda = theta I``.
    """

    group: str
    varcorr_name: str
    cnames: tuple[str, ...]
    levels: tuple[str, ...]
    codes: np.ndarray
    Xr: np.ndarray
    term: str = ""
    smooth: str | None = None

    @property
    def cov_block(self) -> CovBlock:
        return CovBlock(self.q, scaled_identity=self.smooth is not None)

    @property
    def q(self) -> int:
        return self.Xr.shape[1]

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ntheta(self) -> int:
        return self.cov_block.ntheta


@dataclass(frozen=True)
class SmoothPart:
    """A smooth in its mixed-model form (gamm4, mgcv's ``smooth2random``).

    The smooth is ``f = X_s gamma`` (``smooth.X``, mgcv's basis) with
    ``gamma = T @ concat(beta[fixed], b)``: its unpenalised null space enters the
    fixed effects as the columns ``fixed`` of the design's X (-1 for a column dropped
    as collinear with the rest of X: its coefficient is 0), its penalised range is
    the random term ``terms[term]`` with ``b ~ N(0, sd^2 I)``.
    """

    smooth: Smooth
    T: np.ndarray
    fixed: tuple[int, ...]
    term: int

    @property
    def label(self) -> str:
        return self.smooth.label

    @property
    def nfixed(self) -> int:
        return len(self.fixed)


@dataclass(frozen=True)
class Design:
    """A model's data, frozen.

    Attributes
    ----------
    y : ndarray, shape (n,)
        Response. Binomial: proportion of successes (``weights`` carry the trials);
        binary factors: 0 for the first level, 1 otherwise. Ordinal / multinomial:
        integer category codes 0..K-1 (``response_levels`` names them).
    X : ndarray, shape (n, p)
        Fixed-effects model matrix, columns named ``fixef_names`` as R's
        ``model.matrix`` names them (treatment contrasts; ``contr.poly`` for
        ordered factors, as R), without the columns lme4 drops as rank deficient.
    weights : ndarray, shape (n,)
        Prior weights (binomial: trials times any user weights).
    offset : ndarray, shape (n,)
    terms : tuple of RandomTerm, in lme4's order.
    n_dropped : int
        Rows dropped because a used column was missing (as ``na.omit``).
    messages : tuple of str
        Notes made while building (rows dropped, ...).
    trials : ndarray or None
        Binomial ``cbind(s, f)`` responses: ``s + f`` per row (R's ``n``; the
        log-density is ``weights / trials * log dbinom(s, s + f, mu)``).
    family : str
        The family the response was coded for.
    row_index : ndarray of int, shape (n,)
        Positions (0-based) in the input data of the rows used.
    smooths : tuple of SmoothPart
        GAMM smooths: their null-space columns are the last columns of X, their
        penalised parts the last random terms.
    smooth_data : DataFrame or None
        The smooths' covariates and ``by`` variables on the rows used.
    disp_X : ndarray, shape (n, p_d), or None
        A ``dispformula``'s model matrix (glmmTMB's ``Xd``), columns named
        ``disp_names`` as R's ``model.matrix``; None without one.
    """

    formula: str
    response_name: str
    y: np.ndarray
    X: np.ndarray
    fixef_names: tuple[str, ...]
    weights: np.ndarray
    offset: np.ndarray
    terms: tuple[RandomTerm, ...]
    response_levels: tuple[str, ...] | None = None
    n_dropped: int = 0
    messages: tuple[str, ...] = ()
    trials: np.ndarray | None = None
    spec: Any = field(default=None, repr=False, compare=False)
    family: str = "gaussian"
    row_index: np.ndarray | None = field(default=None, repr=False, compare=False)
    smooths: tuple[SmoothPart, ...] = ()
    smooth_data: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    disp_X: np.ndarray | None = field(default=None, repr=False)
    disp_names: tuple[str, ...] = ()

    @property
    def parametric(self) -> np.ndarray:
        """Indices of the columns of X that are not a smooth's null space."""
        owned = {j for part in self.smooths for j in part.fixed if j >= 0}
        return np.array([j for j in range(self.p) if j not in owned], dtype=np.intp)

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels per grouping factor, as lme4's ``ngrps`` (one entry per factor)."""
        out: dict[str, int] = {}
        for t in self.terms:
            if t.smooth is None:
                out.setdefault(t.group, t.nlevels)
        return out

    @property
    def term_bounds(self) -> np.ndarray:
        """Where each term's effects start in ``b`` (and ``u``), then their total:
        term k occupies ``[term_bounds[k], term_bounds[k + 1])``."""
        return np.cumsum([0] + [t.nlevels * t.q for t in self.terms])

    @property
    def cov_blocks(self) -> tuple[CovBlock, ...]:
        """The covariance structure of every term, in term order."""
        return tuple(t.cov_block for t in self.terms)

    @property
    def Lind(self) -> np.ndarray:
        """lme4's ``Lind`` (0-based): the theta index of each nonzero of ``Lambdat@x``.

        Lambdat is block diagonal, one q x q upper-triangular block per level;
        its column-major nonzeros of block row ``r`` are Lambda[r, 0..r].
        """
        parts, start = [], 0
        for t in self.terms:
            q = t.q
            if t.smooth is not None:
                parts.append(np.full(q, start, dtype=np.intp))
                start += 1
                continue
            col_start = np.concatenate([[0], np.cumsum(np.arange(q, 0, -1))])
            block = [col_start[c] + (r - c) for r in range(q) for c in range(r + 1)]
            parts.append(np.tile(np.asarray(block, dtype=np.intp) + start, t.nlevels))
            start += t.ntheta
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)

    def Z(self) -> sp.csc_matrix:
        """The random-effects model matrix (n x sum(nlevels * q)), lme4's ``t(Zt)``.

        Rows of observations whose level is unknown (code -1, new data) are zero.
        """
        blocks = []
        rows = np.arange(self.n)
        for t in self.terms:
            known = t.codes >= 0
            r = np.repeat(rows[known], t.q)
            c = (t.codes[known, None] * t.q + np.arange(t.q)).ravel()
            v = t.Xr[known].ravel()
            blocks.append(sp.csc_matrix((v, (r, c)), shape=(self.n, t.nlevels * t.q)))
        if not blocks:
            return sp.csc_matrix((self.n, 0))
        return sp.hstack(blocks, format="csc")

    def Lambda(self, theta: np.ndarray) -> sp.csc_matrix:
        """The relative covariance factor (lme4's ``t(Lambdat)``): block diagonal, each
        term's ``Lambda_k(theta)`` once per level, in the order of ``Z``'s columns."""
        if not self.terms:
            return sp.csc_matrix((0, 0))
        return sp.block_diag([sp.kron(sp.identity(t.nlevels), L)
                              for t, L in zip(self.terms, lambdas(theta, self.cov_blocks),
                                              strict=True)], format="csc")

    def new_data(self, data: pd.DataFrame, offset: Any = None, new_levels: str = "allow"
                 ) -> Design:
        """Rebuild X, offset and the terms' codes/Xr for new data with the same encodings.

        Grouping levels unseen in the fit get code -1 (population-level prediction).
        The response is not required in ``data`` (``y`` is NaN). Missing values are
        kept (R's ``na.pass``): they give NaN rows of X and code -1. Transforms
        reuse the fit's state (``scale()`` centre and scale, factor levels), as
        R's ``predict`` does; a fixed-effect factor level unseen in the fit is an
        error, as in R.

        The offset: the formula's ``offset()`` terms are evaluated on ``data``; to
        them is added ``offset`` (an array with one value per row of ``data``, or a
        column name), which stands for the fit's ``offset=`` argument. Without it, a
        fit whose ``offset=`` named a column takes that column from ``data``; a fit
        whose ``offset=`` was an array cannot know the new rows' offset, a
        `DataError`. ``offset`` for a fit without an ``offset=`` argument is a
        `DataError` too (formula offsets come from ``data``).

        ``new_levels``: what to do with rows whose grouping factor has a level the fit
        did not see, or a missing value: ``"allow"`` (code -1, silently),
        ``"warn"`` (code -1, a `NewLevelsWarning` naming the factor and the count of
        rows) or ``"error"`` (a `DataError` naming the factor and up to
        five of the unseen levels, as lme4's ``predict(allow.new.levels = FALSE)``).
        """
        if self.spec is None:
            raise DataError("this Design was not made by build_design and cannot take new data")
        if new_levels not in ("allow", "warn", "error"):
            raise ValueError(f"new_levels must be 'allow', 'warn' or 'error', not {new_levels!r}")
        return self.spec.rebuild(self, data, offset, new_levels)


# ----------------------------------------------------------------------------
# Evaluated variables (R's model-frame columns)
# ----------------------------------------------------------------------------

@dataclass
class _Var:
    """One evaluated variable.

    kind: ``num`` (float, NaN = NA), ``lgl`` (float 0/1, NaN = NA), ``fac``
    (int codes, -1 = NA, ``levels``), ``chr`` (object array).
    """

    kind: str
    values: np.ndarray
    levels: tuple[str, ...] = ()
    ordered: bool = False
    integer: bool = False

    def na(self) -> np.ndarray:
        if self.kind == "fac":
            return self.values < 0
        if self.kind == "chr":
            return pd.isna(self.values)
        return np.isnan(self.values)

    def take(self, rows: np.ndarray) -> _Var:
        return _Var(self.kind, self.values[rows], self.levels, self.ordered, self.integer)


# punctuation and symbols in ICU's root order (R's sort() of them, run here), before
# digits and letters
_ICU_PUNCT = ("\t\n\x0b\x0c\r \u00a0_-\u2013\u2014,;:!\u00a1?\u00bf.\u2026\u00b7'"
              "\u2018\u2019\"\u201c\u201d\u00ab\u00bb()[]{}\u00a7\u00b6@*/\\&#%\u2030\u2020\u2022\u2032\u2033`\u00b4^"
              "\u00af\u00a8\u00b8\u00b0\u00a9\u00ae\u2190\u2192+\u00b1\u00f7\u00d7<=\u2260>\u00ac|"
              "\u00a6~\u221e\u2264\u2265\u00a4\u00a2$\u00a3\u00a5\u20ac")
# combining marks in the order of their secondary weights in ICU's root collation
# (R's sort() of "a" followed by each of U+0300..U+036F, run here)
_ICU_MARKS = {ch: i + 1 for i, ch in enumerate(
    "\u034f\u0332\u0313\u0343\u0314\u0301\u0341\u0300\u0340\u0306\u0302\u030c\u030a\u0342"
    "\u0308\u0344\u030b\u0303\u0307\u0338\u0327\u0328\u0304\u0352\u033d\u030d\u030e\u035d"
    "\u0312\u034a\u034b\u034c\u033f\u0346\u031a\u0315\u035b\u033e\u035e\u0350\u0351\u0357"
    "\u0356\u0317\u0319\u033b\u033c\u035c\u031f\u0348\u0349\u031c\u031d\u031e\u034d\u0318"
    "\u0320\u032a\u033a\u032c\u0353\u0354\u032f\u034e\u0347\u0359\u032b\u0362\u0316\u0355"
    "\u0329\u035f\u0333\u035a\u0337\u0336\u0335\u0305\u0309\u030f\u0310\u0311\u031b\u0321"
    "\u0322\u0323\u0324\u0325\u0326\u032d\u032e\u0330\u0331\u0334\u0339\u0345\u0358\u0360"
    "\u0361\u0363\u0368\u0369\u0364\u036a\u0365\u036b\u0366\u036c\u036d\u0367\u036e\u036f")}
_STROKE = len(_ICU_MARKS) + 1  # the secondary weight of a letter's stroke or ligature
# letters that sort as a base letter (or two) with a secondary difference (ICU root:
# "ae" < "æ" < "af", "ss" < "ß" < "st", "o" < "ø" < "ob")
_ICU_VARIANTS = {"æ": "ae", "œ": "oe", "ß": "ss", "đ": "d", "ð": "d", "ħ": "h", "ł": "l",
                 "ø": "o"}
_ICU_VARIANT_RANK = {"ð": 1, "æ": 2, "œ": 2, "ß": 2}  # ø < ð < œ
# letters with a primary weight of their own, just after a base letter
_ICU_AFTER = {"ƀ": "b", "ǝ": "e", "ə": "e", "ɛ": "e", "ƒ": "f", "ı": "i", "ŋ": "n", "ĸ": "q",
              "ŧ": "t", "þ": "z", "ʒ": "z", "ƿ": "z"}


def _collate_key(s: str) -> tuple:
    """R's ``sort()`` of text in a UTF-8 locale where R uses ICU (the Rscript here:
    ``capabilities("ICU")``, locale C.UTF-8; en_US.UTF-8 sorts alike), for Latin text.

    A three-level comparison, as ICU's root collation: first the letters without
    accents or case ("Arzt" < "Ärzte" < "Arzu"), then the accents (unaccented first,
    in ICU's order of the marks: acute, grave, breve, circumflex, caron, ring,
    diaeresis, ...), then case (lower case first). Punctuation sorts before digits
    before letters; ``æ``, ``ß``, ``ø``, ``ł`` and the like as their base letters with
    an accent; letters of other scripts after Latin, by code point. Ties on all three
    levels fall back to code points. (R in the C locale, or without ICU, may differ:
    pass a ``pd.Categorical`` to fix an order.)
    """
    primary: list[float] = []
    secondary: list[int] = []
    tertiary: list[int] = []
    chars: list[tuple[str, int]] = []  # (character, 1 for a compatibility variant)
    for ch in unicodedata.normalize("NFD", s):
        compat = unicodedata.normalize("NFKD", ch)
        if compat != ch and not unicodedata.combining(ch):  # "ĳ" as "ij", NBSP as " "
            chars.extend((c, 1) for c in compat)
        else:
            chars.append((ch, 0))
    for ch, variant in chars:
        if ch in _ICU_MARKS or unicodedata.combining(ch):
            secondary.append(_ICU_MARKS.get(ch, _STROKE))
            continue
        low = ch.lower()
        # ICU's tertiary weights: lower case < compatibility variant < upper case
        upper = 2 * int(ch != low) + variant
        if low in _ICU_VARIANTS:
            # the mark follows the first base letter: "æ" is a, mark, e
            for j, b in enumerate(_ICU_VARIANTS[low]):
                primary.append(_primary(b))
                secondary.append(0)
                tertiary.append(upper)
                if j == 0:
                    secondary.append(_STROKE + _ICU_VARIANT_RANK.get(low, 0))
            continue
        primary.append(_primary(low))
        secondary.append(0)
        tertiary.append(upper)
    return tuple(primary), tuple(secondary), tuple(tertiary), s


def _primary(low: str) -> float:
    """A lower-case character's primary weight (see ``_collate_key``)."""
    i = _ICU_PUNCT.find(low)
    if i >= 0:
        return float(i)
    if low.isdigit():
        return 100.0 + unicodedata.digit(low, 0)
    if "a" <= low <= "z":
        return 200.0 + 2 * (ord(low) - ord("a"))
    if low in _ICU_AFTER:
        return _primary(_ICU_AFTER[low]) + 1
    if unicodedata.category(low)[0] in "PSZC":  # other punctuation and symbols
        return 99.0 + ord(low) / 1e7
    return 1000.0 + ord(low)


def _label(value: Any, integer: bool) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | np.integer) or (integer and float(value).is_integer()):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return format_number(float(value))
    return str(value)


def _factorize(var: _Var) -> _Var:
    """R's ``factor(x)``: levels are the sorted distinct values (occurring ones)."""
    if var.kind == "fac":
        return var
    if var.kind == "lgl":
        na = np.isnan(var.values)
        codes = np.where(na, -1, var.values == 1).astype(np.intp)
        return _Var("fac", codes, ("FALSE", "TRUE"))
    if var.kind == "num":
        codes, uniques = pd.factorize(var.values, sort=True, use_na_sentinel=True)
        labels = tuple(_label(u, var.integer) for u in uniques)
        return _Var("fac", codes.astype(np.intp), labels)
    codes, uniques = pd.factorize(var.values, sort=False, use_na_sentinel=True)
    labels = [str(u) for u in uniques]
    order = sorted(range(len(labels)), key=lambda i: _collate_key(labels[i]))
    remap = np.empty(len(labels) + 1, dtype=np.intp)
    remap[np.asarray(order, dtype=np.intp)] = np.arange(len(order))
    remap[-1] = -1
    return _Var("fac", remap[codes], tuple(labels[i] for i in order))


def _drop_unused(var: _Var) -> _Var:
    """Keep the levels that occur (model.frame's ``drop.unused.levels``), in order."""
    k = len(var.levels)
    used = np.bincount(var.values[var.values >= 0], minlength=k) > 0
    if used.all():
        return var
    remap = np.full(k + 1, -1, dtype=np.intp)
    remap[np.flatnonzero(used)] = np.arange(used.sum())
    levels = tuple(lv for lv, u in zip(var.levels, used, strict=True) if u)
    return _Var("fac", remap[var.values], levels, var.ordered)


def _relevel(var: _Var, levels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``var`` (any kind) against ``levels``; -1 for NA; mask of unknown labels."""
    fac = _factorize(var)
    index = {lv: i for i, lv in enumerate(levels)}
    lookup = np.array([index.get(lv, -2) for lv in fac.levels] + [-1], dtype=np.intp)
    codes = lookup[fac.values]
    unknown = codes == -2
    return np.where(unknown, -1, codes), unknown


def _labels(var: _Var) -> np.ndarray:
    """Text values of a factor or character variable (None for NA)."""
    if var.kind == "chr":
        return var.values
    lookup = np.array([*var.levels, None], dtype=object)
    return lookup[var.values]


def _column(data: pd.DataFrame, name: str) -> _Var:
    s = data[name]
    if isinstance(s, pd.DataFrame):
        raise DataError(f"column {name!r} appears more than once in the data")
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        integer = pd.api.types.is_integer_dtype(cats.dtype)
        labels = tuple(_label(c, integer) for c in cats)
        codes = s.cat.codes.to_numpy().astype(np.intp)
        return _Var("fac", codes, labels, bool(dtype.ordered))
    if pd.api.types.is_bool_dtype(dtype):
        return _Var("lgl", s.to_numpy(dtype=float, na_value=np.nan))
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        integer = pd.api.types.is_integer_dtype(dtype)
        return _Var("num", s.to_numpy(dtype=float, na_value=np.nan), integer=integer)
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(s, skipna=True)
        if inferred in ("string", "empty"):
            return _Var("chr", s.to_numpy(dtype=object, na_value=None))
        if inferred == "boolean":
            return _Var("lgl", s.to_numpy(dtype=float, na_value=np.nan))
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
            return _Var("num", pd.to_numeric(s).to_numpy(dtype=float, na_value=np.nan),
                        integer=inferred == "integer")
        raise DataError(f"column {name!r} holds values of type {inferred!r}, "
                        "which a formula cannot use")
    raise DataError(f"column {name!r} has type {dtype}, which a formula cannot use")


# ----------------------------------------------------------------------------
# Expression evaluation (the subset of R that formulas use)
# ----------------------------------------------------------------------------

_MATH = {
    "log": np.log, "log10": np.log10, "log2": np.log2, "log1p": np.log1p,
    "exp": np.exp, "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "floor": np.floor,
    "ceiling": np.ceil, "plogis": lambda x: 1 / (1 + np.exp(-x)),
    "qlogis": lambda x: np.log(x / (1 - x)),
}
_ARITH = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
    "^": np.power, "%%": lambda a, b: a - np.floor(a / b) * b,
    "%/%": lambda a, b: np.floor(a / b),
}
_COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, ">": np.greater,
            "<=": np.less_equal, ">=": np.greater_equal}
FUNCTIONS = tuple(sorted({*_MATH, "I", "scale", "factor", "as.factor", "ordered",
                          "as.numeric", "as.double"}))


def _columns_of(node: Node) -> list[str]:
    """Data columns an expression reads, in order of appearance."""
    out: dict[str, None] = {}
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            out.setdefault(n.id)
        elif isinstance(n, Call):
            stack.extend(a for _, a in reversed(n.args))
        elif isinstance(n, BinOp):
            stack += [n.right, n.left]
        elif isinstance(n, Unary):
            stack.append(n.operand)
        elif isinstance(n, Paren):
            stack.append(n.expr)
    return list(out)


class _Evaluator:
    """Evaluates formula variables on a DataFrame; ``state`` holds stateful
    transforms (``scale()``), filled when fitting and reused for new data."""

    def __init__(self, data: pd.DataFrame, state: dict[str, Any] | None = None):
        self.data = data
        self.n = len(data)
        self.fitting = state is None
        self.state: dict[str, Any] = {} if state is None else state
        self.cache: dict[str, _Var] = {}

    def __call__(self, node: Node, context: str) -> _Var:
        key = deparse(node)
        if key not in self.cache:
            var = self.eval(node, context)
            if var.values.ndim == 0:
                var = _Var(var.kind, np.full(self.n, var.values, dtype=var.values.dtype),
                           var.levels, var.ordered, var.integer)
            self.cache[key] = var
        return self.cache[key]

    def eval(self, node: Node, context: str) -> _Var:
        if isinstance(node, Paren):
            return self.eval(node.expr, context)
        if isinstance(node, Name):
            if node.id in ("T", "F") and node.id not in self.data.columns:
                return _Var("lgl", np.asarray(1.0 if node.id == "T" else 0.0))
            if node.id not in self.data.columns:
                available = ", ".join(map(str, self.data.columns))
                raise DataError(f"unknown column {node.id!r} in {context}; "
                                f"available columns: {available}")
            return _column(self.data, node.id)
        if isinstance(node, Num):
            return _Var("num", np.asarray(node.value), integer=node.integer)
        if isinstance(node, Const):
            values = {"TRUE": 1.0, "FALSE": 0.0, "NA": np.nan, "Inf": np.inf, "NaN": np.nan}
            if node.id not in values:
                raise FormulaError(f"{node.id} cannot be used in {context}")
            kind = "lgl" if node.id in ("TRUE", "FALSE", "NA") else "num"
            return _Var(kind, np.asarray(values[node.id]))
        if isinstance(node, Str):
            return _Var("chr", np.asarray(node.value, dtype=object))
        if isinstance(node, Unary):
            x = self.eval(node.operand, context)
            if node.op == "!":
                v = self.num(x, node, context)
                return _Var("lgl", np.where(np.isnan(v), np.nan, v == 0))
            if node.op in "+-":
                v = self.num(x, node, context)
                return _Var("num", -v if node.op == "-" else v, integer=x.integer)
            raise FormulaError(f"operator {node.op!r} cannot be used in {context}")
        if isinstance(node, BinOp):
            return self.binop(node, context)
        if isinstance(node, Call):
            return self.call(node, context)
        raise FormulaError(f"cannot evaluate {deparse(node)!r} in {context}")

    def num(self, var: _Var, node: Node, context: str) -> np.ndarray:
        if var.kind in ("num", "lgl"):
            return var.values
        what = "a factor" if var.kind == "fac" else "text"
        raise DataError(f"{deparse(node)!r} in {context} needs numbers, but is {what}")

    def binop(self, node: BinOp, context: str) -> _Var:
        # the left spine in a loop: I(x1 + x2 + ... + x1000) does not recurse 1000 deep
        spine: list[BinOp] = []
        cur: Node = node
        while isinstance(cur, BinOp):
            spine.append(cur)
            cur = cur.left
        a = self.eval(cur, context)
        for b in reversed(spine):
            a = self.apply(b, a, self.eval(b.right, context), context)
        return a

    def apply(self, node: BinOp, a: _Var, b: _Var, context: str) -> _Var:
        if node.op in _ARITH:
            x, y = self.num(a, node, context), self.num(b, node, context)
            with np.errstate(all="ignore"):
                out = _ARITH[node.op](x, y)
            integer = a.integer and b.integer and node.op in "+-*"
            return _Var("num", np.asarray(out, dtype=float), integer=integer)
        if node.op in ("==", "!=") and "num" not in (a.kind, b.kind) and \
                {a.kind, b.kind} & {"fac", "chr"}:
            x, y = _labels(a), _labels(b)
            na = pd.isna(x) | pd.isna(y)
            out = (x == y) if node.op == "==" else (x != y)
            return _Var("lgl", np.where(na, np.nan, out.astype(float)))
        if node.op in _COMPARE:
            x, y = self.num(a, node, context), self.num(b, node, context)
            with np.errstate(invalid="ignore"):
                out = _COMPARE[node.op](x, y).astype(float)
            return _Var("lgl", np.where(np.isnan(x) | np.isnan(y), np.nan, out))
        if node.op in ("&", "&&", "|", "||"):
            x, y = self.num(a, node, context) != 0, self.num(b, node, context) != 0
            out = (x & y) if node.op in ("&", "&&") else (x | y)
            na = np.isnan(a.values) | np.isnan(b.values)
            return _Var("lgl", np.where(na, np.nan, out.astype(float)))
        raise FormulaError(
            f"operator {node.op!r} in {deparse(node)!r} cannot be used inside a function "
            f"call ({context}); formula operators belong outside, arithmetic inside I()"
        )

    def call(self, node: Call, context: str) -> _Var:
        fn, args = node.fn, node.positional
        if fn in ("offset", "cbind"):
            raise FormulaError(f"{fn}() cannot be used inside {deparse(node)!r} ({context})")
        if fn not in FUNCTIONS:
            raise FormulaError(f"unknown function {fn!r} in {deparse(node)!r} ({context}); "
                               f"supported: {', '.join(FUNCTIONS)}")
        if fn == "scale":
            return self.scale(node, context)
        base = node.named.get("base") if fn == "log" else None
        if fn == "log" and len(args) == 2 and base is None:
            args, base = args[:1], args[1]
        extra = set(node.named) - ({"base"} if fn == "log" else set())
        if len(args) != 1 or extra:
            raise FormulaError(f"{fn}() takes exactly one argument here: {deparse(node)!r} "
                               f"({context})")
        if fn == "I":
            return self.eval(args[0], context)
        if fn in _MATH:
            x = self.num(self.eval(args[0], context), node, context)
            with np.errstate(all="ignore"):
                out = _MATH[fn](x)
                if base is not None:
                    out = out / np.log(self.num(self.eval(base, context), node, context))
            return _Var("num", np.asarray(out, dtype=float))
        var = self.eval(args[0], context)
        if fn in ("factor", "as.factor", "ordered"):
            var = _factorize(var)
            return _Var("fac", var.values, var.levels, ordered=fn == "ordered" or var.ordered)
        # as.numeric / as.double: a factor gives its level numbers, as in R
        if var.kind == "fac":
            return _Var("num", np.where(var.values < 0, np.nan, var.values + 1.0))
        return _Var("num", self.num(var, node, context), integer=var.integer)

    def scale(self, node: Call, context: str) -> _Var:
        """R's ``scale(x, center = TRUE, scale = TRUE)``, NA-robust as R's.

        When fitting, the centre and scale come from the non-missing values of
        the whole data (R evaluates the model frame before ``na.omit``); new data
        reuse them, as R's ``predict`` does through ``makepredictcall``.
        """
        pos = node.positional
        opts = dict(zip(("center", "scale"), pos[1:], strict=False)) | node.named
        if not 1 <= len(pos) <= 3 or set(node.named) - {"center", "scale"} or \
                len(opts) != len(pos) - 1 + len(node.named):
            raise FormulaError(f"scale() takes x, center, scale: {deparse(node)!r} ({context})")
        x = self.num(self.eval(pos[0], context), node, context)
        key = deparse(node)
        if self.fitting:
            ok = x[~np.isnan(x)]
            c = self.scale_option(opts.get("center"), lambda: ok.mean() if ok.size else 0.0,
                                  0.0, context)
            dev = ok - c
            s = self.scale_option(opts.get("scale"),
                                  lambda: np.sqrt(np.sum(dev ** 2) / max(1, dev.size - 1)),
                                  1.0, context)
            self.state[key] = (c, s)
        c, s = self.state[key]
        return _Var("num", (x - c) / s)

    def scale_option(self, node: Node | None, default, off: float, context: str) -> float:
        value = None if node is None else self.eval(node, context)
        if value is None or (value.kind == "lgl" and value.values.ndim == 0):
            return float(default()) if value is None or value.values == 1 else off
        if value.kind != "num" or value.values.ndim != 0:
            raise FormulaError(f"scale() options must be TRUE, FALSE or a number ({context})")
        return float(value.values)


# ----------------------------------------------------------------------------
# Model matrices (R's model.matrix for a TermSpec)
# ----------------------------------------------------------------------------

def _contr_poly(k: int) -> np.ndarray:
    """R's ``contr.poly(k)``: orthonormal polynomial contrasts."""
    scores = np.arange(1, k + 1, dtype=float)
    X = np.vander(scores - scores.mean(), k, increasing=True)
    Q, R = np.linalg.qr(X)
    Z = Q * np.sign(np.diag(R))
    return Z[:, 1:]


def _poly_names(k: int) -> list[str]:
    base = [".L", ".Q", ".C"] + [f"^{i}" for i in range(4, k)]
    return base[: k - 1]


def _factor_block(var: _Var, code: int, name: str) -> tuple[np.ndarray, list[str]]:
    k = len(var.levels)
    if k < 2:
        raise DataError(f"factor {name!r} has only {k} level after removing missing values; "
                        "contrasts need 2 or more levels")
    if code == 2:
        M, suffix = np.eye(k), list(var.levels)
    elif var.ordered:
        M, suffix = _contr_poly(k), _poly_names(k)
    else:
        M, suffix = np.eye(k)[:, 1:], list(var.levels[1:])
    M = np.vstack([M, np.full((1, M.shape[1]), np.nan)])  # code -1 (NA) -> NaN
    return M[var.values], [name + s for s in suffix]


def _is_factor(var: _Var) -> bool:
    return var.kind == "fac"


def _model_matrix(spec: TermSpec, variables: Mapping[str, _Var], n: int
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    """R's ``model.matrix`` of the terms; columns of a term vary its first variable fastest."""
    codes = [list(c) for c in spec.codes]
    if not spec.intercept:
        # R codes the first factor of the first term holding one by indicators.
        for j, term in enumerate(spec.terms):
            hit = next((i for i, v in enumerate(term)
                        if _is_factor(variables[spec.variables[v][0]])), None)
            if hit is not None:
                codes[j][hit] = 2
                break
    cols: list[np.ndarray] = [np.ones(n)] if spec.intercept else []
    names: list[str] = ["(Intercept)"] if spec.intercept else []
    for term, code in zip(spec.terms, codes, strict=True):
        parts = []
        for v, c in zip(term, code, strict=True):
            name = spec.variables[v][0]
            var = variables[name]
            if _is_factor(var):
                parts.append(_factor_block(var, c, name))
            else:
                parts.append((var.values[:, None], [name]))
        shape = [p[0].shape[1] for p in parts]
        for combo in itertools.product(*[range(s) for s in reversed(shape)]):
            idx = combo[::-1]
            col = parts[0][0][:, idx[0]]
            for p, i in zip(parts[1:], idx[1:], strict=True):
                col = col * p[0][:, i]
            cols.append(col)
            names.append(":".join(p[1][i] for p, i in zip(parts, idx, strict=True)))
    X = np.column_stack(cols) if cols else np.zeros((n, 0))
    return np.ascontiguousarray(X, dtype=float), tuple(names)


def _rank_keep(X: np.ndarray, tol: float = RANK_TOL, fast: bool = True) -> list[int]:
    """Columns kept by R's ``qr(X, tol)`` (LINPACK dqrdc2, limited pivoting).

    A column is dropped when its norm after projecting out the kept columns
    to its left falls below ``tol`` times its original norm (dqrdc2 moves such
    columns to the end and keeps the others in order).
    """
    if fast and _clearly_full_rank(X, tol):
        return list(range(X.shape[1]))
    keep: list[int] = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        x = X[:, j]
        norm = np.linalg.norm(x)
        r = x.copy()
        for _ in range(2):  # re-orthogonalise: classical Gram-Schmidt twice
            r -= Q @ (Q.T @ r)
        rn = np.linalg.norm(r)
        if norm > 0 and rn >= tol * norm and len(keep) < X.shape[0]:
            keep.append(j)
            Q = np.column_stack([Q, r / rn])
    return keep


def _clearly_full_rank(X: np.ndarray, tol: float, margin: float = 1e3) -> bool:
    """Fast path of ``_rank_keep``: unpivoted Householder QR gives each column's
    relative residual norm |R_jj| / ||x_j|| after all columns to its left; when
    every one is far above ``tol`` nothing is dropped and no pivoting is needed."""
    n, p = X.shape
    if p == 0:
        return True
    if p > n:
        return False
    norms = np.linalg.norm(X, axis=0)
    if not np.all(norms > 0):
        return False
    R = np.linalg.qr(X, mode="r")
    return bool(np.all(np.abs(np.diag(R)) > tol * margin * norms))


def scale_message(X: np.ndarray, names: Sequence[str]) -> str | None:
    """lme4's ``checkScaleX`` warning: continuous columns with an sd beyond 1000 or
    1/1000, or sd ratios beyond 1000; unlike lme4's, it names the columns farthest
    from sd 1."""
    cols = [j for j in range(X.shape[1])
            if X.shape[0] > 1 and not np.all((X[:, j] == 0) | (X[:, j] == 1))]
    if not cols:
        return None
    sds = np.array([np.std(X[:, j], ddof=1) for j in cols])
    with np.errstate(divide="ignore"):
        logsd = np.log(sds)
    spread = np.abs(logsd[:, None] - logsd[None, :])
    if not (np.any(np.abs(logsd) > np.log(1000)) or np.any(spread > np.log(1000))):
        return None
    far = [k for k in np.argsort(-np.abs(logsd)) if abs(logsd[k]) > np.log(30)] or \
        [int(np.argmax(np.abs(logsd)))]
    which = ", ".join(f"{names[cols[k]]} (sd {sds[k]:.3g})" for k in far)
    return ("Some predictor variables are on very different scales: consider rescaling "
            f"{which}")


# ----------------------------------------------------------------------------
# Grouping factors
# ----------------------------------------------------------------------------

def _group_atoms(node: Node) -> list[Node]:
    node = node.expr if isinstance(node, Paren) else node
    if isinstance(node, BinOp) and node.op == ":":
        return _group_atoms(node.left) + _group_atoms(node.right)
    return [node]


def _group_factor(node: Node, variables: Mapping[str, _Var]) -> _Var:
    """lme4's grouping factor: ``makeFac``, with ``a:b`` as ``a %i% b``.

    Levels of ``a %i% b`` are the pairs that occur, ordered by a's level, then
    b's; labels ``"la:lb"``.
    """
    while isinstance(node, Paren):
        node = node.expr
    if isinstance(node, BinOp) and node.op == ":":
        a = _group_factor(node.left, variables)
        b = _group_factor(node.right, variables)
        nb = max(len(b.levels), 1)
        combined = a.values.astype(np.int64) * nb + b.values
        combined[(a.values < 0) | (b.values < 0)] = -1
        ok = combined >= 0
        uniq, inv = np.unique(combined[ok], return_inverse=True)
        codes = np.full(combined.shape, -1, dtype=np.intp)
        codes[ok] = inv
        labels = tuple(f"{a.levels[u // nb]}:{b.levels[u % nb]}" for u in uniq)
        return _Var("fac", codes, labels)
    var = _factorize(variables[deparse(node)])
    return _drop_unused(var)


def _make_names(names: list[str]) -> list[str]:
    """R's ``make.names(names, unique = TRUE)``."""
    def fix(s: str) -> str:
        out = "".join(c if (c.isalnum() or c in "._") else "." for c in s)
        if not out or not (out[0].isalpha() or (out[0] == "." and not out[1:2].isdigit())):
            out = "X" + out
        if out in _R_RESERVED:
            out += "."
        return out

    fixed = [fix(s) for s in names]
    order = sorted(range(len(names)), key=lambda i: fixed[i] != names[i])
    seen: set[str] = set()
    counts: dict[str, int] = {}
    result = list(fixed)
    for i in order:
        base = fixed[i]
        if base in seen:
            k = counts.get(base, 0)
            while True:
                k += 1
                cand = f"{base}.{k}"
                if cand not in seen and cand not in fixed:
                    break
            counts[base] = k
            result[i] = cand
        seen.add(result[i])
    return result


_R_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "in",
               "TRUE", "FALSE", "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_",
               "NA_character_", "NA_complex_"}


def _lme4_order(nlevels: list[int]) -> list[int]:
    """mkReTrms: ``if (any(diff(nl) > 0)) ord <- rev(order(nl))``."""
    if any(b > a for a, b in itertools.pairwise(nlevels)):
        return list(reversed(sorted(range(len(nlevels)), key=lambda i: nlevels[i])))
    return list(range(len(nlevels)))


# ----------------------------------------------------------------------------
# build_design
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _DesignSpec:
    """What ``Design.new_data`` needs: the parsed formula and the fit's encodings."""

    formula: FormulaSpec
    family: str
    state: dict[str, Any]
    levels: dict[str, tuple[tuple[str, ...], bool]]
    fixed_keep: tuple[int, ...]
    random: tuple[RandomSpec, ...]  # in the Design's term order
    weights_column: str | None
    offset_column: str | None
    offset_array: bool

    def variables(self) -> dict[str, tuple[Node, str]]:
        return _model_variables(self.formula, include_response=False)

    def rebuild(self, design: Design, data: pd.DataFrame, offset: Any = None,
                new_levels: str = "allow") -> Design:
        data = _as_frame(data)
        ev = _Evaluator(data, state=self.state)
        n = len(data)
        variables: dict[str, _Var] = {}
        raw: dict[str, _Var] = {}  # as evaluated, before mapping onto the fit's levels
        for name, (node, context) in self.variables().items():
            var = ev(node, context)
            raw[name] = _lgl_as_factor(var)
            if name in self.levels:
                levels, ordered = self.levels[name]
                codes, unknown = _relevel(var, levels)
                if unknown.any() and name in self.model_names():
                    bad = sorted({str(v) for v in _factorize(var).levels} - set(levels))
                    raise DataError(f"factor {name!r} has new levels {', '.join(bad)} "
                                    "not seen when fitting")
                var = _Var("fac", codes, levels, ordered)
            elif var.kind in ("fac", "chr"):
                raise DataError(f"{name!r} was numeric when fitting but is a factor in new data")
            variables[name] = _lgl_as_factor(var)
        X, _ = _model_matrix(self.formula.fixed, variables, n)
        X = X[:, list(self.fixed_keep)]
        disp_X = None
        if self.formula.disp is not None:
            Xd, dnames = _model_matrix(self.formula.disp, variables, n)
            disp_X = _frozen(np.ascontiguousarray(
                Xd[:, [dnames.index(nm) for nm in design.disp_names]]))
        terms = []
        if design.smooths:
            X = np.hstack([X, np.zeros((n, design.p - X.shape[1]))])
            X, smooth_terms = _smooth_rebuild(design, self.formula, variables, X)
        X = np.ascontiguousarray(X)
        unseen: dict[str, tuple] = {}
        for rs, old in zip(self.random, design.terms[:len(self.random)], strict=True):
            g = _group_factor(rs.group, variables)
            codes, _ = _relevel(g, old.levels)
            Xr, _ = _model_matrix(rs.model, variables, n)
            terms.append(RandomTerm(old.group, old.varcorr_name, old.cnames, old.levels,
                                    _frozen(codes), _frozen(Xr), old.term))
            if new_levels != "allow" and old.group not in unseen and (codes < 0).any():
                graw = _group_factor(rs.group, raw)
                missing = graw.values < 0
                unseen[old.group] = (missing, (codes < 0) & ~missing, old.levels,
                                     _labels(graw))
        _check_new_levels(unseen, new_levels)
        if design.smooths:
            terms += smooth_terms
        total = np.zeros(n)
        for node in self.formula.offsets:
            total = total + ev(node, "offset()").values
        if offset is not None:
            if self.offset_column is None and not self.offset_array:
                formula_offsets = ", ".join(f"offset({deparse(o)})" for o in self.formula.offsets)
                raise DataError(
                    "offset= is given for the new data, but the model was fitted without an "
                    "offset= argument; "
                    + (f"its formula offsets ({formula_offsets}) are evaluated from the new data"
                       if formula_offsets else "it has no offset"))
            total = total + _numeric_argument(data, offset, "offset", n)
        elif self.offset_column is not None:
            total = total + _numeric_argument(data, self.offset_column, "offset", n)
        elif self.offset_array:
            raise DataError(
                "the model was fitted with offset= given as an array, whose values for new "
                "rows cannot be known: pass the new rows' offset as predict(newdata, "
                "offset=...) (an array or a column of newdata), or fit with the offset in "
                "the formula (offset(log(t))) or as a column name (offset=\"column\")")
        offset = total
        messages: list[str] = []
        weights = np.ones(n)
        if self.weights_column is not None and self.weights_column in data.columns:
            weights = _numeric_argument(data, self.weights_column, "weights", n)
        return Design(
            formula=design.formula, response_name=design.response_name,
            y=_frozen(np.full(n, np.nan)), X=_frozen(X), fixef_names=design.fixef_names,
            weights=_frozen(weights), offset=_frozen(offset), terms=tuple(terms),
            response_levels=design.response_levels, n_dropped=0, messages=tuple(messages),
            spec=self, family=design.family, row_index=_frozen(np.arange(n)),
            smooths=design.smooths, disp_X=disp_X, disp_names=design.disp_names,
        )

    def model_names(self) -> set[str]:
        """Variables that enter X or a term's Xr (new levels there are errors)."""
        names = {v for v, _ in self.formula.fixed.variables}
        for rs in self.random:
            names |= {v for v, _ in rs.model.variables}
        for sm in self.formula.smooths:
            names |= set(_smooth_columns(sm))
        return names


class NewLevelsWarning(UserWarning):
    """Rows of new data whose grouping factor has a level the fit did not see (or a
    missing value) are predicted at the population level for that factor."""


_SHOW_LEVELS = 5  # unseen levels named in the error


def _check_new_levels(unseen: Mapping[str, tuple], new_levels: str) -> None:
    """Act on rows of new data with unseen or missing grouping levels (``new_data``).

    ``unseen``: per grouping factor, (missing mask, unseen mask, the fit's levels, the
    new data's labels)."""
    if new_levels == "allow":
        return
    for group, (missing, new, levels, labels) in unseen.items():
        n_new, n_missing = int(new.sum()), int(missing.sum())
        if not n_new and not n_missing:
            continue
        if new_levels == "warn":
            parts = ([f"{n_new} row(s) of newdata have levels of grouping factor {group!r} "
                      "not seen in the fit"] if n_new else []) + (
                [f"{n_missing} row(s) a missing value of it" if n_new else
                 f"{n_missing} row(s) of newdata have a missing value of grouping factor "
                 f"{group!r}"] if n_missing else [])
            warnings.warn(f"{', and '.join(parts)}: they are predicted at the population "
                          f"level for {group!r} (its random effects 0)", NewLevelsWarning,
                          stacklevel=5)
            continue
        hint = ("pass allow_new_levels=True to predict those rows at the population level "
                "(their random effects 0)")
        if n_new:
            found = list(dict.fromkeys(str(v) for v in labels[new]))
            shown = ", ".join(repr(v) for v in found[:_SHOW_LEVELS])
            more = (f" and {len(found) - _SHOW_LEVELS} more" if len(found) > _SHOW_LEVELS
                    else "")
            seen = ", ".join(repr(v) for v in levels[:3]) + (", ..." if len(levels) > 3 else "")
            raise DataError(f"newdata has {len(found)} level(s) of grouping factor {group!r} "
                            f"not seen in the fit: {shown}{more} ({n_new} rows; the fit's "
                            f"levels are {seen}); {hint}")
        raise DataError(f"newdata has {n_missing} missing value(s) in grouping factor "
                        f"{group!r} (lme4 refuses them too); {hint}")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Mapping):
        try:
            frame = pd.DataFrame(dict(data))
        except ValueError as exc:
            raise DataError(f"cannot make a data frame of the data: {exc}") from None
    else:
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()].tolist()
        raise DataError(f"data has duplicated column names: {', '.join(map(str, dup))}")
    return frame.reset_index(drop=True)


def _model_variables(spec: FormulaSpec, include_response: bool
                     ) -> dict[str, tuple[Node, str]]:
    """Every variable of R's model frame (fixed, random and grouping), by name."""
    out: dict[str, tuple[Node, str]] = {}
    if include_response:
        for node in spec.response_parts:
            out.setdefault(deparse(node), (node, f"response {spec.response_name!r}"))
    for name, node in spec.fixed.variables:
        out.setdefault(name, (node, f"fixed-effects term {name!r}"))
    for rs in spec.random:
        context = f"random-effects term ({rs.text})"
        for name, node in rs.model.variables:
            out.setdefault(name, (node, context))
        for atom in _group_atoms(rs.group):
            out.setdefault(deparse(atom), (atom, f"grouping factor of ({rs.text})"))
    for sm in spec.smooths:
        for name in _smooth_columns(sm):
            out.setdefault(name, (parse_expr(name), f"smooth term {sm.text}"))
    if spec.disp is not None:
        for name, node in spec.disp.variables:
            out.setdefault(name, (node, f"dispformula term {name!r}"))
    return out


def _smooth_columns(sm: SmoothTerm) -> list[str]:
    """The covariates of a smooth and its ``by`` variable, deparsed."""
    by = sm.options.get("by")
    return list(sm.variables) + ([by] if isinstance(by, str) and by != "NA" else [])


def _numeric_argument(data: pd.DataFrame, arg: Any, what: str, n: int) -> np.ndarray:
    if isinstance(arg, str):
        if arg not in data.columns:
            raise DataError(f"unknown column {arg!r} given as {what}=; available columns: "
                            f"{', '.join(map(str, data.columns))}")
        var = _column(data, arg)
        if var.kind not in ("num", "lgl"):
            raise DataError(f"{what} column {arg!r} must be numeric")
        return var.values
    try:
        values = np.asarray(arg, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{what}= must be numeric (an array or a column name)") from None
    if values.shape[0] != n:
        raise DataError(f"{what}= has length {values.shape[0]}, but the data have {n} rows")
    return values


def build_design(formula: str | FormulaSpec, data: pd.DataFrame,
                 family: str | ResponseFamily = "gaussian", *,
                 weights=None, offset=None, dispformula: str | None = None) -> Design:
    """Parse ``formula`` (lme4 syntax) against ``data`` and return the frozen Design.

    The stages of lme4's ``lFormula``/``glFormula``: the model frame (every
    variable evaluated on the whole data, then rows with missing values
    dropped), the response, the fixed-effects matrix (rank-deficient columns
    dropped as lme4 does) and the random-effects terms (with lme4's checks).

    Parameters
    ----------
    formula : str or FormulaSpec
        lme4 syntax, e.g. ``"cbind(s, f) ~ period + (1 | herd)"``.
    data : pandas.DataFrame
    family : str
        One of ``FAMILIES``; decides how the response is coded and checked.
    weights, offset : array-like, column name or None
        Prior weights (binomial: they multiply the trials) and an offset added
        to any ``offset()`` terms of the formula.
    dispformula : str, optional
        glmmTMB's one-sided formula of the log dispersion (``"~ x + f"``), for a
        family with a dispersion; its variables' missing rows are dropped too.

    Raises
    ------
    FormulaError, DataError, FamilyError
        Every problem with the formula or data, naming the column or term.
    """
    fam = make_family(family, aliases=False)
    spec = parse_formula(formula)
    if dispformula is not None:
        if not fam.dispersion_model:
            raise FamilyError(f"dispformula={dispformula!r}: the {fam.name} family has no "
                              "dispersion parameter to model (it is for gaussian, the negative "
                              "binomials, Gamma, beta, genpois and the truncated negative "
                              "binomials)")
        spec = replace(spec, disp=parse_dispformula(dispformula))
    if spec.smooths and not fam.smooths:
        raise FormulaError("smooth terms are fitted for the gaussian, binomial, poisson, "
                           "negative binomial, Gamma and ordinal families; not with family "
                           f"{fam.name!r} ({', '.join(sm.text for sm in spec.smooths)})")
    data = _as_frame(data)
    ev = _Evaluator(data)
    frame = _model_frame(spec, data, ev, weights, offset)
    w = np.ones(frame.n) if frame.weights is None else frame.weights
    coded = fam.code_response(_response_variable(spec, frame.variables), w)
    # clmm: the thresholds take the intercept's place
    X, names, keep_cols, x_msgs = _fixed_matrix(spec.fixed, frame.variables, frame.n,
                                                drop_intercept=fam.thresholds)
    terms, order = _random_terms(spec, frame.variables, frame.n, fam.residual)
    smooth_data = _smooth_frame(spec, frame.variables) if spec.smooths else None
    X, names, smooths, terms, s_msgs = _add_smooths(spec, smooth_data, X, names, terms,
                                                    thresholds=fam.thresholds)
    x_msgs += s_msgs
    _check_fixed_df(X, names, spec, frame.variables, data, fam,
                    [m for m in x_msgs if m.startswith("fixed-effect model matrix is rank")])
    disp_X, disp_names = None, ()
    if spec.disp is not None:
        disp_X, disp_names, _, d_msgs = _fixed_matrix(spec.disp, frame.variables, frame.n)
        x_msgs += [f"dispformula: {m}" for m in d_msgs]
        disp_X = _frozen(np.ascontiguousarray(disp_X))
    design_spec = _DesignSpec(
        formula=spec, family=fam.name, state=dict(ev.state),
        levels={name: (var.levels, var.ordered) for name, var in frame.variables.items()
                if var.kind == "fac"},
        fixed_keep=tuple(keep_cols), random=tuple(spec.random[i] for i in order),
        weights_column=weights if isinstance(weights, str) else None,
        offset_column=offset if isinstance(offset, str) else None,
        offset_array=offset is not None and not isinstance(offset, str),
    )
    return Design(
        formula=spec.text or str(formula), response_name=spec.response_name,
        y=_frozen(coded.y), X=_frozen(X), fixef_names=names, weights=_frozen(coded.weights),
        trials=None if coded.trials is None else _frozen(coded.trials),
        offset=_frozen(frame.offset), terms=terms, response_levels=coded.levels,
        n_dropped=frame.n_dropped,
        messages=tuple(frame.messages + list(coded.messages) + x_msgs),
        spec=design_spec, family=fam.name, row_index=_frozen(frame.rows), smooths=smooths,
        smooth_data=smooth_data, disp_X=disp_X, disp_names=tuple(disp_names),
    )


def check_response_varies(design: Design) -> None:
    """A Gaussian response that is constant, or that the fixed effects reproduce
    exactly (residuals of 0), is a `DataError`. ``fit`` calls this after
    ``build_design``, which accepts such responses as lme4's ``lFormula`` does; lmer
    then "fits" them with a residual sd of 0 and a log-likelihood of +Inf or of a few
    hundred. Other families' constant responses are refused by ``build_design``
    itself, as glmer refuses them."""
    y = design.y
    if not make_family(design.family).residual or not y.size:
        return
    if np.all(y == y[0]):
        raise DataError(f"response {design.response_name!r} is constant (all values "
                        f"{y[0]:g}): there is no variation to model")
    target = y - design.offset
    if not design.X.shape[1] or design.n <= design.p:
        return
    sample = np.linspace(0, design.n - 1, min(design.n, design.p + 50)).astype(np.intp)
    if _exact_fit(design.X, target, sample) and \
            _exact_fit(design.X, target, np.arange(design.n)):
        shown = ", ".join(design.fixef_names[:_SHOW_COLUMNS]) + (
            ", ..." if design.p > _SHOW_COLUMNS else "")
        raise DataError(
            f"response {design.response_name!r} is an exact linear function of the fixed "
            f"effects ({shown}): the residuals are 0, so there is no residual variance "
            "to estimate; is the response a copy or a transform of a covariate?")


def _exact_fit(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> bool:
    """Whether ``y[rows]`` lies in the column space of ``X[rows]`` (to EXACT_FIT_TOL).
    ``check_response_varies`` asks on p + 50 rows first (least squares costs ten
    times X'X), on all rows only where those fit exactly."""
    Xs, ys = X[rows], y[rows]
    spread = float(np.linalg.norm(ys - ys.mean()))
    beta = np.linalg.lstsq(Xs, ys, rcond=None)[0]
    return float(np.linalg.norm(ys - Xs @ beta)) <= EXACT_FIT_TOL * spread


@dataclass
class _Frame:
    """R's model frame after ``na.omit``: the variables of the kept rows."""

    variables: dict[str, _Var]
    rows: np.ndarray
    n_dropped: int
    weights: np.ndarray | None
    offset: np.ndarray
    messages: list[str]

    @property
    def n(self) -> int:
        return self.rows.size


def _model_frame(spec: FormulaSpec, data: pd.DataFrame, ev: _Evaluator, weights, offset
                 ) -> _Frame:
    """Evaluate every variable on all rows, then drop rows missing any (na.omit).

    R's order: transforms such as ``scale()`` see every non-missing value, also
    of rows that are dropped because another variable is missing.
    """
    n_all = len(data)
    if n_all == 0:
        raise DataError("data has no rows")
    model_vars = _model_variables(spec, include_response=True)
    evaluated = [(name, node, context, ev(node, context))
                 for name, (node, context) in model_vars.items()]
    offsets = []
    for node in spec.offsets:
        name = f"offset({deparse(node)})"
        var = ev(node, name)
        if var.kind not in ("num", "lgl"):
            raise DataError(f"{name} must be numeric")
        offsets.append((name, node, "offset", var))
    args = [(label, arg, None if arg is None else _numeric_argument(data, arg, label, n_all))
            for label, arg in (("weights", weights), ("offset", offset))]
    _check_undefined(evaluated + offsets, data)

    na = np.zeros(n_all, dtype=bool)
    for *_, var in evaluated + offsets:
        na |= var.na()
    for _, _, values in args:
        if values is not None:
            na |= np.isnan(values)
    # rows with zero prior weight carry no information: dropped, as if missing
    w_all = args[0][2]
    zero_w = (~na & (w_all == 0)) if w_all is not None else np.zeros(n_all, dtype=bool)
    rows = np.flatnonzero(~(na | zero_w))
    messages = []
    if na.any():
        where = _na_columns(data, [node for _, node, _, _ in evaluated + offsets], args)
        if not (~na).any():
            raise DataError(f"no rows left after removing rows with missing values in: {where}")
        k = int(na.sum())
        messages.append(f"dropped {k} row{'s' if k > 1 else ''} with missing values in: "
                        f"{where}")
    if zero_w.any():
        label = _arg_name(weights, "weights=")
        if rows.size == 0:
            raise DataError(f"weights {label} are zero in every row: nothing to fit")
        k = int(zero_w.sum())
        messages.append(f"dropped {k} row{'s' if k > 1 else ''} with zero weights in {label}")

    variables: dict[str, _Var] = {}
    for name, _, context, var in evaluated:
        var = var.take(rows)
        if var.kind == "chr":
            var = _factorize(var)
        if var.kind == "fac":
            kept = _drop_unused(var)
            if context.startswith("response ") and len(kept.levels) < len(var.levels):
                unused = [lv for lv in var.levels if lv not in kept.levels]
                messages.append(f"response {name!r}: categories that never occur were "
                                f"dropped: {', '.join(unused)}")
            var = kept
        elif var.kind == "num" and not np.all(np.isfinite(var.values)):
            bad = int(np.sum(~np.isfinite(var.values)))
            raise DataError(f"{name!r} ({context}) has {bad} non-finite value"
                            f"{'s' if bad > 1 else ''} (inf)")
        elif var.kind == "num" and np.max(np.abs(var.values), initial=0.0) > MAX_ABS_VALUE:
            raise DataError(f"{name!r} ({context}) has values up to "
                            f"{np.max(np.abs(var.values)):.3g}, beyond {MAX_ABS_VALUE:g}: "
                            "their squares overflow or swamp every other column; rescale it")
        variables[name] = var
    off = np.zeros(rows.size)
    for name, node, _, var in offsets:
        values = var.values[rows]
        _check_finite_offset(values, name, node, data, rows)
        off = off + values
    w_arg, o_arg = (None if values is None else values[rows] for _, _, values in args)
    if o_arg is not None:
        _check_finite_offset(o_arg, f"offset {_arg_name(offset, 'offset=')}", None, data, rows)
        off = off + o_arg
    if not np.all(np.isfinite(off)):  # finite parts whose sum overflows
        raise DataError("the offsets' sum has non-finite values (inf): "
                        f"{', '.join(name for name, *_ in offsets)}"
                        + (f" and offset {_arg_name(offset, 'offset=')}" if offset is not None
                           else ""))
    if w_arg is not None:
        label = _arg_name(weights, "weights=")
        if np.any(w_arg < 0):
            raise DataError(f"weights {label} has {int(np.sum(w_arg < 0))} negative values")
        if not np.all(np.isfinite(w_arg)):
            raise DataError(f"weights {label} has non-finite values (inf)")
    return _Frame(variables, rows, n_all - rows.size, w_arg, off, messages)


def _check_finite_offset(values: np.ndarray, name: str, node: Node | None,
                         data: pd.DataFrame, rows: np.ndarray) -> None:
    """An infinite offset (``offset(log(e))`` with ``e = 0``) is a `DataError` naming the
    term (or the ``offset=`` argument), the count of rows, the first one and, for a
    formula term, the values there of the columns it reads."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    k, i = int(bad.sum()), int(np.flatnonzero(bad)[0])
    row = rows[i]
    label = data.index[row]
    inputs = ""
    if node is not None:
        cols = [c for c in _columns_of(node) if c in data.columns]
        if cols:
            inputs = " where " + ", ".join(f"{c} = {_scalar(data[c].iloc[row])!r}"
                                           for c in cols)
    raise DataError(f"{name} is {values[i]:g} in {k} row{'s' if k > 1 else ''} (first: row "
                    f"{label!r}{inputs}); an offset must be finite: drop those rows or "
                    "correct the values")


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _arg_name(arg: Any, default: str) -> str:
    return repr(arg) if isinstance(arg, str) else f"({default} array)"


def _fixed_matrix(fixed: TermSpec, variables: Mapping[str, _Var], n: int,
                  drop_intercept: bool = False
                  ) -> tuple[np.ndarray, tuple[str, ...], list[int], list[str]]:
    """X as lme4 builds it: model.matrix, then rank-deficient columns dropped.

    ``drop_intercept``: the intercept column is removed after the coding (clmm's
    X: the contrasts are those of a model with an intercept)."""
    X, names = _model_matrix(fixed, {v: _lgl_as_factor(variables[v]) for v, _ in
                                     fixed.variables}, n)
    cols = [j for j, nm in enumerate(names) if not (drop_intercept and nm == "(Intercept)")]
    if drop_intercept:
        # the thresholds are the intercept: a column collinear with it (a constant) is
        # dropped, as clmm drops it ("design is column rank deficient")
        ones = np.ones((n, 1))
        keep = [cols[j - 1] for j in _rank_keep(np.hstack([ones, X[:, cols]])) if j > 0]
    else:
        keep = [cols[j] for j in _rank_keep(X[:, cols])]
    messages = []
    if len(keep) < len(cols):
        dropped = [names[j] for j in cols if j not in keep]
        k = len(dropped)
        messages.append(
            f"fixed-effect model matrix is rank deficient so dropping {k} "
            f"column{'s' if k > 1 else ''} / coefficient{'s' if k > 1 else ''}: "
            f"{', '.join(dropped)}")
    if len(keep) < X.shape[1]:
        X, names = X[:, keep], tuple(names[j] for j in keep)
    scale_msg = scale_message(X, names)
    if scale_msg:
        messages.append(scale_msg)
    return X, names, keep, messages


_SHOW_COLUMNS = 8  # fixed-effect columns named in the error when there are too many


def _check_fixed_df(X: np.ndarray, names: Sequence[str], spec: FormulaSpec,
                    variables: Mapping[str, _Var], data: pd.DataFrame, family: ResponseFamily,
                    dropped: Sequence[str] = ()) -> None:
    """As many fixed-effect coefficients as observations (after lme4's dropping of
    rank-deficient columns): a `DataError` naming the columns and the terms that make
    them.

    The fixed effects then reproduce the data exactly, which leaves nothing for the
    random effects or the residual: REML's residual degrees of freedom n - p are 0
    (lme4's REML deviance is NaN there: "objective in x0 returns NA"), an ML fit's
    residual variance is 0 and its log-likelihood +inf (lme4 returns +197 with
    variances of 1e-16 on such data), and a GLMM's fixed effects saturate the model.
    An ordinal model's thresholds count as one coefficient (its intercept)."""
    n, p = X.shape
    p_model = p + (1 if family.thresholds else 0)
    if n > p_model:
        return
    shown = ", ".join(names[:_SHOW_COLUMNS]) + (
        f", ... ({p - _SHOW_COLUMNS} more)" if p > _SHOW_COLUMNS else "")
    causes = []
    for name, _ in spec.fixed.variables:
        var = variables.get(name)
        if var is None or var.kind != "fac" or len(var.levels) < max(3, n // 2):
            continue
        what = f"{name!r} is a factor with {len(var.levels)} levels in {n} rows"
        hint = _numbers_as_text(data, name)
        if hint:
            what += f" ({hint})"
        elif name.startswith(("factor(", "as.factor(", "ordered(")):
            what += " (a factor of a continuous variable: use the variable itself)"
        causes.append(what)
    for part_name in names:
        if "Fx" in part_name and part_name.startswith(("s(", "te(", "ti(", "t2(")):
            causes.append("smooths add null-space columns (reduce their k or drop them)")
            break
    what = "; ".join(causes) if causes else (
        "drop covariates or collect more data")
    kind = "coefficients (with the thresholds' intercept)" if family.thresholds \
        else "coefficients"
    left = "the residual variance and the random effects" if family.residual else \
        "the random effects (the model is saturated)"
    raise DataError(
        f"the fixed effects have {p_model} {kind} for {n} observations ({shown}): "
        f"they fit the data exactly, which leaves no residual degrees of freedom "
        f"(n - p = {n - p_model}) to estimate {left}; {what}"
        + "".join(f" (lme4's message: {m})" for m in dropped))


def _numbers_as_text(data: pd.DataFrame, name: str) -> str | None:
    """A hint when the column ``name`` is text whose values read as numbers."""
    if name not in data.columns:
        return None
    s = data[name]
    if isinstance(s, pd.DataFrame) or isinstance(s.dtype, pd.CategoricalDtype) or \
            pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return None
    values = s.dropna()
    if values.empty or not all(isinstance(v, str) for v in values):
        return None
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().mean() < 0.9:
        return None
    return (f"column {name!r} is text whose values read as numbers, e.g. "
            f"{values.iloc[0]!r}: convert it with pd.to_numeric(data[{name!r}]) to use it "
            "as a covariate")


def _lgl_as_factor(var: _Var) -> _Var:
    """model.matrix codes a logical as a factor with levels FALSE, TRUE (always both)."""
    if var.kind != "lgl":
        return var
    codes = np.where(np.isnan(var.values), -1, var.values == 1).astype(np.intp)
    return _Var("fac", codes, ("FALSE", "TRUE"))


def _check_undefined(evaluated, data: pd.DataFrame) -> None:
    """A transform must not create missing values (log(-1)): that would drop rows silently."""
    for name, node, _, var in evaluated:
        if isinstance(node, Name) or var.kind not in ("num", "lgl"):
            continue
        inputs = np.zeros(len(data), dtype=bool)
        for col in _columns_of(node):
            if col in data.columns:
                inputs |= _column(data, col).na()
        bad = np.isnan(var.values) & ~inputs
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(f"{name!r} is undefined (NaN) for {int(bad.sum())} rows with "
                            f"non-missing input, e.g. row {first}")


def _na_columns(data: pd.DataFrame, nodes: list[Node], args) -> str:
    """The used columns (and weights/offset arguments) that have missing values."""
    cols: list[str] = []
    for node in nodes:
        for col in _columns_of(node):
            if col not in cols and col in data.columns and data[col].isna().any():
                cols.append(col)
    for label, arg, values in args:
        name = arg if isinstance(arg, str) else label
        if values is not None and np.isnan(values).any() and name not in cols:
            cols.append(name)
    return ", ".join(cols)


# ----------------------------------------------------------------------------
# Response
# ----------------------------------------------------------------------------

def _response_variable(spec: FormulaSpec, variables: Mapping[str, _Var]) -> ResponseVariable:
    """The evaluated response, for its family to code and check (``families.base``)."""
    name = spec.response_name
    if spec.is_cbind:
        parts = tuple((deparse(node), variables[deparse(node)].kind,
                       variables[deparse(node)].values) for node in spec.response_parts)
        return ResponseVariable(name, "cbind", None, parts=parts)
    var = variables[deparse(spec.response_parts[0])]

    def factor():
        fac = _drop_unused(_factorize(var))
        return fac.values, tuple(fac.levels), var.kind == "fac" and var.ordered

    return ResponseVariable(name, var.kind, var.values, factor)


# ----------------------------------------------------------------------------
# Random-effects terms
# ----------------------------------------------------------------------------

def _random_terms(spec: FormulaSpec, variables: Mapping[str, _Var], n: int, lmm: bool
                  ) -> tuple[tuple[RandomTerm, ...], list[int]]:
    """The random-effect terms in lme4's order; lme4's identifiability checks, stricter
    for a model with a residual variance (``lmm``: lFormula's)."""
    built = []
    for rs in spec.random:
        g = _group_factor(rs.group, variables)
        term_vars = {v: _lgl_as_factor(variables[v]) for v, _ in rs.model.variables}
        Xr, cnames = _model_matrix(rs.model, term_vars, n)
        if Xr.shape[1] == 0:
            raise FormulaError(f"random-effects term ({rs.text}) has no columns")
        built.append((rs, g, Xr, cnames))
    order = _lme4_order([len(b[1].levels) for b in built])
    built = [built[i] for i in order]
    names = [rs.group_name for rs, *_ in built]
    vc_names = _make_names(names) if len(set(names)) < len(names) else names
    for rs, g, Xr, _ in built:
        nl = len(g.levels)
        if nl < 2:
            raise DataError(f"grouping factor {rs.group_name!r} has only {nl} level; "
                            "grouping factors must have > 1 sampled level")
        if lmm and nl >= n:
            raise DataError(
                f"grouping factor {rs.group_name!r} has {nl} levels for {n} observations: "
                "the number of levels of each grouping factor must be < number of "
                "observations (lme4's check)")
        nre = nl * Xr.shape[1]
        if (lmm and n <= nre) or (not lmm and n < nre):
            raise DataError(
                f"number of observations (={n}) {'<=' if lmm else '<'} number of random "
                f"effects (={nre}) for term ({rs.text}); the random-effects parameters "
                "are probably unidentifiable (lme4's check)")
    terms = tuple(
        RandomTerm(group=rs.group_name, varcorr_name=vc, cnames=cnames, levels=g.levels,
                   codes=_frozen(g.values), Xr=_frozen(Xr), term=rs.text)
        for (rs, g, Xr, cnames), vc in zip(built, vc_names, strict=True)
    )
    return terms, order


# ----------------------------------------------------------------------------
# Smooths (GAMM): null space -> X, penalised range -> a random term
# ----------------------------------------------------------------------------

def _smooth_frame(spec: FormulaSpec, variables: Mapping[str, _Var]) -> pd.DataFrame:
    """The smooths' covariates and ``by`` variables as a DataFrame (factors categorical)."""
    cols: dict[str, Any] = {}
    for sm in spec.smooths:
        for name in _smooth_columns(sm):
            var = variables[name]
            if var.kind == "fac":
                cols[name] = pd.Categorical.from_codes(var.values, categories=list(var.levels),
                                                       ordered=var.ordered)
            elif var.kind == "lgl":
                cols[name] = pd.Categorical.from_codes(
                    np.where(np.isnan(var.values), -1, var.values == 1).astype(int),
                    categories=["FALSE", "TRUE"])
            else:
                cols[name] = var.values
    return pd.DataFrame(cols)


def _smooth_term(part_label: str, Zr: np.ndarray) -> RandomTerm:
    """The random term of a smooth's penalised range: one level, ``Lambda = theta I``."""
    return RandomTerm(group=part_label, varcorr_name=part_label,
                      cnames=tuple(f"{part_label}.{i + 1}" for i in range(Zr.shape[1])),
                      levels=("1",), codes=_frozen(np.zeros(Zr.shape[0], dtype=np.intp)),
                      Xr=_frozen(Zr), term=part_label, smooth=part_label)


def _add_smooths(spec: FormulaSpec, frame: pd.DataFrame | None, X: np.ndarray,
                 names: tuple[str, ...], terms: tuple[RandomTerm, ...],
                 thresholds: bool = False):
    """Append each smooth's null-space columns to X and its range as the last terms.

    Null-space columns collinear with the columns before them are dropped, as lme4
    drops rank-deficient columns (``y ~ x + s(x)``: the linear part of ``s(x)``);
    with ``thresholds`` (an ordinal model, whose X has no intercept column), also
    those collinear with the thresholds' intercept.
    """
    if not spec.smooths:
        return X, names, (), terms, []
    smooths = [sm for term in spec.smooths for sm in construct(term, frame)]
    labels = [sm.label for sm in smooths]
    if len(set(labels)) < len(labels):
        dup = sorted({lb for lb in labels if labels.count(lb) > 1})
        raise FormulaError(f"smooth {', '.join(dup)} appears more than once in the formula")
    splits = [mixed_split(sm) for sm in smooths]
    Xf = [sp_.Xf for sp_ in splits]
    fnames = [f"{sm.label}Fx{i + 1}" for sm, sp_ in zip(smooths, splits, strict=True)
              for i in range(sp_.Xf.shape[1])]
    Xall = np.hstack([X, *Xf]) if Xf else X
    p0 = X.shape[1]
    # X is full rank on its own: only null-space columns can go
    if thresholds:
        ones = np.ones((Xall.shape[0], 1))
        ranked = [j - 1 for j in _rank_keep(np.hstack([ones, Xall])) if j > 0]
    else:
        ranked = _rank_keep(Xall)
    keep = sorted(set(ranked) | set(range(p0)))
    messages = []
    dropped = [fnames[j - p0] for j in range(p0, Xall.shape[1]) if j not in keep]
    if dropped:
        messages.append("the null space of a smooth is collinear with other fixed effects; "
                        f"dropping: {', '.join(dropped)}")
    position = {j: i for i, j in enumerate(keep)}
    parts, new_terms, start = [], list(terms), p0
    for sm, sp_ in zip(smooths, splits, strict=True):
        nf = sp_.Xf.shape[1]
        fixed = tuple(position.get(start + i, -1) for i in range(nf))
        start += nf
        new_terms.append(_smooth_term(sm.label, sp_.Zr))
        parts.append(SmoothPart(sm, _frozen(sp_.T), fixed, len(new_terms) - 1))
    Xall = Xall[:, keep]
    names = tuple([*names, *fnames])
    names = tuple(names[j] for j in keep)
    return np.ascontiguousarray(Xall), names, tuple(parts), tuple(new_terms), messages


def _smooth_rebuild(design: Design, spec: FormulaSpec, variables: Mapping[str, _Var],
                    X: np.ndarray) -> tuple[np.ndarray, list[RandomTerm]]:
    """New data's smooth columns of X and smooth terms, with the fit's bases."""
    frame = _smooth_frame(spec, variables)
    X = np.array(X, dtype=float)
    terms = []
    for part in design.smooths:
        PT = part.smooth.predict_matrix(frame) @ part.T
        for i, j in enumerate(part.fixed):
            if j >= 0:
                X[:, j] = PT[:, i]
        terms.append(_smooth_term(part.label, PT[:, part.nfixed:]))
    return X, terms
