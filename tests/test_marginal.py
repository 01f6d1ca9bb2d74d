"""Population-averaged coefficients (``glmmbench.inference.marginal``) against their definition,
computed here another way at the fitted parameters:

    mu_i^M = E_b[g^{-1}(x_i' beta + o_i + z_i' b)],  b ~ N(0, D)   (scipy's quad, dblquad)
    beta^M = argmin sum_i w_i (g(mu_i^M) - o_i - x_i' beta)^2      (numpy's lstsq)

with ``D`` read from ``varcorr``, the inverse links from scipy, and for the log link
the closed form ``beta^M = beta + (v / 2) e_1`` (random intercepts). Standard errors
against the delta method with this file's own Jacobian, or its closed form.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

import glmmbench as gb
from glmmbench.errors import GLMMError
from glmmbench.families.glm import get_link
from glmmbench.inference.marginal import marginal_coefs, marginal_mean, re_variance

# |quadrature here - marginal_coefs| on coefficients: both integrals are good to
# about 1e-10; the brief's bound is 1e-4
COEF_QUAD_ABS = 1e-7
# log link: beta^M is beta + v/2 e_1 in exact arithmetic; least squares rounding only
COEF_EXACT_ABS = 1e-10
# delta-method standard errors, relative: central differences (step 1e-5 there,
# 1e-4 here) of smooth functions, errors of order 1e-8
SE_REL = 1e-5
# binary rows against their cbind() aggregate: the two fits reach the same optimum
# (fixef and theta agree to 1e-15 here), so beta^M agrees to rounding
AGGREGATE_ABS = 1e-8
# marginal_mean's documented accuracy of its Gauss-Hermite rule
GH_ABS = 1e-9

INVLINK = {"logit": special.expit, "probit": special.ndtr,
           "cloglog": lambda e: -np.expm1(-np.exp(e)),
           "cauchit": lambda e: 0.5 + np.arctan(e) / np.pi,
           "sqrt": np.square, "identity": lambda e: e}
LINKFUN = {"logit": special.logit, "probit": special.ndtri,
           "cloglog": lambda mu: np.log(-np.log1p(-mu)), "sqrt": np.sqrt,
           "identity": lambda mu: mu}
_SQRT_2PI = np.sqrt(2 * np.pi)


def quad_mean(inv, eta: float, sd: float) -> float:
    """``E[inv(eta + sd t)]``, t ~ N(0, 1), by adaptive quadrature on [-14, 14]."""
    if sd == 0:
        return float(inv(eta))
    kink = -eta / sd
    return integrate.quad(lambda t: inv(eta + sd * t) * np.exp(-t * t / 2) / _SQRT_2PI,
                          -14, 14, points=[kink] if abs(kink) < 14 else None,
                          epsabs=1e-13, epsrel=1e-12, limit=200)[0]


def quad_means(inv, eta: np.ndarray, v: np.ndarray) -> np.ndarray:
    keys, where = np.unique(np.column_stack([eta, v]), axis=0, return_inverse=True)
    vals = np.array([quad_mean(inv, e, np.sqrt(s)) for e, s in keys])
    return vals[where.ravel()]


def projected(res, gmu: np.ndarray) -> np.ndarray:
    """Weighted least squares of ``g(mu^M) - offset`` on X."""
    d = res.design
    sw = np.sqrt(d.weights)
    return np.linalg.lstsq(d.X * sw[:, None], sw * (gmu - d.offset), rcond=None)[0]


def term_variances(res) -> dict[str, float]:
    vc = res.varcorr
    return dict(zip(vc["grp"], vc["vcov"], strict=True))


def theta_beta_cov(res) -> np.ndarray:
    """``2 H^{-1}`` over (theta, beta); the models here have no dispersion."""
    return 2.0 * np.linalg.inv(np.asarray(res.optinfo["derivs"]["Hessian"]))


def central_jacobian(f, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    return np.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)], axis=1)


# ------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def binary_ri() -> pd.DataFrame:
    rng = np.random.default_rng(20180101)
    G, m = 40, 10
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    trt = np.repeat(rng.integers(0, 2, G), m).astype(float)
    b = rng.normal(0, 1.2, G)
    y = rng.binomial(1, special.expit(-0.5 + 0.8 * x + 0.6 * trt + b[g]))
    return pd.DataFrame({"y": y.astype(float), "x": x, "trt": trt,
                         "g": pd.Categorical([f"g{j}" for j in g])})


@pytest.fixture(scope="module")
def ri_fits(binary_ri) -> dict:
    cases = {("logit", 1), ("probit", 1), ("cloglog", 1), ("logit", 5)}
    return {(link, nagq): gb.fit("y ~ x + trt + (1 | g)", binary_ri, family="binomial",
                                 link=link, nagq=nagq)
            for link, nagq in cases}


def definition_ri(res, link: str, params: np.ndarray) -> np.ndarray:
    """beta^M of a random-intercept model at ``params = (theta, beta)``: ``v = theta^2``."""
    d = res.design
    eta = d.X @ params[1:] + d.offset
    mu = quad_means(INVLINK[link], eta, np.full(d.n, params[0] ** 2))
    return projected(res, LINKFUN[link](mu))


# ------------------------------------------------------------------ estimates
@pytest.mark.parametrize("link, nagq", [("logit", 1), ("probit", 1), ("cloglog", 1),
                                        ("logit", 5)])
def test_random_intercept_against_quad(ri_fits, link, nagq):
    res = ri_fits[(link, nagq)]
    assert res.converged, res.messages
    assert res.theta[0] ** 2 == pytest.approx(term_variances(res)["g"], rel=1e-12)
    expected = definition_ri(res, link, np.concatenate([res.theta, res.fixef]))
    got = marginal_coefs(res, std_errors=False)
    assert list(got.index) == list(res.fixef.index)
    np.testing.assert_allclose(got["Estimate"].to_numpy(), expected, rtol=0,
                               atol=COEF_QUAD_ABS)
    # the marginal effects are attenuated towards 0, not equal to the conditional ones
    assert np.all(np.abs(expected[1:]) < np.abs(res.fixef.to_numpy()[1:]) - 0.01)


def test_random_slope_against_a_2d_integral_over_b():
    rng = np.random.default_rng(74)
    G, levels = 50, np.linspace(-1.0, 1.0, 5)
    x = np.tile(np.repeat(levels, 2), G)
    g = np.repeat(np.arange(G), 10)
    trt = np.repeat(rng.integers(0, 2, G), 10).astype(float)
    D = np.array([[1.0, 0.3 * 0.8], [0.3 * 0.8, 0.64]])
    b = rng.multivariate_normal([0, 0], D, size=G)
    y = rng.binomial(1, special.expit(-0.3 + 0.9 * x - 0.5 * trt + b[g, 0] + b[g, 1] * x))
    data = pd.DataFrame({"y": y.astype(float), "x": x, "trt": trt,
                         "g": pd.Categorical([f"g{j}" for j in g])})
    res = gb.fit("y ~ x + trt + (1 + x | g)", data, family="binomial")
    assert res.converged, res.messages
    vc = res.varcorr
    D_hat = np.empty((2, 2))
    D_hat[0, 0], D_hat[1, 1] = vc["vcov"][vc["var2"].isna()]
    D_hat[0, 1] = D_hat[1, 0] = vc["vcov"][vc["var2"].notna()].item()
    assert np.linalg.eigvalsh(D_hat).min() > 0.05  # not singular: both directions averaged
    C = np.linalg.cholesky(D_hat)
    beta = res.fixef.to_numpy()
    keys, where = np.unique(np.column_stack([x, trt]), axis=0, return_inverse=True)
    mu = []
    for xk, tk in keys:
        eta = beta[0] + beta[1] * xk + beta[2] * tk

        def f(u2, u1, eta=eta, xk=xk):
            b0, b1 = C @ np.array([u1, u2])
            return special.expit(eta + b0 + b1 * xk) * np.exp(-(u1**2 + u2**2) / 2) / (2 * np.pi)

        mu.append(integrate.dblquad(f, -9, 9, -9, 9, epsabs=1e-11, epsrel=1e-10)[0])
    expected = projected(res, special.logit(np.array(mu)[where.ravel()]))
    got = marginal_coefs(res, std_errors=False)["Estimate"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=COEF_QUAD_ABS)


def test_crossed_binomial_variances_add_up():
    rng = np.random.default_rng(5)
    A, B = 25, 20
    a, bb = np.repeat(np.arange(A), B), np.tile(np.arange(B), A)
    x = rng.normal(size=A * B)
    ua, ub = rng.normal(0, 1.0, A), rng.normal(0, 0.7, B)
    y = rng.binomial(1, special.expit(0.2 + 0.7 * x + ua[a] + ub[bb]))
    data = pd.DataFrame({"y": y.astype(float), "x": x,
                         "a": pd.Categorical([f"a{j}" for j in a]),
                         "b": pd.Categorical([f"b{j}" for j in bb])})
    res = gb.fit("y ~ x + (1 | a) + (1 | b)", data, family="binomial")
    assert res.converged, res.messages
    var = term_variances(res)
    assert min(var["a"], var["b"]) > 0.1  # both terms matter
    d = res.design
    mu = quad_means(special.expit, d.X @ res.fixef.to_numpy(), np.full(d.n, var["a"] + var["b"]))
    expected = projected(res, special.logit(mu))
    got = marginal_coefs(res, std_errors=False)["Estimate"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=COEF_QUAD_ABS)


def log_link_identity(res, v: float) -> np.ndarray:
    beta = res.fixef.to_numpy().copy()
    beta[0] += v / 2
    return beta


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    G, m = 40, 8
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    t = rng.uniform(0.5, 3.0, G * m)
    mu = t * np.exp(0.4 + 0.5 * x + rng.normal(0, 0.8, G)[g])
    return pd.DataFrame({"y": rng.negative_binomial(4.0, 4.0 / (4.0 + mu)).astype(float),
                         "ypois": rng.poisson(mu).astype(float), "x": x, "t": t,
                         "g": pd.Categorical([f"g{j}" for j in g])})


@pytest.mark.parametrize("family, response", [("poisson", "ypois"),
                                              ("negative_binomial", "y"), ("nbinom1", "y")])
def test_log_link_marginal_intercept_is_beta0_plus_half_the_variance(counts, family,
                                                                      response):
    """The offset (log exposure) enters mu^M and leaves before the projection."""
    res = gb.fit(f"{response} ~ x + offset(log(t)) + (1 | g)", counts, family=family)
    assert res.converged, res.messages
    got = marginal_coefs(res)
    np.testing.assert_allclose(got["Estimate"].to_numpy(),
                               log_link_identity(res, term_variances(res)["g"]),
                               rtol=0, atol=COEF_EXACT_ABS)
    # delta method, closed form: d beta0^M / d(theta, beta0) = (theta, 1), slopes' J = I.
    # H's order: theta, the log dispersion where the family has one, beta.
    nt, nd = 1, int(family != "poisson")
    V = 2.0 * np.linalg.inv(np.asarray(res.optinfo["derivs"]["Hessian"]))
    np.testing.assert_allclose(V[nt + nd:, nt + nd:], res.vcov.to_numpy(), rtol=1e-10)
    th, i0 = res.theta[0], nt + nd
    se0 = np.sqrt(th**2 * V[0, 0] + V[i0, i0] + 2 * th * V[0, i0])
    np.testing.assert_allclose(got["Std. Error"].to_numpy(),
                               [se0, *res.se.to_numpy()[1:]], rtol=SE_REL)


@pytest.mark.parametrize("link", ["sqrt", "identity"])
def test_other_count_links_against_quad(link):
    rng = np.random.default_rng(12)
    G, m = 30, 8
    g = np.repeat(np.arange(G), m)
    x = rng.uniform(0, 1, G * m)
    mu = (4 + 2 * x + rng.normal(0, 0.6, G)[g]) ** 2
    data = pd.DataFrame({"y": rng.poisson(mu).astype(float), "x": x,
                         "g": pd.Categorical([f"g{j}" for j in g])})
    res = gb.fit("y ~ x + (1 | g)", data, family="poisson", link=link)
    assert res.converged, res.messages
    d = res.design
    mu_m = quad_means(INVLINK[link], d.X @ res.fixef.to_numpy(),
                      np.full(d.n, term_variances(res)["g"]))
    expected = projected(res, LINKFUN[link](mu_m))
    got = marginal_coefs(res, std_errors=False)["Estimate"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=COEF_QUAD_ABS)


def test_grouseticks_crossed_poisson_variances_add_up():
    data = gb.datasets.load("grouseticks")
    res = gb.fit("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", data,
                 family="poisson")
    var = term_variances(res)
    assert min(var["BROOD"], var["LOCATION"]) > 0.05
    got = marginal_coefs(res, std_errors=False)["Estimate"].to_numpy()
    np.testing.assert_allclose(got, log_link_identity(res, var["BROOD"] + var["LOCATION"]),
                               rtol=0, atol=COEF_EXACT_ABS)


# -------------------------------------------------------------- prior weights
def test_cbind_rows_give_the_marginal_coefs_of_their_binary_rows():
    """Trials weight the projection: an aggregated fit equals its binary expansion,
    where the unweighted projection would not."""
    rng = np.random.default_rng(3)
    G, levels = 40, np.array([-3.0, -1.5, 0.0, 1.0, 3.0])
    g = np.repeat(np.arange(G), levels.size)
    x = np.tile(levels, G)
    # more trials where x > 0, so that weighting moves the projection
    n = rng.integers(1, 4, size=g.size) + np.where(x > 0, 10, 0)
    s = rng.binomial(n, special.expit(-0.2 + 0.9 * x + rng.normal(0, 1.5, G)[g]))
    agg = pd.DataFrame({"s": s.astype(float), "f": (n - s).astype(float), "x": x,
                        "g": pd.Categorical([f"g{j}" for j in g])})
    rows = np.repeat(np.arange(g.size), n)
    ones = np.concatenate([np.arange(k) < sk for k, sk in zip(n, s, strict=True)])
    long = pd.DataFrame({"y": ones.astype(float), "x": x[rows], "g": agg["g"].to_numpy()[rows]})
    m_agg = gb.fit("cbind(s, f) ~ x + (1 | g)", agg, family="binomial")
    m_long = gb.fit("y ~ x + (1 | g)", long, family="binomial")
    np.testing.assert_allclose(np.r_[m_agg.theta, m_agg.fixef], np.r_[m_long.theta, m_long.fixef],
                               rtol=0, atol=AGGREGATE_ABS / 10)
    c_agg = marginal_coefs(m_agg, std_errors=False)["Estimate"].to_numpy()
    c_long = marginal_coefs(m_long, std_errors=False)["Estimate"].to_numpy()
    np.testing.assert_allclose(c_agg, c_long, rtol=0, atol=AGGREGATE_ABS)
    d = m_agg.design
    mu = quad_means(special.expit, d.X @ m_agg.fixef.to_numpy(),
                    np.full(d.n, m_agg.theta[0] ** 2))
    unweighted = np.linalg.lstsq(d.X, special.logit(mu), rcond=None)[0]
    assert np.max(np.abs(unweighted - c_agg)) > 100 * AGGREGATE_ABS


# -------------------------------------------------------------- standard errors
def test_logit_se_is_the_delta_method_of_the_definition(ri_fits):
    res = ri_fits[("logit", 1)]
    V = theta_beta_cov(res)
    np.testing.assert_allclose(V[1:, 1:], res.vcov.to_numpy(), rtol=1e-10)  # the order
    x = np.concatenate([res.theta, res.fixef])
    J = central_jacobian(lambda p: definition_ri(res, "logit", p), x)
    expected = np.sqrt(np.diag(J @ V @ J.T))
    got = marginal_coefs(res)["Std. Error"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=SE_REL)
    # theta's uncertainty counts: the SEs are not those of beta pushed through J alone
    beta_only = np.sqrt(np.diag(J[:, 1:] @ V[1:, 1:] @ J[:, 1:].T))
    assert np.max(np.abs(beta_only / expected - 1)) > 100 * SE_REL


def test_std_errors_false_gives_no_se_column(ri_fits):
    res = ri_fits[("logit", 1)]
    without = marginal_coefs(res, std_errors=False)
    assert list(without.columns) == ["Estimate"]
    pd.testing.assert_series_equal(without["Estimate"], marginal_coefs(res)["Estimate"])


def test_no_hessian_gives_nan_se_with_a_warning(binary_ri):
    res = gb.fit("y ~ x + trt + (1 | g)", binary_ri, family="binomial", nagq=0)
    with pytest.warns(UserWarning, match="no Hessian"):
        out = marginal_coefs(res)
    assert out["Std. Error"].isna().all()
    assert np.isfinite(out["Estimate"]).all()


def test_hessian_not_positive_definite_gives_nan_se_with_a_warning(ri_fits):
    res = ri_fits[("logit", 1)]
    H = np.asarray(res.optinfo["derivs"]["Hessian"])
    H[0, 0] = -H[0, 0]
    broken = dataclasses.replace(res, optinfo={**res.optinfo, "derivs": {"Hessian": H}})
    with pytest.warns(UserWarning, match="not positive definite"):
        out = marginal_coefs(broken)
    assert out["Std. Error"].isna().all()
    pd.testing.assert_series_equal(out["Estimate"], marginal_coefs(res)["Estimate"])


# -------------------------------------------------------------------- helpers
@pytest.mark.parametrize("link, sd", [("logit", s) for s in (0.5, 1.3, 2.0, 3.0, 5.0)]
                         + [("cloglog", s) for s in (0.7, 1.0, 2.3)]
                         + [("cauchit", s) for s in (0.5, 1.0, 2.0)])
def test_marginal_mean_accuracy_as_documented(link, sd):
    eta = np.array([-4.0, -2.0, -1.0, 0.0, 0.5, 1.3, 3.0])
    expected = [quad_mean(INVLINK[link], e, sd) for e in eta]
    got = marginal_mean(get_link(link), eta, np.full(eta.size, sd**2))
    np.testing.assert_allclose(got, expected, rtol=0, atol=GH_ABS)


def test_marginal_mean_is_predict_marginal(ri_fits):
    """The same integral as ``predict(re="marginal")`` (whose fixed 40-node rule is
    6e-12 off at this model's sd of 1.35, as ``marginal_mean``'s 40 nodes here)."""
    res = ri_fits[("logit", 1)]
    d = res.design
    eta, v = d.X @ res.fixef.to_numpy(), re_variance(d, res.theta)
    got = marginal_mean(res.family.link, eta, v)
    np.testing.assert_allclose(got, quad_means(special.expit, eta, v), rtol=0, atol=GH_ABS)
    np.testing.assert_allclose(got, res.predict(re="marginal"), rtol=0, atol=GH_ABS)


def test_gaussian_identity_marginal_coefs_are_the_fixed_effects():
    res = gb.fit("Reaction ~ Days + (Days | Subject)", gb.datasets.load("sleepstudy"))
    out = marginal_coefs(res)
    np.testing.assert_array_equal(out["Estimate"], res.fixef)
    np.testing.assert_array_equal(out["Std. Error"], res.se)


# ----------------------------------------------------------------- bad inputs
def _gamma_fit():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    y = rng.gamma(5.0, np.exp(0.3 * x + rng.normal(0, 0.5, 20)[g]) / 5.0)
    d = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{j}" for j in g])})
    return gb.fit("y ~ x + (1 | g)", d, family="Gamma", link="log")


def _ordinal_fit():
    return gb.fit("rating ~ temp + contact + (1 | judge)", gb.datasets.load("wine"),
                  family="ordinal")


def _multinomial_fit():
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(20), 15)
    x = rng.normal(size=300)
    y = rng.choice(["a", "b", "c"], size=300)
    d = pd.DataFrame({"y": pd.Categorical(y), "x": x, "g": pd.Categorical([f"g{j}" for j in g])})
    return gb.fit("y ~ x + (1 | g)", d, family="multinomial")


@pytest.mark.parametrize("make, name", [(_gamma_fit, "Gamma"), (_ordinal_fit, "ordinal"),
                                        (_multinomial_fit, "multinomial")])
def test_unsupported_family_is_refused_by_name(make, name):
    with pytest.raises(GLMMError, match=f"for the {name} family"):
        marginal_coefs(make())


def test_smooth_terms_are_refused(binary_ri):
    res = gb.fit("y ~ trt + s(x, k=5) + (1 | g)", binary_ri, family="binomial")
    with pytest.raises(GLMMError, match=r"smooth terms \(s\(x\)\)"):
        marginal_coefs(res)
