"""Smooth bases against live mgcv: ``smoothCon(s(...), d, absorb.cons = TRUE,
scale.penalty = TRUE)``, ``PredictMat`` and ``smooth2random``; input errors.

A native basis ``X`` and mgcv's ``X_R`` need not be equal column by column (signs
and rotations are conventions), so the checks are the invariants a fit depends on:
``X_R = X A`` for some ``A`` (same column space), ``A' S A = S_R`` (same penalty,
same scale, so mgcv's ``sp`` is our ``lambda``), ``P A = P_R`` at new points, and equal
penalised fitted values ``X (X'X + lambda S)^-1 X'y`` for several ``lambda``.

Tolerances (relative to the largest entry): cubic regression and P-splines are
built exactly as mgcv builds them (1e-11); thin plate splines go through mgcv's
Lanczos eigensolver, which stops at a relative error of eps^0.7 ~ 1e-11 (1e-8 here;
measured ~2e-10).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from glmmbench.errors import DataError, FormulaError, NotSupportedError
from glmmbench.model.formula import parse_formula
from glmmbench.model.smooths import MAX_KNOTS, SUPPORTED_BASES, construct, mixed_split

from .rscript import run_r

TOL_EXACT = 1e-11  # cr, ps: same construction as mgcv
TOL_TP = 1e-8  # tp: mgcv's Lanczos tolerance
LAMBDAS = (1e-3, 1.0, 1e3)


def _data(n: int = 200, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": np.round(rng.uniform(0, 1, n), 3),  # ties, as real covariates have
        "z": rng.normal(size=n),
        "fa": pd.Categorical(rng.choice(list("abc"), n)),
        "ofa": pd.Categorical(rng.choice(["lo", "mid", "hi"], n),
                              categories=["lo", "mid", "hi"], ordered=True),
        "zz": rng.uniform(0.5, 2, n),
        "one": np.full(n, 2.0),
        "s": rng.choice(["u", "v"], n),
    })


D = _data()
NEWD = pd.DataFrame({
    "x": np.linspace(-0.1, 1.1, 30),  # beyond the data: cr and ps extrapolate linearly
    "z": np.linspace(-2, 2, 30),
    "fa": pd.Categorical(np.tile(list("abc"), 10)),
    "ofa": pd.Categorical(np.tile(["lo", "mid", "hi"], 10), categories=["lo", "mid", "hi"],
                          ordered=True),
    "zz": np.linspace(1, 2, 30),
    "one": np.full(30, 2.0),
})

CASES = [
    ('s(x)', TOL_TP),
    ('s(x, k = 5)', TOL_TP),
    ('s(x, z, k = 15)', TOL_TP),
    ('s(x, bs = "cr", k = 8)', TOL_EXACT),
    ('s(x, bs = "ps", k = 12)', TOL_EXACT),
    ('s(x, bs = "ps", m = c(3, 1))', TOL_EXACT),
    ('s(x, by = fa)', TOL_TP),
    ('s(x, bs = "cr", by = ofa)', TOL_EXACT),
    ('s(x, bs = "ps", by = zz)', TOL_EXACT),
    ('s(x, bs = "cr", by = one)', TOL_EXACT),
]

_R_CODE = """
library(mgcv)
.m <- function(A) list(r = nrow(A), v = as.vector(A))
.one <- function(sm, newd, dd) {
  re <- smooth2random(sm, names(dd), type = 2)
  list(label = sm$label, bs_dim = sm$bs.dim, rank = sm$rank,
       X = .m(sm$X), S = .m(sm$S[[1]]), P = .m(PredictMat(sm, newd)),
       Xr = .m(re$rand[[1]]), Xf = .m(re$Xf), D = I(1 / re$trans.D[re$rind]^2))
}
terms <- fromJSON(%r)
cases <- lapply(terms, function(tt) {
  sml <- smoothCon(eval(parse(text = tt)), data = d, absorb.cons = TRUE, scale.penalty = TRUE)
  lapply(sml, .one, newd = newd, dd = d)
})
big_sm <- smoothCon(s(x, k = 12), data = big, knots = knots, absorb.cons = TRUE,
                    scale.penalty = TRUE)[[1]]
small_k <- suppressWarnings(smoothCon(s(x, k = 2), data = d)[[1]])$bs.dim
list(cases = cases, big = .one(big_sm, newd, big), small_k = small_k)
"""


def _matrix(obj: dict) -> np.ndarray:
    return np.array(obj["v"], dtype=float).reshape(-1, obj["r"]).T


def _smooths(text: str, data: pd.DataFrame = D):
    return construct(parse_formula(f"y ~ {text} + (1 | g)").smooths[0], data)


def _big_data() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return pd.DataFrame({"x": rng.uniform(0, 1, MAX_KNOTS + 600)})


@pytest.fixture(scope="module")
def mgcv():
    """Every R computation of this file in one Rscript run."""
    big = _big_data()
    sm = _smooths("s(x, k = 12)", big)[0]
    knots = pd.DataFrame({"x": sm.basis.knots[:, 0] + sm.basis.shift[0]})
    out = run_r(_R_CODE % json.dumps([t for t, _ in CASES]), d=D, newd=NEWD, big=big,
                knots=knots)
    out["big_native"] = sm
    return out


def _check_same_smooth(sm, ref: dict, tol: float, newd: pd.DataFrame = NEWD) -> None:
    X, S = sm.X, sm.S
    XR, SR, PR = _matrix(ref["X"]), _matrix(ref["S"]), _matrix(ref["P"])
    assert X.shape == XR.shape
    A = np.linalg.lstsq(X, XR, rcond=None)[0]
    assert np.abs(X @ A - XR).max() <= tol * np.abs(XR).max()
    assert np.abs(A.T @ S @ A - SR).max() <= tol * np.abs(SR).max()
    P = sm.predict_matrix(newd)
    assert np.abs(P @ A - PR).max() <= tol * np.abs(PR).max()
    y = np.random.default_rng(0).normal(size=len(X))
    for lam in LAMBDAS:
        fit = X @ np.linalg.solve(X.T @ X + lam * S, X.T @ y)
        fit_r = XR @ np.linalg.solve(XR.T @ XR + lam * SR, XR.T @ y)
        assert np.abs(fit - fit_r).max() <= tol * max(1.0, np.abs(fit_r).max())


def _check_same_split(sm, ref: dict, tol: float) -> None:
    ms = mixed_split(sm)
    Xr, Xf = _matrix(ref["Xr"]), _matrix(ref["Xf"])
    np.testing.assert_allclose(ms.D, ref["D"], rtol=tol)
    # b ~ N(0, s^2 I): the random part enters the likelihood only through Zr Zr'
    cov, cov_r = ms.Zr @ ms.Zr.T, Xr @ Xr.T
    assert np.abs(cov - cov_r).max() <= tol * np.abs(cov_r).max()
    assert ms.Xf.shape == Xf.shape
    if Xf.size:
        B = np.linalg.lstsq(ms.Xf, Xf, rcond=None)[0]
        assert np.abs(ms.Xf @ B - Xf).max() <= tol * np.abs(Xf).max()


@pytest.mark.r
@pytest.mark.parametrize("text,tol", CASES)
def test_basis_matches_smoothcon(mgcv, text, tol):
    refs = mgcv["cases"][[t for t, _ in CASES].index(text)]
    smooths = _smooths(text)
    assert [s.label for s in smooths] == [r["label"] for r in refs]
    for sm, ref in zip(smooths, refs, strict=True):
        assert sm.k == ref["bs_dim"] and sm.rank == ref["rank"]
        _check_same_smooth(sm, ref, tol)


@pytest.mark.r
@pytest.mark.parametrize("text,tol", CASES)
def test_mixed_split_matches_smooth2random(mgcv, text, tol):
    refs = mgcv["cases"][[t for t, _ in CASES].index(text)]
    for sm, ref in zip(_smooths(text), refs, strict=True):
        _check_same_split(sm, ref, tol)


@pytest.mark.r
def test_tp_above_max_knots_matches_mgcv_given_our_knots(mgcv):
    """Above MAX_KNOTS unique values the knots are our deterministic subset; with
    the same knots mgcv builds the same basis."""
    sm = mgcv["big_native"]
    assert sm.basis.knots.shape == (MAX_KNOTS, 1)
    _check_same_smooth(sm, mgcv["big"], TOL_TP)
    _check_same_split(sm, mgcv["big"], TOL_TP)


@pytest.mark.r
def test_k_below_minimum_is_raised_as_mgcv(mgcv):
    with pytest.warns(UserWarning, match="increased to the minimum"):
        sm = _smooths("s(x, k = 2)")[0]
    assert sm.k == mgcv["small_k"] == 3


# ---------------------------------------------------------------- native properties


@pytest.mark.parametrize("bs", SUPPORTED_BASES)
def test_predict_matrix_reproduces_X_and_constraint(bs):
    for text in (f's(x, bs = "{bs}")', f's(x, bs = "{bs}", by = fa)'):
        for sm in _smooths(text):
            np.testing.assert_allclose(sm.predict_matrix(D), sm.X, atol=1e-12)
            mult = (D["fa"].astype(str) == sm.by_level).to_numpy() if sm.by else 1.0
            # sum-to-zero over all rows of the unweighted basis (mgcv's constraint)
            raw = sm.basis.evaluate(D[["x"]].to_numpy()) @ sm.Z
            np.testing.assert_allclose(raw.sum(axis=0), 0, atol=1e-9)
            np.testing.assert_array_equal(sm.X[np.asarray(mult) == 0], 0)


def test_numeric_by_is_unconstrained_and_scales_rows():
    sm, = _smooths('s(x, bs = "cr", k = 6, by = zz)')
    plain, = _smooths('s(x, bs = "cr", k = 6)')
    assert sm.X.shape[1] == sm.k == 6 and sm.Z is None and sm.rank == 4
    assert plain.X.shape[1] == 5
    raw = plain.basis.evaluate(D[["x"]].to_numpy())
    np.testing.assert_allclose(sm.X, D["zz"].to_numpy()[:, None] * raw)


@pytest.mark.parametrize("text", ['s(x)', 's(x, bs = "cr", by = fa)', 's(x, z)',
                                  's(x, bs = "ps", by = zz)'])
def test_mixed_split_identities(text):
    for sm in _smooths(text):
        ms = mixed_split(sm)
        nf, r = ms.Xf.shape[1], ms.Zr.shape[1]
        assert r == sm.rank == len(ms.D) and nf + r == sm.X.shape[1]
        np.testing.assert_allclose(sm.X @ ms.T, np.hstack([ms.Xf, ms.Zr]), atol=1e-12)
        expected = np.diag(np.r_[np.zeros(nf), np.ones(r)])
        np.testing.assert_allclose(ms.T.T @ sm.S @ ms.T, expected, atol=1e-9)
        P = sm.predict_matrix(NEWD)
        split = mixed_split(sm, P)
        np.testing.assert_allclose(np.hstack([split.Xf, split.Zr]), P @ ms.T)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("text,error,match", [
    ('s(x, bs = "cc")', NotSupportedError, "supported bases are 'tp', 'cr', 'ps'"),
    ('s(fa, bs = "re")', NotSupportedError, r"\(1 \| x\)"),
    ('te(x, z)', NotSupportedError, r"only s\(\) smooths"),
    ('ti(x, z)', NotSupportedError, r"only s\(\) smooths"),
    ('t2(x, z)', NotSupportedError, r"only s\(\) smooths"),
    ('s(x, z, bs = "cr")', FormulaError, "1-d smooths only"),
    ('s(x, fx = TRUE)', FormulaError, "fx"),
    ('s(x, k = 2.5)', FormulaError, "whole number"),
    ('s(x, bs = "cr", m = 2)', FormulaError, "m has no meaning"),
    ('s(x, bs = "ps", k = 3)', FormulaError, "too small"),
    ('s(fa)', DataError, r"'fa' is not numeric.*\(1 \| fa\)"),
    ('s(s)', DataError, r"'s' is not numeric.*\(1 \| s\)"),
    ('s(w)', DataError, "'w' is not a column"),
    ('s(log(x))', DataError, "transform it into a data column"),
    ('s(x, by = nope)', DataError, "by variable 'nope' is not a column"),
    ('s(b)', DataError, r"'b' has insufficient unique values \(4\) to support k = 10"),
    ('s(b, bs = "cr", k = 5)', DataError, "insufficient unique values"),
    ('s(b, bs = "ps", k = 5)', DataError, "insufficient unique values"),
    ('s(b, c, k = 20)', DataError, r"'b', 'c' have insufficient unique combinations \(16\)"),
])
def test_errors(text, error, match):
    data = D.assign(b=np.tile([1.0, 2.0, 3.0, 4.0], 50),
                    c=np.tile(np.repeat([1.0, 2.0, 3.0, 4.0], 4), 13)[:200])
    with pytest.raises(error, match=match):
        _smooths(text, data)


def test_missing_values_are_an_error():
    with pytest.raises(DataError, match="missing values"):
        _smooths("s(x)", D.assign(x=D["x"].where(D.index != 3)))
