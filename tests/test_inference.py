"""Likelihood-ratio tests (glmmbench.anova) against R's anova on the same pairs:
lme4 (sleepstudy, REML refitted by ML; cbpp), glmmTMB (a negative binomial pair)
and ordinal (a clmm pair); Chisq and logLik within 1e-3, AIC, BIC and deviance within
2e-3, p-values within 0.1 %, npar and Df equal, lme4's column names. Satterthwaite's t
tests against lmerTest; GLMM Wald z tests by their definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import glmmbench as gb
from glmmbench import datasets
from glmmbench.errors import GLMMError
from glmmbench.inference.tables import RefitWarning

from .rscript import run_r

CBPP = "cbind(incidence, size - incidence) ~ {} + (1 | herd)"


def _check(table, ref):
    row = table.iloc[1]
    assert row["Chisq"] == pytest.approx(ref["chisq"], abs=1e-3)
    assert row["Df"] == ref["df"]
    assert row["Pr(>Chisq)"] == pytest.approx(ref["p"], rel=1e-3)
    np.testing.assert_allclose(table["logLik"], ref["loglik"], atol=1e-3)
    np.testing.assert_array_equal(table["npar"], ref["npar"])
    for col, key in (("AIC", "aic"), ("BIC", "bic"), ("deviance", "deviance")):
        np.testing.assert_allclose(table[col], ref[key], atol=2e-3, err_msg=col)
    assert list(table.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df",
                                   "Pr(>Chisq)"]
    if "columns" in ref:  # lme4's anova
        assert list(table.columns) == ref["columns"]


@pytest.mark.r
def test_sleepstudy_reml_fits_are_refitted_by_ml():
    d = datasets.load("sleepstudy")
    m0 = gb.fit("Reaction ~ 1 + (Days | Subject)", d)
    m1 = gb.fit("Reaction ~ Days + (Days | Subject)", d)
    with pytest.warns(RefitWarning, match="refitting model"):
        table = gb.anova(m1, m0)  # any order: sorted by npar
    assert list(table.index) == [m0.formula, m1.formula]
    ref = run_r("""
        m0 <- lmer(Reaction ~ 1 + (Days | Subject), d)
        m1 <- lmer(Reaction ~ Days + (Days | Subject), d)
        a <- anova(m0, m1)
        list(chisq = a$Chisq[2], df = a$Df[2], p = a[["Pr(>Chisq)"]][2],
             loglik = a$logLik, npar = a$npar, aic = a$AIC, bic = a$BIC,
             deviance = a$deviance, columns = names(a))""", d=d)
    _check(table, ref)
    assert m1.reml  # the caller's fits are left as they were


@pytest.mark.r
def test_cbpp_with_and_without_period():
    d = datasets.load("cbpp")
    table = gb.anova(gb.fit(CBPP.format("period"), d, "binomial"),
                     gb.fit(CBPP.format("1"), d, "binomial"))
    ref = run_r(f"""
        m0 <- glmer({CBPP.format("1")}, d, binomial)
        m1 <- glmer({CBPP.format("period")}, d, binomial)
        a <- anova(m0, m1)
        list(chisq = a$Chisq[2], df = a$Df[2], p = a[["Pr(>Chisq)"]][2],
             loglik = a$logLik, npar = a$npar, aic = a$AIC, bic = a$BIC,
             deviance = a$deviance, columns = names(a))""", d=d)
    _check(table, ref)


@pytest.mark.r
def test_negative_binomial_pair_against_glmmtmb():
    d = datasets.load("grouseticks")
    f0, f1 = "TICKS ~ 1 + (1 | LOCATION)", "TICKS ~ YEAR + (1 | LOCATION)"
    table = gb.anova(gb.fit(f0, d, "negative_binomial"), gb.fit(f1, d, "negative_binomial"))
    ref = run_r(f"""
        suppressPackageStartupMessages(library(glmmTMB))
        m0 <- glmmTMB({f0}, d, family = nbinom2)
        m1 <- glmmTMB({f1}, d, family = nbinom2)
        a <- anova(m0, m1)
        list(chisq = a$Chisq[2], df = a[["Chi Df"]][2], p = a[["Pr(>Chisq)"]][2],
             loglik = a$logLik, npar = a$Df, aic = a$AIC, bic = a$BIC,
             deviance = a$deviance)""", d=d)
    _check(table, ref)


@pytest.mark.r
def test_ordinal_pair_against_clmm():
    d = datasets.load("wine")
    f0, f1 = "rating ~ temp + (1 | judge)", "rating ~ temp + contact + (1 | judge)"
    table = gb.anova(gb.fit(f0, d, "ordinal"), gb.fit(f1, d, "ordinal"))
    ref = run_r(f"""
        suppressPackageStartupMessages(library(ordinal))
        m0 <- clmm({f0}, data = d)
        m1 <- clmm({f1}, data = d)
        # anova.clmm re-evaluates the calls (fails in this scope): its test by hand
        l0 <- logLik(m0); l1 <- logLik(m1)
        chisq <- 2 * (as.numeric(l1) - as.numeric(l0))
        df <- attr(l1, "df") - attr(l0, "df")
        list(chisq = chisq, df = df, p = pchisq(chisq, df, lower.tail = FALSE),
             loglik = c(as.numeric(l0), as.numeric(l1)),
             npar = c(attr(l0, "df"), attr(l1, "df")), aic = c(AIC(m0), AIC(m1)),
             bic = c(BIC(m0), BIC(m1)), deviance = -2 * c(as.numeric(l0), as.numeric(l1)))""",
                d=d)
    _check(table, ref)


def test_bad_inputs_get_clear_errors():
    d = datasets.load("sleepstudy")
    ml = dict(reml=False)
    m1 = gb.fit("Reaction ~ Days + (1 | Subject)", d, **ml)
    with pytest.raises(GLMMError, match="at least two"):
        gb.anova(m1)
    with pytest.raises(GLMMError, match="argument 2 is a str"):
        gb.anova(m1, "m0")
    other = gb.fit("Reaction ~ Days + (1 | Subject)", d.iloc[:170], **ml)
    with pytest.raises(GLMMError, match="not fitted to the same data"):
        gb.anova(m1, other)
    d = d.assign(half=(d["Days"] > 4).astype(float))
    a = gb.fit("Reaction ~ Days + (1 | Subject)", d, **ml)
    b = gb.fit("Reaction ~ half + (Days | Subject)", d, **ml)
    with pytest.raises(GLMMError, match="not nested.*fixed effect"):
        gb.anova(a, b)
    c = gb.fit("Reaction ~ Days + half + (0 + Days | Subject)", d, **ml)
    with pytest.raises(GLMMError, match=r"not nested: the random term \(\(Intercept\) \| "
                                        r"Subject\)"):
        gb.anova(a, c)


def _lmertest(formula: str, data, reml: bool) -> dict:
    return run_r(f"""
        suppressPackageStartupMessages(library(lmerTest))
        m <- lmerTest::lmer({formula}, d, REML = {"TRUE" if reml else "FALSE"})
        co <- summary(m, ddf = "Satterthwaite")$coefficients
        list(df = unname(co[, "df"]), p = unname(co[, "Pr(>|t|)"]),
             t = unname(co[, "t value"]))""", d=data)


def _unbalanced():
    import simulate

    return simulate.generate("gaussian_unbalanced", np.random.default_rng(4))


@pytest.mark.r
@pytest.mark.parametrize("case, reml", [("sleepstudy", True), ("sleepstudy", False),
                                        ("penicillin", True), ("unbalanced", True)])
def test_satterthwaite_equals_lmertest(case, reml):
    if case == "sleepstudy":
        formula, data = "Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy")
    elif case == "penicillin":
        formula, data = "diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("Penicillin")
    else:
        sim = _unbalanced()
        formula, data = sim.formula, sim.data
    table = gb.fit(formula, data, reml=reml).coef_table(ddf="Satterthwaite")
    ref = _lmertest(formula, data, reml)
    # measured (lmerTest 3.1-3): df 1.0e-4 (Penicillin; sleepstudy 6.5e-5 ML, 1.5e-5
    # REML; the unbalanced design 2e-6), t 2.7e-5, p 2.4e-3 (sleepstudy ML): where the
    # two optimizers stop (at lme4's theta Penicillin's df is 4e-6 off)
    np.testing.assert_allclose(table["df"], ref["df"], rtol=2e-4)
    np.testing.assert_allclose(table["t value"], ref["t"], rtol=5e-5)
    np.testing.assert_allclose(table["Pr(>|t|)"], ref["p"], rtol=5e-3)


def test_coef_table_columns_and_bad_ddf():
    d = datasets.load("sleepstudy")
    m = gb.fit("Reaction ~ Days + (Days | Subject)", d)
    assert list(m.coef_table().columns) == ["Estimate", "Std. Error", "t value"]
    with pytest.raises(GLMMError, match="ddf must be None or one of Satterthwaite, "
                                        "Kenward-Roger, not 'Kenward'"):
        m.coef_table(ddf="Kenward")
    c = datasets.load("cbpp")
    g = gb.fit(CBPP.format("period"), c, "binomial")
    wald = g.coef_table()
    assert list(wald.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    # Wald z tests by their definition, on the fit's (parity-checked) SEs
    np.testing.assert_allclose(wald["Estimate"], g.fixef, rtol=1e-15)
    np.testing.assert_allclose(wald["Std. Error"], g.se, rtol=1e-15)
    np.testing.assert_allclose(wald["z value"], g.fixef / g.se, rtol=1e-14)
    np.testing.assert_allclose(wald["Pr(>|z|)"], 2 * stats.norm.sf(np.abs(g.fixef / g.se)),
                               rtol=1e-12)
    with pytest.raises(GLMMError, match="applies to linear mixed models"):
        g.coef_table(ddf="Satterthwaite")
