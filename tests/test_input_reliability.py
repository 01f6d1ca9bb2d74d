"""Bad input to ``gb.fit`` ends in a correct result (R's, live, where R has one) or a
clear error naming the column, term or argument (issue 23):

- as many fixed effects as observations (5 covariates on 6 rows, ``factor()`` of a
  continuous covariate, a numeric column read as text): a `DataError` naming the
  columns and the cause, where REML raised ZeroDivisionError and ML returned a
  log-likelihood of +190 (lme4: REML "objective in x0 returns NA", ML +197);
  more columns than rows drop as lme4 drops them first; one residual degree of
  freedom fits as lme4 does; an ordinal model's constant column is dropped as clmm
  drops it; a constant Gaussian response, or one the fixed effects reproduce
  exactly, is an error (lmer returns residual sd 0);
- text levels sort as R's ``sort()`` (ICU collation in the UTF-8 locale of the
  Rscript here): ``jobÄrzte`` with ``jobArzt``, not after ``jobZahn``;
- a formula of 1000 terms fits (R needs a larger C stack for it); nesting beyond
  the parser's depth, or an interaction of thousands of terms, is a `FormulaError`;
- ``control`` that is not a dict, or holds inf, NaN or a fraction for a count, is a
  `GLMMError` naming the option;
- a Gaussian response on a 1e-200 scale is a `DataError` naming it and the factor that
  rescales it (lme4 returns log-likelihood +Inf and a residual sd of 0); on 1e-90 it
  fits as lme4 does; a Gamma(log) response on a 1e-20 scale fails with a message
  about the log link's floor, and the advised rescaling gives glmmTMB's fit of the
  original scale; ``offset(log(e))`` with ``e = 0`` is an error naming that term.
"""

from __future__ import annotations

import contextlib
import resource

import numpy as np
import pandas as pd
import pytest

import glmmbench as gb
from glmmbench import datasets
from glmmbench.errors import DataError, FormulaError, GLMMError, NumericalError
from glmmbench.model.design import _collate_key, build_design
from glmmbench.model.formula import parse_formula
from tests.rscript import run_r


def _six(seed: int = 1) -> pd.DataFrame:
    """6 rows in 3 groups, with covariates x1..x5."""
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"y": rng.normal(size=6),
                      "g": pd.Categorical(["a", "a", "b", "b", "c", "c"])})
    for i in range(1, 6):
        d[f"x{i}"] = rng.normal(size=6)
    d["yb"] = [0, 1, 0, 1, 1, 0]
    return d


FIVE = "y ~ x1 + x2 + x3 + x4 + x5 + (1 | g)"


# ------------------------------------------------------- as many columns as rows
@pytest.mark.r
def test_as_many_fixed_effects_as_rows_is_an_error_naming_the_columns():
    d = _six()
    for reml in (True, False):
        with pytest.raises(DataError) as err:
            gb.fit(FIVE, d, reml=reml)
        msg = str(err.value)
        assert "6 coefficients for 6 observations" in msg
        assert "(Intercept), x1, x2, x3, x4, x5" in msg and "n - p = 0" in msg
        assert "residual variance" in msg
    # lme4: REML cannot evaluate its criterion; ML "fits" the data exactly
    ref = run_r(f"""
        reml <- tryCatch({{lmer({FIVE}, d); "fitted"}}, error = function(e) conditionMessage(e))
        ml <- suppressWarnings(lmer({FIVE}, d, REML = FALSE))
        list(reml = reml, ml = as.numeric(logLik(ml)), sigma = sigma(ml))""", d=d)
    assert "NA" in ref["reml"]
    assert ref["ml"] > 100 and ref["sigma"] < 1e-6


def test_a_generalized_model_with_as_many_columns_as_rows_is_an_error():
    with pytest.raises(DataError, match=r"6 coefficients for 6 observations .*saturated"):
        gb.fit("yb ~ x1 + x2 + x3 + x4 + x5 + (1 | g)", _six(), "binomial")


def test_a_factor_of_a_continuous_covariate_is_named():
    with pytest.raises(DataError) as err:
        gb.fit("y ~ factor(x1) + (1 | g)", _six())
    msg = str(err.value)
    assert "'factor(x1)' is a factor with 6 levels in 6 rows" in msg
    assert "use the variable itself" in msg


def test_a_numeric_column_read_as_text_is_named_with_the_fix():
    d = _six().assign(x1=lambda t: t["x1"].round(4).astype(str))
    with pytest.raises(DataError) as err:
        gb.fit("y ~ x1 + (1 | g)", d)
    msg = str(err.value)
    assert "column 'x1' is text whose values read as numbers" in msg
    assert "pd.to_numeric(data['x1'])" in msg
    # converted, it fits
    fixed = d.assign(x1=pd.to_numeric(d["x1"]))
    assert np.isfinite(gb.fit("y ~ x1 + (1 | g)", fixed).loglik)


@pytest.mark.r
def test_more_columns_than_rows_drop_as_lme4_then_refuse():
    """factor(x1) + x2 has 7 columns for 6 rows: lme4 drops x2 (its rank-deficiency
    message), leaving 6 columns for 6 rows, which lme4 cannot fit either."""
    d = _six()
    formula = "y ~ factor(x1) + x2 + (1 | g)"
    with pytest.raises(DataError) as err:
        gb.fit(formula, d)
    msg = str(err.value)
    assert "dropping 1 column / coefficient: x2" in msg
    ref = run_r(f"""
        X <- suppressMessages(lFormula({formula}, d))$X
        fit <- tryCatch({{lmer({formula}, d); "fitted"}},
                        error = function(e) conditionMessage(e))
        list(columns = I(colnames(X)), fit = fit)""", d=d)
    kept = msg.split("observations (")[1].split("):")[0].split(", ")
    assert [c.replace("factor(x1)", "") for c in kept] == \
        [c.replace("factor(x1)", "") for c in ref["columns"]][:len(kept)]
    assert len(ref["columns"]) == 6 and "x2" not in ref["columns"]
    assert ref["fit"] != "fitted"


@pytest.mark.r
def test_one_residual_degree_of_freedom_fits_as_lme4():
    """n = p + 1: a fit, lme4's REML criterion. With one error contrast ``a`` the REML
    likelihood identifies only its variance, sigma^2 (1 + theta^2 |Z'a|^2): lme4 and
    the engine stop at different points of that ridge, with the same value."""
    d = _six()
    formula = "y ~ x1 + x2 + x3 + x4 + (1 | g)"
    ref = run_r(f"""
        m <- suppressWarnings(suppressMessages(lmer({formula}, d)))
        list(loglik = as.numeric(logLik(m)), theta = getME(m, "theta"),
             sigma = sigma(m))""", d=d)
    res = gb.fit(formula, d)
    assert res.loglik == pytest.approx(ref["loglik"], abs=1e-8)
    X = np.column_stack([np.ones(6), d[["x1", "x2", "x3", "x4"]].to_numpy()])
    a = np.linalg.qr(X, mode="complete")[0][:, -1]
    Z = (d["g"].cat.codes.to_numpy()[:, None] == np.arange(3)).astype(float)
    c = float(np.sum((a @ Z) ** 2))
    assert res.sigma**2 * (1 + res.theta[0] ** 2 * c) == \
        pytest.approx(ref["sigma"] ** 2 * (1 + ref["theta"] ** 2 * c), rel=1e-6)


def test_an_ordinal_models_constant_column_is_dropped_as_clmm_drops_it():
    """The thresholds are the intercept: a constant column is collinear with them
    (clmm: "design is column rank deficient so dropping 1 coef"); it was kept, and
    the fit broke down with a LinAlgError."""
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": pd.Categorical(rng.integers(1, 5, 40), ordered=True), "c": 2.0,
                      "z": rng.normal(size=40), "g": np.repeat(np.arange(8), 5)})
    res = gb.fit("y ~ c + z + (1 | g)", d, "ordinal")
    assert list(res.fixef.index) == ["z"]
    assert any("dropping 1 column / coefficient: c" in m for m in res.messages)
    same = gb.fit("y ~ z + (1 | g)", d, "ordinal")
    assert res.loglik == pytest.approx(same.loglik, abs=1e-9)


def test_a_constant_gaussian_response_is_an_error_that_says_so():
    """lme4's design stage accepts it (so does build_design), and lmer "fits" it with a
    residual sd of 0 and a REML criterion of -Inf; the engine returned log-likelihood
    +544 "ok" (y = 3), or an error saying "try the canonical link, nagq=1" (y = 0)."""
    d = pd.concat([_six(seed) for seed in range(3)], ignore_index=True)
    for y in (0.0, 3.0):
        assert build_design("y ~ x1 + (1 | g)", d.assign(y=y)).n == 18
        with pytest.raises(DataError) as err:
            gb.fit("y ~ x1 + (1 | g)", d.assign(y=y))
        assert str(err.value) == (f"response 'y' is constant (all values {y:g}): there is no "
                                  "variation to model")


def test_a_gaussian_response_the_fixed_effects_reproduce_is_an_error():
    """y = 2 x1 + 1 exactly: the engine returned log-likelihood +573 "not converged"."""
    d = pd.concat([_six(seed) for seed in range(3)], ignore_index=True)
    with pytest.raises(DataError, match=r"'y' is an exact linear function of the fixed "
                                        r"effects \(\(Intercept\), x1\)"):
        gb.fit("y ~ x1 + (1 | g)", d.assign(y=2 * d["x1"] + 1))
    # with an offset, the response less the offset is what the fixed effects fit
    with pytest.raises(DataError, match="exact linear function"):
        gb.fit("y ~ x1 + offset(x2) + (1 | g)", d.assign(y=2 * d["x1"] + d["x2"]))


# ------------------------------------------------------------- level collation
WORDS = ["jobÄrzte", "jobArbeiter", "jobZahn", "jobarzt", "Öl", "Ober", "über", "Uhr", "éa",
         "eb", "ea", "Ea", "a b", "a_b", "a-b", "A1", "a10", "a2", "ß", "ss", "st", "ø", "o",
         "æ", "ae", "af", "Ł", "L", "ñ", "n", "côte", "coté", "cote", "Côte", "ĳ", "ij"]


@pytest.mark.r
def test_text_levels_sort_as_r_sorts_them():
    """R's sort() here (Rscript: C.UTF-8 with ICU) against _collate_key, and the
    reference level of a text column in a fit against lmer's."""
    rng = np.random.default_rng(5)
    jobs = ["jobZahn", "jobÄrzte", "jobArbeiter", "jobarzt"]
    n = 80
    job = np.array(jobs)[np.arange(n) % 4]
    g = np.repeat(np.arange(10), 8)
    d = pd.DataFrame({"y": rng.normal(size=n) + (job == "jobÄrzte"), "job": job,
                      "g": pd.Categorical([f"g{i}" for i in g])})
    w = pd.DataFrame({"w": WORDS})
    ref = run_r("""
        m <- lmer(y ~ job + (1 | g), d)
        list(sorted = I(sort(w$w)), levels = I(levels(factor(d$job))),
             fixef = as.list(fixef(m)), loglik = as.numeric(logLik(m)),
             collate = Sys.getlocale("LC_COLLATE"), icu = capabilities("ICU"))""",
                d=d, w=w)
    assert sorted(WORDS, key=_collate_key) == ref["sorted"], ref["collate"]
    assert ref["levels"] == ["jobArbeiter", "jobarzt", "jobÄrzte", "jobZahn"]
    res = gb.fit("y ~ job + (1 | g)", d)
    assert list(res.fixef.index) == list(ref["fixef"])  # reference level jobArbeiter
    np.testing.assert_allclose(res.fixef, list(ref["fixef"].values()), rtol=1e-6)
    assert res.loglik == pytest.approx(ref["loglik"], abs=1e-6)


# -------------------------------------------------------------------- formulas
@contextlib.contextmanager
def _big_c_stack():
    """R evaluates a formula of 1000 terms recursively: it needs more than the usual
    8 MB of C stack ("C stack usage is too close to the limit"). Child processes
    inherit the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
    resource.setrlimit(resource.RLIMIT_STACK, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))


@pytest.mark.r
def test_a_formula_of_1000_terms_fits_as_lme4():
    """Was a RecursionError in formula.py. The covariates are a deterministic
    function of the row and column (computed alike in R), so only y and g travel."""
    p, n = 1000, 1040
    i, j = np.arange(1, n + 1)[:, None], np.arange(p)[None, :]
    X = np.sin(12.9898 * i + 78.233 * j) * 43758.5453  # a well-conditioned hash
    X = X - np.floor(X) - 0.5
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(104), 10)
    d = pd.DataFrame(X, columns=[f"x{k}" for k in range(p)])
    d["y"] = X[:, :5].sum(axis=1) + rng.normal(size=n) + rng.normal(size=104)[g]
    d["g"] = pd.Categorical([f"g{k}" for k in g])
    formula = "y ~ " + " + ".join(f"x{k}" for k in range(p)) + " + (1 | g)"
    assert len(parse_formula(formula).fixed.terms) == p
    res = gb.fit(formula, d)
    assert res.fixef.size == p + 1
    with _big_c_stack():
        ref = run_r(f"""
            n <- nrow(d); p <- {p}
            for (k in 0:(p - 1)) {{
              h <- sin(12.9898 * (1:n) + 78.233 * k) * 43758.5453
              d[[paste0("x", k)]] <- h - floor(h) - 0.5
            }}
            m <- lmer(as.formula(paste("y ~", paste0("x", 0:(p - 1), collapse = " + "),
                                       "+ (1 | g)")), d)
            list(loglik = as.numeric(logLik(m)), fixef = I(unname(fixef(m))[1:6]))""",
                    d=d[["y", "g"]])
    assert res.loglik == pytest.approx(ref["loglik"], abs=1e-5)
    np.testing.assert_allclose(res.fixef.iloc[:6], ref["fixef"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("formula, match", [
    ("y ~ " + "(" * 300 + "x1" + ")" * 300 + " + (1 | g)", "nested more than 200 levels"),
    ("y ~ " + "-" * 500 + "x1 + (1 | g)", "nested more than 200 levels"),
    ("y ~ " + ":".join(f"x{k % 5 + 1}" for k in range(1000)) + " + (1 | g)", None),
    ("y ~ " + "*".join(f"z{k}" for k in range(30)) + " + (1 | g)",
     "expands into more than 100000 terms"),
])
def test_deep_formulas_parse_or_are_a_formula_error(formula, match):
    if match is None:  # x1:x2:...:x5 repeated, 1000 deep: one interaction term
        spec = parse_formula(formula)
        assert spec.fixed.labels == ("x1:x2:x3:x4:x5",)
        return
    with pytest.raises(FormulaError, match=match):
        parse_formula(formula)


def test_long_sums_inside_I_evaluate():
    d = _six()
    formula = "y ~ I(" + " + ".join(["x1"] * 1500) + ") + (1 | g)"
    design = build_design(formula, d)
    np.testing.assert_allclose(design.X[:, 1], 1500 * d["x1"].to_numpy())


# --------------------------------------------------------------------- control
@pytest.mark.parametrize("control, match", [
    ({"maxfeval": float("inf")}, "'maxfeval' must be a finite positive number, not inf"),
    ({"maxfeval": float("nan")}, "'maxfeval' must be a finite positive number"),
    ({"maxfeval": 1.5}, "'maxfeval' must be a whole number"),
    ({"maxfeval": 10**30}, "'maxfeval' must be a whole number up to 2147483647"),
    ({"ftol_rel": "1e-8"}, "'ftol_rel' must be a finite positive number"),
    ([1, 2], r"control must be a dict of options .* not list \[1, 2\]"),
    ("maxfeval=10", "control must be a dict"),
])
def test_bad_control_is_an_error_naming_the_option(control, match):
    with pytest.raises(GLMMError, match=match):
        gb.fit("Reaction ~ Days + (1 | Subject)", datasets.load("sleepstudy"),
               control=control)


def test_good_control_values_of_numpy_types_are_taken():
    res = gb.fit("Reaction ~ Days + (1 | Subject)", datasets.load("sleepstudy"),
                 control={"maxfeval": np.int64(5000), "lmm_ftol_rel": np.float64(1e-12),
                          "calc_derivs": np.True_})
    assert res.converged


# -------------------------------------------------------------------- scales
@pytest.mark.r
def test_a_gaussian_response_on_a_tiny_scale():
    """1e-200: refused, naming the response and the factor (lme4: log-likelihood +Inf,
    residual sd 0); 1e-90: fitted as lme4 fits it."""
    sleep = datasets.load("sleepstudy")
    formula = "R ~ Days + (Days | Subject)"
    tiny = sleep.assign(R=sleep["Reaction"] * 1e-200)
    with pytest.raises(DataError) as err:
        gb.fit(formula, tiny)
    assert "response 'R' has values no larger than 4.66e-198" in str(err.value)
    assert "R * 1e198" in str(err.value)
    small = sleep.assign(R=sleep["Reaction"] * 1e-90)
    ref = run_r(f"""
        m200 <- lmer({formula}, tiny)
        m90 <- lmer({formula}, small)
        list(ll200 = as.numeric(logLik(m200)), sigma200 = sigma(m200),
             ll90 = as.numeric(logLik(m90)), fixef90 = I(unname(fixef(m90))),
             theta90 = I(unname(getME(m90, "theta"))))""",
                tiny=tiny[["R", "Days", "Subject"]], small=small[["R", "Days", "Subject"]])
    assert ref["ll200"] is None or ref["ll200"] == float("inf") or ref["sigma200"] == 0
    res = gb.fit(formula, small)
    assert res.loglik == pytest.approx(ref["ll90"], abs=1e-6)
    np.testing.assert_allclose(res.fixef, ref["fixef90"], rtol=1e-6)
    np.testing.assert_allclose(res.theta, ref["theta90"], rtol=1e-4, atol=1e-5)


@pytest.mark.r
def test_a_gamma_log_response_on_a_tiny_scale_names_the_link_floor():
    """The log link's inverse is floored at 2.2e-16 (R's make.link, as lme4, which
    fails: "pwrssUpdate did not converge"); the message says so and gives the factor;
    the fit of the rescaled response is glmmTMB's fit of the original one, its
    intercept shifted by log(1e20) and its log-likelihood by n log(1e20)."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(10), 10)
    x = rng.normal(size=100)
    y = rng.gamma(2.0, np.exp(0.5 + 0.3 * x + 0.3 * rng.normal(size=10)[g]) / 2)
    d = pd.DataFrame({"y": y * 1e-20, "x": x, "g": pd.Categorical(g)})
    with pytest.raises(NumericalError) as err:
        gb.fit("y ~ x + (1 | g)", d, "Gamma", link="log")
    msg = str(err.value)
    assert "response 'y' is on a scale of 1.35e-20" in msg
    assert "smallest mean the log link gives" in msg and "y * 1e20" in msg
    assert "separation" not in msg
    res = gb.fit("y ~ x + (1 | g)", d.assign(y=d["y"] * 1e20), "Gamma", link="log")
    ref = run_r("""
        suppressPackageStartupMessages(library(glmmTMB))
        m <- glmmTMB(y ~ x + (1 | g), d, family = Gamma(link = "log"))
        list(fixef = I(unname(fixef(m)$cond)), loglik = as.numeric(logLik(m)))""", d=d)
    shift = np.log(1e20)
    np.testing.assert_allclose(res.fixef - [shift, 0.0], ref["fixef"], rtol=1e-4, atol=1e-4)
    assert res.loglik + len(d) * shift == pytest.approx(ref["loglik"], abs=1e-3)


# --------------------------------------------------------------------- offsets
def test_an_infinite_formula_offset_names_the_term_and_the_row():
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"c": rng.poisson(3, 100), "x": rng.normal(size=100),
                      "e": rng.uniform(1, 2, 100), "g": np.repeat(np.arange(10), 10)})
    d.loc[3, "e"] = 0.0
    with pytest.raises(DataError) as err:
        gb.fit("c ~ x + offset(log(e)) + (1 | g)", d, "poisson")
    msg = str(err.value)
    assert msg.startswith("offset(log(e)) is -inf in 1 row (first: row 3 where e = 0.0)")
    assert "offset=" not in msg
    off = np.zeros(100)
    off[7] = np.inf
    with pytest.raises(DataError, match=r"offset \(offset= array\) is inf in 1 row "):
        gb.fit("c ~ x + (1 | g)", d.assign(e=1.0), "poisson", offset=off)

