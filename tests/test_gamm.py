"""GAMMs (smooths next to random effects) against live mgcv and gamm4.

A smooth's null space is a fixed effect and its penalised range a random term
with ``Lambda = theta I`` (gamm4, mgcv's ``smooth2random``), so the Gaussian REML
fit is mgcv's ``gam(..., method = "REML")`` with ``s(g, bs = "re")`` and gamm4's,
and a Poisson Laplace fit is gamm4's (glmer underneath). Tolerances (issue 12):
fitted values within 1e-3 of the response's sd; edf within 1 %; the REML
criterion or log-likelihood within 2e-3 (the native value may be higher); the
random-intercept variance within 1 %.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import simulate
from glmmbench import fit as glmm_fit
from glmmbench.errors import DataError, FormulaError

from .rscript import run_r

FIT_SD = 1e-3
EDF_REL = 0.01
LOGLIK_ABS = 2e-3
VAR_REL = 0.01


def _sine() -> pd.DataFrame:
    return simulate.generate("gaussian_smooth", np.random.default_rng(11)).data


def _by_data() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n, ng = 450, 15
    f = rng.integers(0, 3, n)
    x = rng.uniform(size=n)
    g = rng.integers(0, ng, n)
    truth = np.choose(f, [np.sin(2 * np.pi * x), 2 * x**2, np.cos(3 * x)])
    y = 0.5 * f + truth + rng.normal(0, 0.5, ng)[g] + rng.normal(0, 0.4, n)
    return pd.DataFrame({"y": y, "x": x, "f": pd.Categorical([f"l{v}" for v in f]),
                         "g": pd.Categorical([f"g{v:02d}" for v in g])})


def _poisson_data() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    n, ng = 500, 25
    x = rng.uniform(size=n)
    g = rng.integers(0, ng, n)
    eta = 0.5 + np.sin(2 * np.pi * x) + rng.normal(0, 0.4, ng)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)).astype(float), "x": x,
                         "g": pd.Categorical([f"g{v:02d}" for v in g])})


# the R side: mgcv gam (REML, s(g, bs = "re")) and gamm4 on each data set; gamSim(6)
# is generated in R and sent back with its fits
R_CODE = r"""
suppressPackageStartupMessages({library(mgcv); library(gamm4)})
fits <- function(d, smooths, g, family = gaussian()) {
  fg <- as.formula(paste("y ~", smooths, "+ s(", g, ", bs = 're')"))
  f4 <- as.formula(paste("y ~", smooths))
  out <- list()
  if (family$family == "gaussian") {
    m <- gam(fg, data = d, method = "REML", family = family)
    vc <- gam.vcomp(m)
    sm <- setdiff(seq_along(m$smooth), which(sapply(m$smooth, inherits, "random.effect")))
    out$mgcv <- list(fitted = unname(fitted(m)),
                     edf = sapply(m$smooth[sm], function(s) sum(m$edf[s$first.para:s$last.para])),
                     labels = sapply(m$smooth[sm], function(s) s$label),
                     edf_total = sum(m$edf), sp = unname(m$sp[sm]),
                     re_var = unname(vc[paste0("s(", g, ")"), 1]^2))
    if (!is.null(d$x)) {
      nd <- d[1:7, ]; nd$x <- nd$x * 0.9 + 0.05
      out$mgcv$pred_new <- unname(predict(m, nd))
    }
    pt <- predict(m, type = "terms", se.fit = TRUE)
    out$mgcv$terms_fit <- unname(pt$fit[, m$smooth[[1]]$label])
    out$mgcv$terms_se <- unname(pt$se.fit[, m$smooth[[1]]$label])
  }
  r <- as.formula(paste("~ (1 |", g, ")"))
  m4 <- gamm4(f4, random = r, data = d, family = family, REML = family$family == "gaussian")
  vc4 <- as.data.frame(VarCorr(m4$mer))
  out$gamm4 <- list(fitted = unname(fitted(m4$mer)),
                    edf = unname(sapply(m4$gam$smooth, function(s)
                      sum(m4$gam$edf[s$first.para:s$last.para]))),
                    loglik = as.numeric(logLik(m4$mer)),
                    re_var = vc4$vcov[vc4$grp == g], sp = unname(m4$gam$sp))
  out
}
set.seed(3)
g6 <- gamSim(6, n = 400, scale = 1, verbose = FALSE)
g6 <- g6[, c("y", "x0", "x1", "x2", "x3", "fac")]
list(
  sine = fits(sine, "s(x)", "g"),
  by = fits(byd, "f + s(x, by = f)", "g"),
  gamsim = fits(g6, "s(x0, bs = 'cr') + s(x1, bs = 'cr') + s(x2, bs = 'cr') + s(x3, bs = 'cr')",
                "fac"),
  gamsim_data = list(y = g6$y, x0 = g6$x0, x1 = g6$x1, x2 = g6$x2, x3 = g6$x3,
                     fac = as.integer(g6$fac)),
  poisson = fits(pois, "s(x)", "g", poisson())
)
"""

FORMULAS = {
    "sine": ("y ~ s(x) + (1 | g)", "gaussian"),
    "by": ("y ~ f + s(x, by = f) + (1 | g)", "gaussian"),
    "gamsim": ('y ~ s(x0, bs = "cr") + s(x1, bs = "cr") + s(x2, bs = "cr") + '
               's(x3, bs = "cr") + (1 | fac)', "gaussian"),
    "poisson": ("y ~ s(x) + (1 | g)", "poisson"),
}


def _local_data() -> dict[str, pd.DataFrame]:
    """The data sets made here (gamSim's comes from R)."""
    return {"sine": _sine(), "by": _by_data(), "poisson": _poisson_data()}


@pytest.fixture(scope="module")
def local_fits():
    """Native fits of the data made here (no R)."""
    data = _local_data()
    return {case: glmm_fit(FORMULAS[case][0], data[case], FORMULAS[case][1])
            for case in data}


@pytest.fixture(scope="module")
def reference():
    data = _local_data()
    r = run_r(R_CODE, sine=data["sine"], byd=data["by"], pois=data["poisson"])
    g6 = pd.DataFrame(r["gamsim_data"])
    g6["fac"] = pd.Categorical([f"f{v:02d}" for v in g6["fac"]])
    data["gamsim"] = g6
    return data, r


@pytest.fixture(scope="module")
def native(reference, local_fits):
    data, _ = reference
    formula, family = FORMULAS["gamsim"]
    return {**local_fits, "gamsim": glmm_fit(formula, data["gamsim"], family)}


def _fitted(res) -> np.ndarray:
    return np.asarray(res.predict(), dtype=float)


# mgcv's gam is the reference for the Gaussian cases; gamm4 for all
REFERENCES = [(case, engine) for case in FORMULAS for engine in ("mgcv", "gamm4")
              if engine == "gamm4" or FORMULAS[case][1] == "gaussian"]


@pytest.mark.r
@pytest.mark.parametrize(("case", "engine"), REFERENCES)
def test_fitted_values_and_edf(reference, native, case, engine):
    data, r = reference
    ref, res = r[case][engine], native[case]
    sd_y = float(np.std(data[case]["y"]))
    assert np.max(np.abs(_fitted(res) - np.asarray(ref["fitted"]))) < FIT_SD * sd_y
    edf = np.atleast_1d(np.asarray(ref["edf"], dtype=float))
    np.testing.assert_allclose(res.smooths["edf"].to_numpy(), edf, rtol=EDF_REL)
    # smoothing parameters: equal where finite; where the smooth is a straight line
    # (its variance at 0, sp -> infinity) every engine stops at some huge value
    sp = np.atleast_1d(np.asarray(ref["sp"], dtype=float))
    lam = res.smooths["lambda"].to_numpy()
    linear = sp > 1e3
    np.testing.assert_allclose(lam[~linear], sp[~linear], rtol=0.05)
    assert np.all(lam[linear] > 1e3)


@pytest.mark.r
@pytest.mark.parametrize("case", list(FORMULAS))
def test_loglik_and_variance_equal_gamm4(reference, native, case):
    _, r = reference
    ref, res = r[case]["gamm4"], native[case]
    # gamm4's null-space columns are ours (orthonormal null-space basis), so even the
    # REML criterion, which depends on X's parametrisation, is comparable
    assert res.loglik > ref["loglik"] - LOGLIK_ABS
    assert abs(res.loglik - ref["loglik"]) < LOGLIK_ABS
    var = res.varcorr.loc[res.varcorr["var1"] == "(Intercept)", "vcov"].iloc[0]
    assert var == pytest.approx(ref["re_var"], rel=VAR_REL)


@pytest.mark.r
@pytest.mark.parametrize("case", ["sine", "by", "gamsim"])
def test_gaussian_equals_mgcv_gam(reference, native, case):
    _, r = reference
    ref, res = r[case]["mgcv"], native[case]
    assert res.edf_total == pytest.approx(ref["edf_total"], rel=EDF_REL)
    var = res.varcorr.loc[res.varcorr["var1"] == "(Intercept)", "vcov"].iloc[0]
    assert var == pytest.approx(ref["re_var"], rel=VAR_REL)
    assert list(res.smooths["term"]) == list(np.atleast_1d(ref["labels"]))


@pytest.mark.r
def test_predict_newdata_and_partial_effect_equal_mgcv(reference, native):
    data, r = reference
    ref, res = r["sine"]["mgcv"], native["sine"]
    nd = data["sine"].iloc[:7].copy()
    nd["x"] = nd["x"] * 0.9 + 0.05
    sd_y = float(np.std(data["sine"]["y"]))
    assert np.max(np.abs(res.predict(nd) - np.asarray(ref["pred_new"]))) < FIT_SD * sd_y
    pe = res.smooth_values("s(x)", data["sine"]["x"].to_numpy())
    assert np.max(np.abs(pe["fit"] - np.asarray(ref["terms_fit"]))) < FIT_SD * sd_y
    np.testing.assert_allclose(pe["se"], ref["terms_se"], rtol=0.01)


def test_smooths_table_summary_plot_and_record(local_fits):
    res = local_fits["by"]
    assert list(res.smooths.columns) == ["term", "bs", "k", "edf", "lambda", "sd"]
    assert list(res.smooths["term"]) == ["s(x):fl0", "s(x):fl1", "s(x):fl2"]
    assert list(res.fixef.index) == ["(Intercept)", "fl1", "fl2"]  # null spaces not in fixef
    assert set(res.ranef) == {"g"} and set(res.ngroups) == {"g"}
    text = res.summary()
    assert "Approximate significance of smooth terms" in text and "s(x):fl2" in text
    tests = res.smooth_tests()
    assert (tests["p-value"] < 1e-3).all()  # every level's smooth is clearly non-zero
    fig = res.plot_smooths()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 3
    rec = local_fits["sine"].to_record()
    assert rec["smooths"][0]["term"] == "s(x)" and len(rec["smooths"][0]["grid"]) == 50
    sims = local_fits["poisson"].simulate(3, seed=1)
    assert sims.shape == (500, 3) and (sims.to_numpy() >= 0).all()


def test_partial_effect_is_centred_and_predict_adds_it(local_fits):
    res = local_fits["sine"]
    x = res.design.smooth_data["x"].to_numpy()
    pe = res.smooth_values("s(x)", x)
    assert abs(pe["fit"].mean()) < 1e-10  # mgcv's sum-to-zero constraint
    # population-level prediction = intercept + smooth (the random intercept left out)
    np.testing.assert_allclose(res.predict(re=False), res.fixef["(Intercept)"] + pe["fit"],
                               atol=1e-10)


@pytest.mark.parametrize(("formula", "error", "pattern"), [
    ("y ~ s(x, k = 500) + (1 | g)", DataError, r"x"),
    ("y ~ s(g) + (1 | g)", DataError, r"'g'"),
    ("y ~ s(x, by = nope) + (1 | g)", DataError, r"'nope'"),
    ('y ~ s(x, bs = "cc") + (1 | g)', FormulaError, r"tp.*cr.*ps"),
    ("y ~ te(x, z) + (1 | g)", FormulaError, r"s\(\)"),
])
def test_bad_smooths_raise_named_errors(formula, error, pattern):
    d = _sine()
    d["x"] = np.round(d["x"], 2)  # at most 101 unique values
    d["z"] = d["x"] ** 2
    with pytest.raises(error, match=pattern):
        glmm_fit(formula, d)
