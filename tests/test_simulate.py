"""simulate: the contract, moments against theory, property tests, reproducibility.

Moment checks draw one large data set (2000 groups) with a fixed seed and compare a
sample moment with its theoretical value within Z_TOL Monte Carlo standard errors.
The SE is estimated from independent units (group-level summaries in balanced
designs, observations given ``eta``), so the tolerance follows the draw size and
nothing is hand-tuned; at 4.5 SE a false alarm has probability ~7e-6 per check.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special, stats

import simulate
from simulate import (
    DESIGNS,
    FAMILY_LINKS,
    SCENARIOS,
    SIZE_DISTS,
    SMOOTHS,
    Scenario,
    generate,
    icc_to_variance,
    latent_residual_variance,
    variance_to_icc,
)
from simulate._links import LINKS, default_thresholds

Z_TOL = 4.5
BIG = 2000  # groups in a moment-check draw


def rng(seed: int = 20240601) -> np.random.Generator:
    return np.random.default_rng(seed)


def big(name: str, **knobs) -> simulate.SimulatedData:
    return generate(dataclasses.replace(SCENARIOS[name], n_groups=BIG, **knobs), rng())


def assert_within_se(estimate: float, expected: float, se: float, what: str) -> None:
    z = (estimate - expected) / se
    assert abs(z) < Z_TOL, f"{what}: {estimate:.5f} vs {expected:.5f} is {z:+.2f} SE (se={se:.2g})"


def group_means(values: np.ndarray, groups: pd.Series) -> np.ndarray:
    codes = groups.cat.codes.to_numpy()
    return np.bincount(codes, weights=values) / np.bincount(codes)


def mean_and_se_by_group(values: np.ndarray, groups: pd.Series) -> tuple[float, float]:
    """Mean of a balanced design and its SE from the iid group means."""
    m = group_means(values, groups)
    return float(m.mean()), float(m.std(ddof=1) / np.sqrt(m.size))


def normal_expectation(f, mean: float, var: float, nodes: int = 60) -> float:
    """E f(T), T ~ N(mean, var), by Gauss-Hermite (probabilists')."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    return float(np.sum(w * f(mean + np.sqrt(var) * t)) / np.sqrt(2 * np.pi))


def fixed_variance(s: Scenario) -> float:
    """Variance of beta_x x + beta_z z (x, z independent standard normal)."""
    return s.beta_x**2 + (s.beta_z or 0.0) ** 2


# --------------------------------------------------------------------- contract


def test_catalogue_covers_every_family_and_design():
    sc = SCENARIOS.values()
    assert {s.family for s in sc} == set(FAMILY_LINKS)
    assert any(s.family == "binomial" and s.trials == 1 for s in sc)
    assert any(s.family == "binomial" and s.trials > 1 for s in sc)
    assert {s.resolved_link for s in sc if s.family == "ordinal"} >= {"logit", "probit"}
    assert any(s.smooth and s.family == "gaussian" for s in sc)
    assert {s.design for s in sc} == set(DESIGNS)
    assert any(s.var_slope for s in sc) and any(s.var_slope and s.cor_slope for s in sc)
    assert any(s.size_dist != "balanced" for s in sc)
    assert any(s.group_size <= 3 and s.size_dist == "balanced" for s in sc)
    assert any(s.var_obs for s in sc)
    assert any(s.beta_z is not None for s in sc)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_contract(name):
    sim = generate(name, rng(1))
    s = SCENARIOS[name]
    d = sim.data
    assert sim.scenario is s and sim.family == s.family and sim.link == s.resolved_link
    assert json.loads(json.dumps(sim.truth)) == sim.truth
    assert not d.isna().any().any()
    # every column named in the formula exists; every factor is a string Categorical
    words = set(re.findall(r"[A-Za-z_]\w*", sim.formula)) - {"cbind", "s"}
    assert words <= set(d.columns)
    for col in ("g", "c", "h", "obs"):
        if col in d:
            cats = list(d[col].cat.categories)
            assert all(isinstance(c, str) for c in cats) and cats == sorted(cats)
            assert d[col].nunique() == len(cats), f"{col} has unused levels"
    # fixed-effect names: R's, in the formula's order
    rhs = re.sub(r"\([^()|]*\|[^()]*\)", "", sim.formula.split("~", 1)[1])
    fixed = [t.strip() for t in rhs.split("+") if t.strip() and not t.strip().startswith("s(")]
    expected = ([] if s.family == "ordinal" else ["(Intercept)"]) + fixed
    if s.family == "multinomial":
        levels = list(d["y"].cat.categories)
        expected = [f"{k}~{t}" for k in levels[1:] for t in expected]
    assert list(sim.truth["fixef"]) == expected
    # varcorr rows: as.data.frame(VarCorr()) columns; Residual last, Gaussian only
    vc = sim.truth["varcorr"]
    assert all(set(r) == {"grp", "var1", "var2", "vcov", "sdcor"} for r in vc)
    assert (vc[-1]["grp"] == "Residual") == (s.family == "gaussian" and s.disp_slope is None)
    for r in vc:
        if r["var2"] is None:
            assert r["vcov"] == pytest.approx(r["sdcor"] ** 2)
    assert ("thresholds" in sim.truth) == (s.family == "ordinal")
    assert ("smooth" in sim.truth) == (s.smooth is not None)
    assert ("dispersion" in sim.truth) == (s.family in (
        "negative_binomial", "nbinom1", "Gamma", "beta", "truncated_nbinom2",
        "truncated_nbinom1", "genpois", "t", "tweedie", "betabinomial", "ordbeta",
        "compois")
        and s.disp_slope is None)
    assert ("family_params" in sim.truth) == (s.family in ("t", "tweedie", "ordbeta"))
    assert ("fixef_disp" in sim.truth) == (s.disp_slope is not None)
    assert sim.dispformula == (None if s.disp_slope is None else "~ x")


def test_formulas_and_truth_layout():
    f = {n: generate(n, rng()).formula for n in SCENARIOS}
    assert f["gaussian_slopes"] == "y ~ x + (1 + x | g)"
    assert f["gaussian_nested"] == "y ~ x + (1 | c/g)"
    assert f["binomial_trials_crossed"] == "cbind(y, n - y) ~ x + (1 | g) + (1 | h)"
    assert f["gaussian_smooth"] == "y ~ s(x) + (1 | g)"
    assert f["poisson_olre"] == "y ~ x + (1 | g) + (1 | obs)"
    sim = generate("gaussian_slopes", rng())
    s = sim.scenario
    assert sim.truth["varcorr"] == [
        {"grp": "g", "var1": "(Intercept)", "var2": None, "vcov": 0.6, "sdcor": np.sqrt(0.6)},
        {"grp": "g", "var1": "x", "var2": None, "vcov": 0.2, "sdcor": np.sqrt(0.2)},
        {"grp": "g", "var1": "(Intercept)", "var2": "x",
         "vcov": pytest.approx(s.cor_slope * np.sqrt(0.6 * 0.2)), "sdcor": 0.4},
        {"grp": "Residual", "var1": None, "var2": None, "vcov": 1.0, "sdcor": 1.0},
    ]
    # lme4's term order: decreasing number of levels once any later term has more
    grps = lambda n: [r["grp"] for r in generate(n, rng()).truth["varcorr"]]  # noqa: E731
    assert grps("gaussian_nested") == ["g:c", "c", "Residual"]
    assert grps("poisson_olre") == ["obs", "g"]
    assert grps("gaussian_crossed") == ["g", "h", "Residual"]  # 40 then 30 levels: kept
    many_h = dataclasses.replace(SCENARIOS["gaussian_crossed"], n_groups2=60)
    assert [r["grp"] for r in generate(many_h, rng()).truth["varcorr"]][:2] == ["h", "g"]
    o = generate("ordinal_probit", rng())
    assert o.truth["thresholds"] == {"1|2": -1.2, "2|3": -0.4, "3|4": 0.3, "4|5": 1.1}
    assert list(o.data["y"].cat.categories) == ["1", "2", "3", "4", "5"]
    assert o.data["y"].cat.ordered and "(Intercept)" not in o.truth["fixef"]
    m = generate("multinomial_intercept", rng())
    assert not m.data["y"].cat.ordered and list(m.data["y"].cat.categories) == ["a", "b", "c"]
    assert m.truth["fixef"] == {"b~(Intercept)": -0.5, "b~x": 0.8,
                                "c~(Intercept)": 0.3, "c~x": -0.4}
    assert [r["var1"] for r in m.truth["varcorr"]] == ["b~(Intercept)", "c~(Intercept)"]
    nb = generate("negbin_intercept", rng())
    assert nb.truth["dispersion"] == 2.0
    assert f["negbin_crossed"] == f["nbinom1_crossed"] == "y ~ x + (1 | g) + (1 | h)"
    nb1 = generate("nbinom1_crossed", rng())
    assert (nb1.family, nb1.link, nb1.truth["dispersion"]) == ("nbinom1", "log", 1.5)
    ga = generate("gamma_log", rng())
    assert (ga.family, ga.link, f["gamma_log"]) == ("Gamma", "log", "y ~ x + z + (1 | g)")
    assert ga.truth["dispersion"] == pytest.approx(1 / np.sqrt(2.0))  # glmmTMB's sigma(): CV
    assert [r["grp"] for r in ga.truth["varcorr"]] == ["g"]  # no Residual row
    sm = generate("gaussian_smooth", rng()).truth["smooth"]
    assert sm["term"] == "s(x)" and sm["name"] == "sin"
    assert np.allclose(sm["values"], SMOOTHS["sin"](np.asarray(sm["grid"])))


def _ranef_labels(data: pd.DataFrame, grp: str) -> pd.Series:
    if grp == "g:c":
        return data["g"].astype(str) + ":" + data["c"].astype(str)
    return data[grp].astype(str)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_eta_is_fixed_part_plus_realised_random_effects(name):
    """Rebuild eta from the data columns, truth["fixef"] and sim.ranef: the labels of
    the random effects line up with the factors in the data."""
    sim = generate(name, rng(3))
    d, s = sim.data, sim.scenario
    cats = list(d["y"].cat.categories[1:]) if s.family == "multinomial" else [None]
    eta = np.zeros((len(d), len(cats)))
    for j, cat in enumerate(cats):
        prefix = f"{cat}~" if cat else ""
        for term, value in sim.truth["fixef"].items():
            if term.startswith(prefix):
                bare = term[len(prefix):]
                eta[:, j] += value * (1.0 if bare == "(Intercept)" else d[bare].to_numpy())
        if s.smooth:
            eta[:, j] += SMOOTHS[s.smooth](d["x"].to_numpy())
        for grp, frame in sim.ranef.items():
            b = frame.loc[_ranef_labels(d, grp)]
            if s.family == "multinomial":
                eta[:, j] += b[f"{cat}~(Intercept)"].to_numpy()
                continue
            eta[:, j] += b["(Intercept)"].to_numpy()
            if "x" in b:
                eta[:, j] += b["x"].to_numpy() * d["x"].to_numpy()
    expected = sim.eta if s.family == "multinomial" else sim.eta[:, None]
    np.testing.assert_allclose(eta, expected, rtol=1e-12, atol=1e-12)


def test_knobs_are_json_and_rebuild_the_scenario():
    for s in SCENARIOS.values():
        knobs = json.loads(json.dumps(s.knobs()))
        rebuilt = Scenario(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in knobs.items()})
        assert rebuilt == s


def test_generate_rejects_unknown_name_and_non_generator():
    with pytest.raises(ValueError, match="scenario"):
        generate("no_such_scenario", rng())
    with pytest.raises(TypeError, match="rng"):
        generate("gaussian_intercept", 1)
    with pytest.raises(TypeError, match="rng"):
        generate("gaussian_intercept", np.random.RandomState(1))


def test_scenario_is_frozen_and_replace_revalidates():
    s = SCENARIOS["gaussian_intercept"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n_groups = 3
    assert dataclasses.replace(s, n_groups=7).n_groups == 7
    assert hash(s) == hash(dataclasses.replace(s))
    with pytest.raises(ValueError, match="^n_groups:"):
        dataclasses.replace(s, n_groups=1)


# ------------------------------------------------------------ reproducibility


@pytest.mark.parametrize("name", ["gaussian_unbalanced", "binomial_trials_crossed",
                                  "ordinal_logit", "multinomial_4cat", "poisson_olre"])
def test_same_seed_same_data_other_seed_other_data(name):
    a, b, c = generate(name, rng(11)), generate(name, rng(11)), generate(name, rng(12))
    pd.testing.assert_frame_equal(a.data, b.data)
    assert a.truth == b.truth
    np.testing.assert_array_equal(a.eta, b.eta)
    assert not a.data.equals(c.data)


def test_no_global_random_state_is_touched():
    # reads numpy's legacy global generator on purpose: generate must not draw from it
    before = np.random.get_state()  # noqa: NPY002
    generate("poisson_crossed", rng())
    after = np.random.get_state()  # noqa: NPY002
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2:] == before[2:]


# ------------------------------------------------------------------- moments


def test_gaussian_marginal_mean_is_the_intercept():
    sim = big("gaussian_intercept")
    mean, se = mean_and_se_by_group(sim.data["y"].to_numpy(), sim.data["g"])
    assert_within_se(mean, sim.truth["fixef"]["(Intercept)"], se, "gaussian mean")


def test_gaussian_icc_by_variance_decomposition():
    """One-way ANOVA on y minus its true fixed part; SE of the ANOVA ICC estimator
    from Fisher's large-sample formula (Donner 1986, Int. Stat. Rev. 54: 67-82)."""
    sim = big("gaussian_intercept")
    s, d = sim.scenario, sim.data
    fe = sim.truth["fixef"]
    r = (d["y"] - fe["(Intercept)"] - fe["x"] * d["x"] - fe["z"] * d["z"]).to_numpy()
    n, G = s.group_size, s.n_groups
    m = group_means(r, d["g"])
    msb = n * np.sum((m - r.mean()) ** 2) / (G - 1)
    msw = np.sum((r - m[d["g"].cat.codes]) ** 2) / (G * (n - 1))
    icc_hat = (msb - msw) / (msb + (n - 1) * msw)
    icc = variance_to_icc(s.var_intercept, sigma=s.sigma)
    assert icc == pytest.approx(0.3)
    se = np.sqrt(2 * (1 - icc) ** 2 * (1 + (n - 1) * icc) ** 2 / (n * (n - 1) * (G - 1)))
    assert_within_se(icc_hat, icc, se, "gaussian ICC")
    # the residual variance alone: MSW ~ sigma^2 chi2_df / df
    df = G * (n - 1)
    assert_within_se(msw, s.sigma**2, s.sigma**2 * np.sqrt(2 / df), "residual variance")


def test_gaussian_slopes_conditional_variance_of_y():
    """Var(y | x) = var0 + 2 cov x + var1 x^2 + sigma^2: regress the squared deviation
    from the fixed part on (1, x, x^2); SE from the iid group-level sums."""
    sim = big("gaussian_slopes")
    s, d = sim.scenario, sim.data
    x = d["x"].to_numpy()
    r2 = (d["y"].to_numpy() - s.intercept - s.beta_x * x) ** 2
    X = np.column_stack([np.ones_like(x), x, x**2])
    coef = np.linalg.lstsq(X, r2, rcond=None)[0]
    # sandwich SE clustered by group
    bread = np.linalg.inv(X.T @ X)
    score = X * (r2 - X @ coef)[:, None]
    codes = d["g"].cat.codes.to_numpy()
    S = np.stack([np.bincount(codes, weights=score[:, k]) for k in range(3)], axis=1)
    se = np.sqrt(np.diag(bread @ (S.T @ S) @ bread))
    cov = s.cor_slope * np.sqrt(s.var_intercept * s.var_slope)
    truth = [s.var_intercept + s.sigma**2, 2 * cov, s.var_slope]
    for what, est, tru, e in zip(["const", "x", "x^2"], coef, truth, se, strict=True):
        assert_within_se(est, tru, e, f"Var(y|x) {what}")


def test_poisson_marginal_mean_lognormal():
    sim = big("poisson_intercept")
    s = sim.scenario
    mean, se = mean_and_se_by_group(sim.data["y"].to_numpy(float), sim.data["g"])
    expected = np.exp(s.intercept + (fixed_variance(s) + s.var_intercept) / 2)
    assert_within_se(mean, expected, se, "poisson marginal mean")


@pytest.mark.parametrize("name", ["binomial_binary", "binomial_binary_probit",
                                  "binomial_trials"])
def test_binomial_marginal_mean_by_integration(name):
    sim = big(name)
    s, d = sim.scenario, sim.data
    p = d["y"].to_numpy() / (d["n"].to_numpy() if "n" in d else 1.0)
    mean, se = mean_and_se_by_group(p, d["g"])
    linkinv = LINKS[s.resolved_link].linkinv
    expected = normal_expectation(linkinv, s.intercept, fixed_variance(s) + s.var_intercept)
    if s.resolved_link == "probit":
        closed = special.ndtr(s.intercept / np.sqrt(1 + fixed_variance(s) + s.var_intercept))
        assert expected == pytest.approx(closed, rel=1e-10)
    assert_within_se(mean, expected, se, f"{name} marginal mean")


def test_binary_probit_pairs_carry_the_intercept_variance():
    """Latent y* = eta + e, e ~ N(0, 1): two observations of one group share u and z,
    so P(y_i = y_j = 1) = Phi2(a, a; r) with s^2 = 1 + beta_x^2 + beta_z^2 + V,
    a = b0 / s, r = (V + beta_z^2) / s^2. The per-group k (k - 1) / (n (n - 1)) is
    unbiased for it and iid across groups. (The marginal mean barely moves with V;
    this moment does.)"""
    sim = big("binomial_binary_probit")
    s = sim.scenario
    k = sim.data.groupby("g", observed=True)["y"].sum().to_numpy(float)
    n = s.group_size
    pairs = k * (k - 1) / (n * (n - 1))
    s2 = 1 + fixed_variance(s) + s.var_intercept
    a = s.intercept / np.sqrt(s2)
    r = (s.var_intercept + (s.beta_z or 0.0) ** 2) / s2
    expected = stats.multivariate_normal([0, 0], [[1, r], [r, 1]]).cdf([a, a])
    assert_within_se(pairs.mean(), expected, pairs.std(ddof=1) / np.sqrt(pairs.size),
                     "P(y_i = y_j = 1)")


def test_binomial_olre_inflates_the_variance():
    """With an observation-level effect the within-group variance of y / n exceeds
    the binomial one by Var(p | group): compare with the integral."""
    sim = big("binomial_trials_olre", beta_x=0.0)
    s, d = sim.scenario, sim.data
    p = (d["y"] / d["n"]).to_numpy()
    # E over b ~ N(intercept, var_intercept) of the within-group variance of y/n,
    # where p_i = expit(b + e_i): E[p(1-p)]/n + Var(p | b), by nested quadrature
    ep = lambda b: normal_expectation(special.expit, b, s.var_obs)  # noqa: E731
    ep2 = lambda b: normal_expectation(lambda t: special.expit(t) ** 2, b, s.var_obs)  # noqa: E731
    within = normal_expectation(
        np.vectorize(lambda b: (ep(b) - ep2(b)) / s.trials + (ep2(b) - ep(b) ** 2)),
        s.intercept, s.var_intercept)
    codes = d["g"].cat.codes.to_numpy()
    m = group_means(p, d["g"])
    per_group = np.bincount(codes, weights=(p - m[codes]) ** 2) / (s.group_size - 1)
    est, se = per_group.mean(), per_group.std(ddof=1) / np.sqrt(per_group.size)
    assert_within_se(est, within, se, "binomial OLRE within-group variance")


def ordinal_marginal_probs(s: Scenario) -> np.ndarray:
    """P(Y = k) = E[F(theta_k - t) - F(theta_{k-1} - t)], t ~ N(0, V)."""
    F = LINKS[s.resolved_link].cdf
    var = fixed_variance(s) + s.var_intercept
    cum = [normal_expectation(lambda t, th=th: F(th - t), 0.0, var)
           for th in s.resolved_thresholds]
    return np.diff(np.concatenate([[0.0], cum, [1.0]]))


def check_category_frequencies(sim, expected: np.ndarray) -> None:
    d = sim.data
    codes = d["y"].cat.codes.to_numpy()
    assert expected.sum() == pytest.approx(1.0)
    for k, p in enumerate(expected):
        freq, se = mean_and_se_by_group((codes == k).astype(float), d["g"])
        assert_within_se(freq, p, se, f"P(Y = {d['y'].cat.categories[k]})")


@pytest.mark.parametrize("name", ["ordinal_logit", "ordinal_probit"])
def test_ordinal_category_frequencies(name):
    sim = big(name)
    check_category_frequencies(sim, ordinal_marginal_probs(sim.scenario))


def test_ordinal_cloglog_and_default_thresholds():
    s = dataclasses.replace(SCENARIOS["ordinal_logit"], link="cloglog", thresholds=None,
                            n_groups=BIG)
    sim = generate(s, rng())
    check_category_frequencies(sim, ordinal_marginal_probs(s))


def multinomial_marginal_probs(s: Scenario, nodes: int = 12) -> np.ndarray:
    """E[softmax(0, eta_1..eta_{K-1})] over x, z and one random intercept per
    category: a tensor-product Gauss-Hermite rule."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / np.sqrt(2 * np.pi)
    K1 = s.n_categories - 1
    dims = 1 + (s.beta_z is not None) + K1
    pts = np.array(list(itertools.product(t, repeat=dims)))
    wts = np.prod(np.array(list(itertools.product(w, repeat=dims))), axis=1)
    as_tuple = lambda v: v if isinstance(v, tuple) else (v,) * K1  # noqa: E731
    eta = np.array(as_tuple(s.intercept)) + pts[:, [0]] * np.array(as_tuple(s.beta_x))
    if s.beta_z is not None:
        eta += pts[:, [1]] * np.array(as_tuple(s.beta_z))
    eta += np.sqrt(s.var_intercept) * pts[:, -K1:]
    full = np.column_stack([np.zeros(len(eta)), eta])
    return wts @ special.softmax(full, axis=1)


@pytest.mark.parametrize("name", ["multinomial_intercept", "multinomial_4cat"])
def test_multinomial_category_frequencies(name):
    sim = big(name)
    check_category_frequencies(sim, multinomial_marginal_probs(sim.scenario))


@pytest.mark.parametrize("name", ["negbin_intercept", "negbin_unbalanced", "negbin_crossed"])
def test_negative_binomial_conditional_mean_and_variance(name):
    """Given eta: E y = mu and Var y = mu + mu^2 / theta. The Pearson residuals are
    independent given eta, mean 0 and variance 1; their SEs come from the sample."""
    sim = big(name)
    y = sim.data["y"].to_numpy(float)
    mu = np.exp(sim.eta)
    pearson = (y - mu) / np.sqrt(mu + mu**2 / sim.truth["dispersion"])
    n = pearson.size
    assert_within_se(pearson.mean(), 0.0, pearson.std() / np.sqrt(n), "NB Pearson mean")
    sq = pearson**2
    assert_within_se(sq.mean(), 1.0, sq.std() / np.sqrt(n), "NB Pearson variance")


def test_nbinom1_conditional_moments_and_zeros():
    """NB1 given eta: E y = mu, Var y = mu (1 + phi) (Pearson residuals mean 0,
    variance 1), and P(y = 0) = (1 + phi)^(-mu / phi), which separates NB1 from other
    count laws with the same two moments."""
    sim = big("nbinom1_crossed")
    y = sim.data["y"].to_numpy(float)
    mu, phi = np.exp(sim.eta), sim.truth["dispersion"]
    n = y.size
    pearson = (y - mu) / np.sqrt(mu * (1 + phi))
    assert_within_se(pearson.mean(), 0.0, pearson.std() / np.sqrt(n), "NB1 Pearson mean")
    sq = pearson**2
    assert_within_se(sq.mean(), 1.0, sq.std() / np.sqrt(n), "NB1 Pearson variance")
    zero = (y == 0) - (1 + phi) ** (-mu / phi)
    assert_within_se(zero.mean(), 0.0, zero.std() / np.sqrt(n), "NB1 P(y = 0)")


def test_gamma_conditional_moments_and_shape():
    """Gamma(shape k, mean mu) given eta: Pearson residuals (y - mu) / (mu / sqrt(k))
    have mean 0 and variance 1; log(y / mu) has mean digamma(k) - log(k) and variance
    trigamma(k), which pins the shape, not only the CV."""
    sim = big("gamma_log")
    y = sim.data["y"].to_numpy()
    mu, k = np.exp(sim.eta), sim.scenario.gamma_shape
    assert sim.truth["dispersion"] == pytest.approx(1 / np.sqrt(k))
    n = y.size
    pearson = (y - mu) / (mu * sim.truth["dispersion"])
    assert_within_se(pearson.mean(), 0.0, pearson.std() / np.sqrt(n), "Gamma Pearson mean")
    sq = pearson**2
    assert_within_se(sq.mean(), 1.0, sq.std() / np.sqrt(n), "Gamma Pearson variance")
    d = np.log(y / mu) - (special.digamma(k) - np.log(k))
    assert_within_se(d.mean(), 0.0, d.std() / np.sqrt(n), "Gamma E log(y / mu)")
    d2 = d**2
    assert_within_se(d2.mean(), special.polygamma(1, k), d2.std() / np.sqrt(n),
                     "Gamma Var log(y / mu)")


def test_gamma_marginal_mean_lognormal():
    sim = big("gamma_log")
    s = sim.scenario
    mean, se = mean_and_se_by_group(sim.data["y"].to_numpy(), sim.data["g"])
    expected = np.exp(s.intercept + (fixed_variance(s) + s.var_intercept) / 2)
    assert_within_se(mean, expected, se, "Gamma marginal mean")


def test_gaussian_residuals_given_eta():
    sim = big("gaussian_crossed")
    e = sim.data["y"].to_numpy() - sim.eta
    assert_within_se(np.var(e), 1.0, np.sqrt(2 / e.size), "gaussian residual variance")


@pytest.mark.parametrize("name,grp,var", [("gaussian_nested", "c", "var_group2"),
                                          ("gaussian_crossed", "h", "var_group2"),
                                          ("nbinom1_crossed", "h", "var_group2"),
                                          ("poisson_olre", "obs", "var_obs")])
def test_realised_effects_have_the_scenario_variance(name, grp, var):
    s = dataclasses.replace(SCENARIOS[name], n_groups2=400, n_groups=800) \
        if SCENARIOS[name].design != "single" else SCENARIOS[name]
    sim = generate(s, rng())
    b = sim.ranef[grp]["(Intercept)"].to_numpy()
    v = getattr(s, var)
    assert_within_se(b.var(ddof=1), v, v * np.sqrt(2 / (b.size - 1)), f"{grp} variance")


def test_unbalanced_sizes_have_the_requested_mean():
    for dist in ("uniform", "geometric"):
        s = dataclasses.replace(SCENARIOS["gaussian_unbalanced"], size_dist=dist,
                                n_groups=BIG, min_group_size=2)
        sizes = generate(s, rng()).data["g"].value_counts().to_numpy()
        assert sizes.min() >= 2
        assert_within_se(sizes.mean(), s.group_size, sizes.std() / np.sqrt(sizes.size),
                         f"{dist} group size")
        assert sizes.std() > 1


# ------------------------------------------------------------------ links, ICC


@pytest.mark.parametrize("name", ["logit", "probit", "cloglog"])
def test_latent_links(name):
    link = LINKS[name]
    p = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(link.cdf(link.quantile(p)), p, rtol=1e-12)
    np.testing.assert_allclose(link.linkinv(link.quantile(p)), p, rtol=1e-12)
    scipy_dist = {"logit": stats.logistic, "probit": stats.norm, "cloglog": stats.gumbel_l}
    assert link.latent_var == pytest.approx(scipy_dist[name].var())
    np.testing.assert_allclose(link.cdf(p), scipy_dist[name].cdf(p), rtol=1e-12)
    # default thresholds: equal probabilities at eta = 0
    th = default_thresholds(4, name)
    np.testing.assert_allclose(np.diff(link.cdf(np.array([-np.inf, *th, np.inf]))), 0.25)


def test_icc_helpers():
    assert icc_to_variance(0.2, "binomial") == pytest.approx(0.25 * np.pi**2 / 3)
    assert icc_to_variance(0.2, "binomial", "probit") == pytest.approx(0.25)
    assert icc_to_variance(0.5, "ordinal", "cloglog") == pytest.approx(np.pi**2 / 6)
    assert icc_to_variance(0.5, "gaussian", sigma=2.0) == pytest.approx(4.0)
    assert icc_to_variance(0.5, "poisson", mu=2.0) == pytest.approx(np.log(1.5))
    assert latent_residual_variance("negative_binomial", mu=2.0, nb_theta=4.0) == \
        pytest.approx(np.log(1 + 0.5 + 0.25))
    assert latent_residual_variance("nbinom1", mu=2.0, nb_phi=1.0) == pytest.approx(np.log(2))
    assert latent_residual_variance("Gamma", gamma_shape=2.0) == pytest.approx(np.log(1.5))
    assert icc_to_variance(0.5, "Gamma", "log", gamma_shape=4.0) == pytest.approx(np.log(1.25))
    for fam, link in [("gaussian", None), ("multinomial", None), ("binomial", "probit")]:
        v = icc_to_variance(0.37, fam, link)
        assert variance_to_icc(v, fam, link) == pytest.approx(0.37)
    for bad, knob in [(dict(icc=1.0), "icc"), (dict(icc=-0.1), "icc"),
                      (dict(icc=0.2, family="poisson"), "mu"),
                      (dict(icc=0.2, family="nbinom1", mu=1.0), "nb_phi"),
                      (dict(icc=0.2, family="Gamma"), "gamma_shape"),
                      (dict(icc=0.2, family="Gamma", link="inverse"), "link"),
                      (dict(icc=0.2, family="binomial", link="log"), "link"),
                      (dict(icc=0.2, family="weibull"), "family")]:
        with pytest.raises(ValueError, match=f"^{knob}:"):
            icc_to_variance(**bad)


# ---------------------------------------------------------------- properties

variances = st.floats(0.0, 2.0)


@st.composite
def valid_scenarios(draw) -> Scenario:
    family = draw(st.sampled_from(sorted(FAMILY_LINKS)))
    K = draw(st.integers(2, 6))
    k1 = K - 1 if family == "multinomial" else 1

    def coef(lo=-1.0, hi=1.0):
        if family == "multinomial" and draw(st.booleans()):
            return tuple(draw(st.lists(st.floats(lo, hi), min_size=k1, max_size=k1)))
        return draw(st.floats(lo, hi))

    group_size = draw(st.integers(1, 8))
    size_dist = draw(st.sampled_from(SIZE_DISTS))
    min_group_size = draw(st.integers(1, group_size))
    n_groups = draw(st.integers(2, 25))
    design = "single" if family == "multinomial" else draw(st.sampled_from(DESIGNS))
    n_groups2, var_group2 = 0, 0.0
    if design == "nested":
        n_groups2 = draw(st.integers(2, 6))
        n_groups = max(n_groups, 2 * n_groups2)
    elif design == "crossed":
        smallest = group_size if size_dist == "balanced" else min_group_size
        n_groups2 = draw(st.integers(2, min(30, n_groups * smallest)))
    if design != "single":
        var_group2 = draw(variances)
    smooth = None
    if family != "multinomial":
        smooth = draw(st.one_of(st.none(), st.sampled_from(sorted(SMOOTHS))))
    slopes = family != "multinomial" and smooth is None and draw(st.booleans())
    thresholds = None
    if family == "ordinal" and draw(st.booleans()):
        th = draw(st.lists(st.floats(-3, 3), min_size=K - 1, max_size=K - 1, unique=True))
        thresholds = tuple(sorted(th))
    return Scenario(
        family=family,
        link=draw(st.sampled_from((None, *FAMILY_LINKS[family]))),
        n_groups=n_groups, group_size=group_size, size_dist=size_dist,
        min_group_size=min_group_size, design=design, n_groups2=n_groups2,
        var_group2=var_group2,
        intercept=0.0 if family == "ordinal" else coef(-2.0, 2.0),
        beta_x=0.0 if smooth else coef(),
        beta_z=draw(st.one_of(st.none(), st.just(coef()))),
        smooth=smooth,
        var_intercept=draw(variances),
        var_slope=draw(variances) if slopes else None,
        cor_slope=draw(st.floats(-0.95, 0.95)),
        var_obs=None if family == "multinomial" else draw(st.one_of(st.none(), variances)),
        sigma=draw(st.floats(0.1, 3.0)),
        trials=draw(st.integers(1, 20)),
        nb_theta=draw(st.floats(0.2, 20.0)),
        nb_phi=draw(st.floats(0.05, 10.0)),
        gamma_shape=draw(st.floats(0.1, 50.0)),
        n_categories=K,
        thresholds=thresholds,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=valid_scenarios(), seed=st.integers(0, 2**32 - 1))
def test_valid_knobs_give_valid_data(s, seed):
    sim = generate(s, np.random.default_rng(seed))
    d = sim.data
    assert len(d) >= s.n_groups and not d.isna().any().any()
    assert d["g"].dtype == "category" and d["g"].nunique() == s.n_groups
    for col in ("g", "c", "h", "obs"):
        if col in d:
            assert d[col].dtype == "category" and not d[col].cat.ordered
            assert d[col].nunique() == len(d[col].cat.categories)
    assert np.isfinite(d["x"]).all()
    if s.beta_z is not None:  # group-level: constant within group
        assert (d.groupby("g", observed=True)["z"].nunique() == 1).all()
    y = d["y"]
    if s.family == "gaussian":
        assert y.dtype == np.float64 and np.isfinite(y).all()
    elif s.family == "Gamma":
        assert y.dtype == np.float64 and np.isfinite(y).all() and (y > 0).all()
    elif s.family == "beta":
        assert y.dtype == np.float64 and ((y > 0) & (y < 1)).all()
    elif s.family == "t":
        assert y.dtype == np.float64 and np.isfinite(y).all()
    elif s.family == "ordbeta":
        assert y.dtype == np.float64 and ((y >= 0) & (y <= 1)).all()
    elif s.family == "betabinomial":
        assert np.issubdtype(y.dtype, np.integer) and ((y >= 0) & (y <= d["n"])).all()
    elif s.family == "tweedie":
        assert y.dtype == np.float64 and (y >= 0).all()
    elif s.family.startswith("truncated_"):
        assert (y == np.round(y)).all() and (y >= 1).all()
    elif s.family in ("genpois", "compois"):
        assert (y == np.round(y)).all() and (y >= 0).all()
    elif s.family in ("binomial", "poisson", "negative_binomial", "nbinom1"):
        assert np.issubdtype(y.dtype, np.integer) and (y >= 0).all()
        if s.family == "binomial":
            n = d["n"] if s.trials > 1 else 1
            assert (y <= n).all()
            assert ("n" in d) == (s.trials > 1)
    else:
        assert y.dtype == "category" and y.cat.ordered == (s.family == "ordinal")
        assert len(y.cat.categories) == s.n_categories and (y.cat.codes >= 0).all()
        assert list(y.cat.categories) == sorted(y.cat.categories, key=lambda c: (len(c), c))
    assert json.loads(json.dumps(sim.truth)) == sim.truth
    n_rows = {"gaussian": 1}.get(s.family, 0)
    assert len(sim.truth["varcorr"]) >= s.n_coef_sets + n_rows


def _bad_thresholds(K):
    return st.lists(st.floats(-3, 3), min_size=K - 1, max_size=K - 1).filter(
        lambda t: any(b <= a for a, b in zip(t, t[1:], strict=False))).map(tuple)


BAD_KNOBS = {
    "n_groups": st.integers(-5, 1),
    "group_size": st.integers(-5, 0),
    "var_intercept": st.floats(-10, -1e-9),
    "var_slope": st.floats(-10, -1e-9),
    "var_obs": st.floats(-10, -1e-9),
    "var_group2": st.floats(-10, -1e-9),
    "cor_slope": st.one_of(st.floats(1.0, 5.0), st.floats(-5.0, -1.0)),
    "n_categories": st.integers(-3, 1),
    "trials": st.integers(-3, 0),
    "sigma": st.floats(-5, 0.0),
    "nb_theta": st.floats(-5, 0.0),
    "nb_phi": st.floats(-5, 0.0),
    "gamma_shape": st.floats(-5, 0.0),
    "family": st.sampled_from(["normal", "Binomial", "gamma", ""]),
    "design": st.sampled_from(["cross", "multi"]),
    "size_dist": st.sampled_from(["poisson", "lognormal"]),
    "smooth": st.sampled_from(["spline", "cos"]),
}


@settings(max_examples=150, deadline=None)
@given(s=valid_scenarios(), data=st.data())
def test_invalid_knobs_raise_naming_the_knob(s, data):
    knob = data.draw(st.sampled_from([*BAD_KNOBS, "link", "thresholds"]))
    if knob == "link":
        others = {lk for links in FAMILY_LINKS.values() for lk in links} | {"loglog", "logt"}
        value = data.draw(st.sampled_from(sorted(others - set(FAMILY_LINKS[s.family]))))
    elif knob == "thresholds":
        if s.n_categories < 3:
            s = dataclasses.replace(s, n_categories=3, intercept=0.0, beta_x=0.0, beta_z=None,
                                    thresholds=None)
        value = data.draw(_bad_thresholds(s.n_categories))
    else:
        value = data.draw(BAD_KNOBS[knob])
    with pytest.raises(ValueError, match=f"^{knob}:"):
        dataclasses.replace(s, **{knob: value})


@pytest.mark.parametrize("knobs,knob", [
    (dict(n_groups=2.5), "n_groups"),
    (dict(n_groups=True), "n_groups"),
    (dict(var_intercept=float("nan")), "var_intercept"),
    (dict(family="poisson", link="logit"), "link"),
    (dict(family="ordinal", intercept=1.0), "intercept"),
    (dict(family="ordinal", n_categories=4, thresholds=(0.0, 1.0)), "thresholds"),
    (dict(family="ordinal", n_categories=3, thresholds=[0.0, 1.0]), "thresholds"),
    (dict(family="multinomial", n_categories=3, intercept=(0.1, 0.2, 0.3)), "intercept"),
    (dict(family="gaussian", beta_x=(0.1, 0.2)), "beta_x"),
    (dict(family="multinomial", var_slope=0.2), "var_slope"),
    (dict(family="multinomial", var_obs=0.2), "var_obs"),
    (dict(family="multinomial", design="crossed", n_groups2=5), "design"),
    (dict(smooth="sin"), "beta_x"),
    (dict(smooth="sin", beta_x=0.0, var_slope=0.1), "var_slope"),
    (dict(design="nested", n_groups2=30), "n_groups2"),
    (dict(design="nested", n_groups2=1), "n_groups2"),
    (dict(design="crossed", n_groups2=1000), "n_groups2"),
    (dict(n_groups2=5), "n_groups2"),
    (dict(var_group2=0.5), "var_group2"),
    (dict(size_dist="uniform", min_group_size=20), "min_group_size"),
])
def test_invalid_knob_table(knobs, knob):
    with pytest.raises(ValueError, match=f"^{knob}:"):
        Scenario(**knobs)
