"""Fuzzed inputs never crash: hypothesis draws formulas (fixed and random terms,
crossed, nested, slopes, smooths), data (NaN, inf, constant columns, single-level
factors, tiny groups, huge values, responses outside the family's support) and
families, and every call ends in a GLMMResult or a GLMMError subclass with a message:
no other exception, no hang (an alarm per example), no silent NaN in a result.

The example budget is fixed and the examples derandomized, so CI time is bounded and
a failure reproduces."""

from __future__ import annotations

import signal
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import glmmbench as gb
from glmmbench.errors import GLMMError
from glmmbench.results import GLMMResult

FAMILIES = ["gaussian", "binomial", "poisson", "negative_binomial", "nbinom1", "Gamma",
            "ordinal", "multinomial"]
FIXED = ["1", "x", "x + z", "f", "x * f", "x + z + f", "0 + x", "x + I(x^2)", "c"]
RANDOM = ["(1 | g)", "(1 + x | g)", "(x || g)", "(1 | g/h)", "(1 | g) + (1 | h)",
          "(1 | g:h)", "(1 | f)", "(0 + x | g)", "(1 | c)"]
DAMAGE = ["none", "nan_x", "inf_x", "nan_y", "constant_x", "single_level_f", "huge_x",
          "tiny_groups", "bad_support", "all_zero_y", "one_row_per_group", "empty"]
TIMEOUT_S = 60  # one fit of a few dozen rows takes well under a second


def _response(family: str, eta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if family == "gaussian":
        return eta + rng.normal(size=eta.size)
    if family == "binomial":
        return rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
    if family in ("poisson", "negative_binomial", "nbinom1"):
        return rng.poisson(np.exp(np.clip(eta, -5, 5))).astype(float)
    if family == "Gamma":
        return rng.gamma(2.0, np.exp(np.clip(eta, -5, 5)) / 2)
    codes = np.digitize(eta + rng.logistic(size=eta.size), [-1.0, 0.0, 1.0])
    levels = ["a", "b", "c", "d"]
    return pd.Categorical([levels[c] for c in codes], categories=levels,
                          ordered=family == "ordinal")


@st.composite
def problems(draw):
    family = draw(st.sampled_from(FAMILIES))
    ngroups = draw(st.integers(1, 10))
    per = draw(st.integers(2, 10))
    damage = draw(st.sampled_from(DAMAGE))
    seed = draw(st.integers(0, 2**16))
    fixed = draw(st.sampled_from(FIXED))
    random = draw(st.sampled_from(RANDOM))
    smooth = draw(st.sampled_from(["", " + s(z, k = 4)"]))
    nagq = draw(st.sampled_from([1, 1, 1, 0, 3]))
    rng = np.random.default_rng(seed)
    n = ngroups * per
    g = np.repeat(np.arange(ngroups), per)
    x, z = rng.normal(size=n), rng.normal(size=n)
    f = rng.integers(0, 3, size=n)
    eta = 0.3 + 0.5 * x + rng.normal(size=ngroups)[g] if n else np.zeros(0)
    d = pd.DataFrame({"x": x, "z": z, "c": np.ones(n),
                      "f": pd.Categorical([f"f{i}" for i in f]),
                      "g": pd.Categorical([f"g{i}" for i in g]),
                      "h": pd.Categorical([f"h{i}" for i in rng.integers(0, 3, size=n)])})
    d["y"] = _response(family, eta, rng)
    if damage == "nan_x" and n:
        d.loc[0, "x"] = np.nan
    elif damage == "inf_x" and n:
        d.loc[n - 1, "x"] = np.inf
    elif damage == "nan_y" and n:
        d["y"] = d["y"].astype(object).where(rng.uniform(size=n) > 0.3, None) \
            if family in ("ordinal", "multinomial") else d["y"].where(rng.uniform(size=n) > 0.3)
    elif damage == "constant_x":
        d["x"] = 2.0
    elif damage == "single_level_f":
        d["f"] = pd.Categorical(["f0"] * n)
    elif damage == "huge_x":
        d["x"] = d["x"] * 1e150
    elif damage == "tiny_groups":
        d["g"] = pd.Categorical([f"g{i}" for i in range(n)])
    elif damage == "bad_support" and n and family not in ("ordinal", "multinomial"):
        d.loc[0, "y"] = -1.5
    elif damage == "all_zero_y" and family not in ("ordinal", "multinomial"):
        d["y"] = 0.0
    elif damage == "one_row_per_group":
        d = d.groupby("g", observed=True).head(1).reset_index(drop=True)
    elif damage == "empty":
        d = d.iloc[:0]
    formula = f"y ~ {fixed}{smooth} + {random}"
    return formula, d, family, nagq


def _alarm(signum, frame):
    raise TimeoutError(f"a fit ran longer than {TIMEOUT_S} s")


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_every_call_ends_in_a_result_or_a_clear_error(problem):
    formula, data, family, nagq = problem
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = gb.fit(formula, data, family, nagq=nagq)
    except GLMMError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(res, GLMMResult)
    # no silent NaN: the estimates and the likelihood are numbers, and a missing
    # standard error comes with a message that says why
    assert np.all(np.isfinite(res.fixef)), (formula, res.fixef)
    assert np.isfinite(res.loglik) and np.all(np.isfinite(res.theta))
    if not np.all(np.isfinite(res.se)):
        assert any("standard error" in m or "not positive definite" in m
                   for m in res.messages), (formula, res.se, res.messages)
    assert res.status in ("ok", "boundary", "not converged", "separation")
    table = res.diagnostics()
    assert set(table["verdict"]) <= {"pass", "fail", "n/a"}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_strategy_reaches_fits_of_every_family(family):
    """The fuzzer is not all errors: an undamaged draw of each family fits."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(8), 8)
    x = rng.normal(size=g.size)
    d = pd.DataFrame({"x": x, "g": pd.Categorical(g)})
    d["y"] = _response(family, 0.3 + 0.5 * x + rng.normal(size=8)[g], rng)
    assert isinstance(gb.fit("y ~ x + (1 | g)", d, family), GLMMResult)
