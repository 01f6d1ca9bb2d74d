"""Prior weights and offsets of the ordinal and multinomial families (issue 22, "Paths
with no value test").

Ordinal (cumulative logit, ``P(Y <= j | b) = F(theta_j - eta)``, ``eta = offset +
x'beta + b``; the log-likelihood ``sum_i w_i log P(Y_i = y_i | b)``), 40 groups x 8, four
categories, against live ``ordinal::clmm(y ~ x + offset(o) + (1 | g), weights = w)``:
integer weights, an offset, and non-integer weights with an offset. Tolerances of
tests/test_ordinal.py: log-likelihood 2e-3 either way; thresholds and ``beta`` 2e-3
relative (floor 2e-3 SE); SEs (of ``beta`` and of the thresholds) 2 %; random-effect
sd 1 %. clmm's R path (``clmm.control(useMatrix = TRUE)``), as tests/test_ordinal.py
uses where clmm's C fast path is unreliable; both paths converge on these data.

Measured on another draw of the same design (seed 21, an offset and no weights):
both clmm paths stop with nlminb's "false convergence (8)" (convergence code 1).
The R path's logLik -410.97520 equals the native -410.97520 (4e-7), but its SE of
``x``, 0.0884, is 29 % below the native 0.1245; the SE from ``numDeriv::hessian`` of
clmm's own Laplace objective (``ordinal:::getNLA`` with the random effects restarted
from 0 at each evaluation) at clmm's estimates is 0.1247: clmm's Hessian (``deriv12``
on warm-started inner solves) is wrong there, not the native one. The fast path's
Hessian there is ~1.1e5 on the diagonal (SE 0.0030), its gradient 5.7 in every
coordinate, its logLik 1.1e-3 below. The test data (seed 22) converge in clmm
(code 0 asserted).

Integer weights are frequencies: the weighted likelihood is the likelihood of the
data with row i repeated ``w_i`` times within its group, exactly. Natively the
ordinal and multinomial weighted fits equal the fits on the duplicated rows (same
model fitted twice: log-likelihood 1e-6, estimates 1e-3 SE, SEs 1e-3 relative), and
the multinomial deviance function of the weighted data equals that of the duplicated
data at the same parameters to 1e-9 relative.

Multinomial (baseline-category logits, ``eta_k = offset + x'beta_k + b_k``): an offset
enters every non-baseline category, so an offset ``c x`` is the same model with every
slope lowered by ``c`` (same-model tolerances). A two-category multinomial with
integer weights and an offset is the binomial GLMM of the second category: against
live ``glmer(yb ~ x + offset(o) + (1 | g), weights = w, family = binomial, control =
glmerControl(tolPwrss = 1e-12))`` (0/1 response: its log-likelihood has no
binomial-coefficient term) with the tolerances of tests/test_parity_lme4.py:
log-likelihood 2e-3 either way, ``beta`` 2e-3 relative (floor 2e-3 SE), SEs 2 %, sd
1 %; and natively equal to the native binomial fit with the same weights and offset
(same-model tolerances). The tight PIRLS tolerance is known discrepancy
``lme4-laplace-pirls-tolerance``'s remedy: with glmer's default (tolPwrss = 1e-7)
its logLik on these data is 8.1e-4 below the native one, and the native Laplace
deviance at glmer's own estimates is 8.0e-4 above glmer's reported value (also
without weights and offset: 6.6e-4), fixed effects 1e-3 relative apart, SEs 0.5 %;
with 1e-12 those gaps are 7e-8, 1.2e-5, 5e-5.

Measured when written (ordinal 2022.11-16, lme4 here): ordinal vs clmm log-likelihood
gaps at most 1.1e-7, thresholds and ``beta`` within 2.4e-5 relative, SEs within
1.5e-4, sd within 4e-6 (clmm's fast path on the same data: log-likelihood 6.8e-4
below the native one, thresholds 1.4e-4, SEs 3.5e-4); duplicated rows:
log-likelihood 1e-11, estimates 5e-10 SE, SEs 4e-7, deviance function 2e-14
relative; the offset's slope shift 1e-10; two-category multinomial vs glmer:
log-likelihood 7e-8, ``beta`` 1.2e-5 relative, SEs 5e-5, sd 4e-6; vs the native
binomial: log-likelihood 4e-12, SEs 5e-5 relative.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from scipy import special

import glmmbench as gb
from glmmbench.engine.deviance import make_devfun
from glmmbench.families import make_response as _response
from glmmbench.families.multinomial import MultinomialFamily, expand_design
from glmmbench.fit import PIRLS_TOL_DERIVS
from glmmbench.model.design import build_design

from .rscript import run_r

LOGLIK_ABS = 2e-3
EST_REL = 2e-3  # also the floor, as a fraction of the SE
SE_REL = 0.02
SD_REL = 0.01
SAME_LOGLIK_ABS = 1e-6
SAME_SE_FRACTION = 1e-3
SAME_SE_REL = 1e-3
DEVFUN_REL = 1e-9


def _groups(G: int, M: int) -> tuple[np.ndarray, pd.Categorical]:
    g = np.repeat(np.arange(G), M)
    return g, pd.Categorical.from_codes(g, [f"g{i:02d}" for i in range(G)])


def _close(have: float, want: float, se: float, rel: float = EST_REL) -> bool:
    return abs(have - want) <= rel * max(abs(want), se)


def _same_fit(a, b, shift: dict[str, float] | None = None) -> None:
    """Two fits of one model: log-likelihood, estimates (``a = b + shift``), SEs, sds."""
    shift = shift or {}
    assert a.converged and b.converged, (a.messages, b.messages)
    assert abs(a.loglik - b.loglik) <= SAME_LOGLIK_ABS, (a.loglik, b.loglik)
    assert list(a.fixef.index) == list(b.fixef.index)
    for k in a.fixef.index:
        se = b.se[k]
        assert abs(a.fixef[k] - (b.fixef[k] + shift.get(k, 0.0))) <= SAME_SE_FRACTION * se, k
        assert abs(a.se[k] - se) <= SAME_SE_REL * se, (k, a.se[k], se)
    np.testing.assert_allclose(a.varcorr["sdcor"].to_numpy(), b.varcorr["sdcor"].to_numpy(),
                               rtol=SAME_SE_REL)


def _duplicated(data: pd.DataFrame, weights: str) -> pd.DataFrame:
    """Row i repeated ``w_i`` times, in its group (the order of rows does not matter)."""
    w = data[weights].to_numpy().astype(int)
    assert np.array_equal(w, data[weights].to_numpy())
    return data.loc[data.index.repeat(w)].drop(columns=weights).reset_index(drop=True)


# ------------------------------------------------------------------ ordinal
@functools.cache
def ordinal_data() -> pd.DataFrame:
    """40 groups x 8, levels a < b < c < d, thresholds (-1, 0.2, 1.3),
    ``eta = 0.7 x + o + b``, sd(b) = 0.8; integer weights ``w`` in 1..3, non-integer
    ``wf`` in (0.5, 2)."""
    G, M = 40, 8
    rng = np.random.default_rng(22)
    g, gcat = _groups(G, M)
    x = rng.standard_normal(G * M)
    o = rng.uniform(-1, 1, G * M)
    eta = 0.7 * x + o + 0.8 * rng.standard_normal(G)[g]
    cum = special.expit(np.array([-1.0, 0.2, 1.3])[None, :] - eta[:, None])
    codes = (rng.uniform(size=G * M)[:, None] > cum).sum(axis=1)
    return pd.DataFrame({
        "y": pd.Categorical.from_codes(codes, list("abcd"), ordered=True), "x": x, "o": o,
        "w": rng.integers(1, 4, G * M).astype(float), "wf": rng.uniform(0.5, 2.0, G * M),
        "g": gcat})


# name: (clmm formula, weights column or None, native offset column or None)
ORDINAL_CASES = {
    "weights": ("y ~ x + (1 | g)", "w", None),
    "offset": ("y ~ x + offset(o) + (1 | g)", None, "o"),
    "weights_offset": ("y ~ x + offset(o) + (1 | g)", "wf", "o"),
}

R_CLMM = r"""
suppressPackageStartupMessages(library(ordinal))
fit_one <- function(formula, w) {
  d$.w <- if (is.null(w)) rep(1, nrow(d)) else d[[w]]
  m <- clmm(as.formula(formula), data = d, weights = .w,
            control = clmm.control(useMatrix = TRUE))
  J <- length(m$alpha)
  p <- length(m$beta)
  se <- sqrt(diag(as.matrix(vcov(m))))
  list(loglik = as.numeric(logLik(m)), convergence = m$optRes$convergence,
       thresholds = as.list(m$alpha), threshold_se = as.list(se[seq_len(J)]),
       fixef = as.list(m$beta), se = as.list(se[J + seq_len(p)]),
       sd = unname(attr(ordinal::VarCorr(m)$g, "stddev")))
}
"""


@pytest.fixture(scope="module")
def clmm_refs():
    calls = ",\n".join(
        f"{name} = fit_one({formula!r}, {'NULL' if w is None else repr(w)})"
        for name, (formula, w, _) in ORDINAL_CASES.items())
    return run_r(R_CLMM + f"list({calls})", d=ordinal_data())


@pytest.mark.r
@pytest.mark.parametrize("name", sorted(ORDINAL_CASES))
def test_ordinal_weights_offset_against_clmm(clmm_refs, name):
    _, weights, offset = ORDINAL_CASES[name]
    ref = clmm_refs[name]
    assert ref["convergence"] == 0, (name, ref)
    res = gb.fit("y ~ x + (1 | g)", ordinal_data(), family="ordinal", weights=weights,
                 offset=offset)
    assert res.converged, (name, res.messages)
    assert abs(res.loglik - ref["loglik"]) <= LOGLIK_ABS, (name, res.loglik, ref["loglik"])
    assert list(res.thresholds.index) == list(ref["thresholds"]), name
    for k, want in ref["thresholds"].items():
        se = ref["threshold_se"][k]
        assert _close(res.thresholds[k], want, se), (name, k, res.thresholds[k], want)
        assert abs(res.threshold_se[k] - se) <= SE_REL * se, (name, k, res.threshold_se[k], se)
    assert list(res.fixef.index) == list(ref["fixef"]), name
    for k, want in ref["fixef"].items():
        se = ref["se"][k]
        assert _close(res.fixef[k], want, se), (name, k, res.fixef[k], want)
        assert abs(res.se[k] - se) <= SE_REL * se, (name, k, res.se[k], se)
    sd = float(res.varcorr["sdcor"].iloc[0])
    assert abs(sd - ref["sd"]) <= SD_REL * ref["sd"], (name, sd, ref["sd"])


def test_ordinal_weights_equal_duplicated_rows():
    data = ordinal_data()
    weighted = gb.fit("y ~ x + (1 | g)", data, family="ordinal", weights="w")
    dup = gb.fit("y ~ x + (1 | g)", _duplicated(data, "w"), family="ordinal")
    _same_fit(weighted, dup)
    for k in dup.thresholds.index:
        se = dup.threshold_se[k]
        assert abs(weighted.thresholds[k] - dup.thresholds[k]) <= SAME_SE_FRACTION * se, k
        assert abs(weighted.threshold_se[k] - se) <= SAME_SE_REL * se, k


# ------------------------------------------------------------------ multinomial
@functools.cache
def multinomial_data() -> pd.DataFrame:
    """30 groups x 8, levels a (baseline), b, c; ``eta_b = 0.3 + 0.8 x + b_1``,
    ``eta_c = -0.2 - 0.5 x + b_2`` (sds 0.7, 0.5); integer weights ``w`` in 1..3."""
    G, M = 30, 8
    rng = np.random.default_rng(5)
    g, gcat = _groups(G, M)
    x = rng.standard_normal(G * M)
    b = rng.standard_normal((G, 2)) * [0.7, 0.5]
    eta = np.column_stack([np.zeros(G * M), 0.3 + 0.8 * x + b[g, 0], -0.2 - 0.5 * x + b[g, 1]])
    P = special.softmax(eta, axis=1)
    codes = (rng.uniform(size=G * M)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    return pd.DataFrame({"y": pd.Categorical.from_codes(np.minimum(codes, 2), list("abc")),
                         "x": x, "w": rng.integers(1, 4, G * M).astype(float), "g": gcat})


def _multinomial_devfun(data: pd.DataFrame, **kw):
    design = expand_design(build_design("y ~ x + (1 | g)", data, "multinomial", **kw))
    f = make_devfun(design, _response(design, MultinomialFamily()), nagq=1)
    f.tol = PIRLS_TOL_DERIVS
    return f


@pytest.mark.parametrize("nagq", [1, 5])
def test_multinomial_weights_equal_duplicated_rows(nagq):
    data = multinomial_data()
    dup_data = _duplicated(data, "w")
    weighted = gb.fit("y ~ x + (1 | g)", data, family="multinomial", weights="w", nagq=nagq)
    dup = gb.fit("y ~ x + (1 | g)", dup_data, family="multinomial", nagq=nagq)
    _same_fit(weighted, dup)
    if nagq == 1:  # the likelihood identity itself, at the weighted fit's parameters
        x = np.concatenate([weighted.theta, weighted.fixef.to_numpy()])
        a = _multinomial_devfun(data, weights="w")(x)
        b = _multinomial_devfun(dup_data)(x)
        assert abs(a - b) <= DEVFUN_REL * abs(b), (a, b)
        assert abs(a + 2 * weighted.loglik) <= DEVFUN_REL * abs(a), (a, weighted.loglik)


def test_multinomial_offset_enters_every_category():
    """offset = 0.6 x: the same model with both category slopes lowered by 0.6."""
    data = multinomial_data().assign(o=lambda d: 0.6 * d["x"])
    plain = gb.fit("y ~ x + (1 | g)", data, family="multinomial", weights="w")
    with_offset = gb.fit("y ~ x + (1 | g)", data, family="multinomial", weights="w",
                         offset="o")
    _same_fit(with_offset, plain, shift={"b~x": -0.6, "c~x": -0.6})


@functools.cache
def two_category_data() -> pd.DataFrame:
    """40 groups x 8, levels lo < hi, logit P(hi) = o - 0.3 + 0.9 x + b, sd(b) = 0.8;
    integer weights in 1..4."""
    G, M = 40, 8
    rng = np.random.default_rng(9)
    g, gcat = _groups(G, M)
    x = rng.standard_normal(G * M)
    o = rng.uniform(-0.8, 0.8, G * M)
    eta = o - 0.3 + 0.9 * x + 0.8 * rng.standard_normal(G)[g]
    yb = (rng.uniform(size=G * M) < special.expit(eta)).astype(float)
    return pd.DataFrame({"y": pd.Categorical.from_codes(yb.astype(int), ["lo", "hi"]),
                         "yb": yb, "x": x, "o": o,
                         "w": rng.integers(1, 5, G * M).astype(float), "g": gcat})


R_GLMER = r"""
m <- glmer(yb ~ x + offset(o) + (1 | g), data = d, weights = w, family = binomial,
           control = glmerControl(tolPwrss = 1e-12))
list(loglik = as.numeric(logLik(m)), fixef = as.list(fixef(m)),
     se = as.list(sqrt(diag(as.matrix(vcov(m))))),
     sd = unname(attr(VarCorr(m)$g, "stddev")),
     messages = I(as.character(unlist(m@optinfo$conv$lme4$messages))))
"""


@pytest.mark.r
def test_two_category_multinomial_weights_offset_against_glmer():
    data = two_category_data()
    ref = run_r(R_GLMER, d=data)
    assert not ref["messages"], ref["messages"]
    res = gb.fit("y ~ x + (1 | g)", data, family="multinomial", weights="w", offset="o")
    assert res.converged, res.messages
    assert abs(res.loglik - ref["loglik"]) <= LOGLIK_ABS, (res.loglik, ref["loglik"])
    assert list(res.fixef.index) == [f"hi~{k}" for k in ref["fixef"]]
    for k, want in ref["fixef"].items():
        se = ref["se"][k]
        assert _close(res.fixef[f"hi~{k}"], want, se), (k, res.fixef[f"hi~{k}"], want)
        assert abs(res.se[f"hi~{k}"] - se) <= SE_REL * se, (k, res.se[f"hi~{k}"], se)
    sd = float(res.varcorr["sdcor"].iloc[0])
    assert abs(sd - ref["sd"]) <= SD_REL * ref["sd"], (sd, ref["sd"])
    # and natively the binomial fit with the same weights and offset
    binom = gb.fit("yb ~ x + (1 | g)", data, family="binomial", weights="w", offset="o")
    binom.fixef.index = res.fixef.index
    binom.se.index = res.se.index
    _same_fit(res, binom)
