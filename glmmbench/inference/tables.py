"""Inference from fitted models: likelihood-ratio tests (lme4's ``anova``).

    >>> gb.anova(m0, m1)            # doctest: +SKIP
                                     npar    AIC    BIC  logLik  deviance  Chisq  Df  Pr(>Chisq)
    Reaction ~ 1 + (Days | Subject)     5  1785.5 1801.4 -887.74   1775.5    NaN NaN         NaN
    Reaction ~ Days + (Days | Subject)  6  1763.9 1783.1 -875.97   1751.9  23.54   1  1.22e-06

The models are sorted by their number of parameters; each row is tested against the
one before it: ``Chisq = 2 (logLik_i - logLik_{i-1})`` on ``Df = npar_i -
npar_{i-1}`` degrees of freedom, ``Pr(>Chisq)`` its upper chi-square tail. A REML
fit is refitted by maximum likelihood first, as lme4 does (with a warning), since
REML likelihoods of models with different fixed effects are not comparable.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from glmmbench.errors import GLMMError
from glmmbench.results import GLMMResult

__all__ = ["anova", "coef_table", "satterthwaite_df", "RefitWarning"]

ANOVA_COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


class RefitWarning(UserWarning):
    """REML fits were refitted by maximum likelihood for a likelihood-ratio test."""


def anova(*models: GLMMResult) -> pd.DataFrame:
    """Likelihood-ratio tests of nested models fitted to the same data (lme4's
    ``anova(m0, m1, ...)``); rows indexed by formula, lme4's columns."""
    if len(models) < 2:
        raise GLMMError("anova needs at least two fitted models to compare")
    for i, m in enumerate(models):
        if not isinstance(m, GLMMResult):
            raise GLMMError(f"anova: argument {i + 1} is a {type(m).__name__}, not a fitted "
                            "model (glmmbench.fit)")
    _check_same_data(models)
    if any(m.is_lmm and m.reml for m in models):
        warnings.warn("refitting model(s) with ML (instead of REML)", RefitWarning,
                      stacklevel=2)
        models = tuple(m.refit_ml() for m in models)
    ordered = sorted(models, key=lambda m: m.df)
    for small, big in zip(ordered[:-1], ordered[1:], strict=True):
        _check_nested(small, big)
    rows = []
    for i, m in enumerate(ordered):
        row = {"npar": m.df, "AIC": m.aic, "BIC": m.bic, "logLik": m.loglik,
               "deviance": -2.0 * m.loglik, "Chisq": np.nan, "Df": np.nan,
               "Pr(>Chisq)": np.nan}
        if i:
            prev = ordered[i - 1]
            chisq = max(2.0 * (m.loglik - prev.loglik), 0.0)
            df = m.df - prev.df
            row.update({"Chisq": chisq, "Df": df,
                        "Pr(>Chisq)": float(stats.chi2.sf(chisq, df)) if df > 0 else np.nan})
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index([m.formula for m in ordered], name="model"),
                        columns=ANOVA_COLUMNS)


def _check_same_data(models) -> None:
    first = models[0]
    for m in models[1:]:
        if (m.nobs != first.nobs or m.design.y.shape != first.design.y.shape
                or not np.array_equal(m.design.y, first.design.y, equal_nan=True)):
            raise GLMMError(f"anova: the models were not fitted to the same data "
                            f"({first.formula!r}: {first.nobs} observations; {m.formula!r}: "
                            f"{m.nobs}, or another response)")
        if (m.family.name, m.family.link.name) != (first.family.name, first.family.link.name):
            raise GLMMError(f"anova: {m.formula!r} is a {m.family.name}({m.family.link.name}) "
                            f"model, {first.formula!r} a {first.family.name}"
                            f"({first.family.link.name}) one: not nested")
        if m.nagq != first.nagq:
            raise GLMMError("anova: the models were fitted with different nagq: their "
                            "likelihoods are different approximations")


def _check_nested(small: GLMMResult, big: GLMMResult) -> None:
    """Every fixed effect of the smaller model is in the larger one, and every random
    term of the smaller model is covered by one of the larger over the same factor."""
    missing = [n for n in small.design.fixef_names if n not in big.design.fixef_names]
    if missing:
        raise GLMMError(f"anova: the models are not nested: {small.formula!r} has fixed "
                        f"effect(s) {missing} that {big.formula!r} does not")
    big_terms: dict[str, set[str]] = {}
    for t in big.design.terms:
        big_terms.setdefault(t.group, set()).update(t.cnames)
    for t in small.design.terms:
        if not set(t.cnames) <= big_terms.get(t.group, set()):
            raise GLMMError(f"anova: the models are not nested: the random term "
                            f"({' + '.join(t.cnames)} | {t.group}) of {small.formula!r} is "
                            f"not in {big.formula!r}")


# ------------------------------------------------------------------ coefficient tables
DDF_METHODS = ("Satterthwaite", "Kenward-Roger")


def coef_table(res: GLMMResult, ddf: str | None = None) -> pd.DataFrame:
    """The coefficient table with R's column names.

    Linear mixed models: ``Estimate, Std. Error, t value`` (lme4's ``summary``); with
    ``ddf`` one of `DDF_METHODS`, ``Estimate, Std. Error, df, t value, Pr(>|t|)`` as
    lmerTest's ``summary(m, ddf = ...)``: ``"Satterthwaite"`` (`satterthwaite_df`) or
    ``"Kenward-Roger"`` (`glmmbench.inference.kenward_roger`; REML fits only, and the standard
    errors, hence t, are the adjusted ones, ``sqrt(diag(vcovAdj))``).
    Generalized models: ``Estimate, Std. Error, z value, Pr(>|z|)`` (glmer's Wald
    tests); ``ddf`` applies to LMMs only.
    """
    est, se = res.fixef.to_numpy(), res.se.to_numpy()
    out = pd.DataFrame({"Estimate": est, "Std. Error": se}, index=res.fixef.index)
    if not res.is_lmm:
        if ddf is not None:
            raise GLMMError(f"ddf={ddf!r} applies to linear mixed models; a "
                            f"{res.family.name} model's coefficients get Wald z tests")
        z = est / se
        out["z value"] = z
        out["Pr(>|z|)"] = 2.0 * stats.norm.sf(np.abs(z))
        return out
    if ddf is None:
        out["t value"] = est / se
        return out
    if ddf not in DDF_METHODS:
        raise GLMMError(f"ddf must be None or one of {', '.join(DDF_METHODS)}, not {ddf!r}")
    if ddf == "Kenward-Roger":
        from glmmbench.inference.kenward_roger import kenward_roger

        df, vcov_adj = kenward_roger(res)
        se = np.sqrt(np.diag(vcov_adj))
        out["Std. Error"] = se
    else:
        df = satterthwaite_df(res)
    t = est / se
    out["df"] = df
    out["t value"] = t
    out["Pr(>|t|)"] = 2.0 * stats.t.sf(np.abs(t), df)
    return out


def satterthwaite_df(res: GLMMResult, h: float = 1e-3) -> np.ndarray:
    """Satterthwaite's denominator degrees of freedom of each fixed effect of an LMM,
    as lmerTest computes them (Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13)).

    With the variance parameters ``v = (theta, sigma)`` and the (RE)ML deviance at
    fixed sigma, ``D(v) = log|L_Z|^2 [+ log|R_X|^2] + n' log(2 pi sigma^2) + r2 / sigma^2``
    (``n' = n - p`` for REML, ``n`` for ML), the asymptotic covariance of ``v`` is
    ``A = 2 H^{-1}`` with ``H`` the Hessian of ``D`` at the estimate; for the
    coefficient ``j`` with ``c(v) = Var(beta_j) = sigma^2 [(R_X' R_X)^{-1}]_jj`` and its
    gradient ``g``, ``df_j = 2 c^2 / (g' A g)``. Derivatives by central differences of
    step ``h``: 1e-3, where the deviance's rounding over ``h^2`` and the truncation
    error are both small. At 1e-4 the rounding dominates on Penicillin: its df were
    1e-3 from lmerTest's at lme4's own theta (4.9 % at 1e-5), 4e-6 at 1e-3.
    """
    from scipy.linalg import solve_triangular

    from glmmbench.engine.deviance import make_devfun
    from glmmbench.engine.optimize import derivatives

    if not res.is_lmm:
        raise GLMMError("Satterthwaite degrees of freedom are for linear mixed models")
    d = res.design
    devfun = make_devfun(d, None, reml=res.reml)

    def deviance(v: np.ndarray) -> float:
        return devfun.at_sigma(v[:-1], v[-1])

    def variances(v: np.ndarray) -> np.ndarray:
        Li = solve_triangular(devfun.solve(v[:-1]).fac.LXX, np.eye(d.p), lower=True)
        return v[-1] ** 2 * np.sum(Li * Li, axis=0)  # diag((R_X' R_X)^{-1}) sigma^2

    v = np.concatenate([res.theta, [res.sigma]])
    _, H = derivatives(deviance, v, deviance(v), delta=h)
    A = 2.0 * np.linalg.inv(H)
    G = np.empty((v.size, d.p))
    for k in range(v.size):
        e = np.zeros(v.size)
        e[k] = h
        G[k] = (variances(v + e) - variances(v - e)) / (2 * h)
    c = variances(v)
    df = 2.0 * c**2 / np.einsum("kj,kl,lj->j", G, A, G)
    return df[d.parametric] if d.smooths else df


# ---------------------------------------------------------------- confidence intervals
CONFINT_METHODS = ("profile", "Wald", "boot")


def confint(res: GLMMResult, method: str = "profile", level: float = 0.95, parm=None,
            nsim: int = 500, seed: int | None = None, workers=None) -> pd.DataFrame:
    """Confidence intervals as lme4's ``confint(m, oldNames = TRUE)``: rows ``.sig01``,
    ``.sig02``, ... (random-effect sds and correlations in theta's order), ``.sigma``
    (LMMs), then the fixed effects; columns ``2.5 %``, ``97.5 %``.

    - ``"profile"`` (lme4's default): where the profiled likelihood-ratio statistic
      crosses the normal quantile (`glmmbench.inference.profile`); a REML fit is profiled by ML.
    - ``"Wald"``: ``estimate -+ z SE`` for the fixed effects, NaN for the variance
      parameters (as lme4).
    - ``"boot"``: percentile intervals of ``nsim`` parametric bootstrap replicates
      (`glmmbench.inference.bootstrap`), reproducible from ``seed``; ``workers`` as ``bootstrap``.

    ``parm``: names, one name, ``"theta_"`` (the variance parameters) or ``"beta_"``
    (the fixed effects), or positions in the table of all rows counted from 1 as lme4
    counts them (``parm=1`` is ``.sig01``; a sequence of positions); default all.
    """
    from glmmbench.inference.bootstrap import confint_boot, estimates
    from glmmbench.inference.profile import confint_profile, interval_columns

    if method not in CONFINT_METHODS:
        raise GLMMError(f"method must be one of {', '.join(CONFINT_METHODS)}, not {method!r}")
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise GLMMError(f"level must be a number between 0 and 1, not {level!r}")
    names = list(estimates(res).index)
    parm = _select_parameters(names, list(res.fixef.index), parm)
    if method == "profile":
        return confint_profile(res, level, parm)
    if method == "boot":
        return confint_boot(res, level, parm, nsim, seed, workers)
    z = stats.norm.ppf((1 + level) / 2)
    est = {n: (res.fixef[n] - z * res.se[n], res.fixef[n] + z * res.se[n])
           for n in res.fixef.index}
    rows = [est.get(n, (np.nan, np.nan)) for n in parm]
    return pd.DataFrame(rows, index=parm, columns=interval_columns(level))


def _select_parameters(names: list[str], fixef: list[str], parm) -> list[str]:
    """``parm`` as lme4's ``confint`` takes it: None (all), a name, ``"theta_"``,
    ``"beta_"``, a sequence of names, or 1-based positions in ``names``."""
    if parm is None:
        return names
    if isinstance(parm, str):
        if parm == "theta_":
            return [n for n in names if n not in fixef]
        if parm == "beta_":
            return list(fixef)
        parm = [parm]
    elif _is_position(parm):
        parm = [parm]
    elif isinstance(parm, np.ndarray):
        parm = parm.tolist()
    try:
        parm = list(parm)
    except TypeError:
        raise GLMMError(f"parm must be a parameter name, a position (counted from 1), or a "
                        f"sequence of them, not {parm!r}") from None
    if parm and all(_is_position(p) for p in parm):
        bad = [p for p in parm if not 1 <= p <= len(names)]
        if bad:
            raise GLMMError(f"parm positions count from 1 to {len(names)} (lme4's numbering "
                            f"of the rows {', '.join(names)}); got {bad}")
        return [names[int(p) - 1] for p in parm]
    if any(not isinstance(p, str) for p in parm):
        raise GLMMError(f"parm must be names or positions (counted from 1), not a mix or "
                        f"other values: {parm!r}")
    unknown = [p for p in parm if p not in names]
    if unknown or not parm:
        raise GLMMError(f"no parameter(s) {unknown} in this model; its parameters are "
                        f"{', '.join(names)} (or 'theta_', 'beta_', or positions 1 to "
                        f"{len(names)})")
    return parm


def _is_position(p) -> bool:
    return isinstance(p, int | np.integer) and not isinstance(p, bool | np.bool_)
