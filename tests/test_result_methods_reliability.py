"""The fitted model's methods end in a correct result or a clear error (issue 23):
``predict`` with offsets on new data (formula offsets from newdata, as lme4; an
``offset=`` array refused without the new rows' offset), numpy truth values for
``re``, grouping levels the fit did not see (lme4's ``allow.new.levels``);
``confint(method="boot")`` with too few replicates; ``confint(parm=<position>)``;
``simulate`` and ``refit`` on bad arguments; Gamma's inverse link in ``simulate``.

Live R (lme4) checks the offset and new-level predictions and the numbering of
``parm``. Tolerance of the Poisson predictions against lme4: both fits reach the
same optimum only to glmer's PIRLS tolerance (tests/test_engine_api.py: linear
predictors within 1e-3; measured here 9e-6), so 5e-5 on the link scale; the
structure (the offset enters exactly, new levels get exactly the population
value) is checked to rounding.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import glmmbench as gb
from glmmbench import datasets
from glmmbench.errors import DataError, GLMMError, NumericalError
from glmmbench.fit import refit
from glmmbench.inference.bootstrap import BootstrapWarning
from glmmbench.results import NewLevelsWarning

from .rscript import r_available, run_r

PRED_ABS = 5e-5  # link scale, native vs glmer (measured 9e-6)
COUNTS = "y ~ x + offset(log(e)) + (1 | g)"
SLEEP = "Reaction ~ Days + (Days | Subject)"


def _counts(seed: int = 4, k: int = 12, per: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(k), per)
    x = rng.normal(size=g.size)
    e = rng.uniform(1, 5, size=g.size)
    y = rng.poisson(e * np.exp(0.2 + 0.3 * x + 0.5 * rng.normal(size=k)[g]))
    return pd.DataFrame({"y": y.astype(float), "x": x, "e": e,
                         "g": pd.Categorical([f"g{i:02d}" for i in g])})


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    return _counts()


@pytest.fixture(scope="module")
def formula_offset(counts):
    return gb.fit(COUNTS, counts, "poisson")


@pytest.fixture(scope="module")
def array_offset(counts):
    return gb.fit("y ~ x + (1 | g)", counts, "poisson", offset=np.log(counts["e"].to_numpy()))


@pytest.fixture(scope="module")
def sleep():
    return gb.fit(SLEEP, datasets.load("sleepstudy"))


def _newdata(counts: pd.DataFrame) -> pd.DataFrame:
    """Four fitted rows with new exposures, and two rows of a group the fit did not see."""
    nd = counts.iloc[[0, 15, 30, 45, 46, 47]].copy().reset_index(drop=True)
    nd["e"] = [1.0, 2.0, 7.5, 0.5, 3.0, 3.0]
    g = nd["g"].astype(str).to_numpy()
    g[-2:] = "new"
    nd["g"] = pd.Categorical(g, categories=[*counts["g"].cat.categories, "new"])
    return nd


@pytest.fixture(scope="module")
def r_ref(counts):
    if not r_available():
        pytest.skip("R is not available")
    nd = _newdata(counts)
    return run_r(f"""
m <- glmer({COUNTS}, d, poisson)
s <- lmer({SLEEP}, sleepstudy)
msg <- function(expr) tryCatch({{expr; ""}}, error = function(e) conditionMessage(e))
list(new = unname(predict(m, nd, allow.new.levels = TRUE)),
     pop = unname(predict(m, nd, re.form = NA)),
     fitted_link = unname(predict(m))[c(1, 16, 31, 46)],
     refused = msg(predict(m, nd)),
     na_refused = msg(predict(m, transform(nd, g = factor(ifelse(g == "new", NA,
                                                           as.character(g)))))),
     parm = I(rownames(confint(s, parm = c(1, 4, 5), method = "Wald"))))
""", d=counts, nd=nd)


# ------------------------------------------------------------------ 1. offsets
def test_array_offset_is_refused_on_newdata_unless_given(array_offset, counts):
    """predict(newdata) of a fit with offset=<array> used to drop the offset silently."""
    with pytest.raises(DataError, match=r"offset= given as an array.*predict\(newdata, "
                                        r"offset=\.\.\.\)"):
        array_offset.predict(counts)
    own = array_offset.predict(counts, offset=np.log(counts["e"].to_numpy()))
    np.testing.assert_allclose(own, array_offset.predict(), rtol=1e-13)
    # a column of newdata by name
    named = array_offset.predict(counts.assign(le=np.log(counts["e"])), offset="le",
                                 type="link")
    np.testing.assert_allclose(named, array_offset.predict(type="link"), rtol=1e-13)
    # without newdata: the fit's own offset; offset= alone is refused
    np.testing.assert_allclose(array_offset.predict(), array_offset.predict(counts, offset=np.log(
        counts["e"].to_numpy())), rtol=1e-13)
    with pytest.raises(GLMMError, match="offset= applies to newdata"):
        array_offset.predict(offset=np.zeros(len(counts)))
    with pytest.raises(DataError, match="offset= has length 3, but the data have 120 rows"):
        array_offset.predict(counts, offset=np.zeros(3))


def test_formula_offset_is_evaluated_on_newdata(formula_offset, array_offset, counts):
    nd = counts.iloc[:5].assign(e=[1.0, 2.0, 3.0, 4.0, 5.0])
    eta = formula_offset.predict(nd, type="link")
    base = formula_offset.predict(nd.assign(e=1.0), type="link")
    np.testing.assert_allclose(eta - base, np.log(nd["e"]), rtol=0, atol=1e-13)
    np.testing.assert_allclose(formula_offset.predict(counts), formula_offset.predict(),
                               rtol=1e-13)
    # the same model with the offset as an array: the same predictions once it is given
    np.testing.assert_allclose(array_offset.predict(nd, offset=np.log(nd["e"]), type="link"),
                               eta, rtol=0, atol=1e-5)
    # offset= for a fit without an offset= argument would count the offset twice
    with pytest.raises(DataError, match=r"without an offset= argument; its formula offsets "
                                        r"\(offset\(log\(e\)\)\) are evaluated from the new"):
        formula_offset.predict(nd, offset=np.log(nd["e"]))


def test_offset_column_of_the_fit_comes_from_newdata(counts):
    data = counts.assign(le=np.log(counts["e"]))
    res = gb.fit("y ~ x + (1 | g)", data, "poisson", offset="le")
    nd = data.iloc[:4].assign(le=0.0)
    np.testing.assert_allclose(res.predict(nd, type="link") + data["le"].iloc[:4],
                               res.predict(type="link")[:4], rtol=0, atol=1e-12)
    with pytest.raises(DataError, match="unknown column 'le' given as offset="):
        res.predict(nd.drop(columns="le"))


@pytest.mark.r
def test_offset_and_new_level_predictions_match_lme4(formula_offset, counts, r_ref):
    nd = _newdata(counts)
    with pytest.warns(NewLevelsWarning, match="2 row"):
        new = formula_offset.predict(nd, type="link", allow_new_levels=True)
    np.testing.assert_allclose(new, r_ref["new"], rtol=0, atol=PRED_ABS)
    pop = formula_offset.predict(nd, type="link", re=False)
    np.testing.assert_allclose(pop, r_ref["pop"], rtol=0, atol=PRED_ABS)
    np.testing.assert_array_equal(new[-2:], pop[-2:])
    # the fitted rows differ from the fitted values by the change of offset only
    own = formula_offset.predict(type="link")[[0, 15, 30, 45]]
    np.testing.assert_allclose(own, r_ref["fitted_link"], rtol=0, atol=PRED_ABS)
    shift = np.log(nd["e"].iloc[:4].to_numpy() / counts["e"].iloc[[0, 15, 30, 45]].to_numpy())
    np.testing.assert_allclose(new[:4] - own, shift, rtol=0, atol=1e-12)
    # lme4 refuses the new level, and a missing one, by default
    assert "new levels detected in newdata" in r_ref["refused"]
    assert "NAs are not allowed in prediction data" in r_ref["na_refused"]


# ------------------------------------------------------------------ 4. re=
@pytest.mark.parametrize("yes, no", [(np.True_, np.False_), (1, 0), (np.int64(1), np.int64(0))],
                         ids=["numpy bool", "int", "int64"])
def test_re_accepts_numpy_and_integer_truth_values(formula_offset, yes, no):
    """re=np.True_ or 1 used to give population-level predictions silently."""
    cond, pop = formula_offset.predict(), formula_offset.predict(re=False)
    assert np.abs(cond - pop).max() > 0.01
    np.testing.assert_array_equal(formula_offset.predict(re=yes), cond)
    np.testing.assert_array_equal(formula_offset.predict(re=no), pop)


@pytest.mark.parametrize("bad", [2, 1.0, "yes", None, [True]])
def test_re_refuses_other_values(formula_offset, bad):
    with pytest.raises(GLMMError, match="re must be True, False or 'marginal'"):
        formula_offset.predict(re=bad)
    with pytest.raises(GLMMError, match="allow_new_levels must be True or False"):
        formula_offset.predict(allow_new_levels="yes")


# ------------------------------------------------------------------ 5. new levels
def test_unseen_grouping_levels_are_an_error_naming_factor_and_levels(formula_offset, counts):
    """Integer codes 0..11 where the fit saw 'g00'..'g11': every row unseen."""
    nd = counts.assign(g=counts["g"].cat.codes.astype(int))
    with pytest.raises(DataError) as err:
        formula_offset.predict(nd)
    msg = str(err.value)
    assert "12 level(s) of grouping factor 'g' not seen in the fit" in msg
    assert "'0', '1', '2', '3', '4' and 7 more (120 rows" in msg
    assert "the fit's levels are 'g00', 'g01', 'g02', ..." in msg
    assert "allow_new_levels=True" in msg
    with pytest.warns(NewLevelsWarning, match=r"120 row\(s\) of newdata have levels of "
                                              r"grouping factor 'g' not seen in the fit"):
        allowed = formula_offset.predict(nd, allow_new_levels=True)
    np.testing.assert_array_equal(allowed, formula_offset.predict(nd, re=False))
    # population-level and marginal predictions do not use the levels: no error, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", NewLevelsWarning)
        formula_offset.predict(nd, re=False)
        formula_offset.predict(nd, re="marginal")
        formula_offset.predict(counts)  # every level seen


def test_missing_grouping_values_are_refused_as_lme4(formula_offset, counts):
    nd = counts.iloc[:3].copy()
    nd["g"] = nd["g"].astype(object)
    nd.loc[1, "g"] = None
    with pytest.raises(DataError, match="1 missing value.* grouping factor 'g'"):
        formula_offset.predict(nd)
    with pytest.warns(NewLevelsWarning, match="1 row.* missing value of grouping factor 'g'"):
        got = formula_offset.predict(nd, allow_new_levels=True)
    np.testing.assert_array_equal(got[1], formula_offset.predict(nd, re=False)[1])
    np.testing.assert_array_equal(got[[0, 2]], formula_offset.predict()[[0, 2]])


def test_unseen_combination_of_an_interaction_group():
    cbpp = datasets.load("cbpp")
    res = gb.fit("cbind(incidence, size - incidence) ~ period + (1 | herd:period)", cbpp,
                 "binomial")
    res.predict(cbpp.iloc[:2])
    # a herd and a period that both occur, never together
    pairs = set(zip(cbpp["herd"].astype(str), cbpp["period"].astype(str), strict=True))
    missing = [(h, p) for h in cbpp["herd"].cat.categories for p in cbpp["period"].cat.categories
               if (h, p) not in pairs]
    assert missing
    h, p = missing[0]
    nd = cbpp.iloc[:1].copy()
    nd["herd"] = pd.Categorical([h], categories=cbpp["herd"].cat.categories)
    nd["period"] = pd.Categorical([p], categories=cbpp["period"].cat.categories)
    with pytest.raises(DataError, match=f"grouping factor 'herd:period' not seen in the fit: "
                                        f"'{h}:{p}'"):
        res.predict(nd)


# ------------------------------------------------------------------ 8. confint(boot)
def test_boot_intervals_need_enough_replicates():
    res = gb.fit("Reaction ~ Days + (1 | Subject)", datasets.load("sleepstudy"))
    with pytest.raises(GLMMError, match=r"nsim=1: a percentile interval needs at least 2 "
                                        r"bootstrap replicates.*39 for limits inside"):
        res.confint(method="boot", nsim=1, seed=1)
    with pytest.warns(BootstrapWarning, match=r"5 successful bootstrap replicate\(s\) are too "
                                              r"few for level 0.95.*use nsim >= 39"):
        ci = res.confint(method="boot", nsim=5, seed=1, parm="beta_")
    assert (ci.iloc[:, 1] > ci.iloc[:, 0]).all()
    with pytest.warns(BootstrapWarning, match="use nsim >= 19"):
        res.confint(method="boot", nsim=3, seed=1, level=0.9, parm="Days")
    for bad in (0, 1.5, -3, True):
        with pytest.raises(GLMMError, match="nsim must be a positive integer"):
            res.confint(method="boot", nsim=bad)


# ------------------------------------------------------------------ confint(parm=)
@pytest.mark.r
def test_parm_positions_count_as_lme4(sleep, r_ref):
    ci = sleep.confint("Wald", parm=[1, 4, 5])
    assert list(ci.index) == list(r_ref["parm"]) == [".sig01", ".sigma", "(Intercept)"]
    assert list(sleep.confint("Wald", parm=6).index) == ["Days"]
    assert list(sleep.confint("Wald", parm=np.array([5, 6])).index) == ["(Intercept)", "Days"]


@pytest.mark.parametrize("bad, match", [
    (0, r"parm positions count from 1 to 6 \(lme4's numbering of the rows \.sig01"),
    (7, r"parm positions count from 1 to 6"),
    ([1, "Days"], "not a mix"),
    (True, "parm must be a parameter name, a position"),
    (2.0, "parm must be a parameter name, a position"),
    ("nope", r"no parameter\(s\) \['nope'\]"),
])
def test_parm_errors(sleep, bad, match):
    with pytest.raises(GLMMError, match=match):
        sleep.confint("Wald", parm=bad)


# ------------------------------------------------------------------ simulate
@pytest.mark.parametrize("kwargs, match", [
    ({"nsim": 1.5}, "nsim must be a positive integer, not 1.5"),
    ({"nsim": -1}, "nsim must be a positive integer, not -1"),
    ({"nsim": 0}, "nsim must be a positive integer, not 0"),
    ({"nsim": True}, "nsim must be a positive integer"),
    ({"seed": "abc"}, "seed must be an integer >= 0, a numpy.random.Generator or None, "
                      "not 'abc'"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"seed": 1.5}, "seed must be an integer >= 0"),
])
def test_simulate_refuses_bad_arguments(formula_offset, kwargs, match):
    with pytest.raises(GLMMError, match=match):
        formula_offset.simulate(**kwargs)


def test_simulate_accepts_numpy_integers(formula_offset):
    a = formula_offset.simulate(np.int64(2), seed=np.uint32(5))
    assert a.shape == (120, 2)
    pd.testing.assert_frame_equal(a, formula_offset.simulate(2, seed=5))


def test_simulate_gamma_inverse_link_names_the_link():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(10), 12)
    x = rng.uniform(size=g.size)
    mu = 1.0 / (2.0 + x + 0.3 * rng.normal(size=10)[g])
    y = rng.gamma(4.0, mu / 4.0)
    data = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})
    res = gb.fit("y ~ x + (1 | g)", data, "Gamma", link="inverse")
    assert (res.simulate(3, seed=1).to_numpy() > 0).all()
    # a random-effect sd far above the intercept: drawn linear predictors below 0
    wide = dataclasses.replace(res, theta=res.theta * 0 + 50.0)
    with pytest.raises(NumericalError, match=r"simulate\(\): the Gamma family's inverse link "
                                             r"gives \d+ observation\(s\) of replicate 1 a mean "
                                             r"outside its range"):
        wide.simulate(1, seed=1)


# ------------------------------------------------------------------ refit
def test_refit_refuses_responses_the_family_cannot_take(formula_offset):
    cbpp = datasets.load("cbpp")
    binom = gb.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                   "binomial")
    with pytest.raises(DataError, match=r"refit: binomial newresp has 56 value\(s\) outside "
                                        r"0-1 \(first: 3, from 3 to 3\)"):
        refit(binom, np.full(binom.nobs, 3.0))
    with pytest.raises(DataError, match=r"refit: newresp must be numbers \(on the scale "
                                        r"simulate\(\) draws\)"):
        refit(binom, np.array(["a"] * binom.nobs))
    with pytest.raises(DataError, match="newresp is categorical, but the binomial family's "
                                        "response is numeric"):
        refit(binom, pd.Categorical(["a", "b"] * (binom.nobs // 2)))
    n = formula_offset.nobs
    with pytest.raises(DataError, match=r"poisson newresp has 1 value\(s\) outside the "
                                        r"family's range \(first: -1, .*non-negative integer"):
        refit(formula_offset, np.r_[-1.0, np.ones(n - 1)])
    with pytest.raises(DataError, match="poisson newresp .*first: 0.5"):
        refit(formula_offset, np.r_[0.5, np.ones(n - 1)])
    with pytest.raises(DataError, match="newresp must be numbers"):
        refit(formula_offset, pd.Series(["x"] * n))
    # a valid response still refits
    assert refit(binom, binom.design.y).loglik == pytest.approx(binom.loglik, abs=1e-6)
