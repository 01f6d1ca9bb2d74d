"""The analytic gradient of the Laplace deviance (``GLMMDevfun.gradient`` and
``stage1_gradient``) against central differences of the native deviance itself, and
against lme4's deviance function differentiated in R; the fits that use it against the
derivative-free search.

The gradient needs the selected inverse of ``A`` at every observation, the
derivative of the mode and of the weights: any slip in one of them shows as a
difference far above the differences' own error (about 1e-7 here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glmmbench import datasets
from glmmbench.engine.deviance import make_devfun
from glmmbench.engine.optimize import derivatives_from_gradient
from glmmbench.families import make_response as _response
from glmmbench.families.glm import get_family
from glmmbench.fit import fit
from glmmbench.model.design import build_design

from .rscript import run_r


def _data(seed: int = 1, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, 30, n), rng.integers(0, 12, n)
    x, z = rng.standard_normal(n), rng.uniform(size=n)
    eta = (-0.3 + 0.5 * x + np.sin(3 * z) + 0.8 * rng.standard_normal(30)[g]
           + 0.5 * rng.standard_normal(12)[h] + 0.3 * rng.standard_normal(30)[g] * x)
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float),
                         "c": rng.poisson(np.exp(eta)).astype(float),
                         "pos": rng.gamma(4.0, np.exp(eta) / 4.0), "x": x, "z": z,
                         "g": pd.Categorical(g), "h": pd.Categorical(h)})


CASES = [
    ("binomial", None, "y ~ x + (1 | g)"),
    ("binomial", None, "y ~ x + (1 + x | g)"),
    ("binomial", None, "y ~ x + (1 | g) + (1 | h)"),
    ("poisson", None, "c ~ x + (1 + x | g) + (1 | h)"),
    ("poisson", None, "c ~ x + (1 | h) + (0 + x | g)"),
    ("binomial", None, "y ~ x + s(z) + (1 | g)"),  # a dense (smooth) term
    # exact-Hessian families with a dispersion (its derivative too)
    ("negative_binomial", None, "c ~ x + (1 | g) + (1 | h)"),
    ("nbinom1", None, "c ~ x + (1 + x | g)"),
    ("Gamma", "log", "pos ~ x + (1 | g) + (1 | h)"),
    ("gaussian", "log", "pos ~ x + (1 | g)"),
    # lme4's non-canonical links: Fisher weights in L, the mode moves with the exact ones
    ("binomial", "probit", "y ~ x + (1 | g) + (1 | h)"),
    ("binomial", "cloglog", "y ~ x + (1 + x | g)"),
]


def _devfun(family: str, link: str | None, formula: str, data: pd.DataFrame):
    design = build_design(formula, data, family)
    devfun = make_devfun(design, _response(design, get_family(family, link)), 1)
    devfun.tol = 1e-13
    return devfun


def _central(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    return np.array([(f(x + e) - f(x - e)) / (2 * h) for e in np.eye(x.size) * h])


def _assert_gradient_at(devfun, x: np.ndarray, stage1: bool = True) -> None:
    """``gradient`` (and ``stage1_gradient``) at ``x`` against central differences of
    the deviance (and of ``stage1``), to 1e-6 of the largest entry."""
    fd = _central(devfun, x)
    np.testing.assert_allclose(devfun.gradient(x), fd, rtol=1e-6,
                               atol=1e-6 * max(1.0, np.max(np.abs(fd))))
    if stage1:
        cov = x[:devfun.ncov]
        fd1 = _central(devfun.stage1, cov)
        np.testing.assert_allclose(devfun.stage1_gradient(cov), fd1, rtol=1e-6,
                                   atol=1e-6 * max(1.0, np.max(np.abs(fd1))))


def _assert_gradient_inside_and_at_zero(devfun, params: np.ndarray,
                                        stage1: bool = True) -> None:
    """`_assert_gradient_at` at ``params`` and with the first variance at 0."""
    for at_zero in (False, True):
        x = params.copy()
        if at_zero:
            x[0] = 0.0
        _assert_gradient_at(devfun, x, stage1)


def _with_and_without_gradient(monkeypatch, *args, **kwargs):
    """The same fit with the analytic gradient (L-BFGS-B) and without it (BOBYQA on
    the deviance, ``has_gradient`` off)."""
    with_gradient = fit(*args, **kwargs)
    monkeypatch.setattr("glmmbench.engine.deviance.GLMMDevfun.has_gradient",
                        property(lambda s: False))
    return with_gradient, fit(*args, **kwargs)


def _assert_same_optimum(with_gradient, without, fixef_tol=(1e-3, 1e-4), note=None) -> None:
    """The gradient search at least as high as the derivative-free one and within 1e-5
    of it in log-likelihood, with the same fixed effects (``fixef_tol``: rtol, atol;
    None: not compared) and standard errors (rtol 1e-3)."""
    assert with_gradient.loglik >= without.loglik - 1e-7, note
    assert with_gradient.loglik == pytest.approx(without.loglik, abs=1e-5)
    if fixef_tol is not None:
        np.testing.assert_allclose(with_gradient.fixef, without.fixef, rtol=fixef_tol[0],
                                   atol=fixef_tol[1])
    np.testing.assert_allclose(with_gradient.se, without.se, rtol=1e-3)


@pytest.mark.parametrize("family, link, formula", CASES)
@pytest.mark.parametrize("at_zero", [False, True])
def test_gradient_equals_differences(family, link, formula, at_zero):
    devfun = _devfun(family, link, formula, _data())
    assert devfun.has_gradient
    params = np.concatenate([0.7 * devfun.cov_start() + 0.1, np.full(devfun.design.p, 0.1)])
    if at_zero:  # a variance on its boundary: the deviance is even there
        params[0] = 0.0
    _assert_gradient_at(devfun, params)


LME4_CASES = [(family, formula) for family, link, formula in CASES[:5]]  # lme4's models


@pytest.mark.r
def test_gradient_equals_lme4s_deviance_differentiated_in_r():
    """The analytic gradient against R: lme4's own Laplace deviance function
    (``glmer(..., devFunOnly = TRUE)`` at ``tolPwrss = 1e-12``, parameters
    ``c(theta, beta)`` in the same order) differentiated by numDeriv (Richardson
    extrapolation) at the parameters of ``test_gradient_equals_differences``, with and
    without a variance at 0, for the five binomial and Poisson models lme4 fits.
    Measured (R 4.2.2, lme4 1.1-31, numDeriv): at most 2.1e-7 of max(1, max |g|)."""
    data = _data()
    points = {}
    for i, (family, formula) in enumerate(LME4_CASES):
        devfun = _devfun(family, None, formula, data)
        params = np.concatenate([0.7 * devfun.cov_start() + 0.1, np.full(devfun.design.p, 0.1)])
        at_zero = params.copy()
        at_zero[0] = 0.0
        points[f"p{i}_0"], points[f"p{i}_1"] = params, at_zero
        points[f"g{i}_0"], points[f"g{i}_1"] = devfun.gradient(params), devfun.gradient(at_zero)
    calls = ",\n".join(f"glmer({formula}, d, {family}, control = ctl, devFunOnly = TRUE)"
                       for family, formula in LME4_CASES)
    pars = pd.DataFrame({k: pd.Series(v) for k, v in points.items() if k.startswith("p")})
    ref = run_r(f"""
        ctl <- glmerControl(tolPwrss = 1e-12)
        fs <- list({calls})
        out <- list()
        for (i in seq_along(fs)) for (j in 0:1) {{
          x <- p[[sprintf("p%d_%d", i - 1, j)]]
          out[[sprintf("g%d_%d", i - 1, j)]] <- I(numDeriv::grad(fs[[i]], x[!is.na(x)]))
        }}
        out""", d=data, p=pars)
    for key, ours in points.items():
        if key.startswith("g"):
            theirs = np.asarray(ref[key])
            np.testing.assert_allclose(ours, theirs, rtol=0,
                                       atol=1e-6 * max(1.0, np.max(np.abs(theirs))),
                                       err_msg=f"{LME4_CASES[int(key[1])]}, {key}")


def test_gradient_with_weights_trials_and_offset():
    data = _data(2)
    rng = np.random.default_rng(3)
    data["trials"] = rng.integers(1, 6, len(data)).astype(float)
    data["k"] = rng.binomial(data["trials"].astype(int), 0.4)
    data["prop"] = data["k"] / data["trials"]
    design = build_design("prop ~ x + (1 | g) + (1 | h)", data, "binomial",
                          weights=data["trials"].to_numpy(), offset=0.3 * data["z"].to_numpy())
    devfun = make_devfun(design, _response(design, get_family("binomial")), 1)
    devfun.tol = 1e-13
    params = np.array([0.6, 0.4, -0.2, 0.3])
    fd = _central(devfun, params)
    np.testing.assert_allclose(devfun.gradient(params), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family, link, nagq, re", [
    ("binomial", "cauchit", 1, "(1 | g)"), ("poisson", "sqrt", 1, "(1 | g)"),
    ("binomial", "cloglog", 5, "(1 + x | g)"), ("binomial", "probit", 5, "(1 | g)")])
def test_no_gradient_where_the_formula_does_not_hold(family, link, nagq, re):
    """A link whose log-likelihood is not concave in eta (cauchit: the mode's exact
    curvature may not be positive definite), lme4's Fisher-weighted non-canonical
    links that are not concave (Poisson sqrt) and AGQ with Fisher weights in L
    (cloglog, probit) keep the derivative-free search."""
    data = _data()
    y = "y" if family == "binomial" else "c"
    design = build_design(f"{y} ~ x + {re}", data, family)
    devfun = make_devfun(design, _response(design, get_family(family, link)), nagq)
    assert not devfun.has_gradient


def test_hessian_from_gradient_on_a_quadratic():
    A = np.array([[3.0, 1.0, 0.2], [1.0, 2.0, 0.5], [0.2, 0.5, 1.0]])
    b = np.array([1.0, -2.0, 0.5])
    g, H = derivatives_from_gradient(lambda x: A @ x - b, np.array([0.3, 0.1, -0.4]))
    np.testing.assert_allclose(H, A, rtol=1e-9)
    np.testing.assert_allclose(g, A @ np.array([0.3, 0.1, -0.4]) - b, rtol=1e-12)


@pytest.mark.parametrize("family, link, formula", [
    ("binomial", None, "y ~ x + (1 + x | g)"), ("binomial", None, "y ~ x + (1 | g) + (1 | h)"),
    ("binomial", "probit", "y ~ x + (1 + x | g)"),
    ("negative_binomial", None, "c ~ x + (1 | g) + (1 | h)"),
    ("Gamma", "log", "pos ~ x + (1 | g)")])
def test_gradient_search_reaches_the_derivative_free_optimum(family, link, formula,
                                                             monkeypatch):
    """The same model fitted with the gradient (L-BFGS-B) and without it (BOBYQA on
    the deviance, lme4's search): the same optimum."""
    data = _data(5)
    with_gradient, without = _with_and_without_gradient(monkeypatch, formula, data, family,
                                                        link)
    _assert_same_optimum(with_gradient, without)
    assert with_gradient.converged and without.converged


def test_cbpp_fit_searches_with_the_gradient():
    data = datasets.load("cbpp")
    data["prop"] = data["incidence"] / data["size"]
    res = fit("prop ~ period + (1 | herd)", data, "binomial", weights=data["size"].to_numpy())
    stages = res.optinfo["stages"]
    assert [s["optimizer"] for s in stages] == ["L-BFGS-B", "L-BFGS-B"]
    assert res.converged


def test_hessian_from_gradient_equals_differences_of_the_deviance_on_cbpp():
    """At cbpp's optimum the Hessian from the analytic gradient (forward differences)
    equals the native finite differences of the native deviance
    (``optimize.derivatives``). Native against native:
    the same comparison against lme4's deviance differentiated in R is
    ``test_fit_derivatives_equal_lme4s_deviance_differentiated_in_r`` in
    tests/test_engine_properties.py."""
    from glmmbench.engine.optimize import derivatives

    data = datasets.load("cbpp")
    data["prop"] = data["incidence"] / data["size"]
    res = fit("prop ~ period + (1 | herd)", data, "binomial", weights=data["size"].to_numpy())
    design = build_design("prop ~ period + (1 | herd)", data, "binomial",
                          weights=data["size"].to_numpy())
    devfun = make_devfun(design, _response(design, get_family("binomial")), 1)
    devfun.tol = 1e-12
    x = np.concatenate([res.theta, res.fixef.to_numpy()])
    g, H = derivatives_from_gradient(devfun.gradient, x)
    g_fd, H_fd = derivatives(devfun, x, devfun(x))
    np.testing.assert_allclose(H, H_fd, rtol=1e-4, atol=1e-4 * np.max(np.abs(H_fd)))
    np.testing.assert_allclose(g, g_fd, atol=1e-5)


# ------------------------------------------------------------------ ordinal responses

ORDINAL_CASES = [
    ("wine", "rating ~ temp + contact + (1 | judge)", None, None),
    ("wine", "rating ~ temp + contact + (1 | judge)", "probit", None),
    ("wine", "rating ~ temp + contact + (1 | judge)", "cloglog", "equidistant"),
    ("wine", "rating ~ temp + (1 + contact | judge)", "logit", "symmetric"),
    ("soup", "SURENESS ~ PROD + (1 | RESP) + (1 | PRODID)", None, None),
]


def _ordinal_devfun(dataset: str, formula: str, link: str | None, threshold: str | None):
    from glmmbench.families import make_family

    family = make_family("ordinal", link, threshold=threshold)
    design = build_design(formula, datasets.load(dataset), family)
    devfun = make_devfun(design, _response(design, family), 1)
    devfun.tol = 1e-13
    return devfun


@pytest.mark.parametrize("dataset, formula, link, threshold", ORDINAL_CASES)
def test_ordinal_gradient_equals_differences(dataset, formula, link, threshold):
    """An ordinal model's threshold parameters enter as response parameters (as a
    dispersion does): their derivatives, theta's and beta's against central
    differences of the native deviance, also with a variance at 0. Measured: at
    most 7.7e-10 of max(1, max |g|) on these models."""
    devfun = _ordinal_devfun(dataset, formula, link, threshold)
    assert devfun.has_gradient
    params = np.concatenate([0.7 * devfun.cov_start() + 0.1, np.full(devfun.design.p, 0.1)])
    _assert_gradient_inside_and_at_zero(devfun, params)


@pytest.mark.parametrize("dataset, formula, link, threshold",
                         [ORDINAL_CASES[0], ORDINAL_CASES[2], ORDINAL_CASES[4]])
def test_ordinal_gradient_search_reaches_the_derivative_free_optimum(
        dataset, formula, link, threshold, monkeypatch):
    """With the gradient (L-BFGS-B, thresholds whitened with beta) and without it
    (BOBYQA): the same optimum, thresholds and standard errors."""
    data = datasets.load(dataset)
    y = formula.split(" ~")[0]
    with_gradient, without = _with_and_without_gradient(monkeypatch, formula, data, "ordinal",
                                                        link, threshold=threshold)
    assert [s["optimizer"] for s in with_gradient.optinfo["stages"]] == ["L-BFGS-B"] * 2
    _assert_same_optimum(with_gradient, without, note=y)
    np.testing.assert_allclose(with_gradient.thresholds, without.thresholds, rtol=1e-3,
                               atol=1e-4)
    assert with_gradient.converged and without.converged


def test_no_gradient_for_multinomial_agq():
    """AGQ's gradient is for one weight per observation: the multinomial's blocks
    (two categories, where AGQ applies) keep AGQ derivative-free."""
    from glmmbench.families import make_family

    fam = make_family("multinomial")
    design = fam.prepare_design(build_design("r2 ~ Anger + (1 | id)",
                                             datasets.load("VerbAgg").iloc[:500], fam))
    assert not make_devfun(design, _response(design, fam), 5).has_gradient


AGQ_PARAMETER_CASES = [
    ("negative_binomial", None, "c ~ x + (1 | g)", None, 5),
    ("Gamma", "log", "pos ~ x + (1 | g)", None, 5),
    ("nbinom1", None, "c ~ x + (1 + x | g)", None, 3),
    ("ordinal", None, "rating ~ temp + contact + (1 | judge)", "wine", 7),
]


@pytest.mark.parametrize("family, link, formula, dataset, nagq", AGQ_PARAMETER_CASES)
def test_agq_gradient_with_response_parameters_equals_differences(family, link, formula,
                                                                  dataset, nagq):
    """AGQ with a response parameter (a log-dispersion; an ordinal model's threshold
    parameters): it moves the nodes' log-densities, and the mode and the curvature
    through the scores and weights. Against central differences, also with a variance
    at 0. Measured: at most 3.1e-10 of max(1, max |g|)."""
    from glmmbench.families import make_family

    fam = make_family(family, link)
    data = _data() if dataset is None else datasets.load(dataset)
    design = build_design(formula, data, fam)
    devfun = make_devfun(design, _response(design, fam), nagq)
    devfun.tol = 1e-13
    assert devfun.has_gradient
    params = np.concatenate([0.7 * devfun.cov_start() + 0.1, np.full(design.p, 0.1)])
    _assert_gradient_inside_and_at_zero(devfun, params, stage1=False)


def test_ordinal_agq_search_reaches_the_derivative_free_optimum(monkeypatch):
    data = datasets.load("wine")
    formula = "rating ~ temp + contact + (1 | judge)"
    with_gradient, without = _with_and_without_gradient(monkeypatch, formula, data, "ordinal",
                                                        nagq=10)
    assert [s["optimizer"] for s in with_gradient.optinfo["stages"]] == ["L-BFGS-B"] * 2
    _assert_same_optimum(with_gradient, without, fixef_tol=None)
    np.testing.assert_allclose(with_gradient.thresholds, without.thresholds, rtol=1e-3)


# ---------------------------------------------------------------- multinomial responses

MULTINOMIAL_CASES = [
    "resp ~ Anger + Gender + (1 | id)",  # correlated category effects
    "resp ~ Anger + (1 || item)",  # independent ones
    "resp ~ Anger + (1 | item) + (1 | id)",  # crossed
    "r2 ~ Anger + Gender + (1 | id)",  # two categories: 1 x 1 blocks, still blocks
]


def _multinomial_devfun(formula: str):
    from glmmbench.families import make_family

    fam = make_family("multinomial")
    data = datasets.load("VerbAgg").iloc[:1500]
    design = fam.prepare_design(build_design(formula, data, fam))
    devfun = make_devfun(design, _response(design, fam), 1)
    devfun.tol = 1e-13
    return devfun


@pytest.mark.parametrize("formula", MULTINOMIAL_CASES)
def test_multinomial_gradient_equals_differences(formula):
    """The block form of the Laplace gradient (``W_i`` the (K - 1) x (K - 1) softmax
    blocks: ``c_ik = tr(H_i dW_i/deta_ik)``, block products for ``W rho`` and ``W
    PV``) against central differences of the native deviance, also with a variance
    at 0. Measured: at most 6.4e-9 of max(1, max |g|) (the independent effects; 3e-10
    for the others)."""
    devfun = _multinomial_devfun(formula)
    assert devfun.has_gradient
    params = np.concatenate([0.5 * devfun.cov_start() + 0.1, np.full(devfun.design.p, 0.1)])
    _assert_gradient_inside_and_at_zero(devfun, params)


def test_multinomial_gradient_search_reaches_the_derivative_free_optimum(monkeypatch):
    data = datasets.load("VerbAgg").iloc[:2000]
    formula = "resp ~ Anger + Gender + (1 | id)"
    with_gradient, without = _with_and_without_gradient(monkeypatch, formula, data, "multinomial")
    assert [s["optimizer"] for s in with_gradient.optinfo["stages"]] == ["L-BFGS-B"] * 2
    _assert_same_optimum(with_gradient, without)
    assert with_gradient.converged and without.converged


# ------------------------------------------------------------ adaptive quadrature

AGQ_CASES = [
    ("binomial", "y ~ x + (1 | g)", None),
    ("poisson", "c ~ x + (1 | g)", None),
    ("poisson", "c ~ x + (0 + x | g)", None),  # a slope as the scalar term
    ("binomial", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp"),
    # vector AGQ: q = 2 and 3 effects per group (product rules)
    ("binomial", "y ~ x + (1 + x | g)", None),
    ("poisson", "c ~ x + z + (1 + x + z | g)", None),
]


@pytest.mark.parametrize("family, formula, dataset", AGQ_CASES)
@pytest.mark.parametrize("nagq", [3, 9])
def test_agq_gradient_equals_differences(family, formula, dataset, nagq):
    """``GLMMDevfun.agq_gradient`` (the nodes move with the mode and the curvature,
    scalar or vector) against central differences of the native AGQ deviance, also
    with a variance at 0. Measured: at most 1.9e-10 of max(1, max |g|) for scalar
    terms, 4.5e-9 with two and three effects per group."""
    data = _data() if dataset is None else datasets.load(dataset)
    design = build_design(formula, data, family)
    devfun = make_devfun(design, _response(design, get_family(family)), nagq)
    devfun.tol = 1e-13
    assert devfun.has_gradient
    params = np.concatenate([0.7 * devfun.cov_start() + 0.1, np.full(design.p, 0.1)])
    _assert_gradient_inside_and_at_zero(devfun, params, stage1=False)


@pytest.mark.parametrize("nagq", [3, 9, 25])
def test_agq_gradient_search_reaches_the_derivative_free_optimum(nagq, monkeypatch):
    """cbpp at nAGQ = 3, 9, 25 with the gradient (L-BFGS-B) and without it (BOBYQA):
    the same optimum and standard errors."""
    data = datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    with_gradient, without = _with_and_without_gradient(monkeypatch, formula, data,
                                                        "binomial", nagq=nagq)
    assert [s["optimizer"] for s in with_gradient.optinfo["stages"]] == ["L-BFGS-B"] * 2
    _assert_same_optimum(with_gradient, without, fixef_tol=(1e-4, 1e-5))
    assert with_gradient.converged and without.converged


@pytest.mark.r
def test_noncanonical_gradient_equals_lme4s_deviance_differentiated_in_r():
    """lme4's own Laplace deviance for probit and cloglog links (Fisher weights in its
    factor: ``glmer(..., devFunOnly = TRUE)`` at ``tolPwrss = 1e-12``) differentiated
    by numDeriv, against the analytic gradient (the mode moving with the exact
    weights). Measured: at most 2.2e-7 of max(1, max |g|) (numDeriv's own error: the
    canonical links' check above measures 2.1e-7)."""
    data = _data()
    cases = [("probit", "y ~ x + (1 | g) + (1 | h)"), ("cloglog", "y ~ x + (1 + x | g)")]
    points, ours = {}, {}
    for i, (link, formula) in enumerate(cases):
        devfun = _devfun("binomial", link, formula, data)
        params = np.concatenate([0.7 * devfun.cov_start() + 0.1, np.full(devfun.design.p, 0.1)])
        points[f"p{i}"], ours[f"g{i}"] = params, devfun.gradient(params)
    calls = ",\n".join(f"glmer({formula}, d, binomial(link = '{link}'), control = ctl, "
                        "devFunOnly = TRUE)" for link, formula in cases)
    pars = pd.DataFrame({k: pd.Series(v) for k, v in points.items()})
    ref = run_r(f"""
        ctl <- glmerControl(tolPwrss = 1e-12)
        fs <- list({calls})
        out <- list()
        for (i in seq_along(fs)) {{
          x <- p[[sprintf("p%d", i - 1)]]
          out[[sprintf("g%d", i - 1)]] <- I(numDeriv::grad(fs[[i]], x[!is.na(x)]))
        }}
        out""", d=data, p=pars)
    for key, g in ours.items():
        theirs = np.asarray(ref[key])
        np.testing.assert_allclose(g, theirs, rtol=0,
                                   atol=1e-6 * max(1.0, np.max(np.abs(theirs))), err_msg=key)


# ------------------------------------------------------- links confined to a domain

BOUNDED_CASES = [("Gamma", "inverse", "pos2 ~ x + (1 | g)"),
                 ("Gamma", "identity", "pos2 ~ x + (1 | g) + (1 | h)"),
                 ("gaussian", "inverse", "pos2 ~ x + (1 | g)")]


@pytest.mark.parametrize("family, link, formula", BOUNDED_CASES)
def test_bounded_link_gradient_equals_differences_near_the_optimum(family, link, formula):
    """Identity and inverse links search with the gradient (PIRLS fails where eta
    leaves the link's domain, so the check sits 1 % off the optimum, inside it):
    against central differences with steps relative to each parameter. ``w'`` takes
    steps relative to eta (Gamma(inverse) has eta = 0.002 for its largest means).
    Measured: at most 9.3e-8 of max(1, max |g|), the differences' own error."""
    data = _data(5).assign(pos2=lambda d: d["pos"] + 0.5)
    res = fit(formula, data, family, link)
    x = 1.01 * np.asarray(res.optinfo["stages"][-1]["final"], dtype=float)
    devfun = _devfun(family, link, formula, data)
    assert devfun.has_gradient
    steps = np.maximum(np.abs(x), 1e-3) * 1e-5
    fd = np.array([(devfun(x + e) - devfun(x - e)) / (2 * h)
                   for e, h in zip(np.diag(steps), steps, strict=True)])
    np.testing.assert_allclose(devfun.gradient(x), fd, rtol=0,
                               atol=1e-6 * max(1.0, np.max(np.abs(fd))))


def test_gaussian_inverse_link_converges_with_the_gradient(monkeypatch):
    """Measured: BOBYQA stopped at loglik -24221.7, 'failed to converge' (4.4 s);
    the gradient search reaches -3786.5437 in 0.16 s, a converged fit."""
    data = _data(5).assign(pos2=lambda d: d["pos"] + 0.5)
    res = fit("pos2 ~ x + (1 | g)", data, "gaussian", "inverse")
    assert res.converged, res.messages
    assert [s["optimizer"] for s in res.optinfo["stages"]] == ["L-BFGS-B"] * 2
    monkeypatch.setattr("glmmbench.engine.deviance.GLMMDevfun.has_gradient",
                        property(lambda s: False))
    without = fit("pos2 ~ x + (1 | g)", data, "gaussian", "inverse")
    assert res.loglik >= without.loglik - 1e-7


# glmmTMB's families (issue 26): the gradient over theta, the dispersion (or a
# dispformula's coefficients), the family's own parameters and beta, at the fitted
# optimum moved a little (so that no derivative is 0 by construction)
GLMMTMB_CASES = [("beta_slopes", None), ("ordbeta_intercept", None),
                 ("betabinomial_intercept", None), ("truncated_nbinom1_intercept", None),
                 ("genpois_intercept", None), ("compois_intercept", None),
                 ("t_intercept", None), ("tweedie_intercept", None),
                 ("negbin_dispformula", "~ x"), ("gamma_log", "~ x")]


@pytest.mark.parametrize("scenario, dispformula", GLMMTMB_CASES)
def test_gradient_of_glmmtmb_families_equals_differences(scenario, dispformula):
    import simulate
    from glmmbench.model.design import build_design as design_of

    sd = simulate.generate(scenario, np.random.default_rng(11))
    res = fit(sd.formula, sd.data, family=sd.family, link=sd.link, dispformula=dispformula)
    design = design_of(sd.formula, sd.data, sd.family, dispformula=dispformula)
    devfun = make_devfun(design, _response(design, res.family.with_parameters(
        None if res.family.dispersion is None else 1.0,
        res.family.psi or None)), 1)
    devfun.tol = 1e-13
    assert devfun.has_gradient
    x = np.asarray(res.optinfo["stages"][-1]["final"], dtype=float)
    x = x + 0.05 * np.random.default_rng(1).standard_normal(x.size)
    x[0] = abs(x[0])
    _assert_gradient_at(devfun, x, stage1=False)
