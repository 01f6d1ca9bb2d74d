"""Invariances every fit must have (issue 23): the optimum does not depend on the
order of the rows or of a grouping factor's levels, nor on the units of a response
that has units.

- **Order**: for every family (Gaussian REML, binomial, Poisson, NB2, NB1, Gamma,
  ordinal, multinomial) the data with its rows shuffled and its grouping levels
  reversed give the same log-likelihood (1e-6 absolute) and the same estimates
  (fixef, sds, sigma: 1e-4 relative with a floor of 1e-4 of a standard error).
  The search path may differ (PIRLS warm starts, the factor's order); the optimum
  may not.
- **Units**: ``y -> c y`` for Gaussian and Gamma responses maps the optimum onto
  itself, exactly as the model says: the log-likelihood moves by ``-n log c``
  (REML's by ``-(n - p) log c``); with
  the identity link beta, the sds and (Gaussian) sigma scale by ``c``; with the
  inverse link by ``1 / c``; with the log link the intercept moves by ``log c``;
  Gamma's sigma (a coefficient of variation) does not move. Checked for
  ``c`` in 1e-8 .. 1e8 (reaction times in seconds or milliseconds, concentrations in
  g/l or ng/l). Before the searches ran in the parameters' units, Gamma identity at
  ``c = 1000`` ended "not converged" and Gamma inverse at ``c = 1e-8`` 69
  log-likelihood units short with "ok".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmbench as gb

FIX_REL = 1e-4
LOGLIK_ABS = 1e-6


def _simulate(family: str, seed: int = 7, groups: int = 25, size: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), size)
    x = rng.standard_normal(g.size)
    b = rng.normal(0.0, 0.5, groups)[g]
    eta = 0.3 + 0.6 * x + b
    if family == "gaussian":
        y = 10 + 2 * x + 3 * b + rng.normal(0, 2, g.size)
    elif family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta + 1)).astype(float)
    elif family == "negative_binomial":
        mu = np.exp(eta + 1)
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    elif family == "nbinom1":
        mu, phi = np.exp(eta + 1.5), 1.5
        y = rng.negative_binomial(mu / phi, 1 / (1 + phi)).astype(float)
    elif family == "Gamma":
        y = rng.gamma(3.0, np.exp(eta + 1) / 3.0)
    elif family == "ordinal":
        latent = eta + rng.logistic(size=g.size)
        y = pd.Categorical(np.digitize(latent, [-0.5, 0.5, 1.5]) + 1, ordered=True)
    elif family == "multinomial":
        u = np.column_stack([np.zeros(g.size), eta, 0.5 - 0.4 * x + 0.5 * b])
        p = np.exp(u) / np.exp(u).sum(axis=1, keepdims=True)
        y = pd.Categorical(np.array(["a", "b", "c"])[
            (rng.random(g.size)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)])
    else:
        raise AssertionError(family)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{i:02d}" for i in g])})


def _estimates(res) -> pd.Series:
    """fixef, thresholds, the varcorr sds/correlations and sigma, by name."""
    parts = [res.fixef]
    if res.thresholds is not None:
        parts.append(res.thresholds)
    vc = res.varcorr
    parts.append(pd.Series(vc["sdcor"].to_numpy(),
                           index=[f"vc:{r.grp}:{r.var1}:{r.var2}" for r in vc.itertuples()]))
    parts.append(pd.Series({"sigma": res.sigma}))
    return pd.concat(parts)


def _assert_same_optimum(a, b, scale: pd.Series | None = None):
    assert b.loglik == pytest.approx(a.loglik, abs=LOGLIK_ABS)
    ea, eb = _estimates(a), _estimates(b)
    assert list(ea.index) == list(eb.index)
    se = pd.concat([a.se, pd.Series(dtype=float)]).reindex(ea.index).fillna(0.0)
    tol = FIX_REL * np.maximum(ea.abs(), 1.0 if scale is None else scale) + 1e-4 * se
    bad = (ea - eb).abs() > tol
    assert not bad.any(), pd.DataFrame({"a": ea, "b": eb})[bad]


FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial", "nbinom1", "Gamma",
            "ordinal", "multinomial")


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_and_levels_in_any_order_give_the_same_optimum(family):
    data = _simulate(family)
    formula = "y ~ x + (1 | g)"
    base = gb.fit(formula, data, family)
    assert base.converged, base.messages
    permuted = data.sample(frac=1.0, random_state=3).reset_index(drop=True)
    permuted["g"] = permuted["g"].cat.reorder_categories(
        list(reversed(permuted["g"].cat.categories)))
    other = gb.fit(formula, permuted, family)
    assert other.converged, other.messages
    _assert_same_optimum(base, other)


def _scaled(res, family: str, link: str, c: float) -> pd.Series:
    """The estimates of ``res`` mapped to the units ``y * c`` as the model says."""
    e = _estimates(res).copy()
    beta = list(res.fixef.index)
    sds = [i for i in e.index if i.startswith("vc:") and not i.startswith("vc:Residual")]
    residual = [i for i in e.index if i.startswith("vc:Residual")]
    if link == "identity":
        e[beta] *= c
        e[sds] *= c
    elif link == "inverse":
        e[beta] /= c
        e[sds] /= c
    elif link == "log":
        e["(Intercept)"] += np.log(c)
    if family == "gaussian":
        e[["sigma", *residual]] *= c
    return e


UNITS = [("Gamma", "identity"), ("Gamma", "inverse"), ("Gamma", "log"),
         ("gaussian", "inverse"), ("gaussian", "log"), ("gaussian", "identity")]


@pytest.mark.parametrize(("family", "link"), UNITS)
@pytest.mark.parametrize("c", [1e-8, 1e-3, 1e3, 1e8])
def test_the_units_of_y_do_not_change_the_optimum(family, link, c):
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(30), 10)
    x = rng.standard_normal(g.size)
    b = rng.normal(0.0, 1.0, 30)[g]
    mu = 5.0 + 1.0 * x + b  # positive, so every link is valid
    y = rng.gamma(5.0, mu / 5.0) if family == "Gamma" else mu + rng.normal(0, 0.5, g.size)
    data = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})
    formula = "y ~ x + (1 | g)"
    base = gb.fit(formula, data, family, link)
    assert base.converged, base.messages
    moved = gb.fit(formula, data.assign(y=y * c), family, link)
    assert moved.converged, moved.messages
    # the REML criterion's Jacobian has n - p terms (the residual contrasts)
    n = y.size - (base.fixef.size if base.reml else 0)
    assert moved.loglik == pytest.approx(base.loglik - n * np.log(c), abs=1e-5)
    want, got = _scaled(base, family, link, c), _estimates(moved)
    scale = want.abs().where(want.abs() > 0, 1.0)
    rel = ((got - want).abs() / scale)
    assert (rel < 1e-4).all(), pd.DataFrame({"want": want, "got": got, "rel": rel})


def _ordered_slopes(seed: int) -> pd.DataFrame:
    """25 groups x 8: a 4-level factor with a random slope whose covariance is near
    singular (variances 1, 0.3, 0.05, 0.01)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(25), 8)
    lev = np.tile(np.repeat(np.arange(4), 2), 25)
    b = rng.multivariate_normal(np.zeros(4), np.diag([1, 0.3, 0.05, 0.01]), 25)
    y = 2 + 0.5 * lev + b[g, lev] + rng.normal(0, 1, g.size)
    names = ["a", "b", "c", "d"]
    return pd.DataFrame({"y": y, "g": pd.Categorical(g),
                         "o": pd.Categorical(np.array(names)[lev], categories=names,
                                             ordered=True),
                         "f": pd.Categorical(np.array(names)[lev], categories=names)})


@pytest.mark.r
@pytest.mark.parametrize("seed", [2, 10])
def test_an_ordered_factor_slope_reaches_lme4s_optimum(seed):
    """Issue 23 item 6: ``(o | g)`` on an ordered factor (polynomial contrasts) and
    ``(f | g)`` on the same factor unordered are one model. With a near-singular 4 x 4
    covariance BOBYQA stopped on a face of the Cholesky parametrisation 0.005 (seed 2,
    ordered) and 0.054 (seed 10, treatment coding) below lmer's ML optimum, with its
    convergence checks passing; a search again from inside reaches it on both."""
    from .rscript import run_r

    d = _ordered_slopes(seed)
    r = run_r("""d$o <- factor(d$o, levels = c("a", "b", "c", "d"), ordered = TRUE)
        d$f <- factor(d$f, levels = c("a", "b", "c", "d"))
        c(logLik(lmer(y ~ o + (o | g), d, REML = FALSE)),
          logLik(lmer(y ~ f + (f | g), d, REML = FALSE)))""", d=d)
    best = max(r)
    for formula in ("y ~ o + (o | g)", "y ~ f + (f | g)"):
        res = gb.fit(formula, d, reml=False)
        assert res.loglik == pytest.approx(best, abs=2e-5), (formula, res.loglik, r)
