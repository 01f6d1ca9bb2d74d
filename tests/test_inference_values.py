"""Value tests for inference paths that had none (issue 22, "Paths with no value
test"): the bootstrap's variance columns, multinomial random slopes against an
independent integral, and ``smooth_tests()`` against mgcv.

1. **Bootstrap ``.sig``/``.sigma`` columns** (sleepstudy LMM, REML; cbpp binomial
   GLMM, Laplace): replicate i's response is regenerated from the seed stream
   ``bootstrap()`` documents (``SeedSequence(seed).spawn(nsim)[i]`` into
   ``res.simulate(1, rng)``). Each row must equal (a) a direct native ``gb.fit`` of
   that response, read off its ``varcorr`` (sd, correlation) and ``sigma``, to
   ``SAME_FIT_REL`` (measured: identical), and (b) lme4 fitting the same response
   live: ``as.data.frame(VarCorr(m), order = "lower.tri")$sdcor`` (lme4's sd /
   correlation scale, the residual sd last for the LMM) and ``fixef``, to
   ``LME4_REL`` = 1e-6 (relative; absolute for the correlation). lme4 runs with
   tight optimizer settings (lmer: bobyqa ``rhoend = 1e-12``; glmer: bobyqa
   ``rhoend = 1e-10`` and ``tolPwrss = 1e-12``): with its defaults, lmer stops 3.6e-7
   short of the REML optimum on replicate 3 (sd 1.6e-4 off) and glmer's PIRLS
   tolerance (``tolPwrss = 1e-7``) moves its optimum by 4e-4 in log-likelihood on
   replicate 2 (sd 6e-4 off); tightened, both equal the native estimates to 1.5e-7
   (measured; a variance in place of an sd would be off by the factor sd itself:
   about 20 on the LMM's intercept, 0.3 to 0.7 on the GLMM's).

2. **Multinomial random slopes** ``y ~ x + (1 + x | g)``, K = 3 (4 correlated
   effects per group, 10 covariance parameters), 60 groups x 8 simulated with a
   covariance whose estimate is not singular (smallest eigenvalue 0.54; asserted
   > 0.1, so the estimates are identified). The reference is
   ``independent_likelihoods.MultinomialLikelihood``, written from the model's
   definition:

   - *value*: the native deviance function (``make_devfun``) at the native AGQ(3)
     estimates, for nagq = 1 (Laplace), 3 and 5, equals the independent adaptive
     Gauss-Hermite value with the same rule (k nodes per dimension, the Cholesky
     scaling glmmbench documents) to ``VALUE_DEV_ABS`` (measured 8e-11, 2e-12, 1e-13);
   - *the integral*: with 8 observations a group the k-point rules are far from the
     integral in 4 dimensions: the native deviances for k = 3, 5, 7 are 0.66, 0.060
     and 0.0052 above the independent symmetric-root rule at k = 8 (whose own step
     from k = 7 is 2.5e-3), so equality with the integral to 1e-6 would take more
     than 12^4 nodes, beyond glmmbench's ``quadrature.MAX_NODES`` = 10000. Asserted:
     the native AGQ deviances fall toward the independent integral as k grows
     (k = 3 > 5 > 7 > the integral, each step smaller than the one before);
   - *optimum*: scipy's L-BFGS-B maximises the independent AGQ(3) likelihood from the
     simulation's true parameters (numerical gradients); the native AGQ(3) fit equals
     that maximum to ``OPT_LOGLIK_ABS`` = 1e-4 in log-likelihood (measured 7e-11),
     the fixed effects and the implied covariance ``L L'`` to ``OPT_EST_ABS`` = 1e-3
     (measured 2e-6 and 1.2e-5).

3. **``smooth_tests()``** is *not* ``summary.gam``'s test. Its definition
   (``glmmbench.inference.gamm.TEST_METHOD``, Wood 2006 section 4.8.5): for each smooth, the
   fitted values ``f = X gamma`` at the data (X the smooth's basis, unweighted) with
   the Bayesian covariance ``X Vp X'``; ``T = f' (X Vp X')^-_r f`` with the
   pseudo-inverse at rank ``r = round(edf)``; ``Ref.df = r``; Gaussian (scale
   estimated): ``F = T / r`` on ``(r, n - edf_total)`` df; otherwise ``Chi.sq = T``
   on r df. mgcv 1.8-41's ``summary.gam`` instead uses a fractional rank (``Ref.df =
   min(ncol, edf1)``, Wood 2013) and the QR factor of the *weighted* model matrix
   (``object$R``), so its F / Chi.sq differ where edf is not an integer (measured,
   Gaussian s(x): mgcv F = 57.5 on Ref.df 7.41, native 70.8 on 6).
   References: a Gaussian REML GAMM ``y ~ s(x) + s(z) + (1 | g)`` is mgcv's
   ``gam(y ~ s(x) + s(z) + s(g, bs = "re"), method = "REML")``; a Poisson one is
   gamm4's fit (glmer's Laplace, tightened as above), its ``$gam`` part. Asserted:

   - edf equals ``summary.gam``'s edf column (``EDF_REL``, measured 4.6e-7), and the
     Gaussian F test's denominator df ``n - edf_total`` equals mgcv's
     ``residual.df``;
   - the definition above, evaluated on *mgcv's* fit, twice independently of the
     engine: by mgcv's own ``testStat`` at the integer rank (``type = 0``, integer
     rank: no fractional branch) in R, and in numpy from mgcv's ``lpmatrix``
     columns, coefficients and ``Vp`` by an eigendecomposition of the n x n
     covariance of the fitted values (R and numpy agree to 1e-14). Native
     ``Ref.df``, statistic (``STAT_REL`` = 1e-5; measured 2e-8, except 6.4e-6 for
     the Poisson s(z), a straight line where glmmbench's smoothing parameter runs
     to 1.8e24 and gamm4's stops finite) and p-value (``LOGP_ABS`` = 1e-4 on log p,
     measured 2.7e-5);
   - where the definitions coincide, a smooth whose mgcv edf is an integer to
     1e-6 (the Poisson fit's linear s(z)), ``summary.gam``'s own row: Ref.df and
     Chi.sq to ``STAT_REL``, its p-value to ``MGCV_FRACTIONAL_P_REL`` = 2e-4 (with a
     fractional part of 2e-9 mgcv still takes its fractional-rank branch and
     ``psum.chisq``: measured 1e-4 from its own integer-rank p-value).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special
from threadpoolctl import threadpool_limits

import glmmbench as gb
from glmmbench import datasets
from glmmbench.engine.deviance import make_devfun
from glmmbench.families import make_response as _response

from .independent_likelihoods import MultinomialLikelihood
from .rscript import run_r

# bootstrap
SAME_FIT_REL = 1e-8
LME4_REL = 1e-6  # sds, sigma, fixed effects; correlations: absolute
# multinomial random slopes
VALUE_DEV_ABS = 1e-6
OPT_LOGLIK_ABS = 1e-4
OPT_EST_ABS = 1e-3
# smooth tests
EDF_REL = 2e-6
STAT_REL = 1e-5
LOGP_ABS = 1e-4
MGCV_FRACTIONAL_P_REL = 2e-4
DEFINITION_REL = 1e-9


# ------------------------------------------------------------------ 1. bootstrap
SLEEP = "Reaction ~ Days + (Days | Subject)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
NSIM, SEED = 3, 2024

R_BOOT = r"""
lm <- sapply(seq_len(ncol(ylmm)), function(i) {
  s <- sleep; s$Reaction <- ylmm[[i]]
  m <- lmer(Reaction ~ Days + (Days | Subject), s,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12)))
  c(as.data.frame(VarCorr(m), order = "lower.tri")$sdcor, fixef(m))
})
gl <- sapply(seq_len(ncol(yglmm)), function(i) {
  s <- cbpp; s$incidence <- yglmm[[i]]
  m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), s, binomial,
             control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                                    optCtrl = list(rhoend = 1e-10)))
  c(as.data.frame(VarCorr(m), order = "lower.tri")$sdcor, fixef(m))
})
list(lmm = I(c(lm)), glmm = I(c(gl)))
"""


def _replicate_responses(res, nsim: int, seed: int) -> list[np.ndarray]:
    """The responses ``bootstrap(nsim, seed)`` refits: replicate i draws from
    ``default_rng(SeedSequence(seed).spawn(nsim)[i])`` (glmmbench/inference/bootstrap.py)."""
    return [res.simulate(1, np.random.default_rng(s)).iloc[:, 0].to_numpy()
            for s in np.random.SeedSequence(seed).spawn(nsim)]


def _sd(res, grp: str, var: str) -> float:
    vc = res.varcorr
    row = vc[(vc["grp"] == grp) & (vc["var1"] == var) & vc["var2"].isna()]
    assert len(row) == 1
    return float(row["sdcor"].iloc[0])


def _cor(res, grp: str, v1: str, v2: str) -> float:
    vc = res.varcorr
    row = vc[(vc["grp"] == grp) & (vc["var1"] == v1) & (vc["var2"] == v2)]
    assert len(row) == 1
    return float(row["sdcor"].iloc[0])


@pytest.fixture(scope="module")
def boot():
    """Per case: the bootstrap table, the rows expected from direct native fits of
    the regenerated responses, and those responses (one column per replicate)."""
    sleep, cbpp = datasets.load("sleepstudy"), datasets.load("cbpp")
    out = {}
    with threadpool_limits(1):
        lmm = gb.fit(SLEEP, sleep)
        ys = _replicate_responses(lmm, NSIM, SEED)
        direct = [gb.fit(SLEEP, sleep.assign(Reaction=y)) for y in ys]
        expected = [[_sd(d, "Subject", "(Intercept)"), _cor(d, "Subject", "(Intercept)", "Days"),
                     _sd(d, "Subject", "Days"), d.sigma, *d.fixef] for d in direct]
        out["lmm"] = (lmm.bootstrap(NSIM, seed=SEED), np.array(expected),
                      pd.DataFrame({f"y{i}": y for i, y in enumerate(ys)}))
        glmm = gb.fit(CBPP, cbpp, "binomial")
        # binomial draws are proportions of size: back to counts for a direct fit
        counts = [np.round(y * cbpp["size"].to_numpy()).astype(int)
                  for y in _replicate_responses(glmm, NSIM, SEED)]
        direct = [gb.fit(CBPP, cbpp.assign(incidence=c), "binomial") for c in counts]
        expected = [[_sd(d, "herd", "(Intercept)"), *d.fixef] for d in direct]
        out["glmm"] = (glmm.bootstrap(NSIM, seed=SEED), np.array(expected),
                       pd.DataFrame({f"y{i}": c for i, c in enumerate(counts)}))
    return out


@pytest.fixture(scope="module")
def boot_lme4(boot):
    """lme4's sd/cor (and residual sd) and fixed effects of the same responses."""
    return run_r(R_BOOT, sleep=datasets.load("sleepstudy"), cbpp=datasets.load("cbpp"),
                 ylmm=boot["lmm"][2], yglmm=boot["glmm"][2])


BOOT_COLUMNS = {
    "lmm": [".sig01", ".sig02", ".sig03", ".sigma", "(Intercept)", "Days"],
    "glmm": [".sig01", "(Intercept)", "period2", "period3", "period4"],
}
CORRELATIONS = {"lmm": [1], "glmm": []}  # positions compared absolutely


@pytest.mark.parametrize("case", ["lmm", "glmm"])
def test_bootstrap_rows_equal_direct_native_fits(boot, case):
    table, expected, _ = boot[case]
    assert list(table.columns) == [*BOOT_COLUMNS[case], "loglik", "converged", "error"]
    assert table.attrs["nfailed"] == 0 and table["converged"].all()
    got = table[BOOT_COLUMNS[case]].to_numpy(dtype=float)
    np.testing.assert_allclose(got, expected, rtol=SAME_FIT_REL, atol=1e-12)


@pytest.mark.r
@pytest.mark.parametrize("case", ["lmm", "glmm"])
def test_bootstrap_columns_are_on_lme4s_scale(boot, boot_lme4, case):
    """sd (not variance), correlation, residual sd: lme4's ``VarCorr`` sdcor of the
    same replicate responses, fitted live."""
    ref = boot_lme4
    table = boot[case][0]
    cols = BOOT_COLUMNS[case]
    want = np.array(ref[case], dtype=float).reshape(NSIM, len(cols))
    got = table[cols].to_numpy(dtype=float)
    cor = np.zeros(len(cols), dtype=bool)
    cor[CORRELATIONS[case]] = True
    np.testing.assert_allclose(got[:, ~cor], want[:, ~cor], rtol=LME4_REL)
    np.testing.assert_allclose(got[:, cor], want[:, cor], rtol=0, atol=LME4_REL)


# ---------------------------------------------------------- 2. multinomial slopes
def test_independent_multinomial_integral_is_the_integral():
    """The reference itself: in 2 dimensions (``(1 | g)``, K = 3) both rules with 16
    nodes a dimension equal the trapezoid-grid integral of tests/test_multinomial.py
    (``ReferenceLikelihood``, itself checked there against scipy's dblquad) to 1e-8
    (measured 1e-13), where 3 nodes are 6e-3 off."""
    from .test_multinomial import REF_PARAMS, ReferenceLikelihood, sim_reference

    d = sim_reference()
    grid = ReferenceLikelihood(d, h=0.2)(REF_PARAMS, grad=False)
    x = d["x"].to_numpy()
    X = np.column_stack([np.ones_like(x), x])
    args = (d["y"].cat.codes.to_numpy(), X, np.ones((len(x), 1)), d["g"].cat.codes.to_numpy())
    for rule in ("symmetric", "cholesky"):
        assert abs(MultinomialLikelihood(*args, K=3, k=16, rule=rule)(REF_PARAMS) - grid) <= 1e-8
    assert abs(MultinomialLikelihood(*args, K=3, k=3)(REF_PARAMS) - grid) > 1e-3


SLOPE_SDS = np.array([1.4, 1.0, 1.2, 0.9])  # b~(Intercept), b~x, c~(Intercept), c~x
SLOPE_BETA = np.array([0.3, 0.8, -0.2, -0.6])
SLOPE_NAMES = ["b~(Intercept)", "b~x", "c~(Intercept)", "c~x"]


def _slope_covariance() -> np.ndarray:
    C = np.eye(4)
    C[0, 2] = C[2, 0] = 0.3  # the two category intercepts correlate
    return C * np.outer(SLOPE_SDS, SLOPE_SDS)


@functools.cache
def _slope_data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    G, m = 60, 8
    g = np.repeat(np.arange(G), m)
    x = rng.uniform(-1, 1, G * m)
    b = rng.standard_normal((G, 4)) @ np.linalg.cholesky(_slope_covariance()).T
    eta = np.column_stack([SLOPE_BETA[0] + SLOPE_BETA[1] * x + b[g, 0] + b[g, 1] * x,
                           SLOPE_BETA[2] + SLOPE_BETA[3] * x + b[g, 2] + b[g, 3] * x])
    p = special.softmax(np.column_stack([np.zeros(len(x)), eta]), axis=1)
    codes = np.minimum((rng.uniform(size=len(x))[:, None] > np.cumsum(p, axis=1)).sum(1), 2)
    return pd.DataFrame({"y": pd.Categorical.from_codes(codes, ["a", "b", "c"]), "x": x,
                         "g": pd.Categorical.from_codes(g, [f"g{i:02d}" for i in range(G)])})


def _slope_likelihood(k: int, rule: str) -> MultinomialLikelihood:
    d = _slope_data()
    x = d["x"].to_numpy()
    X = np.column_stack([np.ones_like(x), x])
    return MultinomialLikelihood(d["y"].cat.codes.to_numpy(), X, X,
                                 d["g"].cat.codes.to_numpy(), K=3, k=k, rule=rule)


@pytest.fixture(scope="module")
def slopes():
    with threadpool_limits(1):
        return gb.fit("y ~ x + (1 + x | g)", _slope_data(), family="multinomial", nagq=3)


def _native_covariance(res) -> np.ndarray:
    vc = res.varcorr
    sd = {r.var1: r.sdcor for r in vc.itertuples() if pd.isna(r.var2)}
    assert list(sd) == SLOPE_NAMES
    C = np.diag([sd[n] ** 2 for n in SLOPE_NAMES])
    for r in vc.itertuples():
        if not pd.isna(r.var2):
            i, j = SLOPE_NAMES.index(r.var1), SLOPE_NAMES.index(r.var2)
            C[i, j] = C[j, i] = r.vcov
    return C


def test_multinomial_slopes_agq_value_equals_independent_integral(slopes):
    res = slopes
    assert res.converged, res.messages
    assert res.method == "AGQ(3)"
    assert list(res.fixef.index) == SLOPE_NAMES and len(res.theta) == 10
    eig = np.linalg.eigvalsh(_native_covariance(res))
    assert eig.min() > 0.1, eig  # not a singular fit: the estimates are identified
    par = np.r_[res.fixef.to_numpy(), res.theta]
    native, independent = {}, {}
    with threadpool_limits(1):
        for k in (1, 3, 5, 7):
            native[k] = float(make_devfun(res.design, _response(res.design, res.family),
                                          nagq=k)(np.r_[res.theta, res.fixef.to_numpy()]))
            if k <= 5:
                independent[k] = _slope_likelihood(k, "cholesky")(par)
        integral = _slope_likelihood(8, "symmetric")(par)
    assert abs(-2 * res.loglik - native[3]) <= VALUE_DEV_ABS
    for k, value in independent.items():
        assert abs(native[k] - value) <= VALUE_DEV_ABS, (k, native[k], value)
    # the rules approach the integral from above, each step smaller
    steps = np.array([native[3], native[5], native[7], integral])
    assert np.all(np.diff(steps) < 0), steps
    assert np.all(np.diff(-np.diff(steps)) < 0), steps


def test_multinomial_slopes_optimum_equals_independent_maximum(slopes):
    res = slopes
    f = _slope_likelihood(3, "cholesky")
    truth = np.r_[SLOPE_BETA, f.vech(np.linalg.cholesky(_slope_covariance()))]
    diag = f.rows == f.cols
    bounds = [(None, None)] * 4 + [(0.0, None) if d else (None, None) for d in diag]
    with threadpool_limits(1):
        best = optimize.minimize(f, truth, method="L-BFGS-B", bounds=bounds,
                                 options={"ftol": 1e-15, "gtol": 1e-7, "maxiter": 1000})
    assert best.success, best.message
    assert abs(res.loglik - -best.fun / 2) <= OPT_LOGLIK_ABS, (res.loglik, -best.fun / 2)
    np.testing.assert_allclose(res.fixef.to_numpy(), best.x[:4], rtol=0, atol=OPT_EST_ABS)
    _, L = f.unpack(best.x)
    np.testing.assert_allclose(_native_covariance(res), L @ L.T, rtol=0, atol=OPT_EST_ABS)


# ------------------------------------------------------------------ 3. smooth tests
def _gamm_data(seed: int, poisson: bool) -> pd.DataFrame:
    """240 observations, 12 groups; x enters as a sine, z linearly (Poisson) or
    quadratically (Gaussian), plus a random intercept."""
    rng = np.random.default_rng(seed)
    n, G = 240, 12
    x, z = rng.uniform(size=n), rng.uniform(size=n)
    g = rng.integers(0, G, n)
    re = rng.normal(0, 0.4 if poisson else 0.5, G)[g]
    if poisson:
        y = rng.poisson(np.exp(0.3 + np.sin(2 * np.pi * x) + 0.3 * z + re)).astype(float)
    else:
        y = np.sin(2 * np.pi * x) + 2.0 * (z - 0.5) ** 2 + re + rng.normal(0, 0.5, n)
    return pd.DataFrame({"y": y, "x": x, "z": z,
                         "g": pd.Categorical([f"g{v:02d}" for v in g])})


R_SMOOTH = r"""
suppressPackageStartupMessages({library(mgcv); library(gamm4)})
pieces <- function(m, resdf) {
  tab <- summary(m)$s.table
  X <- predict(m, type = "lpmatrix")
  sm <- Filter(function(s) !inherits(s, "random.effect"), m$smooth)
  lapply(sm, function(s) {
    ii <- s$first.para:s$last.para
    edf <- sum(m$edf[ii])
    # the engine's definition (integer rank round(edf)) by mgcv's own testStat
    own <- mgcv:::testStat(m$coefficients[ii], X[, ii, drop = FALSE], m$Vp[ii, ii],
                           round(edf), type = 0, res.df = resdf)
    list(label = s$label, table = I(unname(tab[s$label, ])), edf = edf,
         own = I(c(own$rank, own$stat, own$pval)), X = I(c(X[, ii])), ncol = length(ii),
         coef = I(unname(m$coefficients[ii])), Vp = I(c(m$Vp[ii, ii])))
  })
}
mg <- gam(y ~ s(x) + s(z) + s(g, bs = "re"), data = gauss, method = "REML")
m4 <- gamm4(y ~ s(x) + s(z), random = ~ (1 | g), data = pois, family = poisson,
            control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                                   optCtrl = list(rhoend = 1e-10)))
list(gaussian = pieces(mg, length(gauss$y) - sum(mg$edf)), poisson = pieces(m4$gam, -1),
     resdf = length(gauss$y) - sum(mg$edf))
"""

GAMM_CASES = {"gaussian": (3, False), "poisson": (5, True)}


@pytest.fixture(scope="module")
def gamms():
    data = {case: _gamm_data(seed, pois) for case, (seed, pois) in GAMM_CASES.items()}
    with threadpool_limits(1):
        native = {case: gb.fit("y ~ s(x) + s(z) + (1 | g)", data[case], case)
                  for case in GAMM_CASES}
    return native, run_r(R_SMOOTH, gauss=data["gaussian"], pois=data["poisson"])


def _definition(X: np.ndarray, coef: np.ndarray, Vp: np.ndarray, edf: float) -> float:
    """``T = f' (X Vp X')^-_r f`` with ``f = X coef`` and the pseudo-inverse keeping
    the ``r = round(edf)`` largest eigenvalues of the n x n covariance."""
    f = X @ coef
    lam, U = np.linalg.eigh(X @ Vp @ X.T)
    keep = np.argsort(lam)[::-1][:int(round(edf))]
    return float(np.sum((U[:, keep].T @ f) ** 2 / lam[keep]))


@pytest.mark.r
@pytest.mark.parametrize("case", list(GAMM_CASES))
def test_smooth_tests_definition_on_mgcvs_fit(gamms, case):
    native, ref = gamms
    res = native[case]
    tests = res.smooth_tests()
    stat = "F" if case == "gaussian" else "Chi.sq"
    assert list(tests.columns) == ["edf", "Ref.df", stat, "p-value"]
    assert list(tests.index) == [s["label"] for s in ref[case]] == ["s(x)", "s(z)"]
    if case == "gaussian":  # the F test's denominator df: mgcv's residual.df
        assert res.nobs - res.edf_total == pytest.approx(ref["resdf"], rel=EDF_REL)
    for s in ref[case]:
        row = tests.loc[s["label"]]
        n = len(s["X"]) // s["ncol"]
        X = np.array(s["X"]).reshape(s["ncol"], n).T
        T = _definition(X, np.array(s["coef"]), np.array(s["Vp"]).reshape(s["ncol"], -1),
                        s["edf"])
        rank, own_T, own_p = s["own"]
        assert T == pytest.approx(own_T, rel=DEFINITION_REL)  # numpy = mgcv's testStat
        assert row["edf"] == pytest.approx(s["table"][0], rel=EDF_REL)  # summary.gam's edf
        assert row["Ref.df"] == rank == round(s["edf"])
        want = own_T / rank if case == "gaussian" else own_T
        assert row[stat] == pytest.approx(want, rel=STAT_REL), (s["label"], row[stat], want)
        assert abs(np.log(row["p-value"]) - np.log(own_p)) <= LOGP_ABS, (row, own_p)


@pytest.mark.r
def test_smooth_tests_equal_summary_gam_where_the_definitions_coincide(gamms):
    """Where mgcv's edf is an integer, its fractional rank is that integer and
    ``summary.gam``'s row is the native definition's."""
    native, ref = gamms
    coinciding = [(case, s) for case in GAMM_CASES for s in ref[case]
                  if abs(s["edf"] - round(s["edf"])) < 1e-6]
    assert [(case, s["label"]) for case, s in coinciding] == [("poisson", "s(z)")]
    for case, s in coinciding:
        row = native[case].smooth_tests().loc[s["label"]]
        edf, ref_df, chisq, p = s["table"]
        assert row["Ref.df"] == pytest.approx(ref_df, rel=STAT_REL)
        assert row["Chi.sq"] == pytest.approx(chisq, rel=STAT_REL)
        assert row["p-value"] == pytest.approx(p, rel=MGCV_FRACTIONAL_P_REL)
