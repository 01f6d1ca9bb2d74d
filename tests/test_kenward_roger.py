"""Kenward–Roger df and adjusted covariance (glmmbench.inference.kenward_roger) against lmerTest's
``summary(m, ddf = "Kenward-Roger")`` and pbkrtest's ``vcovAdj``: sleepstudy with
random slopes (all of it, and a random half of its rows), Penicillin (crossed), an
unbalanced simulated design.

Each engine at its own optimum (R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2), largest
relative differences measured over the four cases: df 5.5e-6, SE 2.7e-5, t 2.7e-5,
p-value 2.1e-4 (Penicillin's 3.6e-7), vcovAdj 7.4e-5 (sleepstudy_half). They come from
where the optimizers stop (theta differs by up to 1e-4 on Penicillin, REML log-likelihoods
by at most 2e-8, the native one the higher): at lme4's own theta and sigma the df and
vcovAdj equal pbkrtest's to 1e-8 (``test_at_r_optimum``). The tolerances are about twice
the measured maxima."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import glmmbench as gb
from glmmbench import datasets
from glmmbench.errors import GLMMError
from glmmbench.inference.kenward_roger import kenward_roger
from glmmbench.inference.tables import satterthwaite_df

from .rscript import run_r

RTOL_DF = 1e-5  # measured 5.5e-6
RTOL_SE = 5e-5  # measured 2.7e-5
RTOL_T = 5e-5  # measured 2.7e-5
RTOL_P = 5e-4  # measured 2.1e-4
RTOL_VCOV = 1.5e-4  # measured 7.4e-5
RTOL_AT_R_OPTIMUM = 1e-8  # same theta and sigma as R: only rounding differs


def _case(name: str):
    if name.startswith("sleepstudy"):
        d = datasets.load("sleepstudy")
        if name == "sleepstudy_half":  # unbalanced: 2 to 7 days per subject
            rows = np.sort(np.random.default_rng(3).choice(len(d), len(d) // 2, replace=False))
            d = d.iloc[rows].reset_index(drop=True)
        return "Reaction ~ Days + (Days | Subject)", d
    if name == "penicillin":
        return "diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("Penicillin")
    import simulate

    sim = simulate.generate("gaussian_unbalanced", np.random.default_rng(4))
    return sim.formula, sim.data


def _lmertest_kr(formula: str, data) -> dict:
    return run_r(f"""
        suppressPackageStartupMessages(library(lmerTest))
        m <- lmerTest::lmer({formula}, d)
        co <- summary(m, ddf = "Kenward-Roger")$coefficients
        list(df = unname(co[, "df"]), se = unname(co[, "Std. Error"]),
             t = unname(co[, "t value"]), p = unname(co[, "Pr(>|t|)"]),
             vcov_adj = I(as.vector(as.matrix(pbkrtest::vcovAdj(m)))),
             se_lme4 = unname(sqrt(diag(as.matrix(vcov(m))))))""", d=data)


@pytest.mark.r
@pytest.mark.parametrize("case", ["sleepstudy", "sleepstudy_half", "penicillin",
                                  "unbalanced"])
def test_kenward_roger_equals_lmertest(case):
    formula, data = _case(case)
    res = gb.fit(formula, data)
    table = res.coef_table(ddf="Kenward-Roger")
    ref = _lmertest_kr(formula, data)
    assert list(table.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    np.testing.assert_allclose(table["df"], ref["df"], rtol=RTOL_DF)
    np.testing.assert_allclose(table["Std. Error"], ref["se"], rtol=RTOL_SE)
    np.testing.assert_allclose(table["t value"], ref["t"], rtol=RTOL_T)
    np.testing.assert_allclose(table["Pr(>|t|)"], ref["p"], rtol=RTOL_P)
    p = len(res.fixef)
    _, vcov_adj = kenward_roger(res)
    np.testing.assert_allclose(vcov_adj, np.reshape(ref["vcov_adj"], (p, p), order="F"),
                               rtol=RTOL_VCOV)
    if case == "sleepstudy_half":
        # a discriminating case: the unadjusted SEs and Satterthwaite's df are far
        # outside the tolerances (measured: SE +2.6 % and +1.2 %, df -11 % and -16 %)
        se_gap = np.asarray(ref["se"]) / np.asarray(ref["se_lme4"]) - 1
        df_gap = np.asarray(ref["df"]) / satterthwaite_df(res) - 1
        assert np.min(np.abs(se_gap)) > 10 * RTOL_SE
        assert np.min(np.abs(df_gap)) > 10 * RTOL_DF


@pytest.mark.r
@pytest.mark.parametrize("case", ["covariances", "singular_information"])
def test_at_r_optimum(case):
    """At lme4's own theta and sigma the df and vcovAdj equal pbkrtest's to rounding.
    ``covariances``: a 3 x 3 random-effect covariance (three covariance ``G_r``).
    ``singular_information``: two random intercepts on copies of one factor, whose
    ``G_r`` coincide, so the information is singular and both use its pseudo-inverse."""
    if case == "covariances":
        data = _case("sleepstudy_half")[1].assign(D2=lambda x: (x["Days"] - 4.5) ** 2 / 10)
        formula = "Reaction ~ Days + D2 + (Days + D2 | Subject)"
    else:
        data = datasets.load("Penicillin").assign(plate2=lambda x: x["plate"])
        formula = "diameter ~ 1 + (1 | plate) + (1 | plate2) + (1 | sample)"
    res = gb.fit(formula, data)
    ref = run_r(f"""
        suppressPackageStartupMessages(library(lmerTest))
        m <- lmerTest::lmer({formula}, d)
        V <- pbkrtest::vcovAdj(m)
        list(theta = I(unname(getME(m, "theta"))), sigma = sigma(m),
             df = I(unname(summary(m, ddf = "Kenward-Roger")$coefficients[, "df"])),
             vcov_adj = I(as.vector(as.matrix(V))), singular = attr(V, "condi") <= 1e-10)
        """, d=data)
    assert ref["singular"] == (case == "singular_information")
    at_r = replace(res, theta=np.asarray(ref["theta"]), sigma=ref["sigma"])
    df, vcov_adj = kenward_roger(at_r)
    p = len(res.fixef)
    np.testing.assert_allclose(df, ref["df"], rtol=RTOL_AT_R_OPTIMUM)
    np.testing.assert_allclose(vcov_adj, np.reshape(ref["vcov_adj"], (p, p), order="F"),
                               rtol=RTOL_AT_R_OPTIMUM)


def test_balanced_design_needs_no_adjustment():
    """sleepstudy is balanced: ``Phi_A = Phi`` (as pbkrtest's), so ``vcov_adj`` is the
    fit's REML vcov, which also checks ``Phi = (X' Sigma^-1 X)^-1`` from the Woodbury
    products; df = 17, subjects - 1."""
    res = gb.fit("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))
    df, vcov_adj = kenward_roger(res)
    np.testing.assert_allclose(vcov_adj, res.vcov.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(df, [17.0, 17.0], rtol=1e-6)  # 18 subjects - 1


def test_refuses_glmm_ml_and_weights():
    cbpp = datasets.load("cbpp")
    g = gb.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    with pytest.raises(GLMMError, match="for linear mixed models, not a binomial"):
        kenward_roger(g)
    with pytest.raises(GLMMError, match="applies to linear mixed models"):
        g.coef_table(ddf="Kenward-Roger")
    d = datasets.load("sleepstudy")
    ml = gb.fit("Reaction ~ Days + (Days | Subject)", d, reml=False)
    with pytest.raises(GLMMError, match="only available for REML model fits"):
        ml.coef_table(ddf="Kenward-Roger")
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(d))
    wfit = gb.fit("Reaction ~ Days + (Days | Subject)", d, weights=w)
    with pytest.raises(GLMMError, match="prior weights"):
        kenward_roger(wfit)
