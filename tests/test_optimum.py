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
    from glmmbench.optimize import newton_polish

    # f is flat to rounding near its minimum at 1: the step from 1 + 1e-7 barely
    # changes f but puts x on the root of the gradient
    def f(x):
        return float(1e3 + 1e-10 * (x[0] - 1.0) ** 2)

    x = np.array([1.0 + 1e-5])
    grad, hess = np.array([2e-10 * 1e-5]), np.array([[2e-10]])
    x_new, _, g_new, moved = newton_polish(f, x, f(x), grad, hess, np.array([-np.inf]))
    assert moved and abs(x_new[0] - 1.0) < 1e-9 and abs(g_new[0]) <= abs(grad[0])
