"""``nagq = 0``: lme4's fast estimator (MixedModels.jl's ``fast = true``).

Only the covariance parameters are optimised, on the Laplace deviance with beta
updated jointly with the modes in PIRLS; standard errors come from ``R_X``. Live
parity with ``glmer(..., nAGQ = 0)``, run with ``tolPwrss = 1e-12``: at its default
(1e-7) lme4's PIRLS stops early and its log-likelihood is up to 3e-3 low at the same
theta (``lme4-laplace-pirls-tolerance``; measured on VerbAgg). Log-likelihood 1e-5,
fixed effects 2e-3 relative (1e-4 absolute), SEs 1 %, theta 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest

from glmmbench import datasets
from glmmbench import fit as glmm_fit
from glmmbench.errors import GLMMError

from .rscript import run_r

CASES = {
    "cbpp": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    "verbagg": ("VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                "binomial"),
    "grouseticks": ("grouseticks", "TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", "poisson"),
}


@pytest.fixture(scope="module")
def reference():
    code = ["fits <- list()"]
    frames = {}
    for name, (ds, formula, family) in CASES.items():
        frames[name] = datasets.load(ds)
        code.append(
            f"m <- glmer({formula}, data = {name}, family = {family}, nAGQ = 0, "
            "control = glmerControl(tolPwrss = 1e-12))\n"
            f"fits${name} <- list(loglik = as.numeric(logLik(m)), fixef = as.list(fixef(m)), "
            f"se = as.list(setNames(sqrt(diag(as.matrix(vcov(m)))), names(fixef(m)))), "
            f"theta = I(unname(getME(m, 'theta'))))")
    code.append("fits")
    return run_r("\n".join(code), **frames)


@pytest.mark.r
@pytest.mark.parametrize("case", list(CASES))
def test_nagq0_equals_glmer_nagq0(reference, case):
    ds, formula, family = CASES[case]
    res = glmm_fit(formula, datasets.load(ds), family, nagq=0)
    ref = reference[case]
    assert res.converged and res.method == "Laplace(nAGQ=0)"
    assert abs(res.loglik - ref["loglik"]) < 1e-5
    fixef = np.array([ref["fixef"][k] for k in res.fixef.index])
    np.testing.assert_allclose(res.fixef, fixef, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(res.se, [ref["se"][k] for k in res.fixef.index], rtol=0.01)
    np.testing.assert_allclose(res.theta, np.atleast_1d(ref["theta"]), atol=1e-3)


def test_nagq0_is_the_stage1_optimum_and_below_laplace():
    """beta is PIRLS's at the optimal theta, and the loglik is the Laplace deviance
    there; the Laplace fit (beta free) is at least as good and close by."""
    from glmmbench.engine.deviance import make_devfun
    from glmmbench.families import make_response as _response
    from glmmbench.families.glm import get_family
    from glmmbench.fit import PIRLS_TOL_DERIVS
    from glmmbench.model.design import build_design

    d = datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    fast, full = glmm_fit(f, d, "binomial", nagq=0), glmm_fit(f, d, "binomial")
    assert full.loglik >= fast.loglik - 1e-8
    assert full.loglik - fast.loglik < 0.1
    design = build_design(f, d, "binomial")
    devfun = make_devfun(design, _response(design, get_family("binomial")))
    devfun.tol = PIRLS_TOL_DERIVS
    value = devfun.stage1(fast.theta)
    np.testing.assert_allclose(devfun.last.beta, fast.fixef, rtol=1e-8, atol=1e-10)
    assert -value / 2 == pytest.approx(fast.loglik, abs=1e-9)


@pytest.mark.parametrize(("formula", "family", "pattern"), [
    ("Reaction ~ Days + (Days | Subject)", "gaussian", "generalized models"),
    ("rating ~ temp + (1 | judge)", "ordinal", "thresholds"),
])
def test_nagq0_refused_where_it_does_not_apply(formula, family, pattern):
    ds = "sleepstudy" if family == "gaussian" else "wine"
    with pytest.raises(GLMMError, match=pattern):
        glmm_fit(formula, datasets.load(ds), family, nagq=0)
