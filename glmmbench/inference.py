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

__all__ = ["anova", "RefitWarning"]

ANOVA_COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


class RefitWarning(UserWarning):
    """REML fits were refitted by maximum likelihood for a likelihood-ratio test."""


def anova(*models: GLMMResult) -> pd.DataFrame:
    """Likelihood-ratio tests of nested models fitted to the same data (lme4's
    ``anova(m0, m1, ...)``); rows indexed by formula, lme4's columns."""
    from glmmbench.fit import refit_ml

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
        models = tuple(refit_ml(m) for m in models)
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
