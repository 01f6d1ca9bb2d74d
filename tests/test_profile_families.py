"""Profile confidence intervals (``res.confint(method="profile")``) by value for the
GLMM families whose profiles had no value test (issue 22): NB2, Gamma (log link),
ordinal and multinomial.

What is compared, family by family:

- **NB2 and Gamma (log)**, against glmmTMB 1.1.5 live. glmmTMB's
  ``confint(m, method = "profile")`` profiles the fixed effects and ``theta_1|g.1``,
  the *log* sd of the random intercept; native ``.sig01`` is the sd, so the
  references are ``exp()`` of glmmTMB's theta limits, the fixed effects directly.
  Neither engine reports a dispersion row: glmmTMB profiles ``betad`` out, and
  native ``res.sigma`` (NB2 size, Gamma CV: glmmTMB's ``sigma()``) is a nuisance
  parameter of the profile, not a ``.sigma`` row (that is an LMM's residual sd), so
  there is nothing like to compare there beyond the estimate itself (``res.sigma``
  against ``sigma(m)``, ``SIGMA_REL``). Two checks of the intervals:

  1. exactness, with glmmTMB's own Laplace likelihood as the referee: at each native
     limit, R minimises glmmTMB's objective (``m$obj$fn``, its gradient ``m$obj$gr``,
     ``nlminb``) over every other parameter, dispersion included, with the profiled
     one held at the native limit; ``2 (nll_limit - nll_hat)`` must equal
     ``qchisq(0.95, 1)`` to ``DEV_ABS`` = 1e-5 (zeta within 1.3e-6 of 1.96: for a
     near-linear zeta, a limit within 1e-6 of the half-width). Measured: within 7e-8
     for all twelve limits.
  2. glmmTMB's reported interval: its profile is a spline through a few points
     (``confint.profile.glmmTMB``: ``interpSpline`` / ``backSpline``), so its limits
     agree with the exact ones only to the spline's accuracy: ``SPLINE_WIDTH`` =
     1e-3 of the interval's width (measured: at most 3.9e-4, the lower limits of
     x; check 1 shows the gap is glmmTMB's: at its own limits the deviance difference
     is up to 3.847, not 3.841).

- **ordinal** (``clmm``): R's ``ordinal`` has no ``profile``/``confint`` method for
  ``clmm`` (only for ``clm``), so the reference is an independent profile: the exact
  marginal likelihood of the wine data's ``rating ~ temp + (1 | judge)`` by a fine
  trapezoid grid (``independent_likelihoods.OrdinalLikelihood``), minimised by
  L-BFGS-B (exact gradient) with the profiled parameter fixed, limits by ``brentq``.
  The native fit is AGQ(9), whose deviance equals the integral to ``VALUE_DEV_ABS``
  = 1e-6 at its estimates (measured 6e-8), and whose optimum is the integral's
  maximum (same); limits within ``EXACT_WIDTH`` = 1e-6 of the width (measured 2e-8).

- **multinomial** (K = 3, ``y ~ x + (1 | g)``, correlated category intercepts):
  no R engine fits it, so the reference is the independent Laplace approximation
  (``MultinomialLikelihood`` with one node, which `tests/test_inference_values.py`
  shows equal to the native Laplace deviance to 1e-10 in 4 dimensions). Profiled:
  ``.sig02``, the correlation (the 2 x 2 block's sd/correlation parametrisation;
  sds are profiled in every other case here). At each native limit the independent
  deviance is minimised over the other six parameters with the correlation held
  there: ``qchisq(0.95, 1)`` to ``DEV_ABS`` (measured 8e-10), as for glmmTMB. (A full
  independent brentq would need numerical gradients, and each native profile
  parameter costs seconds here, AGQ(9) two to three times Laplace: one parameter.)
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special
from threadpoolctl import threadpool_limits

import glmmbench as gb
from glmmbench import datasets

from .independent_likelihoods import (
    CHISQ95,
    Z975,
    MultinomialLikelihood,
    OrdinalLikelihood,
    constrained_min,
    profile_limit,
)
from .rscript import run_r

DEV_ABS = 1e-5  # deviance difference at a native limit vs qchisq(0.95, 1)
SPLINE_WIDTH = 1e-3  # glmmTMB's spline limits, as a fraction of the interval's width
EXACT_WIDTH = 1e-6  # an exact independent profile's limits, same scale
VALUE_DEV_ABS = 1e-6  # native deviance vs the independent integral at one point
SIGMA_REL = 5e-5  # native sigma vs glmmTMB's sigma() (measured 1e-5: a flat direction)

FORMULA = "y ~ x + (1 | g)"
NATIVE_ROWS = [".sig01", "(Intercept)", "x"]


# ------------------------------------------------------------------ NB2, Gamma
def _count_data(family: str, seed: int) -> pd.DataFrame:
    """12 groups x 8: log mu = 0.8 + 0.5 x + b, sd(b) = 0.6; NB2 size 2 or Gamma
    shape 3."""
    rng = np.random.default_rng(seed)
    G, m = 12, 8
    g = np.repeat(np.arange(G), m)
    x = rng.uniform(-1, 1, G * m)
    mu = np.exp(0.8 + 0.5 * x + rng.normal(0, 0.6, G)[g])
    if family == "negative_binomial":
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    else:
        y = rng.gamma(3.0, mu / 3.0)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{i:02d}" for i in g])})


TMB_CASES = {"nb2": ("negative_binomial", "nbinom2()", 7),
             "gamma": ("Gamma", 'Gamma(link = "log")', 8)}

R_TMB = r"""
suppressPackageStartupMessages(library(glmmTMB))
one <- function(d, fam, lim) {
  m <- glmmTMB(y ~ x + (1 | g), d, family = fam)
  ci <- confint(m, method = "profile")
  obj <- m$obj
  best <- m$fit$par
  # the native rows .sig01, (Intercept), x: glmmTMB's theta (the log sd), beta
  pos <- c(which(names(best) == "theta"), which(names(best) == "beta"))
  at <- function(j, v) {  # 2 (min nll with parameter j held at v - nll at the fit)
    k <- pos[j]
    value <- if (j == 1) log(v) else v
    full <- best
    f <- function(p) { full[-k] <- p; full[k] <- value; obj$fn(full) }
    g <- function(p) { full[-k] <- p; full[k] <- value; obj$gr(full)[-k] }
    o <- nlminb(best[-k], f, g, control = list(rel.tol = 1e-12, x.tol = 1e-10,
                                                iter.max = 1000, eval.max = 2000))
    2 * (o$objective - m$fit$objective)
  }
  list(names = rownames(ci), lower = I(unname(ci[, 1])), upper = I(unname(ci[, 2])),
       sigma = sigma(m), dev_lower = I(sapply(1:3, function(j) at(j, lim$lower[j]))),
       dev_upper = I(sapply(1:3, function(j) at(j, lim$upper[j]))))
}
list(nb2 = one(nb2, nbinom2(), nb2_lim), gamma = one(gamma, Gamma(link = "log"), gamma_lim))
"""


@pytest.fixture(scope="module")
def tmb():
    """Native fits and profile intervals of both families, then one R session."""
    data, native, frames = {}, {}, {}
    with threadpool_limits(1):
        for case, (family, _, seed) in TMB_CASES.items():
            data[case] = _count_data(family, seed)
            res = gb.fit(FORMULA, data[case], family=family, link="log")
            native[case] = (res, res.confint())
            ci = native[case][1]
            frames[case] = data[case]
            frames[f"{case}_lim"] = pd.DataFrame({"lower": ci["2.5 %"].to_numpy(),
                                                  "upper": ci["97.5 %"].to_numpy()})
    return native, run_r(R_TMB, **frames)


@pytest.mark.r
@pytest.mark.parametrize("case", list(TMB_CASES))
def test_profile_limits_are_exact_under_glmmtmbs_likelihood(tmb, case):
    native, ref = tmb
    res, ci = native[case]
    assert res.converged, res.messages
    assert list(ci.index) == NATIVE_ROWS  # no .sigma row: the dispersion is a nuisance
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    r = ref[case]
    # the nuisance is glmmTMB's: native sigma (NB2 size, Gamma CV) is its sigma()
    assert res.sigma == pytest.approx(r["sigma"], rel=SIGMA_REL)
    np.testing.assert_allclose(r["dev_lower"], CHISQ95, rtol=0, atol=DEV_ABS)
    np.testing.assert_allclose(r["dev_upper"], CHISQ95, rtol=0, atol=DEV_ABS)


@pytest.mark.r
@pytest.mark.parametrize("case", list(TMB_CASES))
def test_profile_limits_equal_glmmtmbs_profile(tmb, case):
    native, ref = tmb
    _, ci = native[case]
    r = ref[case]
    assert r["names"] == ["(Intercept)", "x", "theta_1|g.1"]
    # glmmTMB's rows reordered to native's; theta_ is the log sd
    lower = np.array([np.exp(r["lower"][2]), r["lower"][0], r["lower"][1]])
    upper = np.array([np.exp(r["upper"][2]), r["upper"][0], r["upper"][1]])
    width = upper - lower
    gap = np.abs(np.column_stack([ci["2.5 %"].to_numpy() - lower,
                                  ci["97.5 %"].to_numpy() - upper]))
    assert np.all(gap <= SPLINE_WIDTH * width[:, None]), (ci, lower, upper, gap / width[:, None])


# ------------------------------------------------------------------ ordinal
@functools.cache
def _wine():
    w = datasets.load("wine")
    return (w, w["rating"].cat.codes.to_numpy(), (w["temp"] == "warm").to_numpy(float)[:, None],
            w["judge"].cat.codes.to_numpy())


def test_independent_ordinal_integral_is_the_integral():
    """The reference itself: one judge's integral equals scipy's adaptive quad to
    1e-9 (measured 1e-12), and the gradient equals central differences."""
    w, codes, X, g = _wine()
    p = np.array([-1.5, 0.5, 2.5, 4.0, 2.5, 1.1])
    one = g == 0
    grid = OrdinalLikelihood(codes[one], X[one], np.zeros(one.sum(), int), K=5)(p)
    th = np.r_[-np.inf, p[:4], np.inf]
    y, x = codes[one], X[one, 0]

    def integrand(v):
        eta = p[4] * x + p[5] * v
        return np.prod(special.expit(th[y + 1] - eta) - special.expit(th[y] - eta)) \
            * np.exp(-v * v / 2) / np.sqrt(2 * np.pi)

    value, _ = integrate.quad(integrand, -np.inf, np.inf, epsabs=0, epsrel=1e-13)
    assert abs(grid - -2 * np.log(value)) <= 1e-9, (grid, -2 * np.log(value))
    f = OrdinalLikelihood(codes, X, g, K=5)
    z = f.to_unconstrained(p)
    _, grad = f.unconstrained(z)
    fd = [(f.unconstrained(z + 1e-6 * e)[0] - f.unconstrained(z - 1e-6 * e)[0]) / 2e-6
          for e in np.eye(z.size)]
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-5)


def test_ordinal_profile_equals_independent_exact_profile():
    w, codes, X, g = _wine()
    f = OrdinalLikelihood(codes, X, g, K=5)
    bounds = [(None, None)] * 5 + [(0.0, None)]
    with threadpool_limits(1):
        res = gb.fit("rating ~ temp + (1 | judge)", w, "ordinal", nagq=9)
        ci = res.confint()
        est = np.r_[res.thresholds.to_numpy(), res.fixef.to_numpy(),
                    res.varcorr["sdcor"].to_numpy()]
        # the native AGQ(9) deviance is the integral at its estimates ...
        assert abs(-2 * res.loglik - f(est)) <= VALUE_DEV_ABS, (-2 * res.loglik, f(est))
        # ... and its optimum the integral's maximum (started elsewhere)
        start = f.to_unconstrained(np.r_[-2.0, -0.5, 1.0, 2.5, 1.0, 1.0])
        best = optimize.minimize(f.unconstrained, start, jac=True, method="L-BFGS-B",
                                 bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-10})
        assert best.success, best.message
        assert abs(best.fun - -2 * res.loglik) <= VALUE_DEV_ABS, (best.fun, -2 * res.loglik)
        ref = {name: [profile_limit(f.unconstrained, best.x, j, s * Z975, step, bounds,
                                    jac=True) for s in (-1, 1)]
               for j, name, step in ((4, "tempwarm", 0.5), (5, ".sig01", 0.3))}
    assert list(ci.index) == [".sig01", "tempwarm"]
    for name, (lo, hi) in ref.items():
        width = hi - lo
        assert abs(ci.loc[name, "2.5 %"] - lo) <= EXACT_WIDTH * width, (name, ci.loc[name], lo)
        assert abs(ci.loc[name, "97.5 %"] - hi) <= EXACT_WIDTH * width, (name, ci.loc[name], hi)


# ------------------------------------------------------------------ multinomial
def _multinomial_data() -> pd.DataFrame:
    """40 groups x 6, K = 3 (a, b, c); category intercepts with sds 1 / 0.8 and
    correlation 0.5; eta_b = 0.3 + 0.8 x + b_1, eta_c = -0.2 - 0.6 x + b_2 (a seed whose
    correlation profile stays inside (-1, 1) on both sides)."""
    rng = np.random.default_rng(0)
    G, m = 40, 6
    g = np.repeat(np.arange(G), m)
    x = rng.uniform(-1.5, 1.5, G * m)
    b = rng.standard_normal((G, 2)) @ np.linalg.cholesky([[1.0, 0.4], [0.4, 0.64]]).T
    eta = np.column_stack([0.3 + 0.8 * x + b[g, 0], -0.2 - 0.6 * x + b[g, 1]])
    p = special.softmax(np.column_stack([np.zeros(len(x)), eta]), axis=1)
    codes = np.minimum((rng.uniform(size=len(x))[:, None] > np.cumsum(p, axis=1)).sum(1), 2)
    return pd.DataFrame({"y": pd.Categorical.from_codes(codes, ["a", "b", "c"]), "x": x,
                         "g": pd.Categorical.from_codes(g, [f"g{i:02d}" for i in range(G)])})


def _sdcor_to_vech(sd1: float, rho: float, sd2: float) -> np.ndarray:
    """(L11, L21, L22) of the lower Cholesky factor of the 2 x 2 covariance."""
    return np.array([sd1, rho * sd2, sd2 * np.sqrt(max(1.0 - rho**2, 0.0))])


def test_multinomial_correlation_profile_is_exact_under_independent_laplace():
    d = _multinomial_data()
    codes, x, g = d["y"].cat.codes.to_numpy(), d["x"].to_numpy(), d["g"].cat.codes.to_numpy()
    X = np.column_stack([np.ones_like(x), x])
    lap = MultinomialLikelihood(codes, X, np.ones((len(x), 1)), g, K=3, k=1)

    def dev(z):  # z = (beta, sd_b, correlation, sd_c): the native profile's scale
        return lap(np.r_[z[:4], _sdcor_to_vech(*z[4:])])

    with threadpool_limits(1):
        res = gb.fit("y ~ x + (1 | g)", d, family="multinomial")
        assert res.converged, res.messages
        ci = res.confint(parm=".sig02")
        vc = res.varcorr
        assert vc["var2"].iloc[2] == "c~(Intercept)"  # row 2 is the correlation
        z_hat = np.r_[res.fixef.to_numpy(), vc["sdcor"].to_numpy()[[0, 2, 1]]]
        base = dev(z_hat)
        assert abs(base - -2 * res.loglik) <= VALUE_DEV_ABS, (base, -2 * res.loglik)
        bounds = [(None, None)] * 4 + [(0.0, None), (-1.0, 1.0), (0.0, None)]
        best = optimize.minimize(dev, z_hat, method="L-BFGS-B", bounds=bounds,
                                 options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 5000})
        assert abs(best.fun - base) <= VALUE_DEV_ABS  # the fit is the maximum
        lo, hi = ci.loc[".sig02"]
        assert -1.0 < lo < z_hat[5] < hi < 1.0, (lo, hi)  # both limits inside (-1, 1)
        diffs = [constrained_min(dev, best.x, 5, v, bounds).fun - best.fun for v in (lo, hi)]
    np.testing.assert_allclose(diffs, CHISQ95, rtol=0, atol=DEV_ABS)
