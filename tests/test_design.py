"""build_design against live R (model.matrix, lme4's lFormula/glFormula), response
coding, missing values, offsets, input validation and Design.new_data."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glmmbench import datasets
from glmmbench.errors import DataError, FamilyError, FormulaError, GLMMError
from glmmbench.families import NATIVE_FAMILIES as FAMILIES
from glmmbench.model.design import Design, _rank_keep, build_design

from .rscript import run_r

# ---------------------------------------------------------------- data


def _sim(n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=n),
        "x": rng.normal(size=n),
        "z": rng.uniform(1, 3, size=n),
        "a": pd.Categorical(rng.choice(list("pqr"), n)),
        "b": rng.integers(1, 6, n),
        "c": rng.choice(["u", "V", "w"], n),
        "f": pd.Categorical(rng.choice(["lo", "mid", "hi"], n), categories=["lo", "mid", "hi"]),
        "o": pd.Categorical(rng.choice(["lo", "mid", "hi", "top"], n),
                            categories=["lo", "mid", "hi", "top"], ordered=True),
        "l": rng.random(n) > 0.5,
        "g": pd.Categorical(rng.choice([f"s{i}" for i in range(10)], n)),
        "h": pd.Categorical(rng.choice([f"h{i}" for i in range(30)], n)),
        "k": rng.integers(0, 5, n),
        "s": rng.choice(["beta", "Alpha", "alpha", "Beta"], n),
        "cnt": rng.poisson(3, n),
        "w": rng.uniform(0.5, 2, n),
        "t": rng.uniform(1, 10, n),
    })


SIM = _sim()


def _frames(names) -> dict[str, pd.DataFrame]:
    return {name: SIM if name == "sim" else datasets.load(name) for name in set(names)}


# ---------------------------------------------------------------- random terms vs lFormula

RE_CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "gaussian"),
    ("Penicillin", "diameter ~ (1 | plate) + (1 | sample)", "gaussian"),
    ("grouseticks", "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", "poisson"),
    ("VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial"),
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)", "gaussian"),
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd/period)", "binomial"),
    ("sim", "y ~ 1 + (0 + f | g)", "gaussian"),
    ("sim", "y ~ f + (f || g)", "gaussian"),
    ("sim", "y ~ x + (1 + f | g) + (x || a:c)", "gaussian"),
    ("sim", "y ~ x + (f + x | g)", "gaussian"),
    ("sim", "y ~ x + (x || g) + (1 | h)", "gaussian"),  # reordering: ties reversed
    ("sim", "y ~ x + (1 | g) + (1 | c) + (1 | a)", "gaussian"),  # no reordering
    ("sim", "y ~ x + (1 | a) + (1 | c) + (1 | h)", "gaussian"),
    ("sim", "y ~ x + (1 | a/b/c)", "gaussian"),
    ("sim", "y ~ x + (1 | a:b) + (x | c)", "gaussian"),
    ("sim", "y ~ (1 | g) + (1 | h:g)", "gaussian"),
    ("sim", "y ~ (1 | k) + (1 | l)", "gaussian"),  # numeric and logical grouping factors
]

_RE_R = """
cases <- fromJSON(%s, simplifyVector = FALSE)
lapply(cases, function(cc) {
  d <- get(cc[[1]]); fam <- cc[[3]]
  lf <- suppressMessages(suppressWarnings(if (fam == "gaussian")
    lFormula(as.formula(cc[[2]]), d) else glFormula(as.formula(cc[[2]]), d, family = fam)))
  rt <- lf$reTrms
  Zt <- as(rt$Zt, "TsparseMatrix")
  vc <- lme4:::mkVarCorr(1, rt$cnms, lengths(rt$cnms), rt$theta,
                         names(rt$flist)[attr(rt$flist, "assign")])
  list(term_names = I(names(rt$Ztlist)), cnms = unname(lapply(rt$cnms, I)),
       flist = I(names(rt$flist)), levels = unname(lapply(rt$flist, function(f) I(levels(f)))),
       nl = I(unname(rt$nl)), Lind = I(rt$Lind), theta = I(rt$theta), lower = I(rt$lower),
       Zi = I(Zt@i), Zj = I(Zt@j), Zx = I(Zt@x), Zdim = I(dim(rt$Zt)), vc = I(names(vc)),
       X = I(colnames(lf$X)), Xv = I(as.vector(lf$X)), n = nrow(lf$fr))
})
"""


@pytest.fixture(scope="module")
def r_retrms():
    cases = [list(c) for c in RE_CASES]
    code = _RE_R % json.dumps(json.dumps(cases))
    return run_r(code, **_frames(c[0] for c in RE_CASES))


@pytest.mark.r
@pytest.mark.parametrize("i", range(len(RE_CASES)), ids=[c[1] for c in RE_CASES])
def test_random_terms_match_lformula(r_retrms, i):
    dname, formula, family = RE_CASES[i]
    r = r_retrms[i]
    d = build_design(formula, _frames([dname])[dname], family)
    assert d.n == r["n"]
    assert [t.term for t in d.terms] == r["term_names"]
    assert [list(t.cnames) for t in d.terms] == r["cnms"]
    assert list(d.ngroups) == r["flist"]
    assert [t.nlevels for t in d.terms] == r["nl"]
    levels = dict(zip(r["flist"], r["levels"], strict=True))
    for t in d.terms:
        assert list(t.levels) == levels[t.group]
    assert (d.Lind + 1).tolist() == r["Lind"]
    assert sum(t.ntheta for t in d.terms) == len(r["theta"])
    assert [t.varcorr_name for t in d.terms] == r["vc"]
    Zt = np.zeros(r["Zdim"])
    Zt[r["Zi"], r["Zj"]] = r["Zx"]
    np.testing.assert_array_equal(d.Z().T.toarray(), Zt)
    assert list(d.fixef_names) == r["X"]
    np.testing.assert_allclose(d.X, np.reshape(r["Xv"], (d.n, -1), order="F"),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.r
def test_varcorr_names_from_a_real_fit():
    df = SIM
    r = run_r("m <- lmer(y ~ x + (x || g) + (1 | h), d); as.data.frame(VarCorr(m))$grp", d=df)
    d = build_design("y ~ x + (x || g) + (1 | h)", df)
    assert [t.varcorr_name for t in d.terms] == r[:-1]


# ---------------------------------------------------------------- fixed part vs lFormula

FIXED = [
    "a", "a*b", "0 + a", "a - 1", "a:b", "0 + a:b", "x:a", "b:a + a", "z + x:a + a",
    "(a + f + x)^2", "x/a", "f %in% a", "a + f - 1", "a:x:f + x",
    "I(x^2) + log(z) + scale(x) + I(x > 0)", "(x + z):a", "o", "o*x", "0 + o", "s", "l",
    "l + x:l", "a*f - a", "exp(x) + sqrt(z) + I(x*2) + I(x/2) + I((x+1)^2) + log(z, 2)",
    "scale(z, center = FALSE)", "scale(x, scale = FALSE)", "factor(k)", "x*z*a",
    "0 + x + a + f", "x + I(2*x) + z + I(x+z)", "a + f + a:f + I(x*0)", "log10(z) + I(x - 1)",
    "c", "factor(b):x", "ordered(k)", "I(x %% 2) + I(x %/% 2) + I(-x) + abs(x)",
]


@pytest.fixture(scope="module")
def r_fixed():
    code = (
        f"f <- fromJSON({json.dumps(json.dumps(FIXED))})\n"
        "lapply(f, function(ff) { lf <- suppressMessages(suppressWarnings(lFormula("
        "as.formula(paste('y ~', ff, '+ (1 | h)')), d))); "
        "list(names = I(colnames(lf$X)), X = I(as.vector(lf$X))) })"
    )
    return run_r(code, d=SIM)


@pytest.mark.r
@pytest.mark.parametrize("i", range(len(FIXED)), ids=FIXED)
def test_fixed_matrix_matches_lformula(r_fixed, i):
    """Names, order and values of X, including lme4's rank-deficient column drop."""
    d = build_design(f"y ~ {FIXED[i]} + (1 | h)", SIM)
    assert list(d.fixef_names) == r_fixed[i]["names"]
    np.testing.assert_allclose(d.X, np.reshape(r_fixed[i]["X"], (d.n, -1), order="F"),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.r
def test_model_matrix_names_on_datasets():
    cases = [
        ("cbpp", "~ period"), ("VerbAgg", "~ Anger + Gender + btype + situ"),
        ("wine", "~ temp * contact"), ("grouseticks", "~ YEAR + scale(HEIGHT)"),
        ("soup", "~ PROD + SURENESS + DAY:PROD"), ("sleepstudy", "~ Days + I(Days^2)"),
    ]
    code = (
        f"cases <- fromJSON({json.dumps(json.dumps(cases))}, simplifyVector = FALSE)\n"
        "lapply(cases, function(cc) I(colnames(model.matrix(as.formula(cc[[2]]), get(cc[[1]])))))"
    )
    r = run_r(code, **_frames(c[0] for c in cases))
    for (dname, rhs), names in zip(cases, r, strict=True):
        df = datasets.load(dname)
        df["y_"] = 1.0 + np.arange(len(df)) % 3
        group = df.columns[-2]
        d = build_design(f"y_ {rhs} + (1 | {group})", df)
        assert list(d.fixef_names) == names, rhs


def test_r_names_for_common_terms():
    d = build_design("incidence ~ period + (1 | herd)", datasets.load("cbpp"), "poisson")
    assert d.fixef_names == ("(Intercept)", "period2", "period3", "period4")
    d = build_design("response ~ temp * contact + (1 | judge)", datasets.load("wine"))
    assert d.fixef_names == ("(Intercept)", "tempwarm", "contactyes", "tempwarm:contactyes")
    d = build_design("TICKS ~ scale(HEIGHT) + (1 | BROOD)", datasets.load("grouseticks"),
                     "poisson")
    assert d.fixef_names == ("(Intercept)", "scale(HEIGHT)")


# ---------------------------------------------------------------- responses vs R


@pytest.mark.r
def test_binomial_responses_match_r_initialize():
    df = SIM.assign(succ=SIM["cnt"], fail=SIM["k"], prop=SIM["cnt"] / 10,
                    yes=SIM["l"], fac=pd.Categorical(np.where(SIM["l"], "no", "yes")))
    cases = [
        ("cbind(succ, fail)", None), ("cbind(succ, fail)", "w"), ("prop", "t"),
        ("yes", None), ("fac", None), ('I(c == "u")', None), ("s", None),
    ]
    code = (
        f"cases <- fromJSON({json.dumps(json.dumps(cases))}, simplifyVector = FALSE)\n"
        "lapply(cases, function(cc) {\n"
        "  fr <- model.frame(as.formula(paste(cc[[1]], '~ x')), d)\n"
        "  y <- model.response(fr); if (is.character(y)) y <- factor(y)\n"
        "  nobs <- nrow(fr); n <- rep(1, nobs); etastart <- mustart <- NULL\n"
        "  weights <- if (is.null(cc[[2]])) rep(1, nobs) else d[[cc[[2]]]]\n"
        "  suppressWarnings(eval(binomial()$initialize))\n"
        "  list(y = I(as.vector(y)), w = I(as.vector(weights)))\n"
        "})"
    )
    r = run_r(code, d=df)
    for (lhs, w), res in zip(cases, r, strict=True):
        d = build_design(f"{lhs} ~ x + (1 | g)", df, "binomial", weights=w)
        np.testing.assert_allclose(d.y, res["y"], rtol=1e-14)
        np.testing.assert_allclose(d.weights, res["w"], rtol=1e-14)


def test_cbind_response():
    cbpp = datasets.load("cbpp")
    d = build_design("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                     "binomial")
    np.testing.assert_allclose(d.y, cbpp["incidence"] / cbpp["size"])
    np.testing.assert_allclose(d.weights, cbpp["size"])
    d3 = build_design("I(incidence / size) ~ period + (1 | herd)", cbpp, "binomial",
                      weights=cbpp["size"].to_numpy())
    np.testing.assert_allclose(d3.y, d.y)
    np.testing.assert_allclose(d3.weights, d.weights)


def test_cbind_with_zero_trials_gives_y0_weight0():
    df = pd.DataFrame({"s": [0, 1, 2, 0], "f": [0, 1, 0, 3], "g": ["a", "a", "b", "b"]})
    d = build_design("cbind(s, f) ~ 1 + (1 | g)", df, "binomial")
    np.testing.assert_array_equal(d.y, [0, 0.5, 1, 0])
    np.testing.assert_array_equal(d.weights, [0, 2, 2, 3])


def test_binary_factor_response_first_level_is_failure():
    va = datasets.load("VerbAgg")
    d = build_design("r2 ~ Anger + (1 | id)", va, "binomial")
    np.testing.assert_array_equal(d.y, (va["r2"] == "Y").to_numpy(float))
    assert d.response_levels is None
    strings = va.assign(r2=va["r2"].astype(str).map({"N": "no", "Y": "yes"}))
    d2 = build_design("r2 ~ Anger + (1 | id)", strings, "binomial")
    np.testing.assert_array_equal(d2.y, d.y)


def test_ordinal_and_multinomial_responses():
    wine = datasets.load("wine")
    d = build_design("rating ~ temp + contact + (1 | judge)", wine, "ordinal")
    assert d.response_levels == ("1", "2", "3", "4", "5")
    np.testing.assert_array_equal(d.y, wine["rating"].cat.codes)
    va = datasets.load("VerbAgg")
    d = build_design("resp ~ Anger + (1 | id)", va, "multinomial")
    assert d.response_levels == ("no", "perhaps", "yes")
    # strings: sorted as R's factor() for multinomial; unused categories dropped with a
    # message
    df = SIM.assign(r=np.where(SIM["x"] > 0.5, "hi", np.where(SIM["x"] < -0.5, "Lo", "mid")))
    d = build_design("r ~ x + (1 | g)", df, "multinomial")
    assert d.response_levels == ("hi", "Lo", "mid")
    wine2 = wine.assign(rating=wine["rating"].cat.add_categories(["6"]))
    d = build_design("rating ~ temp + (1 | judge)", wine2, "ordinal")
    assert d.response_levels == ("1", "2", "3", "4", "5")
    assert any("never occur were dropped: 6" in m for m in d.messages)
    # an ordinal response must be ordered: strings, integer codes and unordered
    # factors are errors that say how to order them
    for col, frame in (("r", df), ("cnt", SIM)):
        with pytest.raises(DataError, match="must be an ordered categorical"):
            build_design(f"{col} ~ x + (1 | g)", frame, "ordinal")
    # clmm's X has no intercept: the thresholds take its place
    assert "(Intercept)" not in build_design("rating ~ temp + (1 | judge)", wine,
                                             "ordinal").fixef_names


@pytest.mark.r
def test_string_levels_sorted_as_r():
    values = ["beta", "Alpha", "alpha", "Beta", "a b", "a_b", "a-b", "A1", "a10", "a9", "Zeta"]
    r = run_r(f"levels(factor(fromJSON({json.dumps(json.dumps(values))})))")
    df = pd.DataFrame({"r": values * 3, "x": np.arange(33.0), "g": ["u", "v", "w"] * 11})
    d = build_design("r ~ x + (1 | g)", df, "multinomial")
    assert list(d.response_levels) == r


# ---------------------------------------------------------------- missing values vs R


def _with_missing() -> pd.DataFrame:
    df = SIM.copy()
    df.loc[[3, 17], "y"] = np.nan
    df.loc[[5], "x"] = np.nan
    df["g"] = df["g"].astype(object)
    df.loc[[8, 17], "g"] = None
    df.loc[[40], "w"] = np.nan
    df["k"] = df["k"].astype("Int64")
    df.loc[[50], "k"] = pd.NA
    return df


@pytest.mark.r
def test_missing_values_dropped_as_r():
    df = _with_missing()
    df["g"] = pd.Categorical(df["g"])
    formula = "y ~ scale(x) + factor(k) + (1 | g)"
    r = run_r(
        "lf <- suppressWarnings(lFormula(y ~ scale(x) + factor(k) + (1 | g), d, weights = w));"
        "list(n = nrow(lf$fr), X = I(as.vector(lf$X)), w = I(as.vector(model.weights(lf$fr))),"
        "     rows = I(as.integer(rownames(lf$fr))))",
        d=df,
    )
    d = build_design(formula, df, weights="w")
    assert d.n == r["n"]
    assert d.n_dropped == len(df) - r["n"] == 6
    assert d.messages[0] == "dropped 6 rows with missing values in: y, x, k, g, w"
    np.testing.assert_array_equal(d.row_index + 1, r["rows"])
    # scale() centres with every non-missing x, as R's model frame (before na.omit)
    np.testing.assert_allclose(d.X, np.reshape(r["X"], (d.n, -1), order="F"), rtol=1e-12)
    np.testing.assert_allclose(d.weights, r["w"])


def test_missing_values_in_arrays_and_unused_columns():
    df = SIM.copy()
    df.loc[[1, 2], "cnt"] = -1  # unused column: irrelevant
    df.loc[[7], "z"] = np.nan  # unused column with NA: nothing dropped
    off = np.zeros(len(df))
    off[[9, 10]] = np.nan
    d = build_design("y ~ x + (1 | g)", df, offset=off)
    assert d.n_dropped == 2 and "offset" in d.messages[0]
    assert 9 not in d.row_index and 10 not in d.row_index


def test_no_rows_left():
    df = SIM.assign(x=np.nan)
    with pytest.raises(DataError, match="no rows left.*x"):
        build_design("y ~ x + (1 | g)", df)


# ---------------------------------------------------------------- offsets


@pytest.mark.r
def test_offsets_match_r():
    r = run_r(
        "fr <- model.frame(cnt ~ x + offset(log(t)) + offset(z), d, offset = x / 2);"
        "I(as.vector(model.offset(fr)))", d=SIM)
    d = build_design("cnt ~ x + offset(log(t)) + offset(z) + (1 | g)", SIM, "poisson",
                     offset=SIM["x"].to_numpy() / 2)
    np.testing.assert_allclose(d.offset, r, rtol=1e-14)
    d2 = build_design("cnt ~ x + (1 | g)", SIM.assign(o=np.log(SIM["t"])), "poisson",
                      offset="o")
    np.testing.assert_allclose(d2.offset, np.log(SIM["t"]))
    d3 = build_design("cnt ~ x + (1 | g)", SIM, "poisson")
    np.testing.assert_array_equal(d3.offset, 0.0)


# ---------------------------------------------------------------- validation


BAD_INPUT = [
    # (formula, data changes, family, kwargs, error class, message pattern)
    ("y ~ nope + (1 | g)", {}, "gaussian", {}, DataError, r"unknown column 'nope'.*available"),
    ("y ~ x + (1 | nope)", {}, "gaussian", {}, DataError, r"unknown column 'nope'"),
    ("nope ~ x + (1 | g)", {}, "gaussian", {}, DataError, r"unknown column 'nope'"),
    ("y ~ x + (1 | g)", {}, "gaussian", {"weights": "nope"}, DataError, r"'nope'.*weights"),
    ("y ~ x + (1 | g)", {}, "gaussian", {"offset": "nope"}, DataError, r"'nope'.*offset"),
    ("y ~ x + (1 | g)", {}, "gaussian", {"weights": np.ones(3)}, DataError, r"weights.*length"),
    ("y ~ x + (1 | g)", {"w": -1.0}, "gaussian", {"weights": "w"}, DataError, r"'w'.*negative"),
    ("y ~ x + (1 | g)", {"w": np.inf}, "gaussian", {"weights": "w"}, DataError, r"'w'.*inf"),
    ("y ~ x + (1 | g)", {"t": np.inf}, "gaussian", {"offset": "t"}, DataError, r"'t'.*inf"),
    ("y ~ x + offset(log(t)) + (1 | g)", {"t": 0.0}, "gaussian", {}, DataError, r"offset.*inf"),
    ("y ~ x + (1 | g)", {"w": "a"}, "gaussian", {"weights": "w"}, DataError, r"'w'.*numeric"),
    ("y ~ x + (1 | g)", {"x": np.inf}, "gaussian", {}, DataError, r"'x'.*non-finite"),
    ("y ~ log(z - 2) + (1 | g)", {}, "gaussian", {}, DataError, r"'log\(z - 2\)'.*undefined"),
    ("y ~ log(x - x) + (1 | g)", {}, "gaussian", {}, DataError, r"'log\(x - x\)'.*non-finite"),
    ("y ~ x + (1 | g)", {"g": "one"}, "gaussian", {}, DataError, r"factor 'g' has only 1 level"),
    ("y ~ x + (1 | id)", {"id": "row"}, "gaussian", {}, DataError, r"factor 'id' has 300 levels"),
    ("y ~ x + (1 | g)", {}, "binomial", {}, DataError, r"binomial response 'y'.*\[0, 1\]"),
    ("cnt ~ x + (1 | g)", {}, "binomial", {}, DataError, r"binomial response 'cnt'.*cbind"),
    ("cbind(cnt, k - 3) ~ x + (1 | g)", {}, "binomial", {}, DataError, r"'k - 3'.*negative"),
    ("cbind(cnt, c) ~ x + (1 | g)", {}, "binomial", {}, DataError, r"'c'.*numeric"),
    ("cbind(cnt, k) ~ x + (1 | g)", {}, "poisson", {}, FormulaError, r"cbind.*binomial"),
    ("y ~ x + (1 | g)", {}, "poisson", {}, DataError, r"poisson response 'y'.*negative"),
    ("c ~ x + (1 | g)", {}, "poisson", {}, DataError, r"response 'c' is categorical"),
    ("f ~ x + (1 | g)", {}, "negative_binomial", {}, DataError, r"response 'f' is categorical"),
    ("f ~ x + (1 | g)", {}, "gaussian", {}, DataError, r"response 'f' is categorical"),
    ("y ~ x + (1 | g)", {}, "ordinal", {}, DataError, r"'y' is numeric: it must be an ordered"),
    ("f ~ x + (1 | g)", {"f": "lo"}, "ordinal", {}, DataError, r"'f' needs at least 2"),
    ("f ~ x + (1 | g)", {"f": "lo"}, "multinomial", {}, DataError, r"'f' needs at least 2"),
    ("l ~ x + (1 | g)", {"l": True}, "binomial", {}, DataError, r"response 'l' is constant"),
    ("y ~ x + (1 | g)", {}, "gamma", {}, FamilyError, r"family 'gamma'.*'gaussian'.*'multinomial'"),
    ("y ~ f + (1 | g)", {"f": "lo"}, "gaussian", {}, DataError, r"factor 'f' has only 1 level"),
    ("y ~ x + s(c) + (1 | g)", {}, "gaussian", {}, DataError, r"'c'"),
    ("y ~ x + s(z, by = nope) + (1 | g)", {}, "gaussian", {}, DataError, r"'nope'"),
    ("y ~ x + s(z, bs = \"gp\") + (1 | g)", {}, "gaussian", {}, FormulaError, r"tp.*cr.*ps"),
    ("y ~ x + s(x, z) + (1 | g)", {}, "multinomial", {}, FormulaError, r"'multinomial'"),
    ("y ~ poly(x, 2) + (1 | g)", {}, "gaussian", {}, FormulaError, r"unknown function 'poly'"),
    ("y ~ log(c) + (1 | g)", {}, "gaussian", {}, DataError, r"'log\(c\)'.*needs numbers"),
    ("y ~ x + (0 | g)", {}, "gaussian", {}, FormulaError, r"\(0 \| g\) has no columns"),
    ("y ~ x + (1 + x + z + a | g)", {"y": 0.0}, "gaussian", {}, None, None),
]


@pytest.mark.parametrize(("formula", "changes", "family", "kwargs", "cls", "pattern"), BAD_INPUT,
                         ids=[f"{b[0]}|{b[2]}|{sorted(b[1])}" for b in BAD_INPUT])
def test_bad_input_raises_named_error(formula, changes, family, kwargs, cls, pattern):
    df = SIM.copy()
    for col, value in changes.items():
        df[col] = [f"r{i}" for i in range(len(df))] if value == "row" else value
    if cls is None:  # accepted
        build_design(formula, df, family, **kwargs)
        return
    with pytest.raises(cls, match=pattern) as info:
        build_design(formula, df, family, **kwargs)
    assert isinstance(info.value, GLMMError) and isinstance(info.value, ValueError)


def test_lme4_level_and_size_checks():
    grouse = datasets.load("grouseticks")
    # an observation-level random effect is fine for a GLMM (lme4's allow.n) ...
    d = build_design("TICKS ~ YEAR + (1 | INDEX)", grouse, "poisson")
    assert d.ngroups == {"INDEX": 403}
    # ... but not for an LMM
    with pytest.raises(DataError, match="'INDEX' has 403 levels for 403 observations"):
        build_design("TICKS ~ YEAR + (1 | INDEX)", grouse, "gaussian")
    # lme4: number of observations (=56) < number of random effects (=60)
    with pytest.raises(DataError, match=r"\(=56\) < number of random effects \(=60\).*period"):
        build_design("cbind(incidence, size - incidence) ~ 1 + (1 + period | herd)",
                     datasets.load("cbpp"), "binomial")


def test_families_list():
    assert FAMILIES == ("gaussian", "binomial", "poisson", "negative_binomial", "nbinom1",
                        "Gamma", "beta", "ordbeta", "betabinomial", "truncated_poisson",
                        "truncated_nbinom2", "truncated_nbinom1", "t", "tweedie", "compois",
                        "genpois",
                        "ordinal", "multinomial")
    with pytest.raises(FamilyError):
        build_design("y ~ x + (1 | g)", SIM, family=None)


def test_empty_and_non_frame_data():
    with pytest.raises(DataError, match="no rows"):
        build_design("y ~ x + (1 | g)", SIM.iloc[:0])
    with pytest.raises(DataError, match="DataFrame"):
        build_design("y ~ x + (1 | g)", [1, 2, 3])
    d = build_design("y ~ x + (1 | g)", {c: SIM[c].to_numpy() for c in ("y", "x", "g")})
    assert d.n == len(SIM)


def test_messages_for_rank_deficiency_and_non_integer_counts():
    d = build_design("y ~ x + I(2 * x) + (1 | g)", SIM)
    assert d.fixef_names == ("(Intercept)", "x")
    assert any("rank deficient so dropping 1 column / coefficient: I(2 * x)" in m
               for m in d.messages)
    # dpois is -Inf at non-integers: a Poisson likelihood cannot be fitted there
    with pytest.raises(DataError, match=r"'I\(cnt \+ 0.5\)'.*non-integer counts"):
        build_design("I(cnt + 0.5) ~ x + (1 | g)", SIM, "poisson")
    d = build_design("y ~ I(x * 1e5) + (1 | g)", SIM)
    assert any("very different scales" in m for m in d.messages)


# ---------------------------------------------------------------- the Design object


def test_design_is_frozen():
    d = build_design("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.y = d.y
    for arr in (d.y, d.X, d.weights, d.offset, d.terms[0].codes, d.terms[0].Xr):
        assert not arr.flags.writeable
    assert isinstance(d, Design) and d.family == "gaussian"
    assert d.ngroups == {"Subject": 18} and d.p == 2 and d.n == 180


ROUND_TRIP = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "gaussian", {}),
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd/period)", "binomial", {}),
    ("grouseticks", "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", "poisson",
     {}),
    ("VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial", {}),
    ("sim", "cnt ~ o + s + l + factor(k) + scale(z, center = FALSE) + offset(log(t)) + "
     "(1 + f || g) + (1 | a:c)", "poisson", {"weights": "w", "offset": "x"}),
    ("sim", "y ~ x + I(2 * x) + (1 | g)", "gaussian", {}),
]


@pytest.mark.parametrize("case", ROUND_TRIP, ids=[c[1] for c in ROUND_TRIP])
def test_new_data_round_trip(case):
    dname, formula, family, kwargs = case
    df = _frames([dname])[dname]
    d = build_design(formula, df, family, **kwargs)
    nd = d.new_data(df)
    np.testing.assert_array_equal(nd.X, d.X)
    np.testing.assert_array_equal(nd.offset, d.offset)
    assert nd.fixef_names == d.fixef_names
    for a, b in zip(d.terms, nd.terms, strict=True):
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_array_equal(a.Xr, b.Xr)
        assert (a.levels, a.cnames, a.varcorr_name) == (b.levels, b.cnames, b.varcorr_name)
    assert np.isnan(nd.y).all()
    # and without the response column
    resp = sorted(set(re.findall(r"[\w.]+", d.response_name)) & set(df.columns))
    np.testing.assert_array_equal(d.new_data(df.drop(columns=resp)).X, d.X)


def test_new_data_levels_and_state():
    grouse = datasets.load("grouseticks")
    d = build_design("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", grouse,
                     "poisson")
    new = grouse.iloc[[0, 1, 2]].copy()
    # scale() keeps the fit's centre and scale
    np.testing.assert_allclose(d.new_data(new).X, d.X[:3])
    # unseen grouping level -> -1; unseen fixed level -> error
    new["BROOD"] = new["BROOD"].cat.add_categories(["999"])
    new.loc[new.index[0], "BROOD"] = "999"
    nd = d.new_data(new)
    assert nd.terms[0].group == "BROOD" and nd.terms[0].codes[0] == -1
    assert nd.terms[0].codes[1] == d.terms[0].codes[1]
    bad = grouse.iloc[[0]].assign(YEAR=pd.Categorical(["98"]))
    with pytest.raises(DataError, match="'YEAR' has new levels 98"):
        d.new_data(bad)
    # missing values pass through (na.pass): NaN rows, code -1
    miss = grouse.iloc[[0, 1]].copy()
    miss.loc[miss.index[0], "HEIGHT"] = np.nan
    miss["LOCATION"] = miss["LOCATION"].astype(object)
    miss.loc[miss.index[1], "LOCATION"] = None
    nd = d.new_data(miss)
    assert np.isnan(nd.X[0, -1]) and not np.isnan(nd.X[1]).any()
    assert nd.terms[1].codes[1] == -1
    # a string column in new data maps by label onto the fit's levels
    as_str = grouse.iloc[:5].assign(BROOD=grouse["BROOD"].iloc[:5].astype(str))
    np.testing.assert_array_equal(d.new_data(as_str).terms[0].codes, d.terms[0].codes[:5])


def test_new_data_missing_predictor_column():
    d = build_design("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))
    with pytest.raises(DataError, match="unknown column 'Days'"):
        d.new_data(pd.DataFrame({"Subject": ["308"]}))


def test_accepts_a_parsed_formula():
    from glmmbench.model.formula import parse_formula

    spec = parse_formula("Reaction ~ Days + (Days | Subject)")
    d = build_design(spec, datasets.load("sleepstudy"))
    assert d.formula == "Reaction ~ Days + (Days | Subject)"


@pytest.mark.slow
def test_million_rows_builds():
    rng = np.random.default_rng(0)
    n = 1_000_000
    g = rng.integers(0, 5000, n)
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                       "g": pd.Categorical.from_codes(g, [f"g{i}" for i in range(5000)])})
    d = build_design("y ~ x + (1 + x | g)", df)
    assert d.n == n and d.terms[0].nlevels == 5000 and d.X.shape == (n, 2)
    df["gi"] = g
    d2 = build_design("y ~ x + (1 | gi)", df, "gaussian")
    assert d2.terms[0].nlevels == 5000


@given(st.integers(1, 6), st.integers(0, 3), st.integers(0, 2**32 - 1),
       st.sampled_from([0.0, 1e-12, 1e-9, 1e-6, 1e-3]))
@settings(max_examples=80, deadline=None)
def test_rank_fast_path_agrees_with_dqrdc2_path(p, n_dep, seed, noise):
    """The unpivoted-QR shortcut never changes which columns lme4's rule keeps."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(50, p)) * rng.choice([1e-3, 1.0, 1e4], size=p)
    for _ in range(n_dep):
        coef = rng.normal(size=X.shape[1])
        dep = X @ coef + noise * rng.normal(size=50) * np.linalg.norm(X @ coef) / 7
        X = np.column_stack([X, dep])[:, rng.permutation(X.shape[1] + 1)]
    assert _rank_keep(X) == _rank_keep(X, fast=False)


def test_parenthesised_response_and_t_f_names():
    d = build_design("(y) ~ scale(x, center = F) + (1 | g)", SIM)
    d2 = build_design("y ~ scale(x, center = FALSE) + (1 | g)", SIM)
    np.testing.assert_array_equal(d.X, d2.X)
    np.testing.assert_array_equal(d.y, d2.y)
    assert d.fixef_names == ("(Intercept)", "scale(x, center = F)")
