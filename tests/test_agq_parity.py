"""Adaptive Gauss-Hermite quadrature against live ``glmer(..., nAGQ = k)``.

A scalar random effect over one grouping factor, at nAGQ 5, 9 and 25, on cbpp
(``cbind()`` counts), VerbAgg ``r2 ~ ... + (1 | id)`` (binary), a simulated binary
model with small clusters and a simulated Poisson model.

lme4's ``logLik()`` at ``nAGQ > 1`` leaves out the saturated log-likelihood
(``lme4-agq-binomial-loglik``, ``lme4-agq-poisson-loglik`` in
``reference_r/known_discrepancies.py``); the native log-likelihood keeps every
constant. They are compared on lme4's scale: native minus the saturated
log-likelihood, which R computes here from the family's ``aic()`` at ``mu = y``
(0 for binary responses).

Tolerances as the Laplace parity (tests/test_parity_lme4.py): log-likelihood 2e-3
absolute (the native optimum may only be higher), fixed effects 2e-3 relative,
standard errors 2 %, random-effect sd 1 %; and the native AGQ deviance function at
lme4's optimum equals lme4's own deviance function there (plus the saturated
constant) to 1e-4, the size of lme4's lagged PIRLS factor (CONVENTIONS.md).
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

from .rscript import run_r

NAGQS = (5, 9, 25)
LOGLIK_ABS = 2e-3
FIXEF_REL = 2e-3
SE_REL = 0.02
SD_REL = 0.01
DEVFUN_ABS = 1e-4


def binary_small_clusters() -> pd.DataFrame:
    """Binary responses in clusters of 4 with a large random-intercept sd (1.5):
    where the Laplace approximation is poorest."""
    rng = np.random.default_rng(20261126)
    G, m = 100, 4
    g = np.repeat(np.arange(G), m)
    x = rng.standard_normal(G * m)
    eta = -0.4 + 0.8 * x + 1.5 * rng.standard_normal(G)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y.astype(float), "x": x,
                         "g": pd.Categorical.from_codes(g, [f"g{i:03d}" for i in range(G)])})


def poisson_counts() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    G, m = 60, 5
    g = np.repeat(np.arange(G), m)
    x = rng.uniform(-1, 1, G * m)
    eta = 0.5 + 0.6 * x + 0.7 * rng.standard_normal(G)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)).astype(float), "x": x,
                         "g": pd.Categorical.from_codes(g, [f"g{i:02d}" for i in range(G)])})


CASES = {
    "cbpp": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    "verbagg_id": ("VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id)", "binomial"),
    "binary_small_clusters": ("binary_small_clusters", "y ~ x + (1 | g)", "binomial"),
    "poisson": ("poisson_counts", "y ~ x + (1 | g)", "poisson"),
}
_SIMULATED = {"binary_small_clusters": binary_small_clusters, "poisson_counts": poisson_counts}

R_FIT = r"""
d <- {data}
fits <- lapply(c({nagqs}), function(k) {{
  m <- glmer({formula}, d, {family}, nAGQ = k)
  dd <- update(m, devFunOnly = TRUE)
  par <- c(getME(m, "theta"), fixef(m))
  list(nagq = k, loglik = as.numeric(logLik(m)), devfun_at_opt = dd(par),
       theta = I(unname(getME(m, "theta"))), beta = I(unname(fixef(m))),
       fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       sd = as.data.frame(VarCorr(m))$sdcor[1])
}})
m <- glmer({formula}, d, {family}, nAGQ = {last})
r <- m@resp
list(fits = fits, saturated_m2ll = r$family$aic(r$y, r$n, r$y, r$weights, 0))
"""


def _data(name: str) -> pd.DataFrame:
    return _SIMULATED[name]() if name in _SIMULATED else datasets.load(name)


@pytest.fixture(scope="module", params=sorted(CASES))
def name(request):
    return request.param


@pytest.fixture(scope="module")
def native(name):
    """The native fits at each nAGQ (no R)."""
    data_name, formula, family = CASES[name]
    data = _data(data_name)
    return data, {k: glmm_fit(formula, data, family=family, nagq=k) for k in NAGQS}


@pytest.fixture(scope="module")
def case(name, native):
    """The native fits with glmer's at the same nAGQ, run live."""
    data_name, formula, family = CASES[name]
    data, fits = native
    code = R_FIT.format(data="d0" if data_name in _SIMULATED else data_name,
                        formula=formula, family=family,
                        nagqs=", ".join(map(str, NAGQS)), last=NAGQS[-1])
    ref = run_r(code, d0=data) if data_name in _SIMULATED else run_r(code)
    return name, data, formula, family, ref, fits


def _pairs(case):
    name, _, _, _, ref, fits = case
    for r in ref["fits"]:
        yield name, int(r["nagq"]), r, fits[int(r["nagq"])]


def test_method_and_nodes(native):
    for k, res in native[1].items():
        assert res.method == f"AGQ({k})"
        assert res.optinfo["nagq"] == k and res.optinfo["agq_nodes_per_group"] == k


@pytest.mark.r
def test_loglik_on_lme4_scale(case):
    sat_loglik = -case[4]["saturated_m2ll"] / 2
    for name, k, r, res in _pairs(case):
        assert res.converged, (name, k, res.messages)
        native = res.loglik - sat_loglik
        assert r["loglik"] - LOGLIK_ABS <= native <= r["loglik"] + LOGLIK_ABS, (
            name, k, native, r["loglik"])


@pytest.mark.r
def test_fixef_se_sd(case):
    for name, k, r, res in _pairs(case):
        assert list(res.fixef.index) == list(r["fixef"]), name
        for term, v in r["fixef"].items():
            se = r["se"][term]
            assert abs(res.fixef[term] - v) <= max(FIXEF_REL * abs(v), 2e-3 * se), (
                name, k, term, res.fixef[term], v)
            assert abs(res.se[term] - se) <= SE_REL * se, (name, k, term, res.se[term], se)
        sd = res.varcorr["sdcor"].iloc[0]
        assert abs(sd - r["sd"]) <= SD_REL * r["sd"], (name, k, sd, r["sd"])


@pytest.mark.r
def test_devfun_at_lme4_optimum(case):
    _, data, formula, family, ref, _ = case
    design = build_design(formula, data, family)
    response = _response(design, get_family(family))
    for name, k, r, _ in _pairs(case):
        f = make_devfun(design, response, nagq=k)
        value = f(np.concatenate([r["theta"], r["beta"]]))
        want = r["devfun_at_opt"] + ref["saturated_m2ll"]
        assert abs(value - want) <= DEVFUN_ABS, (name, k, value, want)
