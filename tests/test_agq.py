"""Adaptive Gauss-Hermite quadrature checked without R.

No R engine fits vector random effects by AGQ, so the references here are built
independently of the engine: the marginal likelihood of each group,

    L_j(theta, beta) = int prod_i f(y_ij | x_ij' beta + z_ij' Lambda v) phi_q(v) dv,

by ``scipy.integrate.quad`` (q = 1) or a fixed trapezoid grid over
``v in [-9, 9]^2`` (q = 2: no mode, no factor L, no Gauss-Hermite nodes), with the
conditional densities from ``scipy.stats``. The native AGQ deviance must equal
``-2 sum_j log L_j`` at given parameters, and its optimum must equal the
maximum of the independent likelihood found by scipy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from glmmbench import datasets, fit
from glmmbench.engine.deviance import make_devfun
from glmmbench.engine.quadrature import MAX_NODES, gh_rule
from glmmbench.errors import GLMMError
from glmmbench.families import make_response as _response
from glmmbench.families.glm import get_family
from glmmbench.families.response import GLMResponse
from glmmbench.fit import PIRLS_TOL_DERIVS
from glmmbench.model.design import build_design

INTEGRAL_REL = 1e-8  # AGQ with many nodes vs an independent integral, relative
NAGQ1_ABS = 1e-10  # the one-node rule vs the Laplace formula


def clustered(rng: np.random.Generator, family: str, G: int = 8, m: int = 10,
              slopes: bool = False) -> pd.DataFrame:
    g = np.repeat(np.arange(G), m)
    x = rng.uniform(-1, 1, G * m)
    b0 = 0.8 * rng.standard_normal(G)
    b1 = 0.5 * rng.standard_normal(G) if slopes else np.zeros(G)
    eta = 0.2 + 0.7 * x + b0[g] + b1[g] * x
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    elif family == "negative_binomial":
        mu = np.exp(eta + 1.0)
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu)).astype(float)
    elif family == "Gamma":
        y = rng.gamma(4.0, np.exp(eta) / 4.0)
    else:
        y = np.exp(eta + 3.0) + rng.normal(0, 2.0, G * m)
    return pd.DataFrame({"y": y, "x": x,
                         "g": pd.Categorical.from_codes(g, [f"g{i}" for i in range(G)])})


def _logf(family: str, y, eta, sigma):
    """Conditional log-densities from scipy.stats (canonical links; gaussian, NB2 and
    Gamma: log), ``sigma`` the dispersion (sd, NB2 size, Gamma CV)."""
    if family == "binomial":
        return stats.bernoulli.logpmf(y, 1 / (1 + np.exp(-eta)))
    if family == "poisson":
        return stats.poisson.logpmf(y, np.exp(eta))
    if family == "negative_binomial":
        return stats.nbinom.logpmf(y, sigma, sigma / (sigma + np.exp(eta)))
    if family == "Gamma":
        return stats.gamma.logpdf(y, a=1 / sigma**2, scale=np.exp(eta) * sigma**2)
    return stats.norm.logpdf(y, np.exp(eta), sigma)


def reference_deviance_q1(data, family, theta, beta, sigma=None) -> float:
    """``-2 log L`` for ``y ~ x + (1 | g)`` by scipy.integrate.quad, group by group."""
    total = 0.0
    for _, d in data.groupby("g", observed=True):
        y, lin = d["y"].to_numpy(), beta[0] + beta[1] * d["x"].to_numpy()

        def logint(v, y=y, lin=lin):
            return np.sum(_logf(family, y, lin + theta[0] * v, sigma)) + stats.norm.logpdf(v)

        # scaled by the integrand's maximum on a coarse grid, so nothing underflows
        grid = np.linspace(-12, 12, 2401)
        vals = [logint(v) for v in grid]
        shift, peak = max(vals), grid[int(np.argmax(vals))]
        val, _ = integrate.quad(lambda v, f=logint, c=shift: np.exp(f(v) - c), -12, 12,
                                points=[peak], epsabs=0, epsrel=1e-12, limit=200)
        total += -2 * (shift + np.log(val))
    assert np.isfinite(total)
    return total


def reference_deviance_q2(data, family, theta, beta, sigma=None, h=0.05) -> float:
    """``-2 log L`` for ``y ~ x + (1 + x | g)`` on a trapezoid grid of step h over
    ``v in [-9, 9]^2`` (lme4's theta: ``Lambda = [[t0, 0], [t1, t2]]``). The integrand
    is smooth and decays like a Gaussian: the error falls like ``exp(-2 pi^2 s^2 / h^2)``
    for a posterior sd s, far below 1e-10 here."""
    V = np.linspace(-9, 9, int(round(18 / h)) + 1)
    _V1, _V2 = np.meshgrid(V, V, indexing="ij")
    _LOGPHI = stats.norm.logpdf(_V1) + stats.norm.logpdf(_V2)
    Lam = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
    total = 0.0
    for _, d in data.groupby("g", observed=True):
        y, x = d["y"].to_numpy(), d["x"].to_numpy()
        b0 = Lam[0, 0] * _V1
        b1 = Lam[1, 0] * _V1 + Lam[1, 1] * _V2
        logf = _LOGPHI.copy()
        for yi, xi in zip(y, x, strict=True):
            logf += _logf(family, yi, beta[0] + beta[1] * xi + b0 + b1 * xi, sigma)
        mx = logf.max()
        inner = integrate.trapezoid(np.exp(logf - mx), dx=h)
        total += -2 * (mx + np.log(integrate.trapezoid(inner, dx=h)))
    return total


def _devfun(data, formula, family, link=None, nagq=1):
    fam = get_family(family, link)
    design = build_design(formula, data, family)
    f = make_devfun(design, _response(design, fam), nagq=nagq)
    f.tol = PIRLS_TOL_DERIVS
    return f


# ---------------------------------------------------------------- the rule
@pytest.mark.parametrize("k", [1, 2, 3, 5, 10, 25])
def test_gh_rule_moments(k):
    rule = gh_rule(k)
    w = np.exp(rule.logw)
    assert abs(w.sum() - 1) < 1e-13
    # exact for polynomials of degree <= 2k - 1: E z^2 = 1, E z^4 = 3, E z^6 = 15
    for deg, moment in ((2, 1.0), (4, 3.0), (6, 15.0)):
        if deg <= 2 * k - 1:
            assert abs(w @ rule.z[:, 0] ** deg - moment) < 1e-11 * moment


def test_product_rule():
    rule = gh_rule(5, 3)
    w = np.exp(rule.logw)
    assert rule.z.shape == (125, 3) and abs(w.sum() - 1) < 1e-13
    cov = (rule.z * w[:, None]).T @ rule.z
    np.testing.assert_allclose(cov, np.eye(3), atol=1e-13)


# ---------------------------------------------------------------- nagq = 1
@pytest.mark.parametrize("family,link,formula", [
    ("binomial", None, "y ~ x + (1 | g)"),
    ("binomial", "probit", "y ~ x + (1 + x | g)"),
    ("poisson", None, "y ~ x + (1 + x | g)"),
    ("gaussian", "log", "y ~ x + (1 | g)"),
    ("negative_binomial", None, "y ~ x + (1 + x | g)"),
    ("Gamma", "log", "y ~ x + (1 | g)"),
])
def test_one_node_rule_is_laplace(family, link, formula):
    """The AGQ formula with the one-node rule (z = 0, w = 1) is the Laplace value."""
    data = clustered(np.random.default_rng(1), family, slopes=True)
    f = _devfun(data, formula, family, link)
    x = np.concatenate([f.cov_start(), [0.3, 0.5]])
    res = f.pirls_at(x)
    lap = f.laplace(res)
    f.rule = gh_rule(1, f.ix.q1)
    f._group_sum = make_devfun(f.design, f.response, nagq=2)._group_sum
    assert abs(f.agq(res) - lap) <= NAGQ1_ABS * max(1, abs(lap))


def test_nagq1_fit_is_the_laplace_fit():
    cbpp = datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    a = fit(f, cbpp, family="binomial")
    b = fit(f, cbpp, family="binomial", nagq=1)
    assert a.method == b.method == "Laplace"
    assert a.loglik == b.loglik
    assert "agq_nodes_per_group" not in a.optinfo


# ------------------------------------------------- against independent integrals
DISPERSION = {"gaussian": 2.5, "negative_binomial": 2.0, "Gamma": 0.6}


@pytest.mark.parametrize("family,link", [("binomial", None), ("poisson", None),
                                         ("gaussian", "log"), ("negative_binomial", None),
                                         ("Gamma", "log")])
def test_scalar_agq_equals_quad(family, link):
    data = clustered(np.random.default_rng(2), family)
    f = _devfun(data, "y ~ x + (1 | g)", family, link, nagq=25)
    theta = np.array([0.9])
    beta = {"gaussian": np.array([3.1, 0.6]), "negative_binomial": np.array([1.1, 0.6])
            }.get(family, np.array([0.1, 0.6]))
    sigma = DISPERSION.get(family)
    cov = theta if sigma is None else np.append(theta, np.log(sigma))
    value = f(np.concatenate([cov, beta]))
    want = reference_deviance_q1(data, family, theta, beta, sigma)
    assert abs(value - want) <= INTEGRAL_REL * abs(want), (value, want)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_vector_agq_equals_grid(family):
    data = clustered(np.random.default_rng(3), family, slopes=True)
    f = _devfun(data, "y ~ x + (1 + x | g)", family, nagq=15)
    theta, beta = np.array([0.9, 0.3, 0.6]), np.array([0.1, 0.6])
    value = f(np.concatenate([theta, beta]))
    want = reference_deviance_q2(data, family, theta, beta)
    assert abs(value - want) <= INTEGRAL_REL * abs(want), (value, want)
    # Laplace is a visibly different number here, so the check has teeth
    assert abs(_devfun(data, "y ~ x + (1 + x | g)", family)(
        np.concatenate([theta, beta])) - want) > 1e3 * INTEGRAL_REL * abs(want)


def test_vector_agq_optimum_equals_scipy_maximum():
    """The native AGQ fit of (1 + x | g) maximises the independently computed likelihood."""
    data = clustered(np.random.default_rng(4), "binomial", G=12, m=10, slopes=True)
    res = fit("y ~ x + (1 + x | g)", data, family="binomial", nagq=9)
    assert res.converged, res.messages

    def objective(p):
        return reference_deviance_q2(data, "binomial", p[:3], p[3:], h=0.15)

    start = np.array([0.5, 0.0, 0.5, 0.0, 0.0])
    bounds = [(0, None), (None, None), (0, None), (None, None), (None, None)]
    ref = optimize.minimize(objective, start, method="L-BFGS-B", bounds=bounds,
                            options={"ftol": 1e-13, "gtol": 1e-7})
    assert ref.success, ref.message
    # same maximum (native may be higher by the optimizers' tolerance), same estimates
    assert abs(-2 * res.loglik - ref.fun) <= 2e-4, (-2 * res.loglik, ref.fun)
    np.testing.assert_allclose(res.fixef.to_numpy(), ref.x[3:], atol=5e-3)
    # theta is poorly identified with 12 groups: compare the implied covariance
    L_n = np.array([[res.theta[0], 0], [res.theta[1], res.theta[2]]])
    L_r = np.array([[ref.x[0], 0], [ref.x[1], ref.x[2]]])
    np.testing.assert_allclose(L_n @ L_n.T, L_r @ L_r.T, atol=2e-2)


# ----------------------------------------------------------------- settling
def test_vector_optimum_settles_with_nodes():
    data = clustered(np.random.default_rng(5), "binomial", G=40, m=8, slopes=True)
    # at these parameters the rule has converged by 11 nodes (deviance within 1e-7 of
    # 31 nodes; 7 nodes are 1e-4 off)
    fits = {k: fit("y ~ x + (1 + x | g)", data, family="binomial", nagq=k) for k in (11, 15)}
    a, b = fits[11], fits[15]
    assert a.converged and b.converged
    assert abs(a.loglik - b.loglik) < 1e-5
    np.testing.assert_allclose(a.fixef, b.fixef, atol=1e-4)
    np.testing.assert_allclose(a.varcorr["sdcor"], b.varcorr["sdcor"], atol=1e-3)


def test_loglik_settles_as_nodes_grow():
    """Binary responses in clusters of 3: the Laplace value is visibly off, and AGQ's
    log-likelihood approaches its limit as the nodes grow."""
    rng = np.random.default_rng(6)
    G = 150
    g = np.repeat(np.arange(G), 3)
    x = rng.standard_normal(3 * G)
    eta = 0.3 + 0.8 * x + 2.0 * rng.standard_normal(G)[g]
    data = pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float), "x": x,
                         "g": pd.Categorical.from_codes(g, [f"g{i}" for i in range(G)])})
    ll = {k: fit("y ~ x + (1 | g)", data, family="binomial", nagq=k).loglik
          for k in (1, 3, 5, 9, 15, 25)}
    gaps = [abs(ll[k] - ll[25]) for k in (1, 3, 5, 9, 15)]
    assert gaps[0] > 0.1  # Laplace is biased here
    assert all(a >= b for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[-1] < 1e-5


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize("nagq", [-1, 2.5, "5", True, None])
def test_bad_nagq(nagq):
    cbpp = datasets.load("cbpp")
    with pytest.raises(GLMMError, match="nagq must be a non-negative integer"):
        fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
            family="binomial", nagq=nagq)


def test_agq_needs_one_grouping_factor():
    d = datasets.load("VerbAgg")
    with pytest.raises(GLMMError, match="single random-effects term over one grouping factor"):
        fit("r2 ~ Anger + (1 | id) + (1 | item)", d, family="binomial", nagq=5)


def test_too_many_nodes():
    data = clustered(np.random.default_rng(7), "binomial")
    data["z"] = data["x"] ** 2
    data["w"] = np.sin(data["x"])
    with pytest.raises(GLMMError, match=r"11\^4 = 14641 quadrature nodes") as err:
        fit("y ~ x + (1 + x + z + w | g)", data, family="binomial", nagq=11)
    assert str(MAX_NODES) in str(err.value)


def test_lmm_rejects_nagq():
    with pytest.raises(GLMMError, match="linear mixed model's likelihood is exact"):
        fit("Reaction ~ Days + (1 | Subject)", datasets.load("sleepstudy"), nagq=5)


# ------------------------------------------------------------- fast paths
@pytest.mark.parametrize("family,link,weights", [
    ("binomial", "logit", False), ("binomial", "logit", True), ("binomial", "probit", False),
    ("poisson", "log", False), ("gaussian", "log", False),
])
@pytest.mark.parametrize("q", [1, 2])
def test_affine_loglik_equals_plain(family, link, weights, q):
    """The fused per-node log-density (binary logit, Poisson log) equals the family's
    general, R-exact functions at every node."""
    rng = np.random.default_rng(8)
    data = clustered(rng, family)
    if weights:
        data["w"] = rng.integers(1, 4, len(data)).astype(float)
    design = build_design("y ~ x + (1 | g)", data, family, weights="w" if weights else None)
    fam = get_family(family, link)
    fast = _response(design, fam)
    plain = GLMResponse(design.y, design.weights, design.offset, fam, fast=False,
                        trials=design.trials)
    eta0 = rng.normal(0, 1.5, design.n) + (3.0 if family == "gaussian" else 0.0)
    A = rng.normal(0, 0.7, (design.n, q))
    z = gh_rule(5, q).z
    want = plain._loglik_obs(fam.link.linkinv(eta0[:, None] + A @ z.T), 1.0)
    np.testing.assert_allclose(fast.loglik_affine(eta0, A, z), want, rtol=1e-12, atol=1e-12)
    eta = eta0 + A[:, 0]
    np.testing.assert_allclose(fast.loglik_obs(eta), plain._loglik_obs(fam.link.linkinv(eta), 1.0),
                               rtol=1e-12, atol=1e-12)
