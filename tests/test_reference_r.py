"""reference_r against plain R calls made in this same test run (live R).

Each record from `fit_reference` (worker process, data sent from pandas) is
compared with the same model fitted here by rpy2 on R's own copy of the data.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

import reference_r
from glmmbench import datasets
from reference_r import RError, RTimeout, RWorkerDied, fit_reference
from reference_r.worker import request, worker_pids

# Same R, same data: parity is near machine precision; these leave room for
# optimizer paths that differ in the last digits.
LOGLIK_RTOL = 1e-6
FIXEF_RTOL = 1e-5
SE_RTOL = 1e-4
VC_RTOL = 1e-4

SCHEMA = {
    "engine", "engine_version", "r_version", "model", "nobs", "ngroups", "fixef", "se",
    "thresholds", "varcorr", "theta", "sigma", "loglik", "deviance", "aic", "bic", "df",
    "converged", "messages", "time_s", "smooths", "fixef_disp", "se_disp",
    "family_params",
}  # fmt: skip

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def r():
    """rpy2 in the test process, with the reference packages loaded."""
    import rpy2.robjects as ro

    ro.r(
        "suppressPackageStartupMessages({library(ordinal); library(glmmTMB); "
        "library(mgcv); library(gamm4); library(lme4)})"
    )
    yield ro


@pytest.fixture(scope="module")
def sim():
    """A small GAMM data set: y = sin(2 pi x) + group effect + noise."""
    rng = np.random.default_rng(20240601)
    n, k = 240, 12
    x = rng.uniform(size=n)
    g = rng.integers(0, k, size=n)
    y = np.sin(2 * np.pi * x) + rng.normal(scale=0.8, size=k)[g] + rng.normal(scale=0.3, size=n)
    return pd.DataFrame({"x": x, "g": pd.Categorical([f"g{v:02d}" for v in g]), "y": y})


@pytest.fixture(scope="module")
def nbsim():
    """Negative binomial counts (size 2) with a random intercept, 20 groups."""
    rng = np.random.default_rng(7)
    n, k = 300, 20
    x = rng.normal(size=n)
    g = rng.integers(0, k, size=n)
    mu = np.exp(0.5 + 0.4 * x + rng.normal(scale=0.5, size=k)[g])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{v:02d}" for v in g])})


@pytest.fixture(scope="module")
def nb1sim():
    """NB1 counts (var = mu (1 + phi), phi 1.5) with a random intercept, 25 groups."""
    rng = np.random.default_rng(5)
    n, k, phi = 400, 25, 1.5
    x = rng.normal(size=n)
    g = rng.integers(0, k, size=n)
    mu = np.exp(1.0 + 0.4 * x + rng.normal(scale=0.5, size=k)[g])
    y = rng.negative_binomial(mu / phi, 1 / (1 + phi))  # size mu / phi
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{v:02d}" for v in g])})


@pytest.fixture(scope="module")
def gammasim():
    """Gamma responses (shape 3, CV 0.577), random intercept, 30 groups: ``y_log``,
    ``y_inverse``, ``y_identity`` drawn with the mean on the named link's scale."""
    rng = np.random.default_rng(11)
    n, k, shape = 600, 30, 3.0
    x = rng.uniform(-1, 1, size=n)
    g = rng.integers(0, k, size=n)
    b = rng.normal(size=k)[g]
    means = {
        "log": np.exp(1.0 + 0.5 * x + 0.5 * b),
        "inverse": 1 / (0.25 + 0.05 * x + 0.03 * b),
        "identity": 4.0 + 0.5 * x + 0.5 * b,
    }
    cols = {f"y_{link}": rng.gamma(shape, mu / shape) for link, mu in means.items()}
    return pd.DataFrame({**cols, "x": x, "g": pd.Categorical([f"g{v:02d}" for v in g])})


def put(r, name, df):
    """Hand ``df`` to the test process's R (independently of reference_r)."""
    cols = {}
    for c in df.columns:
        s = df[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cols[c] = r.r["factor"](
                r.StrVector([str(v) for v in s]), levels=r.StrVector(list(s.cat.categories))
            )
        elif pd.api.types.is_integer_dtype(s.dtype):
            cols[c] = r.IntVector([int(v) for v in s])
        else:
            cols[c] = r.FloatVector([float(v) for v in s])
    r.globalenv[name] = r.DataFrame(cols)


def num(r, expr) -> float:
    return float(r.r(expr)[0])


def named(r, expr) -> dict[str, float]:
    v = r.r(expr)
    return {str(k): float(x) for k, x in zip(v.names, v, strict=True)}


def close(a, b, rtol, atol=0.0) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def assert_named_close(rec: dict, ref: dict, rtol: float):
    assert list(rec) == list(ref)
    for k in ref:
        assert close(rec[k], ref[k], rtol, 1e-10), (k, rec[k], ref[k])


def assert_record_basics(rec):
    assert set(rec) == SCHEMA
    json.dumps(rec, allow_nan=False)
    assert rec["r_version"] == "4.2.2"
    assert rec["time_s"] >= 0
    assert rec["converged"] is True


# ------------------------------------------------------------------------------ lme4


@pytest.mark.r
@pytest.mark.parametrize("nagq", [1, 25])
def test_glmer_cbpp(r, nagq):
    rec = fit_reference("lme4", CBPP, datasets.load("cbpp"), family="binomial", nagq=nagq)
    assert_record_basics(rec)
    r.r(f"m <- glmer({CBPP}, cbpp, binomial, nAGQ = {nagq})")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert close(rec["deviance"], num(r, "deviance(m)"), LOGLIK_RTOL)
    assert close(rec["aic"], num(r, "AIC(m)"), LOGLIK_RTOL)
    assert_named_close(rec["fixef"], named(r, "fixef(m)"), FIXEF_RTOL)
    se = dict(zip(rec["fixef"], np.sqrt(np.diag(np.array(r.r("as.matrix(vcov(m))")))), strict=True))
    assert_named_close(rec["se"], se, SE_RTOL)
    assert rec["theta"] == pytest.approx(list(r.r("getME(m, 'theta')")), rel=VC_RTOL)
    assert rec["varcorr"][0]["grp"] == "herd" and rec["varcorr"][0]["var2"] is None
    assert rec["ngroups"] == {"herd": 15} and rec["nobs"] == 56
    assert rec["model"]["method"] == ("Laplace" if nagq == 1 else "AGQ")


@pytest.mark.r
def test_lme4_agq_loglik_shift_is_as_documented(r):
    """The known discrepancy: logLik jumps by a constant at nAGQ > 1, deviance not."""
    from reference_r.known_discrepancies import KNOWN_DISCREPANCIES

    entry = [d for d in KNOWN_DISCREPANCIES if d["id"] == "lme4-agq-binomial-loglik"][0]
    d = datasets.load("cbpp")
    lap = fit_reference("lme4", CBPP, d, family="binomial")
    agq = fit_reference("lme4", CBPP, d, family="binomial", nagq=25)
    assert agq["loglik"] - lap["loglik"] == pytest.approx(
        entry["measured"]["loglik_shift"], abs=0.01
    )
    assert abs(agq["deviance"] - lap["deviance"]) < 0.2


@pytest.mark.r
@pytest.mark.parametrize("reml", [True, False])
def test_lmer_sleepstudy(r, reml):
    rec = fit_reference("lme4", SLEEP, datasets.load("sleepstudy"), reml=reml)
    assert_record_basics(rec)
    r.r(f"m <- lmer({SLEEP}, sleepstudy, REML = {str(reml).upper()})")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    crit = "REMLcrit(m)" if reml else "deviance(m)"
    assert close(rec["deviance"], num(r, crit), LOGLIK_RTOL)
    assert close(rec["sigma"], num(r, "sigma(m)"), VC_RTOL)
    assert_named_close(rec["fixef"], named(r, "fixef(m)"), FIXEF_RTOL)
    vc = r.r("as.data.frame(VarCorr(m))")
    assert [row["grp"] for row in rec["varcorr"]] == list(vc.rx2("grp"))
    assert [row["var2"] for row in rec["varcorr"]] == [None, None, "Days", None]
    assert [row["sdcor"] for row in rec["varcorr"]] == pytest.approx(
        list(vc.rx2("sdcor")), rel=VC_RTOL
    )
    assert rec["model"] == {
        "formula": SLEEP, "family": "gaussian", "link": "identity",
        "method": "REML" if reml else "ML", "nagq": 1, "reml": reml,
    }  # fmt: skip


@pytest.mark.r
def test_glmer_nb(r, nbsim):
    rec = fit_reference("lme4", "y ~ x + (1 | g)", nbsim, family="negative_binomial")
    assert_record_basics(rec)
    put(r, "nbsim", nbsim)
    r.r("m <- glmer.nb(y ~ x + (1 | g), nbsim)")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert close(rec["sigma"], num(r, "getME(m, 'glmer.nb.theta')"), VC_RTOL)
    assert_named_close(rec["fixef"], named(r, "fixef(m)"), FIXEF_RTOL)


@pytest.mark.r
def test_nbinom2_alias_is_negative_binomial(nbsim):
    a = fit_reference("lme4", "y ~ x + (1 | g)", nbsim, family="nbinom2")
    b = fit_reference("lme4", "y ~ x + (1 | g)", nbsim, family="negative_binomial")
    assert a["model"] == b["model"] and a["model"]["family"] == "negative_binomial"
    assert a["loglik"] == b["loglik"] and a["sigma"] == b["sigma"]


@pytest.mark.r
@pytest.mark.parametrize("nagq", [1, 5])
def test_glmer_gamma(r, gammasim, nagq):
    f = "y_log ~ x + (1 | g)"
    rec = fit_reference("lme4", f, gammasim, family="Gamma", link="log", nagq=nagq)
    assert_record_basics(rec)
    put(r, "gsim", gammasim)
    r.r(f"m <- glmer({f}, gsim, Gamma(link = 'log'), nAGQ = {nagq})")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert close(rec["deviance"], num(r, "deviance(m)"), LOGLIK_RTOL)
    assert rec["df"] == 4  # two fixed effects, one sd, the dispersion
    assert_named_close(rec["fixef"], named(r, "fixef(m)"), FIXEF_RTOL)
    assert close(rec["sigma"], num(r, "sigma(m)"), VC_RTOL)
    # sigma(glmer Gamma) = sqrt((Pearson X^2 + |u|^2) / n)  (sigma-meaning)
    moment = "sqrt((sum((gsim$y_log - fitted(m))^2 / fitted(m)^2) + sum(getME(m, 'u')^2)) / 600)"
    assert close(rec["sigma"], num(r, moment), 1e-8)
    # R's VarCorr kept: sd = theta * sigma(m) and a Residual row (lme4-gamma-estimates)
    assert rec["theta"] == pytest.approx([num(r, "getME(m, 'theta')")], rel=VC_RTOL)
    vc = r.r("as.data.frame(VarCorr(m))")
    assert [row["grp"] for row in rec["varcorr"]] == list(vc.rx2("grp")) == ["g", "Residual"]
    sds = [row["sdcor"] for row in rec["varcorr"]]
    assert sds == pytest.approx(list(vc.rx2("sdcor")), rel=VC_RTOL)
    assert sds == pytest.approx([rec["theta"][0] * rec["sigma"], rec["sigma"]], rel=1e-10)


@pytest.mark.r
def test_glmer_gamma_loglik_is_the_documented_hybrid(r, gammasim):
    """lme4-gamma-loglik-hybrid: -2 logLik = Gamma()$aic at dispersion dev/n (+2)
    + |u|^2 + log|L|^2, with log|L|^2 from weights that leave phi out (all 1 for
    the log link)."""
    f = "y_log ~ x + (1 | g)"
    rec = fit_reference("lme4", f, gammasim, family="Gamma", link="log")
    put(r, "gsim", gammasim)
    r.r(
        f"m <- glmer({f}, gsim, Gamma(link = 'log')); mu <- fitted(m); n <- nrow(gsim);"
        "dev <- sum(Gamma()$dev.resids(gsim$y_log, mu, rep(1, n)));"
        "aic <- Gamma()$aic(gsim$y_log, n, mu, rep(1, n), dev);"
        "ldL2 <- sum(log(1 + getME(m, 'theta')^2 * table(gsim$g)))"
    )
    parts = -(num(r, "aic") + num(r, "sum(getME(m, 'u')^2)") + num(r, "ldL2")) / 2
    assert close(rec["loglik"], parts, 1e-9)
    tmb = fit_reference("glmmTMB", f, gammasim, family="Gamma", link="log")
    assert rec["loglik"] - tmb["loglik"] > 5  # the hybrid is far above the Laplace value


@pytest.mark.r
def test_gamma_discrepancy_evidence_reproduces(r):
    """The numbers of lme4-gamma-loglik-hybrid, from the R code in CONVENTIONS.md."""
    from reference_r.known_discrepancies import KNOWN_DISCREPANCIES

    entry = next(d for d in KNOWN_DISCREPANCIES if d["id"] == "lme4-gamma-loglik-hybrid")
    r.r(
        "set.seed(20240611); g <- factor(rep(sprintf('g%02d', 1:50), each = 20));"
        "x <- rnorm(1000); b <- rnorm(50, sd = sqrt(0.3));"
        "y <- rgamma(1000, shape = 2, rate = 2 / exp(1 + 0.5 * x + b[g]));"
        "gd <- data.frame(y, x, g)"
    )
    gd = pd.DataFrame(
        {
            "y": list(r.r("gd$y")),
            "x": list(r.r("gd$x")),
            "g": pd.Categorical([f"g{k:02d}" for k in range(1, 51) for _ in range(20)]),
        }
    )
    lme = fit_reference("lme4", "y ~ x + (1 | g)", gd, family="Gamma", link="log")
    tmb = fit_reference("glmmTMB", "y ~ x + (1 | g)", gd, family="Gamma", link="log")
    assert lme["loglik"] == pytest.approx(entry["measured"]["loglik_glmer"], abs=1e-5)
    assert tmb["loglik"] == pytest.approx(entry["measured"]["loglik_glmmTMB"], abs=1e-5)
    assert lme["sigma"] == pytest.approx(0.6853917, abs=1e-6)
    assert tmb["sigma"] == pytest.approx(0.6966624, abs=1e-6)


@pytest.mark.r
def test_nb_epil_discrepancy_evidence_reproduces(r):
    """lme4-nb-expected-information-laplace: glmer.nb above glmmTMB on MASS::epil."""
    from reference_r.known_discrepancies import KNOWN_DISCREPANCIES

    entry = next(
        d for d in KNOWN_DISCREPANCIES if d["id"] == "lme4-nb-expected-information-laplace"
    )
    r.r("data(epil, package = 'MASS')")
    epil = pd.DataFrame({c: list(r.r(f"epil${c}")) for c in ("y", "lbase", "lage", "V4")})
    epil["trt"] = pd.Categorical(list(r.r("as.character(epil$trt)")), ["placebo", "progabide"])
    epil["subject"] = pd.Categorical([str(int(v)) for v in r.r("epil$subject")])
    f = "y ~ lbase*trt + lage + V4 + (1 | subject)"
    lme = fit_reference("lme4", f, epil, family="negative_binomial")
    tmb = fit_reference("glmmTMB", f, epil, family="nbinom2")
    m = entry["measured"]
    assert lme["loglik"] == pytest.approx(m["loglik_lme4"], abs=1e-5)
    assert tmb["loglik"] == pytest.approx(m["loglik_glmmTMB"], abs=1e-5)
    assert lme["loglik"] - tmb["loglik"] == pytest.approx(m["gap"], abs=1e-4)
    assert lme["sigma"] == pytest.approx(7.416726, abs=1e-5)
    assert tmb["sigma"] == pytest.approx(7.418097, abs=1e-5)


# --------------------------------------------------------------------------- glmmTMB


@pytest.mark.r
def test_glmmtmb_nbinom2_grouseticks(r):
    f = "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)"
    rec = fit_reference("glmmTMB", f, datasets.load("grouseticks"), family="negative_binomial")
    assert_record_basics(rec)
    r.r(f"m <- glmmTMB({f}, grouseticks, family = nbinom2)")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert close(rec["sigma"], num(r, "sigma(m)"), VC_RTOL)
    assert_named_close(rec["fixef"], named(r, "fixef(m)$cond"), FIXEF_RTOL)
    assert_named_close(rec["se"], named(r, "sqrt(diag(vcov(m)$cond))"), SE_RTOL)
    sd = {row["grp"]: row["sdcor"] for row in rec["varcorr"]}
    assert sd == pytest.approx(
        {g: num(r, f"attr(VarCorr(m)$cond${g}, 'stddev')") for g in ("BROOD", "LOCATION")},
        rel=VC_RTOL,
    )
    assert rec["ngroups"] == {"BROOD": 118, "LOCATION": 63}
    assert rec["deviance"] is None and rec["theta"] == []


@pytest.mark.r
def test_glmmtmb_nbinom1(r, nb1sim):
    rec = fit_reference("glmmTMB", "y ~ x + (1 | g)", nb1sim, family="nbinom1")
    assert_record_basics(rec)
    assert rec["model"]["family"] == "nbinom1" and rec["model"]["link"] == "log"
    put(r, "nb1sim", nb1sim)
    r.r("m <- glmmTMB(y ~ x + (1 | g), nb1sim, family = nbinom1)")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert close(rec["sigma"], num(r, "sigma(m)"), VC_RTOL)
    assert_named_close(rec["fixef"], named(r, "fixef(m)$cond"), FIXEF_RTOL)
    assert_named_close(rec["se"], named(r, "sqrt(diag(vcov(m)$cond))"), SE_RTOL)
    assert rec["varcorr"][0]["sdcor"] == pytest.approx(
        num(r, "attr(VarCorr(m)$cond$g, 'stddev')"), rel=VC_RTOL
    )
    assert rec["df"] == 4 and rec["deviance"] is None
    # sigma is phi of var = mu (1 + phi): simulated with phi = 1.5
    assert 1.0 < rec["sigma"] < 2.2


@pytest.mark.r
@pytest.mark.parametrize("link", ["log", "inverse", "identity"])
def test_glmmtmb_gamma(r, gammasim, link):
    f = f"y_{link} ~ x + (1 | g)"
    rec = fit_reference("glmmTMB", f, gammasim, family="Gamma", link=link)
    assert_record_basics(rec)
    assert rec["model"]["family"] == "Gamma" and rec["model"]["link"] == link
    put(r, "gsim", gammasim)
    r.r(f"m <- glmmTMB({f}, gsim, family = Gamma(link = '{link}'))")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert_named_close(rec["fixef"], named(r, "fixef(m)$cond"), FIXEF_RTOL)
    assert_named_close(rec["se"], named(r, "sqrt(diag(vcov(m)$cond))"), SE_RTOL)
    # sigma() is the CV 1 / sqrt(shape); glmmTMB estimates betad = log(shape)
    assert close(rec["sigma"], num(r, "sigma(m)"), VC_RTOL)
    assert close(rec["sigma"], num(r, "1 / sqrt(exp(m$fit$par[['betad']]))"), 1e-10)
    assert rec["sigma"] == pytest.approx(1 / np.sqrt(3.0), rel=0.1)  # simulated shape 3
    assert [row["grp"] for row in rec["varcorr"]] == ["g"]  # no Residual row


@pytest.mark.r
def test_gamma_default_link_is_inverse(gammasim):
    rec = fit_reference("glmmTMB", "y_inverse ~ x + (1 | g)", gammasim, family="Gamma")
    assert rec["model"]["link"] == "inverse" and rec["converged"]


@pytest.mark.r
def test_glmmtmb_reml_equals_lmer_reml(r):
    d = datasets.load("sleepstudy")
    tmb = fit_reference("glmmTMB", SLEEP, d)
    lme = fit_reference("lme4", SLEEP, d)
    assert close(tmb["loglik"], lme["loglik"], 1e-8)
    assert [row["var2"] for row in tmb["varcorr"]] == [None, None, "Days", None]


# --------------------------------------------------------------------------- ordinal


@pytest.mark.r
def test_clmm_wine(r):
    f = "rating ~ temp + contact + (1 | judge)"
    rec = fit_reference("ordinal", f, datasets.load("wine"), family="ordinal")
    assert_record_basics(rec)
    r.r(f"m <- clmm({f}, data = wine)")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert list(rec["thresholds"]) == ["1|2", "2|3", "3|4", "4|5"]
    assert_named_close(rec["thresholds"], named(r, "m$alpha"), FIXEF_RTOL)
    assert_named_close(rec["fixef"], named(r, "m$beta"), FIXEF_RTOL)
    assert_named_close(rec["se"], named(r, "sqrt(diag(vcov(m)))[1:6]"), SE_RTOL)
    assert rec["varcorr"][0]["sdcor"] == pytest.approx(num(r, "m$ST$judge"), rel=VC_RTOL)
    assert rec["df"] == 7 and rec["ngroups"] == {"judge": 9}


# ------------------------------------------------------------------------------ mgcv


@pytest.mark.r
def test_mgcv_multinomial_verbagg(r):
    rec = fit_reference("mgcv", "resp ~ Anger + Gender", datasets.load("VerbAgg"), "multinomial")
    assert_record_basics(rec)
    r.r(
        "d <- VerbAgg; d$y <- as.integer(d$resp) - 1L;"
        "m <- gam(list(y ~ Anger + Gender, ~ Anger + Gender), family = multinom(K = 2),"
        " data = d, method = 'REML')"
    )
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    ref = named(r, "coef(m)")
    names = [f"{c}~{t}" for c in ("perhaps", "yes") for t in ("(Intercept)", "Anger", "GenderM")]
    assert list(rec["fixef"]) == names == list(rec["se"])
    assert list(rec["fixef"].values()) == pytest.approx(list(ref.values()), rel=FIXEF_RTOL)
    assert rec["varcorr"] == [] and rec["smooths"] == []


@pytest.mark.r
def test_mgcv_multinomial_random_intercept(r):
    va = datasets.load("VerbAgg")
    sub = va[va["item"].isin(va["item"].cat.categories[:6])].reset_index(drop=True)
    rec = fit_reference("mgcv", "resp ~ Anger + Gender + (1 | item)", sub, "multinomial")
    assert_record_basics(rec)
    r.r(
        "d <- droplevels(VerbAgg[VerbAgg$item %in% levels(VerbAgg$item)[1:6], ]);"
        "d$y <- as.integer(d$resp) - 1L;"
        "m <- gam(list(y ~ Anger + Gender + s(item, bs = 're'),"
        " ~ Anger + Gender + s(item, bs = 're')), family = multinom(K = 2),"
        " data = d, method = 'REML');"
        "invisible(capture.output(vc <- gam.vcomp(m)))"
    )
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert [(v["grp"], v["var1"]) for v in rec["varcorr"]] == [
        ("item", "perhaps~(Intercept)"),
        ("item", "yes~(Intercept)"),
    ]
    sds = [v["sdcor"] for v in rec["varcorr"]]
    assert sds == pytest.approx(list(r.r("vc[, 1]")), rel=VC_RTOL)
    assert rec["ngroups"] == {"item": 6}


@pytest.mark.r
def test_mgcv_re_smooth_from_lme4_syntax(r):
    d = datasets.load("sleepstudy")
    rec = fit_reference("mgcv", "Reaction ~ Days + (1 | Subject)", d)
    assert_record_basics(rec)
    r.r(
        "m <- gam(Reaction ~ Days + s(Subject, bs = 're'), data = sleepstudy, method = 'REML');"
        "invisible(capture.output(vc <- gam.vcomp(m)))"
    )
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)
    assert [(v["grp"], v["var1"]) for v in rec["varcorr"]] == [
        ("Subject", "(Intercept)"),
        ("Residual", None),
    ]
    assert [v["sdcor"] for v in rec["varcorr"]] == pytest.approx(list(r.r("vc[, 1]")), rel=VC_RTOL)
    assert rec["ngroups"] == {"Subject": 18}


@pytest.mark.r
def test_mgcv_uncorrelated_slopes_match_lmer(r):
    """(Days || Subject) as two bs='re' smooths: the REML variances equal lmer's."""
    d = datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days || Subject)"
    gam = fit_reference("mgcv", f, d)
    lme = fit_reference("lme4", f, d)
    key = [(v["grp"], v["var1"]) for v in lme["varcorr"]]
    assert [(v["grp"], v["var1"]) for v in gam["varcorr"]] == key
    sd_gam = [v["sdcor"] for v in gam["varcorr"]]
    assert sd_gam == pytest.approx([v["sdcor"] for v in lme["varcorr"]], rel=1e-4)


def test_mgcv_rejects_correlated_terms():
    with pytest.raises(ValueError, match="correlated random effects"):
        fit_reference("mgcv", SLEEP, datasets.load("sleepstudy"))


# ----------------------------------------------------------------------------- gamm4


@pytest.mark.r
def test_gamm4_smooth(r, sim):
    rec = fit_reference("gamm4", "y ~ s(x) + (1 | g)", sim)
    assert_record_basics(rec)
    put(r, "sim", sim)
    r.r(
        "m <- gamm4(y ~ s(x), random = ~ (1 | g), data = sim);"
        "nd <- sim[rep(1, 50), ]; nd$x <- seq(min(sim$x), max(sim$x), length.out = 50);"
        "pr <- predict(m$gam, nd, type = 'terms')[, 's(x)']"
    )
    assert close(rec["loglik"], num(r, "logLik(m$mer)"), LOGLIK_RTOL)
    assert [v["grp"] for v in rec["varcorr"]] == ["g", "Residual"]
    assert rec["varcorr"][0]["sdcor"] == pytest.approx(
        num(r, "attr(VarCorr(m$mer)$g, 'stddev')"), rel=VC_RTOL
    )
    (s,) = rec["smooths"]
    assert (s["term"], s["var"], s["k"], s["bs"]) == ("s(x)", "x", 10, "tp")
    assert s["edf"] == pytest.approx(num(r, "summary(m$gam)$edf"), rel=1e-6)
    assert s["lambda"] == pytest.approx(num(r, "m$gam$sp"), rel=1e-6)
    assert len(s["grid"]) == len(s["fit"]) == 50
    assert s["grid"][0] == pytest.approx(sim["x"].min()) and s["grid"][-1] == sim["x"].max()
    assert s["fit"] == pytest.approx(list(r.r("pr")), rel=1e-6, abs=1e-9)
    truth = np.sin(2 * np.pi * np.array(s["grid"]))
    assert np.corrcoef(truth, s["fit"])[0, 1] > 0.98


@pytest.mark.r
def test_mgcv_smooth_grid_is_centred_like_mgcv(sim):
    rec = fit_reference("mgcv", 'y ~ s(x, k = 8, bs = "cr") + (1 | g)', sim)
    (s,) = rec["smooths"]
    assert (s["k"], s["bs"]) == (8, "cr") and 1 < s["edf"] < 8
    # mgcv's constraint: the smooth sums to zero over the data, not over the grid.
    f = np.interp(sim["x"], s["grid"], s["fit"])
    assert abs(f.mean()) < 0.02 * np.ptp(s["fit"])


# ---------------------------------------------------------------- data transfer


@pytest.mark.r
def test_describe_in_r_types_levels_and_na():
    df = pd.DataFrame(
        {
            "dbl": [1.5, np.nan, 3.0, 4.0],
            "int": np.array([1, 2, 3, 4], dtype=np.int64),
            "nint": pd.array([1, None, 3, 4], dtype="Int64"),
            "flag": [True, False, True, False],
            "nflag": pd.array([True, None, False, True], dtype="boolean"),
            "intcat": pd.Categorical([3, 1, 2, 3], categories=[3, 1, 2]),
            "ordcat": pd.Categorical(["lo", "hi", "mid", None], ["lo", "mid", "hi"], ordered=True),
            "text": ["b", "a", None, "b"],
        }
    )
    view = reference_r.describe_in_r(df)
    assert list(view) == list(df.columns)
    expect = {
        "dbl": (["numeric"], "double", 1),
        "int": (["integer"], "integer", 0),
        "nint": (["integer"], "integer", 1),
        "flag": (["logical"], "logical", 0),
        "nflag": (["logical"], "logical", 1),
        "intcat": (["factor"], "integer", 0),
        "ordcat": (["ordered", "factor"], "integer", 1),
        "text": (["factor"], "integer", 1),
    }
    for col, (cls, typ, n_na) in expect.items():
        assert (view[col]["class"], view[col]["typeof"], view[col]["n_na"]) == (cls, typ, n_na), col
    assert view["intcat"]["levels"] == ["3", "1", "2"]
    assert view["intcat"]["head"] == ["3", "1", "2", "3"]
    assert view["ordcat"]["levels"] == ["lo", "mid", "hi"] and view["ordcat"]["ordered"]
    assert view["ordcat"]["head"] == ["lo", "hi", "mid", None]
    assert view["dbl"]["head"] == ["1.5", None, "3", "4"]
    assert view["nflag"]["head"] == ["TRUE", None, "FALSE", "TRUE"]
    assert view["text"]["levels"] == ["a", "b"]


@pytest.mark.r
def test_integer_categories_reach_the_model_in_order(r):
    """Non-string categories keep pandas' order: R's baseline is the first category."""
    d = datasets.load("cbpp")
    d["period"] = pd.Categorical(
        d["period"].astype(int), categories=[4, 3, 2, 1]
    )  # integer categories, reversed
    rec = fit_reference("lme4", CBPP, d, family="binomial")
    assert list(rec["fixef"]) == ["(Intercept)", "period3", "period2", "period1"]
    r.r(f"d <- cbpp; d$period <- factor(d$period, levels = 4:1); m <- glmer({CBPP}, d, binomial)")
    assert close(rec["loglik"], num(r, "logLik(m)"), LOGLIK_RTOL)


@pytest.mark.r
def test_bad_data_is_rejected_naming_the_column():
    d = datasets.load("sleepstudy")
    d["big"] = np.int64(2**40)
    with pytest.raises(ValueError, match="'big'"):
        fit_reference("lme4", SLEEP, d)


# ------------------------------------------------------------ errors and timeouts


@pytest.mark.r
def test_r_error_carries_r_message_and_next_fit_works():
    d = datasets.load("sleepstudy")
    with pytest.raises(RError, match="object 'nonexistent' not found") as info:
        fit_reference("lme4", "Reaction ~ Days + (1 | nonexistent)", d)
    assert not isinstance(info.value, RTimeout)
    assert info.value.r_message == "object 'nonexistent' not found"
    pids = worker_pids()
    with pytest.raises(RError, match="No random effects terms"):
        fit_reference("lme4", "Reaction ~ Days", d)
    rec = fit_reference("lme4", SLEEP, d)
    assert rec["converged"] and worker_pids() == pids  # an R error does not cost a worker


@pytest.mark.r
def test_timeout_kills_worker_and_next_fit_works():
    d = datasets.load("sleepstudy")
    before = worker_pids()
    t0 = time.perf_counter()
    with pytest.raises(RTimeout, match="timeout"):
        fit_reference("lme4", SLEEP, d, timeout=1.0, r_sleep=60)
    assert time.perf_counter() - t0 < 10
    assert not set(before) & set(worker_pids())
    rec = fit_reference("lme4", SLEEP, d, timeout=120)
    assert rec["converged"]


@pytest.mark.r
def test_crashed_worker_is_replaced():
    with pytest.raises(RWorkerDied):
        request(("crash",))
    rec = fit_reference("lme4", CBPP, datasets.load("cbpp"), family="binomial")
    assert rec["converged"]


@pytest.mark.r
def test_a_python_error_in_the_worker_is_not_blamed_on_r():
    with pytest.raises(KeyError, match="boom") as info:
        request(("pyfail", "boom"))
    assert not isinstance(info.value, RError)
    assert any("raised in the R worker's Python code" in n and "KeyError" in n
               for n in info.value.__notes__)
    with pytest.raises(RError, match="object 'nope' not found"):  # R's own stay RError
        fit_reference("lme4", "y ~ nope + (1 | g)", pd.DataFrame(
            {"y": np.arange(6.0), "g": pd.Categorical(list("aabbcc"))}))


@pytest.mark.r
def test_singular_fit_is_a_message_not_a_failure():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(6), 10)
    e = rng.normal(size=g.size)
    # Every group has the same mean: the between-group variance estimate is 0.
    y = e - np.bincount(g, e)[g] / 10
    d = pd.DataFrame({"y": y, "g": pd.Categorical(g)})
    rec = fit_reference("lme4", "y ~ 1 + (1 | g)", d)
    assert rec["messages"] == ["boundary (singular) fit: see help('isSingular')"]
    assert rec["converged"] and rec["varcorr"][0]["sdcor"] < 1e-6


@pytest.mark.r
def test_script_without_main_guard(tmp_path):
    """Workers do not re-run the caller's script, so no __main__ guard is needed."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "fit_script.py"
    script.write_text(
        "import pandas as pd\n"
        "from reference_r import fit_reference\n"
        "print('top-level ran')\n"
        "d = pd.DataFrame({'y': [1.0, 2.0, 3.0, 4.1, 5.2, 5.9],\n"
        "                  'g': pd.Categorical(list('aabbcc'))})\n"
        "rec = fit_reference('lme4', 'y ~ 1 + (1 | g)', d)\n"
        "print('nobs', rec['nobs'])\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("top-level ran") == 1 and "nobs 6" in out.stdout


@pytest.mark.r
def test_lme4_fits_a_two_category_multinomial_as_glmer_binomial():
    """reference_r's lme4 multinomial (K = 2) is glmer's logistic model of the second
    category, named as glmmbench names the multinomial model; K = 3 is refused."""
    import dataclasses

    import numpy as np

    import simulate
    from glmmbench import fit

    base = simulate.SCENARIOS["multinomial_intercept"]
    two = dataclasses.replace(base, n_categories=2, intercept=(base.intercept[0],),
                              beta_x=(base.beta_x[0],))
    sim = simulate.generate(two, np.random.default_rng(2))
    rec = fit_reference("lme4", sim.formula, sim.data, family="multinomial")
    native = fit(sim.formula, sim.data, "multinomial")
    assert rec["model"]["family"] == "multinomial"
    assert set(rec["fixef"]) == set(native.fixef.index) == {"b~(Intercept)", "b~x"}
    assert rec["varcorr"][0]["var1"] == "b~(Intercept)"
    assert native.loglik == pytest.approx(rec["loglik"], abs=2e-3)
    three = simulate.generate(base, np.random.default_rng(2))
    with pytest.raises(ValueError, match="two categories only"):
        fit_reference("lme4", three.formula, three.data, family="multinomial")
