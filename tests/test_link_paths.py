"""Non-log links of the dispersion families against live glmmTMB (issue 22, "Paths
with no value test").

Native fits of ``y ~ x + (1 | g)`` (30 groups x 10) with

- Gamma: ``inverse`` (its default link) and ``identity``;
- NB2 (``negative_binomial``) and NB1 (``nbinom1``): ``identity`` and ``sqrt``;
- Gaussian: ``inverse``

against ``glmmTMB(..., family = Gamma(link = "inverse"))``, ``nbinom2(link = "sqrt")``,
``gaussian(link = "inverse")`` etc., fitted live in the same run. glmmTMB uses the
exact Hessian in its Laplace factor, as the native engine does for these families, so
it is the referee. The data are simulated so that the means stay well inside each
link's valid region (Gamma and Gaussian inverse: eta >= 0.2, mu > 0; identity: mu
>= 1; sqrt: sqrt(mu) >= 0.5; the generator asserts it). glmmTMB fits every case on
these data (convergence 0, positive definite Hessian ``pdHess``, both asserted). Its
only warnings, asserted too: Gamma inverse gives nlminb's "NA/NaN function
evaluation" twice (trial steps where some mean leaves the link's domain; the fit
converges and matches), the other cases none.

Tolerances (those of tests/test_nb_gamma.py, issue 9):

- log-likelihood two-sided: ``|native - glmmTMB| <= 2e-3``;
- fixed effects ``5e-3`` relative, absolute floor ``5e-3 SE``;
- standard errors 2 %, random-effect sd 1 %, ``sigma`` (glmmTMB's ``sigma()``: NB2's
  size theta, NB1's phi, Gamma's CV, Gaussian's residual sd) ``5e-3`` relative.

Measured when written (glmmTMB 1.1.5): the largest gaps over the seven cases are
log-likelihood 3e-9, fixed effects 4e-6 relative (3e-5 SE), SEs 1.4e-4 relative,
random-effect sd 5e-6 relative, sigma 9e-6 relative (NB2 sqrt's theta).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

import glmmbench as gb

from .rscript import run_r

pytestmark = pytest.mark.r

LOGLIK_ABS = 2e-3
FIXEF_REL = 5e-3  # also the floor, as a fraction of the SE
SE_REL = 0.02
SD_REL = 0.01
SIGMA_REL = 5e-3

G, M = 30, 10
FORMULA = "y ~ x + (1 | g)"

# name: (native family, link, glmmTMB family function)
CASES = {
    "gamma_inverse": ("Gamma", "inverse", "Gamma"),
    "gamma_identity": ("Gamma", "identity", "Gamma"),
    "nb2_identity": ("negative_binomial", "identity", "nbinom2"),
    "nb2_sqrt": ("negative_binomial", "sqrt", "nbinom2"),
    "nb1_identity": ("nbinom1", "identity", "nbinom1"),
    "nb1_sqrt": ("nbinom1", "sqrt", "nbinom1"),
    "gaussian_inverse": ("gaussian", "inverse", "gaussian"),
}
# glmmTMB's warnings on these data (module docstring)
EXPECTED_WARNINGS = {"gamma_inverse": ["NA/NaN function evaluation"]}


def _mean(link: str, rng: np.random.Generator, x: np.ndarray, g: np.ndarray,
          family: str) -> np.ndarray:
    """The simulated mean on the response scale, checked to be inside the link's domain."""
    if link == "inverse":
        if family == "Gamma":
            eta = 1.0 + 0.3 * x + 0.12 * rng.standard_normal(G)[g]
        else:
            eta = 0.5 + 0.1 * x + 0.05 * rng.standard_normal(G)[g]
        assert eta.min() >= 0.2
        return 1.0 / eta
    if link == "identity":
        mu = (3.0 + 1.0 * x + 0.5 * rng.standard_normal(G)[g] if family == "Gamma"
              else 8.0 + 3.0 * x + 1.5 * rng.standard_normal(G)[g])
        assert mu.min() >= 1.0
        return mu
    root = 2.5 + 0.6 * x + 0.4 * rng.standard_normal(G)[g]  # sqrt
    assert root.min() >= 0.5
    return root**2


@functools.cache
def case_data(name: str) -> pd.DataFrame:
    family, link, _ = CASES[name]
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(G), M)
    x = rng.uniform(-1, 1, G * M)
    mu = _mean(link, rng, x, g, family)
    if family == "Gamma":  # shape 5: CV 0.447
        y = rng.gamma(5.0, mu / 5.0)
    elif family == "negative_binomial":  # size 4
        y = rng.negative_binomial(4.0, 4.0 / (4.0 + mu)).astype(float)
    elif family == "nbinom1":  # phi 1.5: size mu / phi
        y = rng.negative_binomial(mu / 1.5, 1.0 / 2.5).astype(float)
    else:
        y = mu + rng.normal(0.0, 0.2, G * M)
    return pd.DataFrame({"y": y, "x": x,
                         "g": pd.Categorical.from_codes(g, [f"g{i:02d}" for i in range(G)])})


R_FIT = r"""
suppressPackageStartupMessages(library(glmmTMB))
fit_one <- function(d, fam) {
  w <- character(0)
  m <- withCallingHandlers(glmmTMB(y ~ x + (1 | g), d, family = fam),
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") })
  vc <- VarCorr(m)$cond
  list(warnings = I(unique(w)), loglik = as.numeric(logLik(m)), convergence = m$fit$convergence,
       pdHess = m$sdr$pdHess, fixef = as.list(fixef(m)$cond),
       se = as.list(sqrt(diag(vcov(m)$cond))), sigma = sigma(m),
       sd = I(unname(sapply(vc, function(v) attr(v, "stddev")))))
}
"""


@pytest.fixture(scope="module")
def tmb_refs():
    """All glmmTMB fits in one Rscript: ``fit_one(<name>, <fam>(link = "<link>"))``."""
    calls = ",\n".join(f'{name} = fit_one({name}, {tmb}(link = "{link}"))'
                       for name, (_, link, tmb) in CASES.items())
    return run_r(R_FIT + f"list({calls})", **{name: case_data(name) for name in CASES})


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmb_refs):
    name = request.param
    family, link, _ = CASES[name]
    ref = tmb_refs[name]
    assert ref["convergence"] == 0 and ref["pdHess"], (name, ref)
    assert ref["warnings"] == EXPECTED_WARNINGS.get(name, []), (name, ref["warnings"])
    res = gb.fit(FORMULA, case_data(name), family=family, link=link)
    assert res.converged, (name, res.messages)
    assert (res.family.name, res.family.link.name) == (family, link)
    return name, ref, res


def test_loglik_two_sided(case):
    name, ref, res = case
    assert abs(res.loglik - ref["loglik"]) <= LOGLIK_ABS, (name, res.loglik, ref["loglik"])


def test_fixef_and_se(case):
    name, ref, res = case
    assert list(res.fixef.index) == list(ref["fixef"]), name
    for term, want in ref["fixef"].items():
        se = ref["se"][term]
        assert abs(res.fixef[term] - want) <= FIXEF_REL * max(abs(want), se), (
            name, term, res.fixef[term], want)
        assert abs(res.se[term] - se) <= SE_REL * se, (name, term, res.se[term], se)


def test_random_effect_sd_and_sigma(case):
    name, ref, res = case
    vc = res.varcorr
    sd = vc.loc[vc["grp"] != "Residual", "sdcor"].to_numpy()
    assert sd.shape == (1,), (name, vc)
    assert abs(sd[0] - ref["sd"][0]) <= SD_REL * ref["sd"][0], (name, sd[0], ref["sd"])
    assert abs(res.sigma - ref["sigma"]) <= SIGMA_REL * ref["sigma"], (
        name, res.sigma, ref["sigma"])
