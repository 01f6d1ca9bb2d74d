"""A sharp optimum: the Newton polish after BOBYQA keeps a step that leaves the
deviance flat to rounding but shrinks the gradient, so the estimates sit at the
root of the gradient, as MixedModels.jl's (its tests assert Dyestuff's ML vcov to
1e-7) and lme4's with tight optimizer tolerances."""

from __future__ import annotations

import numpy as np
import pytest

from glmmbench import datasets
from glmmbench import fit as glmm_fit

from .rscript import run_r


@pytest.mark.r
def test_dyestuff_ml_is_sharp():
    d = datasets.load("Dyestuff")
    res = glmm_fit("Yield ~ 1 + (1 | Batch)", d, reml=False)
    ref = run_r("m <- lmer(Yield ~ 1 + (1 | Batch), d, REML = FALSE, control = lmerControl("
                "optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-16, ftol_rel = 1e-16)))\n"
                "list(theta = getME(m, 'theta')[[1]], vcov = as.matrix(vcov(m))[1, 1], "
                "loglik = as.numeric(logLik(m)))", d=d)
    assert res.theta[0] == pytest.approx(ref["theta"], rel=1e-7)
    assert res.vcov.iloc[0, 0] == pytest.approx(ref["vcov"], rel=1e-7)
    assert res.loglik == pytest.approx(ref["loglik"], abs=1e-9)
    assert abs(res.optinfo["derivs"]["gradient"][0]) < 1e-6


def test_polish_keeps_a_flat_step_that_shrinks_the_gradient():
    from glmmbench.engine.optimize import newton_polish

    # f is flat to rounding near its minimum at 1: the step from 1 + 1e-7 barely
    # changes f but puts x on the root of the gradient
    def f(x):
        return float(1e3 + 1e-10 * (x[0] - 1.0) ** 2)

    x = np.array([1.0 + 1e-5])
    grad, hess = np.array([2e-10 * 1e-5]), np.array([[2e-10]])
    x_new, _, g_new, moved = newton_polish(f, x, f(x), grad, hess, np.array([-np.inf]))
    assert moved and abs(x_new[0] - 1.0) < 1e-9 and abs(g_new[0]) <= abs(grad[0])


LMM_CASES = [
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    ("y ~ x + (1 | g) + (1 | h)", "gaussian_crossed"),
    ("y ~ s(x) + (1 | g)", "gaussian_smooth"),
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    ("y ~ x + (1 + x | g) + (1 | h)", "gaussian_crossed"),
]


def _lmm_data(source: str):
    import simulate

    if source in ("Penicillin", "sleepstudy"):
        return datasets.load(source)
    return simulate.generate(source, np.random.default_rng(1)).data


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("sparse21", [False, True])
@pytest.mark.parametrize(("formula", "source"), LMM_CASES)
def test_lmm_gradient_equals_finite_differences(formula, source, reml, sparse21, monkeypatch):
    from glmmbench.engine import linalg
    from glmmbench.engine.deviance import make_devfun
    from glmmbench.model.design import build_design

    monkeypatch.setattr(linalg, "SPARSE_L21", 0 if sparse21 else 10**12)
    devfun = make_devfun(build_design(formula, _lmm_data(source)), None, reml=reml)
    # positive diagonals, signed off-diagonals (a vector term's theta)
    theta = np.where(np.isfinite(devfun.lower), 0.4 + 0.3 * np.arange(devfun.lower.size),
                     -0.2)
    h = 1e-6
    fd = np.array([(devfun(theta + h * e) - devfun(theta - h * e)) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(devfun.gradient(theta), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("formula", "source"), LMM_CASES)
def test_gradient_search_reaches_the_bobyqa_optimum(formula, source):
    """L-BFGS-B with the analytic gradient and BOBYQA without it end at the same
    optimum after the polish."""
    data = _lmm_data(source)
    fast = glmm_fit(formula, data, control={"lmm_gradient_effects": 1})
    slow = glmm_fit(formula, data, control={"lmm_gradient_effects": 10**9})
    assert fast.optinfo["stages"][0]["optimizer"] == "L-BFGS-B"
    assert slow.optinfo["stages"][0]["optimizer"] == "LN_BOBYQA"
    assert fast.loglik == pytest.approx(slow.loglik, abs=1e-7)
    np.testing.assert_allclose(fast.theta, slow.theta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.fixef, slow.fixef, rtol=1e-6, atol=1e-8)
