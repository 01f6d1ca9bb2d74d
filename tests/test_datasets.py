"""Each shipped dataset equals R's own copy, column by column (live R)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glmmbench import datasets

R_SOURCE = {"wine": "ordinal", "soup": "ordinal"}


@pytest.fixture(scope="module")
def r_env():
    import rpy2.robjects as ro

    ro.r("suppressPackageStartupMessages({library(lme4); library(ordinal)})")
    return ro


def _r_column(ro, name, col):
    pkg = R_SOURCE.get(name, "lme4")
    ro.r(f'data("{name}", package = "{pkg}", envir = environment())')
    x = ro.r(f"{name}[[{col!r}]]")
    if ro.r(f"is.factor({name}[[{col!r}]])")[0]:
        levels = list(ro.r(f"levels({name}[[{col!r}]])"))
        ordered = bool(ro.r(f"is.ordered({name}[[{col!r}]])")[0])
        labels = list(ro.r(f"as.character({name}[[{col!r}]])"))
        return pd.Categorical(labels, categories=levels, ordered=ordered)
    return np.array(x, dtype=float).copy()


def test_names():
    assert datasets.names() == sorted(
        ["sleepstudy", "Penicillin", "cbpp", "grouseticks", "VerbAgg", "InstEval", "Dyestuff",
         "wine", "soup"]
    )


@pytest.mark.r
@pytest.mark.parametrize("name", datasets.names())
def test_equals_r_copy(r_env, name):
    ro = r_env
    df = datasets.load(name)
    pkg = R_SOURCE.get(name, "lme4")
    ro.r(f'data("{name}", package = "{pkg}")')
    assert list(ro.r(f"names({name})")) == list(df.columns)
    assert int(ro.r(f"nrow({name})")[0]) == len(df)
    for col in df.columns:
        expected = _r_column(ro, name, col)
        got = df[col]
        if isinstance(expected, pd.Categorical):
            assert isinstance(got.dtype, pd.CategoricalDtype), col
            assert list(got.cat.categories) == list(expected.categories), col
            assert got.cat.ordered == expected.ordered, col
            assert list(got.astype(str)) == list(np.asarray(expected).astype(str)), col
        else:
            np.testing.assert_allclose(got.to_numpy(dtype=float), expected, rtol=1e-14,
                                       err_msg=col)


def test_load_returns_copy():
    a = datasets.load("cbpp")
    a.loc[0, "size"] = -1
    assert datasets.load("cbpp").loc[0, "size"] != -1


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        datasets.load("nope")
