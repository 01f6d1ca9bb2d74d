"""Multinomial (baseline-category logit) mixed models (issue 11).

Convention (R's mclogit): with response levels ``l_0 < l_1 < ... < l_{K-1}`` (the
first is the baseline),

    P(Y = l_k | b) = exp(eta_k) / (1 + sum_{m >= 1} exp(eta_m)),   eta_k = x'beta_k + z'b_k,

coefficients named ``l_k~term`` category by category; the random effects of a group,
``(b_1, ..., b_{K-1})`` for ``(1 | g)``, share one unstructured covariance.

No R engine fits this model by maximum likelihood here: mgcv's ``multinom`` gives each
category's ``s(g, bs="re")`` its own penalised, independent effect (LAML/REML, not ML,
no correlation between categories) and mclogit is not installed. The references are
therefore

1. the binomial model: a two-level multinomial fit is the binomial fit of P(second
   level), checked natively and against live ``glmer``;
2. an independent marginal likelihood (``ReferenceLikelihood``): each group's
   likelihood integrated over its 2-vector of category intercepts ``b = L v``,
   ``v ~ N(0, I)``, on a fixed trapezoid grid in ``v`` (no mode, no Gauss-Hermite
   nodes, no factorisation), with the probabilities from ``scipy.special``; an
   analytic gradient (``E[score | y]`` under the grid's posterior weights) lets
   scipy's L-BFGS-B maximise it in a few seconds. The grid error falls like
   ``exp(-2 pi^2 s^2 / h^2)`` for a posterior sd ``s`` (about 0.5 here): steps 0.1 and
   0.2 give the same deviance to 1e-12, and one group's integral equals scipy's
   ``dblquad`` in ``b``-space. An independent Laplace value (Newton for each group's
   mode, ``-2 log L_j = -2 h(v*) + log det(-h''(v*))``) checks ``nagq = 1``;
3. direct formulas for predictions (softmax of ``X beta`` (+ modes), and the
   population average by a 40 x 40 Gauss-Hermite product rule);
4. mgcv's ``multinom`` on VerbAgg, loosely (see ``test_verbagg_against_mgcv``).

Reference numbers (seed 11, 14 groups x 10, ``y ~ x + (1 | g)``, K = 3, levels a/b/c),
the maximum of the independent likelihood: deviance 265.606708, beta
(b~(Intercept), b~x, c~(Intercept), c~x) = (0.4245, 0.9691, -0.3990, -0.4840),
L = [[0.4435, 0], [0.7527, 0.2958]], i.e. covariance [[0.1967, 0.3338], [0.3338, 0.6541]]
(sd 0.443 / 0.809, correlation 0.93). Maximum of the independent Laplace
approximation: deviance 265.726662, beta (0.4236, 0.9663, -0.3972, -0.4817), covariance
[[0.1783, 0.3171], [0.3171, 0.6195]] (the exact integral there: 265.611608). With
independent category intercepts, ``(1 || g)``, Laplace: deviance 267.006421, beta
(0.3629, 0.9883, -0.4666, -0.5028), sds 0.1062 / 0.5916.

Measured against the native engine when these tests were written (commit 63a83c3):
AGQ(9) log-likelihood -132.80335397 against the reference maximum -132.80335396,
coefficients within 2e-7, covariance within 6e-7; the native AGQ(9) deviance at its
estimates equals the grid integral there to 2e-8, its Laplace deviance the
independent Laplace value to 1e-11; two levels vs binomial: log-likelihood 1e-11,
coefficients 1e-11, SEs 5e-8 relative.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special, stats

import glmmbench as gb
from glmmbench import datasets
from glmmbench.errors import DataError, GLMMError
from glmmbench.results import NewLevelsWarning

from .categorical import check_simulated_categories
from .independent_likelihoods import group_newton
from .rscript import run_r

# one model fitted twice (two-level multinomial = binomial): optimiser tolerances
SAME_MODEL_LOGLIK_REL = 1e-6
SAME_MODEL_FIXEF_ABS = 1e-4
SAME_MODEL_SD_ABS = 1e-4
SAME_MODEL_SE_REL = 1e-3
SAME_MODEL_PROB_ABS = 1e-5
# live glmer (tests/test_ordinal.py, tests/test_parity_lme4.py)
LOGLIK_ABS = 2e-3
FIXEF_REL = 2e-3
FIXEF_SE_FLOOR = 2e-3
SE_REL = 0.02
SD_REL = 0.01
# native AGQ(9) optimum vs the maximum of the independent likelihood
REF_LOGLIK_ABS = 2e-4  # on the log-likelihood; native may only be higher, by the tolerance
REF_FIXEF_ABS = 5e-3
REF_COV_ABS = 2e-2  # the implied covariance L L' (theta itself is weakly identified)
# deviances at the native estimates: AGQ(9) vs the grid integral (the rule's error with
# 10 observations per group; measured 2e-8), Laplace vs the independent Laplace value
# (PIRLS's tolerance; measured 1e-11)
REF_VALUE_DEV_ABS = 1e-6
LAPLACE_VALUE_DEV_ABS = 1e-7
PROB_ABS = 1e-10
MARGINAL_ABS = 1e-4
MC_Z = 4.0

ABC = ["a", "b", "c"]
NAMES_ABC = ["b~(Intercept)", "b~x", "c~(Intercept)", "c~x"]


# ------------------------------------------------------------------ simulated data
def _factor(codes: np.ndarray, prefix: str, n: int) -> pd.Categorical:
    width = len(str(n - 1))
    return pd.Categorical.from_codes(codes, [f"{prefix}{i:0{width}d}" for i in range(n)])


def _draw(rng: np.random.Generator, eta: np.ndarray, labels) -> pd.Categorical:
    """Categories with probabilities ``softmax([0, eta_1, ..., eta_{K-1}])``."""
    p = special.softmax(np.column_stack([np.zeros(len(eta)), eta]), axis=1)
    codes = (rng.uniform(size=len(eta))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    codes = np.minimum(codes, len(labels) - 1)
    return pd.Categorical.from_codes(codes, list(labels))


def _intercepts(rng, G, sds, rho) -> np.ndarray:
    cov = np.array([[sds[0] ** 2, rho * sds[0] * sds[1]], [rho * sds[0] * sds[1], sds[1] ** 2]])
    return rng.standard_normal((G, 2)) @ np.linalg.cholesky(cov).T


def sim_two_categories() -> pd.DataFrame:
    """Binary response ``no``/``yes`` in 60 groups of 10, and its 0/1 version."""
    rng = np.random.default_rng(501)
    G, m = 60, 10
    g = np.repeat(np.arange(G), m)
    x = rng.standard_normal(G * m)
    eta = -0.3 + 0.8 * x + 1.0 * rng.standard_normal(G)[g]
    y = _draw(rng, eta[:, None], ["no", "yes"])
    return pd.DataFrame({"y": y, "yb": (np.asarray(y) == "yes").astype(float), "x": x,
                         "g": _factor(g, "g", G)})


def sim_reference() -> pd.DataFrame:
    """14 groups x 10, K = 3 (a, b, c); category intercepts with sd 0.8 / 0.6 and
    correlation 0.5; eta_b = 0.3 + 0.8 x + b_1, eta_c = -0.2 - 0.6 x + b_2."""
    rng = np.random.default_rng(11)
    G, m = 14, 10
    g = np.repeat(np.arange(G), m)
    x = rng.uniform(-1.5, 1.5, G * m)
    b = _intercepts(rng, G, (0.8, 0.6), 0.5)
    eta = np.column_stack([0.3 + 0.8 * x + b[g, 0], -0.2 - 0.6 * x + b[g, 1]])
    return pd.DataFrame({"y": _draw(rng, eta, ABC), "x": x, "g": _factor(g, "g", G)})


def sim_large() -> pd.DataFrame:
    """150 groups x 20, K = 3 with levels not in alphabetical order (red is the
    baseline), sds 1 / 1, correlation 0.3."""
    rng = np.random.default_rng(5)
    G, m = 150, 20
    g = np.repeat(np.arange(G), m)
    x = rng.standard_normal(G * m)
    b = _intercepts(rng, G, (1.0, 1.0), 0.3)
    eta = np.column_stack([0.5 + 0.7 * x + b[g, 0], -0.3 - 0.5 * x + b[g, 1]])
    return pd.DataFrame({"y": _draw(rng, eta, ["red", "green", "blue"]), "x": x,
                         "g": _factor(g, "g", G)})


@functools.cache
def _data(name: str) -> pd.DataFrame:
    return {"two": sim_two_categories, "ref": sim_reference, "large": sim_large}[name]()


@functools.cache
def _native(name: str, formula: str = "y ~ x + (1 | g)", nagq: int = 1):
    return gb.fit(formula, _data(name), family="multinomial", nagq=nagq)


# ------------------------------------------------------------------ helpers
def _covariance(res, grp: str) -> tuple[list[str], np.ndarray]:
    """The random-effect covariance of ``grp`` rebuilt from ``varcorr`` by name."""
    vc = res.varcorr[res.varcorr["grp"] == grp]
    sd_rows = vc[vc["var2"].isna()]
    names = list(sd_rows["var1"])
    idx = {n: i for i, n in enumerate(names)}
    sd = sd_rows["sdcor"].to_numpy(dtype=float)
    np.testing.assert_allclose(sd_rows["vcov"].to_numpy(dtype=float), sd**2, rtol=1e-10)
    cov = np.diag(sd**2)
    for _, row in vc[vc["var2"].notna()].iterrows():
        i, j = idx[row["var1"]], idx[row["var2"]]
        cov[i, j] = cov[j, i] = row["vcov"]
        assert row["vcov"] == pytest.approx(row["sdcor"] * sd[i] * sd[j], rel=1e-8, abs=1e-12)
    return names, cov


def _lambda(theta, q: int) -> np.ndarray:
    """lme4's theta (column-major lower triangle) as a q x q lower-triangular matrix."""
    Lam = np.zeros((q, q))
    k = 0
    for j in range(q):
        for i in range(j, q):
            Lam[i, j] = theta[k]
            k += 1
    assert k == len(theta)
    return Lam


def _softmax_base(lin: np.ndarray) -> np.ndarray:
    """n x (K-1) linear predictors -> n x K probabilities (baseline first)."""
    return special.softmax(np.column_stack([np.zeros(len(lin)), lin]), axis=1)


def _linear(res, data: pd.DataFrame, cats: list[str]) -> np.ndarray:
    """``x'beta_k`` for ``y ~ x``: n x (K-1)."""
    x = data["x"].to_numpy()
    return np.column_stack([res.fixef[f"{c}~(Intercept)"] + res.fixef[f"{c}~x"] * x
                            for c in cats])


# ------------------------------------------------------- two categories = binomial
BIN_NAMES = {"yes~(Intercept)": "(Intercept)", "yes~x": "x"}


@functools.cache
def _two_level_fits(nagq: int):
    d = _data("two")
    multi = gb.fit("y ~ x + (1 | g)", d, family="multinomial", nagq=nagq)
    binom = gb.fit("yb ~ x + (1 | g)", d, family="binomial", nagq=nagq)
    return multi, binom


@pytest.mark.parametrize("nagq", [1, 7])
def test_two_categories_equal_binomial(nagq):
    """P(yes) = expit(eta_yes): the same model as the binomial fit of the 0/1 column,
    fitted twice (tolerances of the optimiser)."""
    multi, binom = _two_level_fits(nagq)
    assert multi.converged and binom.converged, (multi.messages, binom.messages)
    assert list(multi.fixef.index) == list(BIN_NAMES)
    assert list(multi.se.index) == list(BIN_NAMES)
    assert multi.loglik == pytest.approx(binom.loglik, rel=SAME_MODEL_LOGLIK_REL)
    for mname, bname in BIN_NAMES.items():
        assert multi.fixef[mname] == pytest.approx(binom.fixef[bname], abs=SAME_MODEL_FIXEF_ABS)
        assert multi.se[mname] == pytest.approx(binom.se[bname], rel=SAME_MODEL_SE_REL)
    vc = multi.varcorr
    assert list(vc["var1"]) == ["yes~(Intercept)"] and vc["var2"].isna().all()
    assert vc["sdcor"].iloc[0] == pytest.approx(binom.varcorr["sdcor"].iloc[0],
                                                abs=SAME_MODEL_SD_ABS)
    assert len(multi.theta) == 1
    assert multi.theta[0] == pytest.approx(binom.theta[0], abs=SAME_MODEL_SD_ABS)
    assert multi.nobs == binom.nobs == len(_data("two"))
    assert multi.df == binom.df == 3
    prob = multi.predict(type="prob")
    assert [str(c) for c in prob.columns] == ["no", "yes"]
    np.testing.assert_allclose(prob["yes"].to_numpy(), binom.predict(), atol=SAME_MODEL_PROB_ABS)
    np.testing.assert_allclose(prob.to_numpy().sum(axis=1), 1.0, atol=PROB_ABS)


def _close(have: float, want: float, se: float) -> bool:
    return abs(have - want) <= max(FIXEF_REL * abs(want), FIXEF_SE_FLOOR * se)


@pytest.mark.r
@pytest.mark.parametrize("nagq", [1, 7])
def test_two_categories_live_glmer(nagq):
    d = _data("two")
    ref = run_r(f"""
b <- glmer(yb ~ x + (1 | g), data = d, family = binomial, nAGQ = {nagq})
list(loglik = as.numeric(logLik(b)), fixef = I(unname(fixef(b))),
     se = I(unname(sqrt(diag(as.matrix(vcov(b)))))),
     sd = attr(VarCorr(b)$g, "stddev")[[1]])
""", d=d[["yb", "x", "g"]])
    multi, _ = _two_level_fits(nagq)
    want = ref["loglik"]
    assert want - LOGLIK_ABS <= multi.loglik <= want + LOGLIK_ABS, (multi.loglik, ref)
    for name, value, se in zip(BIN_NAMES, ref["fixef"], ref["se"], strict=True):
        assert _close(multi.fixef[name], value, se), (name, multi.fixef[name], value)
        assert multi.se[name] == pytest.approx(se, rel=SE_REL), (name, multi.se[name], se)
    assert multi.varcorr["sdcor"].iloc[0] == pytest.approx(ref["sd"], rel=SD_REL)


# ------------------------------------------------ the independent likelihood (K = 3)
class ReferenceLikelihood:
    """``-2 log L(beta, L)`` for ``y ~ x + (1 | g)``, K = 3, by a trapezoid grid over
    ``v in [-lim, lim]^2`` (``b = L v``), all groups and grid points at once.

    Parameters ``p = (beta_b0, beta_b1, beta_c0, beta_c1, L11, L21, L22)``. Returns the
    deviance and, with ``grad=True``, its gradient: ``d log L_j / d p`` is the posterior
    mean (grid weights) of the complete-data score, ``sum_i (y_ik - p_ik) d eta_ik / d p``,
    since the measure ``phi(v) dv`` does not depend on the parameters.
    """

    def __init__(self, data: pd.DataFrame, h: float = 0.1, lim: float = 8.0):
        V = np.linspace(-lim, lim, int(round(2 * lim / h)) + 1)
        V1, V2 = np.meshgrid(V, V, indexing="ij")
        self.v = np.stack([V1.ravel(), V2.ravel()])  # 2 x P
        ends = (np.abs(self.v) == lim).sum(axis=0)  # trapezoid end weights
        self.logw = stats.norm.logpdf(self.v).sum(axis=0) + 2 * np.log(h) + ends * np.log(0.5)
        self.x = data["x"].to_numpy()
        codes = data["y"].cat.codes.to_numpy()
        self.Y = np.stack([codes == 1, codes == 2], axis=1).astype(float)  # n x 2
        gc = data["g"].cat.codes.to_numpy()
        assert np.all(np.diff(gc) >= 0), "rows must be sorted by group"
        self.starts = np.flatnonzero(np.r_[True, np.diff(gc) != 0])

    def __call__(self, p, grad: bool = True):
        lin = p[[0, 2]][None, :] + self.x[:, None] * p[[1, 3]][None, :]  # n x 2
        L = np.array([[p[4], 0.0], [p[5], p[6]]])
        eta = lin[:, :, None] + (L @ self.v)[None, :, :]  # n x 2 x P
        lse = np.logaddexp(0.0, np.logaddexp(eta[:, 0], eta[:, 1]))  # log(1 + e^eta_b + e^eta_c)
        ll_obs = (self.Y[:, :, None] * eta).sum(axis=1) - lse  # n x P
        lg = np.add.reduceat(ll_obs, self.starts, axis=0) + self.logw[None, :]  # G x P
        mx = lg.max(axis=1, keepdims=True)
        w = np.exp(lg - mx)
        s = w.sum(axis=1, keepdims=True)
        dev = -2.0 * float(np.sum(mx[:, 0] + np.log(s[:, 0])))
        if not grad:
            return dev
        w /= s
        R = self.Y[:, :, None] - np.exp(eta - lse[:, None, :])  # n x 2 x P
        S = np.add.reduceat(R, self.starts, axis=0)  # G x 2 x P
        T = np.add.reduceat(R * self.x[:, None, None], self.starts, axis=0)
        g = np.array([np.sum(w * S[:, 0]), np.sum(w * T[:, 0]),
                      np.sum(w * S[:, 1]), np.sum(w * T[:, 1]),
                      np.sum(w * S[:, 0] * self.v[0]), np.sum(w * S[:, 1] * self.v[0]),
                      np.sum(w * S[:, 1] * self.v[1])])
        return dev, -2.0 * g


def reference_laplace(data: pd.DataFrame, p) -> float:
    """The Laplace approximation of the same deviance, independently: for every group
    Newton's method (all groups at once) for the mode ``v*`` of
    ``h(v) = sum_i log p(y_i | lin_i + L v) - |v|^2 / 2``, then
    ``-2 log L_j = -2 h(v*) + log det(-h''(v*))``."""
    x = data["x"].to_numpy()
    codes = data["y"].cat.codes.to_numpy()
    Y = np.stack([codes == 1, codes == 2], axis=1).astype(float)
    gc = data["g"].cat.codes.to_numpy()
    G = gc.max() + 1
    lin = p[[0, 2]][None, :] + x[:, None] * p[[1, 3]][None, :]
    L = np.array([[p[4], 0.0], [p[5], p[6]]])

    def parts(v):
        eta = lin + v[gc] @ L.T
        lse = np.logaddexp(0.0, np.logaddexp(eta[:, 0], eta[:, 1]))
        pr = np.exp(eta - lse[:, None])
        h = np.bincount(gc, (Y * eta).sum(axis=1) - lse, G) - 0.5 * (v**2).sum(axis=1)
        score = np.stack([np.bincount(gc, Y[:, k] - pr[:, k], G) for k in range(2)], axis=1)
        W = np.empty((G, 2, 2))
        for k in range(2):
            for m in range(2):
                W[:, k, m] = np.bincount(gc, pr[:, k] * ((k == m) - pr[:, m]), G)
        H = L.T[None] @ W @ L[None] + np.eye(2)[None]
        return h, score @ L - v, H

    _, h, grad, H = group_newton(parts, np.zeros((G, 2)), maxiter=100, min_step=1e-10,
                                 tol=1e-12)
    assert np.abs(grad).max() < 1e-9
    return float(np.sum(-2 * h + np.log(np.linalg.det(H))))


REF_START = np.array([0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.5])
REF_BOUNDS = [(None, None)] * 4 + [(0, None), (None, None), (0, None)]
REF_PARAMS = np.array([0.3, 0.8, -0.2, -0.6, 0.8, 0.3, 0.5])  # near the truth


@functools.cache
def _reference_maximum():
    f = ReferenceLikelihood(_data("ref"))
    r = optimize.minimize(f, REF_START, jac=True, method="L-BFGS-B", bounds=REF_BOUNDS,
                          options={"ftol": 1e-14, "gtol": 1e-7, "maxiter": 500})
    assert r.success, r.message
    return r


@functools.cache
def _laplace_maximum():
    d = _data("ref")
    r = optimize.minimize(lambda p: reference_laplace(d, p), REF_START, method="L-BFGS-B",
                          bounds=REF_BOUNDS, options={"ftol": 1e-14, "gtol": 1e-7,
                                                     "maxiter": 500})
    assert r.success, r.message
    return r


def _native_params(res) -> np.ndarray:
    """(beta, theta) of a native K = 3 ``y ~ x + (1 | g)`` fit in the reference order."""
    assert list(res.fixef.index) == NAMES_ABC
    assert len(res.theta) == 3
    return np.concatenate([res.fixef.to_numpy(dtype=float), np.asarray(res.theta, float)])


def test_reference_grid_is_converged():
    """The reference itself: steps 0.1 and 0.2 agree, and one group's integral equals
    scipy's dblquad over b ~ N(0, L L') directly (no standardisation)."""
    d = _data("ref")
    fine = ReferenceLikelihood(d, h=0.1)(REF_PARAMS, grad=False)
    coarse = ReferenceLikelihood(d, h=0.2)(REF_PARAMS, grad=False)
    assert abs(fine - coarse) <= 1e-9 * abs(fine), (fine, coarse)
    one = d[d["g"] == d["g"].cat.categories[0]].copy()
    one["g"] = one["g"].cat.remove_unused_categories()
    grid = ReferenceLikelihood(one)(REF_PARAMS, grad=False)
    L = np.array([[REF_PARAMS[4], 0.0], [REF_PARAMS[5], REF_PARAMS[6]]])
    prior = stats.multivariate_normal(np.zeros(2), L @ L.T)
    lin = REF_PARAMS[[0, 2]][None, :] + one["x"].to_numpy()[:, None] * REF_PARAMS[[1, 3]][None, :]
    codes = one["y"].cat.codes.to_numpy()

    def integrand(b2, b1):
        logp = np.log(_softmax_base(lin + np.array([b1, b2]))[np.arange(len(codes)), codes])
        return np.exp(logp.sum() + prior.logpdf([b1, b2]))

    val, err = integrate.dblquad(integrand, -6, 6, -6, 6, epsabs=0, epsrel=1e-10)
    assert abs(grid - -2 * np.log(val)) <= 1e-7, (grid, -2 * np.log(val), err)


def test_reference_gradient():
    f = ReferenceLikelihood(_data("ref"), h=0.2)
    _, g = f(REF_PARAMS)
    eps = 1e-6
    fd = np.array([(f(REF_PARAMS + eps * e, False) - f(REF_PARAMS - eps * e, False)) / (2 * eps)
                   for e in np.eye(7)])
    np.testing.assert_allclose(g, fd, atol=1e-5)


def test_reference_laplace_differs_from_integral():
    """The independent Laplace value is close to the exact integral but not equal."""
    d = _data("ref")
    exact = ReferenceLikelihood(d)(REF_PARAMS, grad=False)
    lap = reference_laplace(d, REF_PARAMS)
    assert 1e-4 < abs(lap - exact) < 1.0, (lap, exact)


def test_agq_optimum_equals_reference_maximum():
    """Native AGQ(9) against the maximum of the independent likelihood."""
    res = _native("ref", nagq=9)
    assert res.converged, res.messages
    assert res.method == "AGQ(9)"
    ref = _reference_maximum()
    ll_ref = -ref.fun / 2
    # the same maximum; the native one may be higher by the optimizers' tolerance
    assert ll_ref - REF_LOGLIK_ABS <= res.loglik <= ll_ref + REF_LOGLIK_ABS, (res.loglik, ll_ref)
    np.testing.assert_allclose(res.fixef.to_numpy(dtype=float), ref.x[:4], atol=REF_FIXEF_ABS)
    names, cov = _covariance(res, "g")
    assert names == ["b~(Intercept)", "c~(Intercept)"]
    L = np.array([[ref.x[4], 0.0], [ref.x[5], ref.x[6]]])
    np.testing.assert_allclose(cov, L @ L.T, atol=REF_COV_ABS)
    # the native log-likelihood is the integral at the native estimates
    at_native = ReferenceLikelihood(_data("ref"))(_native_params(res), grad=False)
    assert abs(-2 * res.loglik - at_native) <= REF_VALUE_DEV_ABS, (-2 * res.loglik, at_native)


def test_laplace_fit_against_reference_laplace():
    """Native Laplace: its log-likelihood is the independent Laplace value at its own
    estimates, its optimum the independent Laplace maximum, and it differs from the
    AGQ log-likelihood (close, but Laplace is approximate)."""
    lap = _native("ref", nagq=1)
    agq = _native("ref", nagq=9)
    assert lap.converged, lap.messages
    assert lap.method == "Laplace"
    value = reference_laplace(_data("ref"), _native_params(lap))
    assert abs(-2 * lap.loglik - value) <= LAPLACE_VALUE_DEV_ABS, (-2 * lap.loglik, value)
    ref = _laplace_maximum()
    assert -ref.fun / 2 - REF_LOGLIK_ABS <= lap.loglik <= -ref.fun / 2 + REF_LOGLIK_ABS, (
        lap.loglik, -ref.fun / 2)
    np.testing.assert_allclose(lap.fixef.to_numpy(dtype=float), ref.x[:4], atol=REF_FIXEF_ABS)
    _, cov = _covariance(lap, "g")
    L = np.array([[ref.x[4], 0.0], [ref.x[5], ref.x[6]]])
    np.testing.assert_allclose(cov, L @ L.T, atol=REF_COV_ABS)
    assert 1e-4 < abs(lap.loglik - agq.loglik) < 0.5, (lap.loglik, agq.loglik)


# ------------------------------------------------------------------ names
def test_names_counts_and_record():
    res = _native("ref")
    assert list(res.fixef.index) == NAMES_ABC
    assert list(res.se.index) == NAMES_ABC
    assert list(res.vcov.index) == NAMES_ABC and list(res.vcov.columns) == NAMES_ABC
    np.testing.assert_allclose(np.sqrt(np.diag(res.vcov.to_numpy(dtype=float))),
                               res.se.to_numpy(dtype=float), rtol=1e-10)
    assert np.all(res.se.to_numpy(dtype=float) > 0)
    vc = res.varcorr
    assert list(vc.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert list(vc["grp"]) == ["g"] * 3
    assert list(vc["var1"]) == ["b~(Intercept)", "c~(Intercept)", "b~(Intercept)"]
    assert vc["var2"].iloc[:2].isna().all() and vc["var2"].iloc[2] == "c~(Intercept)"
    assert -1 <= vc["sdcor"].iloc[2] <= 1
    # theta: lme4's relative Cholesky factor of the category covariance
    names, cov = _covariance(res, "g")
    Lam = _lambda(res.theta, 2)
    np.testing.assert_allclose(Lam @ Lam.T, cov, rtol=1e-8, atol=1e-12)
    assert res.nobs == len(_data("ref"))
    assert res.df == 4 + 3
    assert res.ngroups == {"g": 14}
    assert res.aic == pytest.approx(-2 * res.loglik + 2 * res.df, rel=1e-12)
    assert res.bic == pytest.approx(-2 * res.loglik + np.log(res.nobs) * res.df, rel=1e-12)
    rec = json.loads(json.dumps(res.to_record()))
    assert rec["model"]["family"] == "multinomial"
    assert rec["fixef"] == pytest.approx(res.fixef.to_dict(), rel=1e-12)
    assert rec["loglik"] == pytest.approx(res.loglik, rel=1e-12)
    assert rec["nobs"] == res.nobs
    assert [r["var1"] for r in rec["varcorr"]] == list(vc["var1"])
    text = res.summary()
    assert isinstance(text, str)
    for name in NAMES_ABC:
        assert name in text, name


def test_ranef_names():
    res = _native("ref")
    re = res.ranef["g"]
    assert [str(v) for v in re.index] == list(_data("ref")["g"].cat.categories)
    assert [str(c) for c in re.columns][:2] == ["b~(Intercept)", "c~(Intercept)"]


def test_random_slopes_names():
    """``(1 + x | g)``: 2 (K - 1) correlated effects per group, category by category."""
    res = _native("ref", "y ~ x + (1 + x | g)")
    vc = res.varcorr
    sd_rows = vc[vc["var2"].isna()]
    assert list(sd_rows["var1"]) == NAMES_ABC
    cor_rows = vc[vc["var2"].notna()]
    pairs = [(NAMES_ABC[i], NAMES_ABC[j]) for i in range(4) for j in range(i + 1, 4)]
    assert list(zip(cor_rows["var1"], cor_rows["var2"], strict=True)) == pairs
    assert len(res.theta) == 10
    names, cov = _covariance(res, "g")
    Lam = _lambda(res.theta, 4)
    np.testing.assert_allclose(Lam @ Lam.T, cov, rtol=1e-8, atol=1e-12)
    assert res.df == 4 + 10


def test_independent_category_effects():
    """``(1 || g)``: the category intercepts of a group are independent (no correlation
    rows, one theta per category), and the fit is the maximum of the independent
    Laplace approximation with ``L21 = 0``."""
    res = _native("ref", "y ~ x + (1 || g)")
    assert res.converged, res.messages
    vc = res.varcorr
    assert vc["var2"].isna().all(), vc
    assert list(vc["var1"]) == ["b~(Intercept)", "c~(Intercept)"]
    assert len(res.theta) == 2
    assert res.df == 4 + 2
    # a restriction of (1 | g): the likelihood can only be lower
    assert res.loglik <= _native("ref").loglik + 1e-6
    d = _data("ref")
    p = np.concatenate([res.fixef.to_numpy(dtype=float), [res.theta[0], 0.0, res.theta[1]]])
    value = reference_laplace(d, p)
    assert abs(-2 * res.loglik - value) <= LAPLACE_VALUE_DEV_ABS, (-2 * res.loglik, value)
    bounds = list(REF_BOUNDS)
    bounds[5] = (0.0, 0.0)
    ref = optimize.minimize(lambda q: reference_laplace(d, q), REF_START, method="L-BFGS-B",
                            bounds=bounds, options={"ftol": 1e-14, "gtol": 1e-7, "maxiter": 500})
    assert ref.success, ref.message
    assert abs(res.loglik - -ref.fun / 2) <= REF_LOGLIK_ABS, (res.loglik, -ref.fun / 2)
    np.testing.assert_allclose(res.fixef.to_numpy(dtype=float), ref.x[:4], atol=REF_FIXEF_ABS)
    np.testing.assert_allclose(vc["vcov"].to_numpy(dtype=float), ref.x[[4, 6]] ** 2,
                               atol=REF_COV_ABS)


def test_string_response_uses_sorted_levels():
    """A text response gets R's factor levels (sorted): the same fit as the categorical."""
    d = _data("ref").copy()
    d["y"] = d["y"].astype(str)
    res = gb.fit("y ~ x + (1 | g)", d, family="multinomial")
    cat = _native("ref")
    assert list(res.fixef.index) == NAMES_ABC
    assert res.loglik == pytest.approx(cat.loglik, abs=1e-8)
    np.testing.assert_allclose(res.fixef, cat.fixef, atol=1e-6)


def test_first_level_is_the_baseline():
    """Levels red < green < blue (not alphabetical): red is the baseline."""
    res = _native("large")
    assert list(res.fixef.index) == ["green~(Intercept)", "green~x", "blue~(Intercept)", "blue~x"]
    assert [str(c) for c in res.predict(type="prob").columns] == ["red", "green", "blue"]


# ------------------------------------------------------------------ predictions
REs = [True, False, "marginal"]


def _newdata_with_unseen_group() -> pd.DataFrame:
    d = _data("large")
    nd = d.iloc[[0, 1, 2, 3, 4, 5]].copy()
    g = nd["g"].astype(str).to_numpy()
    g[-1] = "new"
    nd["g"] = pd.Categorical(g, categories=[*d["g"].cat.categories, "new"])
    nd.loc[nd.index[-1], "x"] = nd["x"].iloc[-2]  # same covariates as the row before
    return nd


@pytest.mark.filterwarnings("ignore::glmmbench.results.NewLevelsWarning")
@pytest.mark.parametrize("re", REs)
@pytest.mark.parametrize("newdata", [False, True], ids=["fitted", "newdata"])
def test_predict_prob_and_class(re, newdata):
    res = _native("large")
    nd = _newdata_with_unseen_group() if newdata else None
    levels = ["red", "green", "blue"]
    prob = res.predict(nd, type="prob", re=re, allow_new_levels=True)
    n = 6 if newdata else res.nobs
    assert isinstance(prob, pd.DataFrame) and prob.shape == (n, 3)
    assert [str(c) for c in prob.columns] == levels
    p = prob.to_numpy(dtype=float)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=PROB_ABS)
    cls = np.asarray(res.predict(nd, type="class", re=re, allow_new_levels=True)).astype(str)
    assert cls.shape == (n,)
    np.testing.assert_array_equal(cls, np.asarray(levels)[p.argmax(axis=1)])


def test_predict_formulas():
    """re=False: softmax(X beta); re=True: + the group's modes; re="marginal": the
    integral over b ~ N(0, Sigma) (40 x 40 Gauss-Hermite product rule); an unseen
    group gets the population value."""
    res = _native("large")
    d = _data("large")
    cats = ["green", "blue"]
    lin = _linear(res, d, cats)
    np.testing.assert_allclose(res.predict(type="prob", re=False).to_numpy(dtype=float),
                               _softmax_base(lin), atol=1e-8)
    modes = res.ranef["g"].rename(index=str)[[f"{c}~(Intercept)" for c in cats]]
    b = modes.loc[d["g"].astype(str)].to_numpy(dtype=float)
    np.testing.assert_allclose(res.predict(type="prob", re=True).to_numpy(dtype=float),
                               _softmax_base(lin + b), atol=1e-8)
    _, cov = _covariance(res, "g")
    z, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    W = np.outer(w, w).ravel()
    B = np.column_stack([Z1.ravel(), Z2.ravel()]) @ np.linalg.cholesky(cov).T
    marginal = sum(wk * _softmax_base(lin + bk) for bk, wk in zip(B, W, strict=True))
    got = res.predict(type="prob", re="marginal").to_numpy(dtype=float)
    np.testing.assert_allclose(got, marginal, atol=MARGINAL_ABS)
    # averaging over b visibly changes the probabilities at these sds (about 1)
    pop = res.predict(type="prob", re=False).to_numpy(dtype=float)
    assert np.abs(got - pop).max() > 0.02, np.abs(got - pop).max()

    nd = _newdata_with_unseen_group()
    with pytest.warns(NewLevelsWarning, match="1 row.* grouping factor 'g'"):
        cond = res.predict(nd, type="prob", re=True, allow_new_levels=True).to_numpy(dtype=float)
    popn = res.predict(nd, type="prob", re=False).to_numpy(dtype=float)
    marg = res.predict(nd, type="prob", re="marginal").to_numpy(dtype=float)
    np.testing.assert_allclose(cond[-1], popn[-1], atol=PROB_ABS)
    assert np.abs(cond[0] - popn[0]).max() > 1e-3  # group 0's mode is not 0
    np.testing.assert_allclose(marg[-1], marg[-2], atol=PROB_ABS)


def test_marginal_probabilities_match_frequencies():
    """Averaged over the data, the marginal probabilities reproduce the observed
    category frequencies within 4 binomial SEs."""
    res = _native("large")
    assert res.converged, res.messages
    d = _data("large")
    levels = ["red", "green", "blue"]
    freq = d["y"].value_counts(normalize=True).reindex(levels).to_numpy()
    se = np.sqrt(freq * (1 - freq) / len(d))
    marginal = res.predict(type="prob", re="marginal").to_numpy(dtype=float).mean(axis=0)
    z = (marginal - freq) / se
    assert np.all(np.abs(z) <= MC_Z), (marginal, freq, z)


# ------------------------------------------------------------------ simulate
def test_simulate_draws_response_levels():
    check_simulated_categories(_native("large"), _data("large")["y"], ["red", "green", "blue"],
                               10, ordered=False)


# ------------------------------------------------------------------ bad inputs
def test_continuous_response_is_refused():
    d = _data("ref").copy()
    d["score"] = np.random.default_rng(0).normal(size=len(d))
    with pytest.raises(DataError, match="score"):
        gb.fit("score ~ x + (1 | g)", d, family="multinomial")


def test_single_observed_category_is_refused():
    d = _data("ref").copy()
    d["resp"] = pd.Categorical(["b"] * len(d), categories=ABC)
    with pytest.raises(DataError, match="resp"):
        gb.fit("resp ~ x + (1 | g)", d, family="multinomial")


def test_agq_needs_one_grouping_factor():
    d = _data("ref").copy()
    d["h"] = _factor(np.arange(len(d)) % 5, "h", 5)
    with pytest.raises(GLMMError, match=r"(single|one) grouping factor"):
        gb.fit("y ~ x + (1 | g) + (1 | h)", d, family="multinomial", nagq=3)


# ------------------------------------------------------------------ VerbAgg
VERBAGG = "resp ~ Anger + Gender + (1 | item)"
VERBAGG_NAMES = [f"{c}~{t}" for c in ("perhaps", "yes")
                 for t in ("(Intercept)", "Anger", "GenderM")]


@functools.cache
def _verbagg():
    return gb.fit(VERBAGG, datasets.load("VerbAgg"), family="multinomial")


def test_verbagg_fits():
    """The ordered factor resp (no < perhaps < yes) is taken as categorical."""
    res = _verbagg()
    assert res.converged, res.messages
    assert list(res.fixef.index) == VERBAGG_NAMES
    assert res.nobs == 7584 and res.ngroups == {"item": 24}
    assert res.df == 6 + 3
    assert list(res.varcorr["var1"])[:2] == ["perhaps~(Intercept)", "yes~(Intercept)"]
    assert [str(c) for c in res.predict(type="prob").columns] == ["no", "perhaps", "yes"]


@pytest.mark.r
def test_verbagg_against_mgcv():
    """mgcv's ``multinom(K = 2)`` with ``s(item, bs = "re")`` in both linear
    predictors: a different model (independent item effects per category, variances
    by LAML/REML, coefficients penalised posterior modes), so not a parity check.
    Measured (mgcv 1.8-41): (Intercept) -0.867 / -2.983, Anger 0.0099 / 0.0859,
    GenderM 0.179 / 0.321 (perhaps / yes), item sds 0.688 / 1.215; native Laplace:
    -0.875 / -3.002, 0.0104 / 0.0863, 0.181 / 0.324, sds 0.681 / 1.214 (correlation
    0.98), i.e. every coefficient within 0.1 native SE and the sds within 1 %. The
    between-person covariates Anger and Gender hardly depend on the item effects'
    structure, the intercepts only mildly: the check asks for 0.5 native SE on every
    coefficient and 10 % on the item sds (REML against ML, correlated against
    independent effects), margins of 5 and 10 times the measured differences."""
    d = datasets.load("VerbAgg")[["resp", "Anger", "Gender", "item"]]
    ref = run_r(r"""
suppressPackageStartupMessages(library(mgcv))
d$y <- as.integer(d$resp) - 1L
m <- gam(list(y ~ Anger + Gender + s(item, bs = "re"), ~ Anger + Gender + s(item, bs = "re")),
         family = multinom(K = 2), data = d, method = "REML")
cf <- coef(m)
list(coef = I(unname(cf[!grepl("^s", names(cf))])), sd = I(unname(gam.vcomp(m)[, 1])))
""", d=d)
    res = _verbagg()
    for name, want in zip(VERBAGG_NAMES, ref["coef"], strict=True):
        assert abs(res.fixef[name] - want) <= 0.5 * res.se[name], (name, res.fixef[name], want)
        if abs(want) > 3 * res.se[name]:
            assert np.sign(res.fixef[name]) == np.sign(want), name
    sd_rows = res.varcorr[res.varcorr["var2"].isna()]
    np.testing.assert_allclose(sd_rows["sdcor"].to_numpy(dtype=float), ref["sd"], rtol=0.10)
