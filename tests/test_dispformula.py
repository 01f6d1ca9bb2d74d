"""glmmTMB's ``dispformula`` (issue 26): a log-linear model of the dispersion, fitted
natively by the Laplace approximation with the rest, against live glmmTMB 1.1.5.

Compared by the harness's rules (`glmmbench.testing.assert_matches`: log-likelihood
1e-3, fixed effects 0.1 %, the dispersion coefficients ``fixef_disp`` (glmmTMB's
``fixef(m)$disp``: the log variance for gaussian, the log shape for Gamma, log
``sigma()`` for the others) 0.1 %, standard errors 1 %), on simulated data: the
dispersion scenarios of ``simulate`` (with their true dispformula) and the families'
own scenarios given a dispersion model over ``x`` and a factor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import simulate
from glmmbench import fit
from glmmbench.errors import DataError, FamilyError, FormulaError, GLMMError
from glmmbench.testing import assert_matches

# (scenario, family, dispformula, formula or None for the scenario's)
CASES = {
    "nb2_true": ("negbin_dispformula", None, None, None),
    "gaussian_true": ("gaussian_dispformula", None, None, None),
    "gaussian_factor_slopes": ("gaussian_slopes", "gaussian", "~ x + f", None),
    "nb2_crossed_factor": ("negbin_crossed", "negative_binomial", "~ f", None),
    "nbinom1": ("nbinom1_crossed", "nbinom1", "~ x", None),
    "gamma": ("gamma_log", "Gamma", "~ x + f", None),
    "beta": ("beta_intercept", "beta", "~ x", None),
    "genpois": ("genpois_intercept", "genpois", "~ x", None),
    "truncated_nbinom2": ("truncated_nbinom2_intercept", "truncated_nbinom2", "~ x", None),
}


def _data(scenario: str, seed: int = 261) -> simulate.SimulatedData:
    sd = simulate.generate(scenario, np.random.default_rng(seed))
    f = np.random.default_rng(seed + 1).choice(["a", "b", "c"], len(sd.data))
    sd.data["f"] = pd.Categorical(f)
    return sd


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, reference_r):
    scenario, family, dispformula, formula = CASES[request.param]
    sd = _data(scenario)
    family = family or sd.family
    dispformula = dispformula or sd.dispformula
    formula = formula or sd.formula
    link = sd.link
    native = fit(formula, sd.data, family=family, link=link, dispformula=dispformula)
    ref = reference_r("glmmTMB", formula, sd.data, family=family, link=link,
                      dispformula=dispformula)
    return request.param, native, ref


@pytest.mark.r
def test_matches_glmmtmb(pair):
    name, native, ref = pair
    assert native.converged, native.messages
    assert ref["converged"], ref["messages"]
    par = assert_matches(native, ref)
    assert {"loglik", "fixef", "fixef_disp", "se", "se_disp"} <= set(par["quantity"])
    assert set(native.fixef_disp.index) == set(ref["fixef_disp"])


@pytest.mark.r
def test_record_has_no_single_sigma(pair):
    """glmmTMB's sigma() is NA once the dispersion varies: None in both records."""
    _, native, ref = pair
    assert native.to_record()["sigma"] is None and ref["sigma"] is None
    assert np.isnan(native.sigma)


def test_intercept_only_dispformula_is_the_default_model():
    """``~ 1`` is the model without a dispformula: the same optimum, and its one
    coefficient is the default fit's dispersion on glmmTMB's scale."""
    for scenario, family, power in [("negbin_intercept", "negative_binomial", 1.0),
                                    ("gamma_log", "Gamma", -0.5),
                                    ("beta_intercept", "beta", 1.0)]:
        sd = simulate.generate(scenario, np.random.default_rng(5))
        a = fit(sd.formula, sd.data, family=family, link=sd.link)
        b = fit(sd.formula, sd.data, family=family, link=sd.link, dispformula="~ 1")
        assert b.loglik == pytest.approx(a.loglik, abs=1e-7)
        np.testing.assert_allclose(b.fixef, a.fixef, rtol=1e-5, atol=1e-6)
        assert b.sigma == pytest.approx(a.sigma, rel=1e-5)
        assert b.fixef_disp["(Intercept)"] == pytest.approx(np.log(a.sigma) / power, rel=1e-5)
        assert a.fixef_disp["(Intercept)"] == pytest.approx(b.fixef_disp["(Intercept)"],
                                                             rel=1e-5)
        assert a.se_disp["(Intercept)"] == pytest.approx(b.se_disp["(Intercept)"], rel=1e-3)


def test_simulate_draws_the_modelled_dispersion():
    """Draws from a fitted NB2 dispersion model: the variance grows where the model
    says the size shrinks (x < 0 with a positive slope means a smaller size there)."""
    sd = _data("negbin_dispformula")
    res = fit(sd.formula, sd.data, family=sd.family, dispformula=sd.dispformula)
    d = res.dispersion()
    assert d.shape == (len(sd.data),)
    np.testing.assert_allclose(np.log(d), res.fixef_disp["(Intercept)"]
                               + res.fixef_disp["x"] * sd.data["x"].to_numpy())
    draws = res.simulate(nsim=40, seed=3).to_numpy()
    low, high = sd.data["x"].to_numpy() < -0.5, sd.data["x"].to_numpy() > 0.5
    mu = draws.mean(axis=1)
    # relative overdispersion (var - mu) / mu^2 = 1 / size: larger where size is smaller
    excess = (draws.var(axis=1) - mu) / np.maximum(mu, 1e-9) ** 2
    assert np.median(excess[low]) > np.median(excess[high])


def test_predict_works_with_a_dispformula():
    sd = _data("gaussian_dispformula")
    res = fit(sd.formula, sd.data, family=sd.family, dispformula=sd.dispformula)
    p = res.predict(sd.data.iloc[:5])
    assert np.all(np.isfinite(np.asarray(p)))


# ------------------------------------------------------------------ bad input


def test_a_missing_column_is_named():
    sd = _data("negbin_intercept")
    with pytest.raises(DataError, match="nope"):
        fit(sd.formula, sd.data, family=sd.family, dispformula="~ x + nope")


@pytest.mark.parametrize("family", ["poisson", "binomial", "truncated_poisson", "ordinal"])
def test_a_family_without_a_dispersion_is_refused(family):
    sd = {"poisson": "poisson_intercept", "binomial": "binomial_binary",
          "truncated_poisson": "truncated_poisson_intercept",
          "ordinal": "ordinal_logit"}[family]
    sd = simulate.generate(sd, np.random.default_rng(1))
    with pytest.raises(FamilyError, match=f"the {family} family has no dispersion"):
        fit(sd.formula, sd.data, family=family, dispformula="~ x")


@pytest.mark.parametrize(("kw", "match"), [({"reml": True}, "reml=True with a dispformula"),
                                           ({"nagq": 3}, "nagq=3 with a dispformula")])
def test_estimators_glmmtmb_does_not_have_are_refused(kw, match):
    sd = _data("gaussian_dispformula")
    with pytest.raises(GLMMError, match=match):
        fit(sd.formula, sd.data, family=sd.family, dispformula="~ x", **kw)


@pytest.mark.parametrize(("dispformula", "match"), [
    ("y ~ x", "left-hand side"), ("x", "no '~'"), ("~ x + (1 | g)", "random-effects term"),
    ("~ offset(x)", "not allowed")])
def test_a_malformed_dispformula_is_refused(dispformula, match):
    sd = _data("negbin_intercept")
    with pytest.raises(FormulaError, match=match):
        fit(sd.formula, sd.data, family=sd.family, dispformula=dispformula)


def test_rows_missing_a_dispformula_variable_are_dropped():
    sd = _data("negbin_dispformula")
    d = sd.data.copy()
    d["w2"] = d["x"]
    d.loc[:9, "w2"] = np.nan
    res = fit(sd.formula, d, family=sd.family, dispformula="~ w2")
    assert res.nobs == len(d) - 10
    assert any("dropped 10 rows" in m for m in res.messages)
