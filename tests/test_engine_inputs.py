"""Bad inputs to ``fit()`` end in a clear error, never a crash.

Every problem with the formula, the family or the data raises a
``glmmbench.errors.GLMMError`` (a ``ValueError``) whose message names the
column, term, family or link at fault: never a bare ``KeyError``,
``IndexError`` or ``LinAlgError`` from deep inside the engine. Missing values
drop their rows as R's ``na.omit`` does, and say so; the number of rows used
is lme4's. Separated data are not an input error: the fit returns (converged or
not, with a message) with the finite log-likelihood lme4 reaches.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from glmmbench import fit
from glmmbench.errors import DataError, FamilyError, FormulaError, GLMMError

from .rscript import run_r

SEPARATION_LOGLIK_ABS = 1e-2  # both engines stop somewhere along a ridge to +inf


def frame(n_groups: int = 8, per_group: int = 5, seed: int = 1) -> pd.DataFrame:
    """Columns: gaussian ``y``, covariate ``x``, group ``g``, 0/1 ``b``, counts ``c``,
    successes ``s`` of ``t`` trials, text ``lab``."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=n)
    u = 0.5 * rng.normal(size=n_groups)[g]
    t = rng.integers(2, 8, n).astype(float)
    return pd.DataFrame({
        "y": 1.0 + 0.5 * x + u + 0.3 * rng.normal(size=n),
        "x": x,
        "g": pd.Categorical([f"g{i}" for i in g]),
        "b": rng.binomial(1, 1 / (1 + np.exp(-(x + u)))).astype(float),
        "c": rng.poisson(np.exp(0.5 + 0.3 * x + u)).astype(float),
        "s": rng.binomial(t.astype(int), 0.4).astype(float),
        "t": t,
        "lab": rng.choice(["a", "b", "c"], n),
    })


DATA = frame()
N = len(DATA)

# id: (fit arguments, error class, text the message must contain)
BAD_INPUTS = {
    "unknown_column_fixed": (dict(formula="y ~ z + (1 | g)"), DataError, "'z'"),
    "unknown_column_random": (dict(formula="y ~ x + (z | g)"), DataError, "'z'"),
    "unknown_grouping_factor": (dict(formula="y ~ x + (1 | h)"), DataError, "'h'"),
    "unknown_nested_grouping_factor": (dict(formula="y ~ x + (1 | g/h)"), DataError, "'h'"),
    "unknown_response": (dict(formula="yy ~ x + (1 | g)"), DataError, "'yy'"),
    "binomial_y_outside_0_1": (dict(formula="c ~ x + (1 | g)", family="binomial"),
                               DataError, "'c'"),
    "binomial_successes_above_trials": (
        dict(formula="cbind(t, s - t) ~ x + (1 | g)", family="binomial"), DataError, "s - t"),
    "negative_poisson_counts": (dict(formula="y ~ x + (1 | g)", family="poisson",
                                     data=DATA.assign(y=DATA["c"] - 1)), DataError, "'y'"),
    "non_numeric_poisson_response": (dict(formula="lab ~ x + (1 | g)", family="poisson"),
                                     DataError, "'lab'"),
    "grouping_factor_with_one_level": (dict(formula="y ~ x + (1 | one)",
                                            data=DATA.assign(one="a")), DataError, "'one'"),
    "gaussian_levels_equal_observations": (
        dict(formula="y ~ x + (1 | id)", data=DATA.assign(id=[f"r{i}" for i in range(N)])),
        DataError, "'id'"),
    "negative_weights": (dict(weights=np.r_[-1.0, np.ones(N - 1)]), DataError, "weights"),
    "negative_weights_column": (dict(weights="wneg", data=DATA.assign(wneg=-1.0)),
                                DataError, "'wneg'"),
    "weights_of_wrong_length": (dict(weights=np.ones(3)), DataError, "weights"),
    "unknown_weights_column": (dict(weights="ww"), DataError, "'ww'"),
    "empty_data": (dict(data=DATA.iloc[:0]), DataError, "no rows"),
    "data_not_a_frame": (dict(data=[[1, 2], [3, 4]]), DataError, "DataFrame"),
    "unbalanced_parenthesis": (dict(formula="y ~ x + (1 | g"), FormulaError, "parenthes"),
    "extra_closing_parenthesis": (dict(formula="y ~ x + (1 | g))"), FormulaError, ")"),
    "missing_tilde": (dict(formula="y + x + (1 | g)"), FormulaError, "~"),
    "no_random_term": (dict(formula="y ~ x"), FormulaError, "random"),
    "unknown_family": (dict(family="bell"), FamilyError, "'bell'"),
    "unknown_link": (dict(family="binomial", link="foo", formula="b ~ x + (1 | g)"),
                     FamilyError, "'foo'"),
    "link_not_allowed_for_family": (dict(family="binomial", link="sqrt",
                                         formula="b ~ x + (1 | g)"), FamilyError, "'sqrt'"),
    "infinite_predictor": (dict(data=DATA.assign(x=np.r_[np.inf, DATA["x"][1:]])),
                           DataError, "'x'"),
    "infinite_response": (dict(data=DATA.assign(y=np.r_[-np.inf, DATA["y"][1:]])),
                          DataError, "'y'"),
    "infinite_offset": (dict(offset=np.r_[np.inf, np.zeros(N - 1)]), DataError, "offset"),
    "undefined_transform": (dict(formula="y ~ log(x) + (1 | g)"), DataError, "log(x)"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_a_clear_error(case):
    overrides, error, text = BAD_INPUTS[case]
    args = dict(formula="y ~ x + (1 | g)", data=DATA, family="gaussian") | overrides
    with pytest.raises(error) as info:
        fit(args.pop("formula"), args.pop("data"), **args)
    assert isinstance(info.value, GLMMError) and isinstance(info.value, ValueError)
    assert text in str(info.value), str(info.value)


def test_link_not_allowed_names_the_family_and_the_valid_links():
    with pytest.raises(FamilyError) as info:
        fit("c ~ x + (1 | g)", DATA, "poisson", "logit")
    message = str(info.value)
    assert "'poisson'" in message and all(link in message for link in ("log", "sqrt"))


# ------------------------------------------------------------ missing values
def _with_missing() -> tuple[pd.DataFrame, np.ndarray]:
    """DATA with NaN in x (rows 0, 1, 5), g (rows 5, 9), b (row 12) and in an unused
    column (row 20, which must stay); returns the frame and the rows to drop."""
    data = DATA.copy()
    data.loc[[0, 1, 5], "x"] = np.nan
    data["g"] = data["g"].astype(object)
    data.loc[[5, 9], "g"] = None
    data["g"] = pd.Categorical(data["g"], categories=DATA["g"].cat.categories)
    data.loc[12, "b"] = np.nan
    data["unused"] = 1.0
    data.loc[20, "unused"] = np.nan
    return data, np.array([0, 1, 5, 9, 12])


@pytest.mark.r
def test_missing_rows_are_dropped_as_na_omit():
    data, dropped = _with_missing()
    ref = run_r("list(lmer = nobs(lmer(y ~ x + (1 | g), d)),\n"
                "     glmer = nobs(glmer(b ~ x + (1 | g), d, binomial)))", d=data)
    lmm = fit("y ~ x + (1 | g)", data)
    glmm = fit("b ~ x + (1 | g)", data, "binomial")
    assert lmm.nobs == ref["lmer"] == N - 4  # row 12 misses only b
    assert glmm.nobs == ref["glmer"] == N - len(dropped)
    assert any(re.search(r"dropped 4 rows .*\bx\b.*\bg\b", m) for m in lmm.messages), lmm.messages
    assert any(re.search(r"dropped 5 rows .*\bb\b", m) for m in glmm.messages), glmm.messages
    # the fit is the fit of the complete rows
    complete = fit("b ~ x + (1 | g)", DATA.drop(index=dropped), "binomial")
    assert glmm.loglik == pytest.approx(complete.loglik, rel=1e-9)
    np.testing.assert_allclose(glmm.fixef, complete.fixef, rtol=1e-7)


def test_missing_weights_drop_their_rows():
    w = np.ones(N)
    w[[3, 4]] = np.nan
    res = fit("y ~ x + (1 | g)", DATA, weights=w)
    assert res.nobs == N - 2
    assert any("dropped 2 rows" in m and "weights" in m for m in res.messages), res.messages


def test_all_rows_missing_is_an_error_naming_the_column():
    with pytest.raises(DataError, match="missing values in: x"):
        fit("y ~ x + (1 | g)", DATA.assign(x=np.nan), "gaussian")


# ------------------------------------------------------------------ separation
def _separated(seed: int = 11) -> pd.DataFrame:
    """Binary ``z`` with y = 1 whenever z = 1 (quasi-complete separation), and
    ``yc = z`` (complete separation), in a random-intercept logistic model."""
    rng = np.random.default_rng(seed)
    m, k = 10, 8
    g = np.repeat(np.arange(m), k)
    z = (rng.uniform(size=m * k) < 0.4).astype(float)
    x = rng.normal(size=m * k)
    eta = -0.5 + 0.5 * x + 0.7 * rng.normal(size=m)[g]
    y = np.where(z == 1, 1.0, rng.binomial(1, 1 / (1 + np.exp(-eta))))
    return pd.DataFrame({"y": y, "yc": z, "z": z, "x": x, "g": pd.Categorical(g)})


@pytest.mark.r
def test_separated_data_return_a_result_with_lme4s_loglik():
    """lme4 also diverges: it stops with a huge coefficient, 'Hessian is numerically
    singular' and 'unable to evaluate scaled gradient'. Its log-likelihood is the
    supremum along the ridge, so the two engines agree on it (loosely) even though
    the coefficients are arbitrary."""
    data = _separated()
    ref = run_r("as.list(sapply(c(quasi = 'y ~ z + x + (1 | g)', complete = 'yc ~ z + (1 | g)'),"
                "\n  function(f) as.numeric(logLik(glmer(as.formula(f), d, binomial)))))",
                d=data)
    for key, formula in (("quasi", "y ~ z + x + (1 | g)"), ("complete", "yc ~ z + (1 | g)")):
        res = fit(formula, data, "binomial")
        assert np.isfinite(res.loglik)
        assert res.converged or res.messages
        assert res.loglik == pytest.approx(ref[key], abs=SEPARATION_LOGLIK_ABS), key


# ------------------------------- odd inputs that once crashed the engine
def test_non_integer_poisson_response_is_an_error_naming_it():
    """log dpois is -Inf at non-integers (lme4's logLik is -Inf): a clear error."""
    data = DATA.assign(yp=np.abs(DATA["y"]) * 3)
    with pytest.raises(GLMMError, match="'yp'.*non-integer"):
        fit("yp ~ x + (1 | g)", data, "poisson")


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
def test_all_zero_weights_is_an_error_naming_the_weights(family):
    response = {"gaussian": "y", "binomial": "b", "poisson": "c"}[family]
    with pytest.raises(DataError, match="weights"):
        fit(f"{response} ~ x + (1 | g)", DATA, family, weights=np.zeros(N))


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_zero_weight_rows_count_for_nothing_in_a_glmm(family):
    response = {"binomial": "b", "poisson": "c"}[family]
    w = np.ones(N)
    w[[2, 17]] = 0.0
    weighted = fit(f"{response} ~ x + (1 | g)", DATA, family, weights=w)
    dropped = fit(f"{response} ~ x + (1 | g)", DATA.drop(index=[2, 17]), family)
    assert weighted.loglik == pytest.approx(dropped.loglik, rel=1e-6)
    np.testing.assert_allclose(weighted.fixef, dropped.fixef, rtol=1e-4, atol=1e-4)


def test_zero_weight_row_in_an_lmm_gives_the_estimates_without_it():
    w = np.ones(N)
    w[0] = 0.0
    weighted = fit("y ~ x + (1 | g)", DATA, weights=w, reml=False)
    dropped = fit("y ~ x + (1 | g)", DATA.drop(index=[0]), reml=False)
    np.testing.assert_allclose(weighted.theta, dropped.theta, rtol=1e-4)
    np.testing.assert_allclose(weighted.fixef, dropped.fixef, rtol=1e-5)


def test_zero_weight_row_in_a_gaussian_glmm_gives_the_estimates_without_it():
    data = DATA.assign(yl=np.exp(0.3 * DATA["y"]))
    w = np.ones(N)
    w[0] = 0.0
    weighted = fit("yl ~ x + (1 | g)", data, "gaussian", "log", weights=w)
    dropped = fit("yl ~ x + (1 | g)", data.drop(index=[0]), "gaussian", "log")
    np.testing.assert_allclose(weighted.fixef, dropped.fixef, rtol=1e-4)


@pytest.mark.parametrize(("kwargs", "text"), [
    (dict(nagq=-1), "nagq"),
    (dict(control={"foo": 1}), "'foo'"),
])
def test_invalid_arguments_raise_a_glmm_error(kwargs, text):
    with pytest.raises(GLMMError) as info:
        fit("b ~ x + (1 | g)", DATA, "binomial", **kwargs)
    assert text in str(info.value)


def test_options_that_do_not_apply_are_refused():
    """nagq on an LMM, reml=True on a GLMM and threshold on a non-ordinal family were
    accepted silently (and nagq written into the record, mislabelling study rows)."""
    import glmmbench as gb
    from glmmbench import datasets
    from glmmbench.harness.catalogue import Problem

    sleep = datasets.load("sleepstudy")
    for nagq in (0, 5):
        with pytest.raises(GLMMError, match=f"nagq={nagq} applies to generalized models"):
            gb.fit("Reaction ~ Days + (1 | Subject)", sleep, nagq=nagq)
    cbpp = datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    with pytest.raises(GLMMError, match=r"reml=True applies to linear mixed models.*"
                                        r"binomial\(logit\)"):
        gb.fit(f, cbpp, "binomial", reml=True)
    with pytest.raises(GLMMError, match="threshold='flexible' applies to family='ordinal' only"):
        gb.fit(f, cbpp, "binomial", threshold="flexible")
    # what does apply still works: ML for a GLMM is what it is fitted by anyway
    assert gb.fit(f, cbpp, "binomial", reml=False).method == "Laplace"
    assert gb.fit("Reaction ~ Days + (1 | Subject)", sleep, nagq=1).method == "REML"
    with pytest.raises(ValueError, match="nagq = 9 on a linear mixed model"):
        Problem("p", "gaussian", dataset="sleepstudy", formula="Reaction ~ (1 | Subject)",
                nagq=9)
    with pytest.raises(ValueError, match="reml = true on a poisson model"):
        Problem("p", "poisson", dataset="grouseticks", formula="TICKS ~ (1 | BROOD)",
                reml=True)
