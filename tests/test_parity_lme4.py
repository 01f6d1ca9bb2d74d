"""Native fits against live lme4 fits of the same models, in the same test run.

Each case fits the model in R (lme4 1.1-31 here) and natively, then compares with
named tolerances per quantity (issue 3):

- log-likelihood, one-sided: the native value may be lower than lme4's by at most
  2e-3 and higher by any amount (a better optimum of the same function is not a
  failure; a native deviance that is itself wrong is caught by the devfun check
  below, which compares the two functions at lme4's optimum);
- fixed effects: 2e-3 relative (absolute floor of 2e-3 SE for coefficients near 0);
- standard errors: 2 %; random-effect sd: 1 %; correlations: 1e-3 + 1 % of |r|
  (measured: at most 1e-6 on sleepstudy, whose correlation is 0.066, and 1.8e-4 on
  the random-slope GLMMs, where glmer's Nelder-Mead stage stops with a
  log-likelihood 6e-5 to 3e-4 below the native one);
- the native deviance function at lme4's optimum equals, to 1e-6 (absolute),
  lme4's deviance function there (LMM), or for GLMMs the Laplace deviance built
  in R from lme4's own conditional modes (PIRLS run to tolPwrss = 1e-13) with
  log|L|^2 from a dense determinant. lme4's devfun value itself may differ by
  up to 1e-4: its log|L|^2 comes from the factor of the last-but-one PIRLS
  iterate (reference_r/CONVENTIONS.md; 6e-6 on grouseticks, 5e-4 on cbpp at
  the default tolPwrss).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glmmbench import datasets
from glmmbench import fit as glmm_fit
from glmmbench.engine.deviance import make_devfun
from glmmbench.families import make_response as _response
from glmmbench.families.glm import get_family
from glmmbench.model.design import build_design
from reference_r.known_discrepancies import KNOWN_DISCREPANCIES

from .rscript import run_r

LOGLIK_ABS = 2e-3
FIXEF_REL = 2e-3
SE_REL = 0.02
SDCOR_REL = 0.01
COR_ABS = 1e-3
DEVFUN_ABS = 1e-6
LME4_LAG_ABS = 1e-4

CASES = {
    "sleepstudy_reml": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "gaussian", None,
                        True),
    "sleepstudy_ml": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "gaussian", None,
                      False),
    "sleepstudy_uncorrelated": ("sleepstudy", "Reaction ~ Days + (Days || Subject)",
                                "gaussian", None, True),
    "penicillin_crossed": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)",
                           "gaussian", None, True),
    "cbpp": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial",
             None, None),
    "cbpp_probit": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    "binomial", "probit", None),
    "cbpp_cloglog": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     "binomial", "cloglog", None),
    "cbpp_cauchit": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     "binomial", "cauchit", None),
    "poisson_sqrt": ("sim_counts", "y ~ x + (1 | g)", "poisson", "sqrt", None),
    "poisson_identity": ("sim_counts", "y ~ x + (1 | g)", "poisson", "identity", None),
    "grouseticks": ("grouseticks",
                    "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", "poisson",
                    None, None),
    "verbagg_crossed": ("VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                        "binomial", None, None),
    "binomial_slope": ("sim_slopes", "cbind(s, f) ~ x + z + (1 + x | g)", "binomial", None,
                       None),
    "binomial_two_slopes": ("sim_slopes", "cbind(s, f) ~ x + z + (1 + x + z | g)", "binomial",
                            None, None),
    "poisson_slope": ("sim_slopes", "c ~ x + z + (1 + x | g)", "poisson", None, None),
    "poisson_two_slopes": ("sim_slopes", "c ~ x + z + (1 + x + z | g)", "poisson", None,
                           None),
}

R_FIT = r"""
d <- {data}
fam <- {family}
m <- if (is.null(fam)) lmer({formula}, d, REML = {reml}) else glmer({formula}, d, fam)
vc <- as.data.frame(VarCorr(m))
glmm <- !is.null(fam)
dd <- if (glmm) update(m, devFunOnly = TRUE, control = glmerControl(tolPwrss = 1e-13)) else
  update(m, devFunOnly = TRUE)
par <- if (glmm) c(getME(m, "theta"), fixef(m)) else getME(m, "theta")
at_opt <- dd(par)
laplace_dense <- at_opt
if (glmm) {{
  # the Laplace deviance from lme4's own conditional modes, with log|L|^2 taken
  # densely at the final PIRLS weights (lme4's stored L lags one iterate behind)
  e <- environment(dd)
  ZL <- as.matrix(getME(m, "Z") %*% getME(m, "Lambda"))
  A <- crossprod(ZL, ZL * e$resp$sqrtXwt^2) + diag(ncol(ZL))
  laplace_dense <- e$resp$aic() + e$pp$sqrL(1) +
    as.numeric(determinant(A, logarithm = TRUE)$modulus)
}}
list(loglik = as.numeric(logLik(m)), fixef = as.list(fixef(m)),
     se = as.list(sqrt(diag(as.matrix(vcov(m))))),
     theta = I(unname(getME(m, "theta"))), beta = I(unname(fixef(m))),
     devfun_at_opt = at_opt, laplace_dense = laplace_dense,
     vc = list(grp = I(vc$grp), var1 = I(vc$var1), var2 = I(vc$var2), sdcor = I(vc$sdcor)))
"""

R_FAMILY = {"gaussian": "NULL", "binomial": "binomial(link = '{link}')",
            "poisson": "poisson(link = '{link}')"}
R_DATA = {"sim_counts": "sim_counts", "sim_slopes": "sim_slopes", "sleepstudy": "sleepstudy",
          "Penicillin": "Penicillin", "cbpp": "cbpp", "grouseticks": "grouseticks",
          "VerbAgg": "VerbAgg"}
CANONICAL = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}


def sim_counts() -> pd.DataFrame:
    """Counts with a mean far from 0 (sqrt and identity links stay in their domain;
    on grouseticks, Poisson-sqrt has several conditional modes with eta < 0)."""
    rng = np.random.default_rng(7)
    g = rng.integers(0, 30, 600)
    x = rng.uniform(-1, 1, 600)
    mu = (5 + 0.8 * x + 0.6 * rng.standard_normal(30)[g]) ** 2
    labels = [f"g{i:02d}" for i in range(30)]
    return pd.DataFrame({"y": rng.poisson(mu).astype(float), "x": x,
                         "g": pd.Categorical.from_codes(g, labels)})


def sim_slopes() -> pd.DataFrame:
    """Random slopes: 40 groups of 12 rows, correlated effects of (1, x, z) per group
    (sd 0.7, 0.5, 0.4; correlations 0.3), one draw shared by a binomial response
    ``cbind(s, f)`` of 4 trials (logit) and Poisson counts ``c`` (log).

    Seed 1: every model's fit is away from the boundary and glmer reports no warning.
    (Seed 2's binomial ``(1 + x + z | g)``: glmer stops at a singular fit 0.17 below
    the native optimum, a local optimum of glmer rather than a parity case.)"""
    rng = np.random.default_rng(1)
    m, k, trials = 40, 12, 4
    g = np.repeat(np.arange(m), k)
    x = rng.uniform(-1, 1, m * k)
    z = rng.standard_normal(m * k)
    sd = np.array([0.7, 0.5, 0.4])
    cor = np.full((3, 3), 0.3) + 0.7 * np.eye(3)
    b = rng.multivariate_normal(np.zeros(3), cor * np.outer(sd, sd), m)
    eta = 0.5 * x - 0.3 * z + b[g, 0] + b[g, 1] * x + b[g, 2] * z
    s = rng.binomial(trials, 1 / (1 + np.exp(-(0.2 + eta))))
    c = rng.poisson(np.exp(1.0 + eta))
    labels = [f"g{i:02d}" for i in range(m)]
    return pd.DataFrame({"s": s.astype(float), "f": (trials - s).astype(float),
                         "c": c.astype(float), "x": x, "z": z,
                         "g": pd.Categorical.from_codes(g, labels)})


SIMULATED = {"sim_counts": sim_counts, "sim_slopes": sim_slopes}


def _data(name: str) -> pd.DataFrame:
    return SIMULATED[name]() if name in SIMULATED else datasets.load(name)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    name = request.param
    data_name, formula, family, link, reml = CASES[name]
    code = R_FIT.format(
        data=R_DATA[data_name], formula=formula,
        family=R_FAMILY[family].format(link=link or CANONICAL[family]),
        reml="TRUE" if reml in (None, True) else "FALSE",
    )
    data = _data(data_name)
    ref = run_r(code, **{data_name: data}) if data_name in SIMULATED else run_r(code)
    res = glmm_fit(formula, data, family=family, link=link, reml=reml)
    return name, data, (formula, family, link, reml), ref, res


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


# glmer stops short of the Laplace maximum by up to this share of |logLik| (its PIRLS
# tolerance; the sized, live-measured entry lme4-laplace-pirls-tolerance)
GLMER_SHORTFALL = {d["id"]: d for d in KNOWN_DISCREPANCIES}[
    "lme4-laplace-pirls-tolerance"]["gap"]["loglik"]["rel"]


def loglik_ok(native: float, reference: float, glmer: bool = False) -> bool:
    """Two-sided: the native maximum within ``LOGLIK_ABS`` of R's, and above it by no
    more than that plus glmer's measured shortfall where R's fit is glmer's."""
    slack = GLMER_SHORTFALL * abs(reference) if glmer else 0.0
    return -LOGLIK_ABS <= native - reference <= LOGLIK_ABS + slack


def test_loglik_check_is_two_sided():
    assert not loglik_ok(-95.0, -100.0)  # 5 above R's: no known discrepancy that large
    assert not loglik_ok(-95.0, -100.0, glmer=True)
    assert loglik_ok(-100.0 + 0.9 * LOGLIK_ABS, -100.0)
    assert loglik_ok(-1000.0 + LOGLIK_ABS + 0.9 * GLMER_SHORTFALL * 1000, -1000.0, glmer=True)
    assert not loglik_ok(-1000.0 + LOGLIK_ABS + 1.1 * GLMER_SHORTFALL * 1000, -1000.0,
                         glmer=True)
    assert loglik_ok(-100.0 - 0.9 * LOGLIK_ABS, -100.0)
    assert not loglik_ok(-100.0 - 1.1 * LOGLIK_ABS, -100.0, glmer=True)
    assert not loglik_ok(float("nan"), -100.0)


@pytest.mark.r
def test_loglik(case):
    name, _, (_, family, link, _), ref, res = case
    assert res.converged, res.messages
    glmer = not (family == "gaussian" and (link or "identity") == "identity")
    assert loglik_ok(res.loglik, ref["loglik"], glmer), (name, res.loglik, ref["loglik"])


@pytest.mark.r
def test_fixef_and_se(case):
    name, _, _, ref, res = case
    assert list(res.fixef.index) == list(ref["fixef"]), name
    for k, v in ref["fixef"].items():
        se = ref["se"][k]
        assert abs(res.fixef[k] - v) <= max(FIXEF_REL * abs(v), 2e-3 * se), (name, k)
        assert _rel(res.se[k], se) <= SE_REL, (name, k, res.se[k], se)


@pytest.mark.r
def test_varcorr(case):
    name, _, _, ref, res = case
    vc = ref["vc"]
    got = res.varcorr
    assert list(got["grp"]) == vc["grp"], name
    assert [None if v is None or v != v else v for v in got["var1"]] == vc["var1"]
    for i, want in enumerate(vc["sdcor"]):
        have = got["sdcor"].iloc[i]
        if got["var2"].iloc[i] is not None and got["var2"].iloc[i] == got["var2"].iloc[i]:
            assert abs(have - want) <= COR_ABS + SDCOR_REL * abs(want), (name, i, have, want)
        else:
            assert _rel(have, want) <= SDCOR_REL, (name, i, have, want)


@pytest.mark.r
def test_devfun_at_lme4_optimum(case):
    name, data, (formula, family, link, reml), ref, _ = case
    design = build_design(formula, data, family)
    response = _response(design, get_family(family, link))
    if response is None:
        f = make_devfun(design, None, reml=reml if reml is not None else True)
        value = f(np.array(ref["theta"]))
    else:
        f = make_devfun(design, response)
        value = f(np.concatenate([ref["theta"], ref["beta"]]))
    assert abs(value - ref["laplace_dense"]) <= DEVFUN_ABS, (name, value, ref["laplace_dense"])
    # lme4's devfun itself differs by its lagged log|L|^2 (CONVENTIONS.md)
    assert abs(value - ref["devfun_at_opt"]) <= LME4_LAG_ABS, (name, value,
                                                                ref["devfun_at_opt"])


@pytest.mark.r
def test_gaussian_log_link_against_glmmtmb():
    """Gaussian with a log link: lme4's glmer drops sigma from the penalized problem
    (singular fit, theta = 0); glmmTMB fits the model, so it is the referee here.
    Like glmmTMB, the native Laplace factor uses the exact Hessian for this family
    (lme4-style expected information was 0.015 off in loglik)."""
    ref = run_r("""
suppressPackageStartupMessages(library(glmmTMB))
m <- glmmTMB(Reaction ~ Days + (1 | Subject), sleepstudy, gaussian(link = "log"))
list(loglik = as.numeric(logLik(m)), fixef = as.list(fixef(m)$cond),
     se = as.list(sqrt(diag(vcov(m)$cond))), sigma = sigma(m),
     sd = attr(VarCorr(m)$cond$Subject, "stddev")[[1]])
""")
    res = glmm_fit("Reaction ~ Days + (1 | Subject)", datasets.load("sleepstudy"),
                   family="gaussian", link="log")
    assert res.converged, res.messages
    assert loglik_ok(res.loglik, ref["loglik"]), (res.loglik, ref["loglik"])
    for k, v in ref["fixef"].items():
        # measured: 2e-9 relative (glmmTMB and native maximise the same approximation)
        assert abs(res.fixef[k] - v) <= max(FIXEF_REL * abs(v), 2e-3 * ref["se"][k]), k
        assert _rel(res.se[k], ref["se"][k]) <= SE_REL, k
    assert _rel(res.sigma, ref["sigma"]) <= SDCOR_REL
    assert _rel(res.varcorr["sdcor"].iloc[0], ref["sd"]) <= SDCOR_REL
