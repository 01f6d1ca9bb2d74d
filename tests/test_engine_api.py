"""The public API of a fitted model (DESIGN.md), against live lme4 in the same run.

One R script per model fits lme4 once and returns everything compared here:
``fitted``/``predict`` (with and without random effects, new levels, link and
response scale), ``ranef(condVar = TRUE)``, ``AIC``/``BIC``/``logLik`` df,
``nobs``, ``deviance`` and ``ngrps``.

Tolerances. LMMs: both engines reach the REML/ML optimum to ~1e-8 in theta, so
fitted values and statistics agree to 1e-6 relative. GLMMs: lme4's optimum is
~3e-4 lower in log-likelihood than the native one (its PIRLS tolerance;
reference_r/CONVENTIONS.md), so coefficients agree to ~1e-4 and derived
quantities inherit that: linear predictors 1e-3 absolute (the modes'
tolerance below; measured 6e-4), deviance (at the conditional modes,
which move with the parameters) 1e-4 relative, log-likelihood 2e-3 absolute.
Conditional modes 1e-3 relative to the largest mode of their column (modes near
0 have no relative precision), conditional sds 2 %.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numpy.polynomial.hermite_e import hermegauss

from glmmbench import datasets, fit
from glmmbench.results import NewLevelsWarning

from .rscript import run_r

SLEEP = "Reaction ~ Days + (Days | Subject)"
PENICILLIN = "diameter ~ 1 + (1 | plate) + (1 | sample)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"

LMM_REL = 1e-6
GLMM_PRED_ABS = 1e-3  # link scale, as the conditional modes
GLMM_DEV_REL = 1e-4
GLMM_LOGLIK_ABS = 2e-3
RANEF_REL = 1e-3
CONDSD_REL = 0.02

R_STATS = r"""
st <- function(m) list(aic = AIC(m), bic = BIC(m), df = attr(logLik(m), "df"),
                       nobs = nobs(m), deviance = deviance(m),
                       loglik = as.numeric(logLik(m)), ngrps = as.list(ngrps(m)))
re <- function(m) as.data.frame(ranef(m, condVar = TRUE))
"""

# new data: a seen and an unseen level of the grouping factor
SLEEP_NEW = pd.DataFrame({"Days": [0.0, 3.0, 7.0, 9.0],
                          "Subject": pd.Categorical(["308", "999", "335", "999"])})
CBPP_NEW = pd.DataFrame({"herd": pd.Categorical(["1", "99", "7"]),
                         "period": pd.Categorical(["1", "3", "4"], categories=["1", "2", "3", "4"]),
                         "incidence": [0.0, 0.0, 0.0], "size": [1.0, 1.0, 1.0]})


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def cbpp():
    return datasets.load("cbpp")


@pytest.fixture(scope="module")
def penicillin():
    return datasets.load("Penicillin")


@pytest.fixture(scope="module")
def sleep_fits(sleep):
    return {"REML": fit(SLEEP, sleep), "ML": fit(SLEEP, sleep, reml=False)}


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    return fit(CBPP, cbpp, "binomial")


@pytest.fixture(scope="module")
def penicillin_fit(penicillin):
    return fit(PENICILLIN, penicillin)


@pytest.fixture(scope="module")
def r_sleep(sleep):
    return run_r(R_STATS + f"""
m <- lmer({SLEEP}, d)
mm <- update(m, REML = FALSE)
list(fitted = fitted(m), pop = predict(m, re.form = NA),
     new = predict(m, newdata = nd, allow.new.levels = TRUE),
     new_pop = predict(m, newdata = nd, re.form = NA),
     REML = st(m), ML = st(mm), ranef_REML = re(m), ranef_ML = re(mm))
""", d=sleep, nd=SLEEP_NEW)


@pytest.fixture(scope="module")
def r_cbpp(cbpp):
    return run_r(R_STATS + f"""
m <- glmer({CBPP}, d, binomial)
list(link = predict(m, type = "link"), response = predict(m, type = "response"),
     pop_link = predict(m, re.form = NA, type = "link"),
     new = predict(m, newdata = nd, allow.new.levels = TRUE, type = "response"),
     stats = st(m), ranef = re(m))
""", d=cbpp, nd=CBPP_NEW)


@pytest.fixture(scope="module")
def r_penicillin(penicillin):
    return run_r(R_STATS + f"m <- lmer({PENICILLIN}, d)\nlist(stats = st(m), ranef = re(m))",
                 d=penicillin)


def _unnamed(values) -> np.ndarray:
    """An R named vector arrives as a dict, an unnamed one as a list."""
    return np.asarray(list(values.values()) if isinstance(values, dict) else values, float)


# ------------------------------------------------------------------- predict
@pytest.mark.r
def test_predict_is_lme4s_fitted_values(sleep_fits, r_sleep):
    res = sleep_fits["REML"]
    np.testing.assert_allclose(res.predict(), _unnamed(r_sleep["fitted"]), rtol=LMM_REL)
    np.testing.assert_allclose(res.predict(re=False), _unnamed(r_sleep["pop"]), rtol=LMM_REL)


@pytest.mark.r
def test_predict_new_levels_get_the_population_value(sleep_fits, r_sleep):
    res = sleep_fits["REML"]
    with pytest.warns(NewLevelsWarning, match="2 row.* grouping factor 'Subject'"):
        cond = res.predict(SLEEP_NEW, allow_new_levels=True)
    pop = res.predict(SLEEP_NEW, re=False)
    np.testing.assert_allclose(cond, _unnamed(r_sleep["new"]), rtol=LMM_REL)
    np.testing.assert_allclose(pop, _unnamed(r_sleep["new_pop"]), rtol=LMM_REL)
    unseen = (SLEEP_NEW["Subject"] == "999").to_numpy()
    np.testing.assert_array_equal(cond[unseen], pop[unseen])
    assert np.all(cond[~unseen] != pop[~unseen])


def test_predict_on_the_fitted_data_equals_predict(sleep, sleep_fits, cbpp, cbpp_fit):
    for res, data in ((sleep_fits["REML"], sleep), (cbpp_fit, cbpp)):
        for re in (True, False):
            np.testing.assert_allclose(res.predict(data, re=re), res.predict(re=re),
                                       rtol=1e-13)


@pytest.mark.r
def test_predict_link_and_response_scale_match_lme4(cbpp_fit, r_cbpp):
    link, response = cbpp_fit.predict(type="link"), cbpp_fit.predict(type="response")
    r_link, r_response = _unnamed(r_cbpp["link"]), _unnamed(r_cbpp["response"])
    np.testing.assert_allclose(link, r_link, rtol=0, atol=GLMM_PRED_ABS)
    # d mu / d eta = mu (1 - mu) <= 1/4 carries the link-scale tolerance over
    np.testing.assert_allclose(response, r_response, rtol=0, atol=GLMM_PRED_ABS / 4)
    np.testing.assert_allclose(response, 1 / (1 + np.exp(-link)), rtol=1e-14)
    np.testing.assert_allclose(cbpp_fit.predict(type="link", re=False),
                               _unnamed(r_cbpp["pop_link"]), rtol=0, atol=GLMM_PRED_ABS)
    with pytest.warns(NewLevelsWarning, match="1 row.* grouping factor 'herd'"):
        new = cbpp_fit.predict(CBPP_NEW, allow_new_levels=True)
    np.testing.assert_allclose(new, _unnamed(r_cbpp["new"]),
                               rtol=0, atol=GLMM_PRED_ABS / 4)


def test_predict_rejects_an_unknown_type(cbpp_fit):
    with pytest.raises(ValueError, match="type"):
        cbpp_fit.predict(type="terms")


# -------------------------------------------------------------------- ranef
def _compare_ranef(native: dict[str, pd.DataFrame], ref: dict) -> None:
    ref = pd.DataFrame(ref)
    assert set(native) == set(ref["grpvar"])
    for (grp, term), rows in ref.groupby(["grpvar", "term"], sort=False):
        frame = native[grp]
        levels = rows["grp"].astype(str).to_numpy()
        np.testing.assert_array_equal(frame.index.astype(str), levels)
        modes, condval = frame[term].to_numpy(), rows["condval"].to_numpy()
        scale = np.max(np.abs(condval))
        np.testing.assert_allclose(modes, condval, rtol=0, atol=RANEF_REL * scale,
                                   err_msg=f"{grp} {term}")
        np.testing.assert_allclose(frame[f"condsd({term})"], rows["condsd"],
                                   rtol=CONDSD_REL, err_msg=f"{grp} {term}")


@pytest.mark.r
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_ranef_sleepstudy_matches_lme4(sleep_fits, r_sleep, method):
    _compare_ranef(sleep_fits[method].ranef, r_sleep[f"ranef_{method}"])


@pytest.mark.r
def test_ranef_penicillin_crossed_matches_lme4(penicillin_fit, r_penicillin):
    _compare_ranef(penicillin_fit.ranef, r_penicillin["ranef"])


@pytest.mark.r
def test_ranef_cbpp_matches_lme4(cbpp_fit, r_cbpp):
    _compare_ranef(cbpp_fit.ranef, r_cbpp["ranef"])


# ------------------------------------------------------- fit statistics
def _compare_stats(res, ref: dict, *, glmm: bool) -> None:
    assert res.nobs == ref["nobs"]
    assert res.df == ref["df"]
    assert res.ngroups == {k: int(v) for k, v in ref["ngrps"].items()}
    if glmm:
        # native loglik may only be higher (a better optimum), by little
        assert res.loglik == pytest.approx(ref["loglik"], abs=GLMM_LOGLIK_ABS)
        assert res.loglik >= ref["loglik"] - 1e-8
        for name in ("aic", "bic"):
            assert getattr(res, name) == pytest.approx(ref[name], abs=2 * GLMM_LOGLIK_ABS)
        assert res.deviance == pytest.approx(ref["deviance"], rel=GLMM_DEV_REL)
    else:
        for name in ("loglik", "aic", "bic", "deviance"):
            assert getattr(res, name) == pytest.approx(ref[name], rel=LMM_REL), name
    assert res.aic == pytest.approx(-2 * res.loglik + 2 * res.df, rel=1e-14)
    assert res.bic == pytest.approx(-2 * res.loglik + np.log(res.nobs) * res.df, rel=1e-14)


@pytest.mark.r
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_fit_statistics_sleepstudy_match_lme4(sleep_fits, r_sleep, method):
    _compare_stats(sleep_fits[method], r_sleep[method], glmm=False)


@pytest.mark.r
def test_fit_statistics_penicillin_match_lme4(penicillin_fit, r_penicillin):
    _compare_stats(penicillin_fit, r_penicillin["stats"], glmm=False)


@pytest.mark.r
def test_fit_statistics_cbpp_match_lme4(cbpp_fit, r_cbpp):
    _compare_stats(cbpp_fit, r_cbpp["stats"], glmm=True)


# ------------------------------------------------------------------ simulate
def test_simulate_shape_and_reproducibility(cbpp_fit):
    sims = cbpp_fit.simulate(nsim=4, seed=42)
    assert isinstance(sims, pd.DataFrame)
    assert sims.shape == (cbpp_fit.nobs, 4)
    assert list(sims.columns) == [f"sim_{i}" for i in range(1, 5)]
    pd.testing.assert_frame_equal(sims, cbpp_fit.simulate(nsim=4, seed=42))
    pd.testing.assert_frame_equal(sims, cbpp_fit.simulate(nsim=4,
                                                          seed=np.random.default_rng(42)))
    assert not sims.equals(cbpp_fit.simulate(nsim=4, seed=43))
    assert not np.array_equal(sims["sim_1"], sims["sim_2"])


def test_simulate_cbpp_proportions_have_the_fitted_marginal_mean(cbpp, cbpp_fit):
    """Proportions of ``size`` trials; their mean over draws is the model's
    marginal mean E[plogis(x'beta + b)], b ~ N(0, sigma_herd^2), within Monte Carlo
    error (4 standard errors, from the spread of the per-draw means)."""
    nsim = 2000
    sims = cbpp_fit.simulate(nsim=nsim, seed=2024).to_numpy()
    size = cbpp["size"].to_numpy()
    successes = sims * size[:, None]
    np.testing.assert_allclose(successes, np.round(successes), atol=1e-9)
    assert np.all((sims >= 0) & (sims <= 1))
    z, w = hermegauss(40)
    w = w / w.sum()
    sd = float(cbpp_fit.varcorr["sdcor"].iloc[0])
    eta = cbpp_fit.predict(type="link", re=False)
    marginal = (1 / (1 + np.exp(-(eta[:, None] + sd * z[None, :])))) @ w
    per_draw = sims.mean(axis=0)
    se = per_draw.std(ddof=1) / np.sqrt(nsim)
    assert abs(per_draw.mean() - marginal.mean()) < 4 * se
    # and period by period
    for period in cbpp["period"].cat.categories:
        rows = (cbpp["period"] == period).to_numpy()
        draws = sims[rows].mean(axis=0)
        assert abs(draws.mean() - marginal[rows].mean()) < 4 * draws.std(ddof=1) / np.sqrt(nsim)


def test_simulate_sleepstudy_mean_and_variance(sleep, sleep_fits):
    """Var(y_ij) = z_ij' D z_ij + sigma^2 with D from varcorr; mean x'beta."""
    res = sleep_fits["REML"]
    nsim = 1000
    sims = res.simulate(nsim=nsim, seed=7).to_numpy()
    vc = res.varcorr
    assert list(vc["grp"]) == ["Subject", "Subject", "Subject", "Residual"]
    s0, s1 = vc["sdcor"].iloc[0], vc["sdcor"].iloc[1]
    rho = vc.loc[vc["var2"].notna(), "sdcor"].iloc[0]
    days = sleep["Days"].to_numpy()
    var = s0**2 + 2 * rho * s0 * s1 * days + s1**2 * days**2 + res.sigma**2
    mean = res.predict(re=False)
    zscores = (sims.mean(axis=1) - mean) / np.sqrt(var / nsim)
    assert np.max(np.abs(zscores)) < 5
    ratio = sims.var(axis=1, ddof=1) / var
    # relative sd of a sample variance from 1000 draws: sqrt(2 / 999) = 4.5 %
    for d in np.unique(days):
        assert abs(ratio[days == d].mean() - 1) < 0.1, d


# ------------------------------------------------------------------- summary
def _assert_in_order(text: str, items: list[str]) -> None:
    """Each item occurs in ``text`` after the previous one."""
    pos = 0
    for item in items:
        found = text.find(item, pos)
        assert found >= 0, f"{item!r} not found after position {pos} in:\n{text}"
        pos = found + len(item)


def test_summary_lmm_has_lme4s_sections_in_order(sleep_fits):
    text = sleep_fits["REML"].summary()
    order = ["Linear mixed model fit by REML", "Formula: Reaction ~ Days + (Days | Subject)",
             "REML criterion at convergence:", "Random effects:", "Groups", "Subject",
             "Residual", "Number of obs: 180, groups:  Subject, 18", "Fixed effects:",
             "Estimate", "Std. Error", "t value", "(Intercept)", "Days"]
    _assert_in_order(text, order)
    assert f"{-2 * sleep_fits['REML'].loglik:.4f}" in text
    assert str(sleep_fits["REML"]) == text


def test_summary_ml_lmm_shows_information_criteria(sleep_fits):
    text = sleep_fits["ML"].summary()
    assert "Linear mixed model fit by maximum likelihood" in text
    for label in ("AIC", "BIC", "logLik", "deviance", "df.resid"):
        assert label in text
    assert f"{sleep_fits['ML'].aic:.1f}" in text


def test_summary_glmm_has_lme4s_sections_in_order(cbpp_fit):
    text = cbpp_fit.summary()
    order = ["Generalized linear mixed model fit by maximum likelihood (Laplace "
             "Approximation)", "Family: binomial  ( logit )", "Formula: " + CBPP, "AIC",
             "BIC", "logLik", "deviance", "df.resid", "Random effects:", "herd",
             "(Intercept)", "Number of obs: 56, groups:  herd, 15", "Fixed effects:",
             "z value", "Pr(>|z|)", "(Intercept)", "period2", "period3", "period4"]
    _assert_in_order(text, order)
    assert f"{cbpp_fit.aic:.1f}" in text and f"{cbpp_fit.loglik:.1f}" in text


# ----------------------------------------------------------------- to_record
FITRECORD_KEYS = {"engine", "engine_version", "model", "nobs", "ngroups", "fixef", "se",
                  "thresholds", "varcorr", "theta", "sigma", "loglik", "deviance", "aic",
                  "bic", "df", "converged", "messages", "time_s", "smooths"}
MODEL_KEYS = {"formula", "family", "link", "method", "nagq", "reml"}


@pytest.mark.parametrize("which", ["REML", "ML", "cbpp"])
def test_to_record_is_json_and_equals_the_attributes(sleep_fits, cbpp_fit, which):
    res = cbpp_fit if which == "cbpp" else sleep_fits[which]
    rec = res.to_record()
    assert FITRECORD_KEYS <= set(rec), FITRECORD_KEYS - set(rec)
    assert MODEL_KEYS <= set(rec["model"])
    assert json.loads(json.dumps(rec, allow_nan=False)) == rec
    assert rec["engine"] == "glmmbench"
    assert rec["model"]["formula"] == res.formula
    assert rec["model"]["family"] == res.family.name
    assert rec["model"]["link"] == res.family.link.name
    assert rec["model"]["method"] == {"REML": "REML", "ML": "ML", "cbpp": "Laplace"}[which]
    assert rec["model"]["nagq"] == 1 and rec["model"]["reml"] is (which == "REML")
    assert rec["fixef"] == res.fixef.to_dict() and rec["se"] == res.se.to_dict()
    assert list(rec["fixef"]) == list(res.fixef.index)
    assert rec["theta"] == list(res.theta)
    assert rec["ngroups"] == res.ngroups
    for key in ("nobs", "df", "loglik", "deviance", "aic", "bic", "converged",
                "messages", "time_s"):
        assert rec[key] == getattr(res, key), key
    # glmmTMB's sigma() is 1 for a family without a dispersion; the record has None
    # there, as R's records have NA, so that no engine compares a constant
    assert rec["sigma"] == (None if which == "cbpp" else res.sigma)
    assert res.sigma == 1.0 or which != "cbpp"
    expected = [{k: (None if pd.isna(v) else v) for k, v in row.items()}
                for row in res.varcorr.to_dict(orient="records")]
    assert rec["varcorr"] == expected


def test_the_engine_imports_nothing_from_the_harness():
    """glmmbench and its fit() load no glmmbench.harness module (two halves)."""
    import subprocess
    import sys

    code = ("import sys, glmmbench, glmmbench.fit\n"
            "print([m for m in sys.modules if m.startswith('glmmbench.harness')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
