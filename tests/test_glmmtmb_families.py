"""glmmTMB's families (issue 26): beta, the zero-truncated counts and generalized
Poisson, native against live glmmTMB 1.1.5 on simulated data with a known truth.

Each model is compared by the harness's own rules (`glmmbench.testing.assert_matches`,
the two-sided tolerances of `compare.PARITY_TOL`: log-likelihood 1e-3, fixed
effects 0.1 %, standard errors and sds 1 %, sigma 0.5 %), glmmTMB's ``sigma()``
included: beta's precision, the truncated negative binomials' size and phi,
generalized Poisson's phi. Bad responses are refused before the fit, naming the
column and the count of offending values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import simulate
from glmmbench import fit
from glmmbench.errors import DataError
from glmmbench.testing import assert_matches

SCENARIOS = ("beta_intercept", "beta_slopes", "ordbeta_intercept", "betabinomial_intercept",
             "truncated_poisson_intercept",
             "truncated_nbinom2_intercept", "truncated_nbinom1_intercept",
             "genpois_intercept", "compois_intercept", "t_intercept", "tweedie_intercept",
             "tweedie_slopes")


def _sim(name: str, seed: int = 26) -> simulate.SimulatedData:
    return simulate.generate(name, np.random.default_rng(seed))


@pytest.fixture(scope="module", params=SCENARIOS)
def pair(request, reference_r):
    sd = _sim(request.param)
    native = fit(sd.formula, sd.data, family=sd.family)
    ref = reference_r("glmmTMB", sd.formula, sd.data, family=sd.family)
    return request.param, sd, native, ref


@pytest.mark.r
def test_matches_glmmtmb(pair):
    name, sd, native, ref = pair
    assert native.converged, native.messages
    assert ref["converged"], ref["messages"]
    par = assert_matches(native, ref)
    quantities = set(par["quantity"])
    assert {"loglik", "fixef", "se", "sdcor"} <= quantities
    if sd.family != "truncated_poisson":  # every other one has a dispersion: sigma()
        assert "sigma" in quantities
        assert native.sigma == pytest.approx(ref["sigma"], rel=5e-3)
    # glmmTMB's family_params(): a t's df, Tweedie's power
    assert set(native.family_params) == set(ref["family_params"]) == set(
        sd.truth.get("family_params", {}))
    if native.family_params:
        assert "family_param" in quantities


@pytest.mark.r
def test_recovers_the_dispersion(pair):
    """glmmTMB's sigma() near the simulated truth (within 4 standard errors of its log,
    from the native Hessian), so the parametrisation is the simulator's too; a family
    without a dispersion (truncated_poisson) has sigma() = 1 and none in its record."""
    name, sd, native, ref = pair
    truth = sd.truth.get("dispersion")
    if truth is None:
        assert native.sigma == 1.0 and native.to_record()["sigma"] is None
        assert ref["sigma"] is None and "dispersion" not in native.optinfo
        return
    se_log = native.optinfo["dispersion"]["se_log"]
    assert abs(np.log(native.sigma) - np.log(truth)) < 4 * se_log


def test_beta_rejects_exact_zeros_and_ones():
    d = _sim("beta_intercept").data.copy()
    d.loc[:2, "y"] = 0.0
    d.loc[3, "y"] = 1.0
    with pytest.raises(DataError, match=r"'y' has 3 value\(s\) equal to 0 and 1 equal to 1"
                       r".*ordbeta"):
        fit("y ~ x + (1 | g)", d, family="beta")


def test_beta_rejects_values_outside_the_unit_interval():
    d = _sim("beta_intercept").data.copy()
    d.loc[0, "y"] = 1.5
    with pytest.raises(DataError, match="outside"):
        fit("y ~ x + (1 | g)", d, family="beta")


@pytest.mark.parametrize("family", ["truncated_poisson", "truncated_nbinom2",
                                    "truncated_nbinom1"])
def test_truncated_rejects_zeros(family):
    d = _sim("truncated_poisson_intercept").data.copy()
    d.loc[:4, "y"] = 0.0
    with pytest.raises(DataError, match=rf"{family} response 'y' has 5 zero\(s\)"):
        fit("y ~ x + (1 | g)", d, family=family)


def test_betabinomial_cbpp_matches_glmmtmb_with_the_herd_variance_at_zero(reference_r):
    """Issue 26's example: lme4's cbpp as a beta-binomial. glmmTMB puts the herd
    variance near 0 (sd 1.4e-4 here); natively it is at 0, reported as a singular fit
    (a boundary status), with the same log-likelihood, coefficients, SEs and phi."""
    from glmmbench import datasets

    cbpp = datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    native = fit(f, cbpp, family="betabinomial")
    ref = reference_r("glmmTMB", f, cbpp, family="betabinomial")
    assert_matches(native, ref)
    assert ref["varcorr"][0]["sdcor"] < 1e-3
    assert native.varcorr["sdcor"].iloc[0] < 1e-6 and native.status == "boundary"
    assert native.converged and ref["converged"]


def test_betabinomial_integer_weights_are_replicated_rows():
    """glmmTMB's weights multiply each row's log-likelihood: integer weights are the
    rows repeated, also for the beta-binomial, whose trials are not weights."""
    sd = _sim("betabinomial_intercept")
    d = sd.data.assign(w=np.random.default_rng(3).integers(1, 4, len(sd.data)).astype(float))
    weighted = fit(sd.formula, d, family=sd.family, weights="w")
    repeated = fit(sd.formula, d.loc[d.index.repeat(d["w"].astype(int))], family=sd.family)
    assert weighted.loglik == pytest.approx(repeated.loglik, rel=1e-8)
    np.testing.assert_allclose(weighted.fixef, repeated.fixef, rtol=1e-5, atol=1e-6)
    assert weighted.sigma == pytest.approx(repeated.sigma, rel=1e-5)


def test_refit_refuses_a_zero_for_a_truncated_family():
    sd = _sim("truncated_poisson_intercept")
    res = fit(sd.formula, sd.data, family=sd.family)
    y = sd.data["y"].to_numpy(copy=True)
    y[0] = 0.0
    with pytest.raises(DataError, match="outside"):
        res.refit(y)


@pytest.mark.parametrize("name", SCENARIOS)
def test_simulate_stays_in_the_support(name):
    sd = _sim(name)
    res = fit(sd.formula, sd.data, family=sd.family)
    draws = np.asarray(res.simulate(nsim=3, seed=1))
    y = sd.data["y"].to_numpy()
    if sd.family == "beta":
        assert np.all((draws > 0) & (draws < 1))
    elif sd.family == "ordbeta":
        assert np.all((draws >= 0) & (draws <= 1)) and np.any(draws == 0) and np.any(draws == 1)
    elif sd.family == "betabinomial":  # proportions of the trials
        k = draws * sd.data["n"].to_numpy()[:, None]
        assert np.all((draws >= 0) & (draws <= 1)) and np.allclose(k, np.round(k))
        y = y / sd.data["n"].to_numpy()
    elif sd.family == "t":
        assert np.all(np.isfinite(draws))
    elif sd.family == "tweedie":
        assert np.all(draws >= 0) and np.any(draws == 0) and np.any(draws > 0)
    else:
        assert np.all(draws == np.round(draws))
        assert np.all(draws >= (1 if sd.family.startswith("truncated") else 0))
    # the draws' mean is the data's, within a few of its standard errors
    se = y.std() / np.sqrt(y.size)
    assert abs(draws.mean() - y.mean()) < 6 * se


def test_family_log_densities_sum_to_one():
    """Each family's probabilities (densities, for beta) integrate to 1 at a few means
    and dispersions: the log-density is a distribution, not only an objective."""
    from scipy import integrate

    from glmmbench.families import get_family

    bb = get_family("betabinomial", dispersion=2.5)
    for N in (1.0, 7.0, 30.0):
        k = np.arange(N + 1)
        p = np.exp(bb.loglik_obs(k / N, np.full(k.size, 0.3), N, n=N))
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert (k * p).sum() == pytest.approx(0.3 * N, rel=1e-10)
    for name, d in [("compois", 0.6), ("compois", 2.0), ("truncated_poisson", None),
                    ("truncated_nbinom2", 1.7),
                    ("truncated_nbinom1", 0.8), ("genpois", 2.5), ("genpois", 1.0)]:
        fam = get_family(name, dispersion=d)
        y = np.arange(0.0, 400.0)
        for mu in (0.3, 2.0, 9.0):
            p = np.exp(fam.loglik_obs(y, np.full(y.size, mu), 1.0))
            assert p.sum() == pytest.approx(1.0, abs=1e-9), (name, d, mu)
            mean = (y * p).sum()
            if name in ("genpois", "compois"):  # mean-parametrised
                assert mean == pytest.approx(mu, rel=1e-8)
            if name == "genpois":
                assert ((y - mean) ** 2 * p).sum() == pytest.approx(d * mu, rel=1e-6)
            if name == "compois":  # the variance the engine's Fisher steps use
                assert ((y - mean) ** 2 * p).sum() == pytest.approx(
                    float(fam.variance(np.array([mu]))[0]), rel=1e-8)
    t = get_family("t", "identity", dispersion=0.7, psi=[np.log(3.5)])
    total = integrate.quad(lambda v: np.exp(t.loglik_obs(np.array([v]), np.array([1.0]),
                                                          1.0)[0]), -np.inf, np.inf)[0]
    assert total == pytest.approx(1.0, abs=1e-8)
    for power, phi, mu in [(1.3, 0.8, 2.0), (1.6, 1.5, 0.7), (1.9, 0.5, 4.0)]:
        tw = get_family("tweedie", dispersion=phi, psi=[np.log((power - 1) / (2 - power))])

        def density(v, tw=tw, mu=mu):
            return np.exp(tw.loglik_obs(np.array([v]), np.array([mu]), 1.0)[0])

        zero = density(0.0)
        assert zero == pytest.approx(np.exp(-mu ** (2 - power) / (phi * (2 - power))))
        pos = integrate.quad(density, 0, np.inf, limit=200)[0]
        assert zero + pos == pytest.approx(1.0, abs=1e-7), (power, phi, mu)
        mean = integrate.quad(lambda v, d=density: v * d(v), 0, np.inf, limit=200)[0]
        assert mean == pytest.approx(mu, rel=1e-6)
    ob = get_family("ordbeta", dispersion=5.0, psi=[-1.5, 1.0])
    for mu in (0.2, 0.6):
        def dens(v, mu=mu):
            return np.exp(ob.loglik_obs(np.array([v]), np.array([mu]), 1.0)[0])

        inner = integrate.quad(dens, 0, 1, points=[1e-9, 1 - 1e-9])[0]
        assert dens(0.0) + dens(1.0) + inner == pytest.approx(1.0, abs=1e-8)
    fam = get_family("beta", dispersion=6.0)
    for mu in (0.2, 0.5, 0.9):
        def density(t, mu=mu):
            return np.exp(fam.loglik_obs(np.array([t]), np.array([mu]), 1.0)[0])

        total = integrate.quad(density, 0, 1)[0]
        assert total == pytest.approx(1.0, abs=1e-8)


def test_score_and_information_are_the_log_density_derivatives():
    """The closed-form score and information the engine uses are the central
    differences of the log-density in mu."""
    from glmmbench.families import get_family

    rng = np.random.default_rng(5)
    h = 1e-5
    for name, d, y in [("beta", 5.0, rng.uniform(0.05, 0.95, 20)),
                       ("truncated_poisson", None, rng.integers(1, 9, 20).astype(float)),
                       ("truncated_nbinom2", 1.3, rng.integers(1, 9, 20).astype(float)),
                       ("truncated_nbinom1", 0.7, rng.integers(1, 9, 20).astype(float)),
                       ("genpois", 1.8, rng.integers(0, 9, 20).astype(float)),
                       ("compois", 0.7, rng.integers(0, 9, 20).astype(float)),
                       ("t", 0.8, rng.standard_normal(20) * 3),
                       ("tweedie", 1.3, np.where(rng.uniform(size=20) < 0.3, 0.0,
                                                 rng.gamma(2.0, 1.5, 20))),
                       ("ordbeta", 4.0, np.select([rng.uniform(size=20) < 0.2,
                                                   rng.uniform(size=20) < 0.2],
                                                  [0.0, 1.0], rng.uniform(0.05, 0.95, 20)))]:
        psi = {"t": [np.log(4.0)], "tweedie": [0.3], "ordbeta": [-1.0, 1.5]}.get(name, ())
        fam = get_family(name, dispersion=d, psi=psi)
        mu = (rng.uniform(0.2, 0.8, 20) if name in ("beta", "ordbeta")
              else rng.uniform(0.5, 6.0, 20))

        def ll(m, fam=fam, y=y):
            return fam.loglik_obs(y, m, 1.0)

        s_fd = (ll(mu + h) - ll(mu - h)) / (2 * h)
        i_fd = -(ll(mu + h) - 2 * ll(mu) + ll(mu - h)) / h**2
        score = fam.score(y, mu)
        assert np.allclose(score, s_fd, rtol=1e-6, atol=1e-6), name
        assert np.allclose(fam.info(y, mu), i_fd, rtol=1e-3, atol=1e-3), name


def test_dataframe_api_names_the_new_families():
    from glmmbench.families import NATIVE_FAMILIES

    for name in ("beta", "ordbeta", "betabinomial", "truncated_poisson", "truncated_nbinom2",
                 "truncated_nbinom1", "genpois", "compois", "t", "tweedie"):
        assert name in NATIVE_FAMILIES
    with pytest.raises(Exception, match="valid links"):
        fit("y ~ x + (1 | g)", pd.DataFrame({"y": [0.2, 0.4], "x": [1, 2], "g": ["a", "b"]}),
            family="beta", link="log")


def test_every_registered_family_is_tested():
    """A family added to the registry is tested against R here or in test_families.py."""
    from glmmbench.families import FAMILIES

    from .test_families import R_FAMILIES

    covered = set(R_FAMILIES) | {simulate.SCENARIOS[n].family for n in SCENARIOS}
    assert set(FAMILIES) <= covered


def test_t_df_at_infinity_is_the_gaussian_fit_and_says_so():
    """Residuals without heavy tails (24 rows): the df runs off to its limit; the fit says so (a
    boundary status, the message, the diagnostics row), converges on the other
    parameters and reaches the Gaussian ML log-likelihood."""
    from .test_engine_properties import simulate as draw

    d = draw(np.random.default_rng(0), "t", "identity", 6, 4)  # t(5) errors of sd 0.3
    t = fit("y ~ x + (1 | g)", d, family="t")
    ml = fit("y ~ x + (1 | g)", d, reml=False)
    assert t.family_params["Student-t df"] > 1e6  # pinned at its bound, 1e8
    assert t.converged and t.status == "boundary"
    assert any("df -> infinity" in m for m in t.messages)
    assert "df -> infinity" in t.diagnostics().loc["dispersion", "message"]
    assert t.loglik == pytest.approx(ml.loglik, abs=1e-4)
    np.testing.assert_allclose(t.fixef, ml.fixef, atol=1e-3)
    assert t.sigma == pytest.approx(ml.sigma, rel=1e-3)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_method_works_and_agrees_with_itself(name):
    """predict, Wald and profile intervals, anova, diagnostics, the record and the
    full covariance for every family: Wald limits are estimate +- 1.96 SE, profile
    limits bracket the estimate, the likelihood-ratio test of x is positive on its one
    degree of freedom, and vcov_all's fixed-effect block is vcov. (COM-Poisson's fits
    take seconds each: its profile and anova, the same code as every family's, are
    left out.)"""
    from glmmbench import anova

    sd = _sim(name)
    res = fit(sd.formula, sd.data, family=sd.family)
    assert np.all(np.isfinite(np.asarray(res.predict(sd.data.iloc[:5], type="response"))))
    wald = res.confint(method="Wald", parm=["x"]).loc["x"]
    se = res.se["x"]
    assert wald.iloc[0] == pytest.approx(res.fixef["x"] - 1.959963984540054 * se, rel=1e-6)
    if sd.family != "compois":
        prof = res.confint(method="profile", parm=["x"]).loc["x"]
        assert prof.iloc[0] < res.fixef["x"] < prof.iloc[1]
        null = fit(sd.formula.replace("x + ", "", 1), sd.data, family=sd.family)
        table = anova(null, res)
        assert table.iloc[-1]["Chisq"] > 0 and table.iloc[-1]["Df"] == 1
    assert "dispersion" in res.diagnostics().index
    rec = res.to_record()
    assert rec["family_params"] == res.family_params
    full = res.vcov_all()
    np.testing.assert_allclose(full.loc[res.fixef.index, res.fixef.index], res.vcov,
                               rtol=1e-8)
    if res.fixef_disp is not None:  # the dispersion's SE on glmmTMB's scale
        assert np.sqrt(full.loc["disp~(Intercept)", "disp~(Intercept)"]) == pytest.approx(
            res.se_disp["(Intercept)"], rel=1e-6)


@pytest.mark.r
def test_glmmtmb_ordbeta_fails_at_its_default_start():
    """known_discrepancies ``glmmTMB-ordbeta-start``, re-measured: glmmTMB 1.1.5's
    ordbeta() stops at its default cut points (NaN log-likelihood there); from
    psi = (-1, 1), the start reference_r gives it, it reaches the native optimum."""
    from .rscript import run_r

    sd = _sim("ordbeta_intercept")
    out = run_r("""
        suppressPackageStartupMessages(library(glmmTMB))
        default <- tryCatch({glmmTMB(y ~ x + (1 | g), d, family = ordbeta()); "fitted"},
                            error = function(e) conditionMessage(e))
        m <- glmmTMB(y ~ x + (1 | g), d, family = ordbeta(), start = list(psi = c(-1, 1)))
        list(default = default, loglik = as.numeric(logLik(m)))""", d=sd.data)
    assert "NaN at starting parameter values" in out["default"]
    native = fit(sd.formula, sd.data, family="ordbeta")
    assert out["loglik"] == pytest.approx(native.loglik, abs=1e-6)
