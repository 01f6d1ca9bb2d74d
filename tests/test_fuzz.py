"""Fuzzed inputs never crash: hypothesis draws formulas (fixed and random terms,
crossed, nested, slopes, smooths), families, nagq and data, then damages about half
of the draws (NaN, inf, constant columns, single-level factors, tiny groups, huge
values, responses outside the family's support, a numeric column read as text, as
many fixed effects as rows, ...). Every call ends in a GLMMResult or a GLMMError
subclass with a message: no other exception, no hang (an alarm per example), no
silent NaN in a result. And the fuzzer is not all errors:

- an undamaged draw is a model the engine must fit (a result, not an error): the
  strategy draws only valid combinations (nagq > 1 with one random term, none for a
  linear model; at least 3 groups of at least 4 rows; every factor level and every
  response category present; a response that is not constant);
- a draw whose damage makes the model unfittable (no rows, a constant grouping
  factor, a numeric column read as text, an invalid nagq, p >= n) must be an error;
- at least ``MIN_FIT_SHARE`` of all draws end in a fitted model.

The first version ended 203 of its 300 draws in errors, nearly all made by the
strategy rather than found in the engine: 12 of 13 draws damaged, one group in a
tenth of them, a constant grouping factor ``(1 | c)`` in a ninth, nagq > 1 with
several random terms or any nagq for a linear model, 2-row groups; and it missed
p >= n (now ``@example``s and the ``p_ge_n`` and ``x_as_text`` damage).

The example budget is fixed and the examples derandomized, so CI time is bounded and
a failure reproduces."""

from __future__ import annotations

import signal
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import glmmbench as gb
from glmmbench.errors import GLMMError
from glmmbench.results import GLMMResult

FAMILIES = ["gaussian", "binomial", "poisson", "negative_binomial", "nbinom1", "Gamma",
            "ordinal", "multinomial"]
FIXED = ["1", "x", "x + z", "f", "x * f", "x + z + f", "0 + x", "x + I(x^2)", "c"]
RANDOM = ["(1 | g)", "(1 + x | g)", "(x || g)", "(1 | g/h)", "(1 | g) + (1 | h)",
          "(1 | g:h)", "(1 | f)", "(0 + x | g)"]
SINGLE_TERM = ("(1 | g)", "(1 + x | g)", "(1 | g:h)", "(1 | f)", "(0 + x | g)")  # nagq > 1
# damage that leaves a model R cannot fit either: the call must be an error
MUST_FAIL = ("empty", "constant_group", "x_as_text", "bad_nagq", "p_ge_n")
DAMAGE = ["nan_x", "inf_x", "nan_y", "constant_x", "single_level_f", "huge_x",
          "tiny_groups", "bad_support", "all_zero_y", "one_row_per_group", "one_group",
          *MUST_FAIL]
EXAMPLES = 200
MIN_FIT_SHARE = 0.4  # of all draws (measured: 0.52)
TIMEOUT_S = 60  # one fit of a few dozen rows takes well under a second


@dataclass(frozen=True)
class Problem:
    formula: str
    data: pd.DataFrame
    family: str
    nagq: int
    damage: str = "none"

    @property
    def must(self) -> str:
        """``"fit"`` (undamaged), ``"fail"`` (unfittable) or ``"either"``."""
        if self.damage == "none":
            return "fit"
        return "fail" if self.damage in MUST_FAIL else "either"


def _response(family: str, eta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if family == "gaussian":
        return eta + rng.normal(size=eta.size)
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
        y[0] = 1.0 - y[1]  # both outcomes occur
        return y
    if family in ("poisson", "negative_binomial", "nbinom1"):
        y = rng.poisson(np.exp(np.clip(eta, -5, 5))).astype(float)
        y[0] = y[1] + 1.0  # not constant
        return y
    if family == "Gamma":
        return rng.gamma(2.0, np.exp(np.clip(eta, -5, 5)) / 2)
    # ordinal: 4 categories; multinomial: 3 (2 x 2 correlated effects per term, not
    # 3 x 3, which took seconds per fit)
    cuts = [-1.0, 0.0, 1.0] if family == "ordinal" else [-0.5, 0.5]
    codes = np.digitize(eta + rng.logistic(size=eta.size), cuts)
    codes[:len(cuts) + 1] = np.arange(len(cuts) + 1)  # every category occurs
    levels = ["a", "b", "c", "d"][:len(cuts) + 1]
    return pd.Categorical([levels[c] for c in codes], categories=levels,
                          ordered=family == "ordinal")


def _nagq_choices(family: str, random: str, smooth: str) -> list[int]:
    """The nagq values the engine accepts for this model (1 listed twice: the usual);
    a smooth is a random-effects term of its own."""
    if family == "gaussian":
        return [1]
    choices = [1, 1] + ([0] if family != "ordinal" else [])
    return choices + ([3] if random in SINGLE_TERM and not smooth else [])


def _frame(ngroups: int, per: int, family: str, rng: np.random.Generator) -> pd.DataFrame:
    n = ngroups * per
    g = np.repeat(np.arange(ngroups), per)
    x, z = rng.normal(size=n), rng.normal(size=n)
    f = rng.permutation(np.arange(n) % 3)  # every level occurs
    h = rng.permutation(np.arange(n) % 3)
    eta = 0.3 + 0.5 * x + rng.normal(size=ngroups)[g]
    d = pd.DataFrame({"x": x, "z": z, "c": np.ones(n),
                      "f": pd.Categorical([f"f{i}" for i in f]),
                      "g": pd.Categorical([f"g{i}" for i in g]),
                      "h": pd.Categorical([f"h{i}" for i in h])})
    d["y"] = _response(family, eta, rng)
    return d


ANY_FAMILY = st.sampled_from(FAMILIES)
HALF_DAMAGED = st.one_of(st.just("none"), st.sampled_from(DAMAGE))


@st.composite
def problems(draw, families=ANY_FAMILY, damages=HALF_DAMAGED) -> Problem:
    family = draw(families)
    damage = draw(damages)
    ngroups = draw(st.integers(3, 10))
    per = draw(st.integers(4, 10))
    seed = draw(st.integers(0, 2**16))
    # Gamma's inverse link needs a positive linear predictor: not without an intercept
    fixed = draw(st.sampled_from([f for f in FIXED
                                  if not (family == "Gamma" and f.startswith("0 +"))]))
    random = draw(st.sampled_from(RANDOM))
    smooth = "" if family == "multinomial" else draw(st.sampled_from(["", " + s(z, k = 4)"]))
    nagq = draw(st.sampled_from(_nagq_choices(family, random, smooth)))
    rng = np.random.default_rng(seed)
    d = _frame(ngroups, per, family, rng)
    n = len(d)
    categorical = family in ("ordinal", "multinomial")
    if damage == "nan_x":
        d.loc[0, "x"] = np.nan
    elif damage == "inf_x":
        d.loc[n - 1, "x"] = np.inf
    elif damage == "nan_y":
        keep = rng.uniform(size=n) > 0.3
        d["y"] = d["y"].astype(object).where(keep, None) if categorical else d["y"].where(keep)
    elif damage == "constant_x":
        d["x"] = 2.0
    elif damage == "single_level_f":
        d["f"] = pd.Categorical(["f0"] * n)
    elif damage == "huge_x":
        d["x"] = d["x"] * 1e150
    elif damage == "tiny_groups":
        d["g"] = pd.Categorical([f"g{i}" for i in range(n)])
    elif damage == "bad_support" and not categorical:
        d.loc[0, "y"] = -1.5
    elif damage == "all_zero_y" and not categorical:
        d["y"] = 0.0
    elif damage == "one_row_per_group":
        d = d.groupby("g", observed=True).head(1).reset_index(drop=True)
    elif damage == "one_group":
        d["g"] = pd.Categorical(["g0"] * n)
    elif damage == "empty":
        d = d.iloc[:0]
    elif damage == "constant_group":
        random = "(1 | c)"
    elif damage == "x_as_text":  # x read from a file as text: a factor with n levels
        d["x"] = d["x"].round(6).astype(str)
        if "x" not in fixed:
            fixed = "x"
    elif damage == "bad_nagq":
        nagq = 3 if family == "gaussian" or random not in SINGLE_TERM or smooth else -1
    elif damage == "p_ge_n":  # as many rows as fixed-effect columns
        fixed, smooth = "x * f", ""
        d = d.iloc[:6].copy()
        d["g"] = pd.Categorical(["g0", "g0", "g1", "g1", "g2", "g2"])
        d["f"] = pd.Categorical(["f0", "f1", "f2"] * 2)
        random = "(1 | g)"
    else:
        damage = "none"  # a damage that does not apply to this family
    return Problem(f"y ~ {fixed}{smooth} + {random}", d, family, nagq, damage)


def _six_rows() -> pd.DataFrame:
    """The p >= n case the committed seed missed: 6 fixed-effect columns (x * f) on 6
    rows; REML raised ZeroDivisionError, ML returned log-likelihood +190 with standard
    errors of 1e-14, and confint() a bare LinAlgError."""
    rng = np.random.default_rng(4)
    return pd.DataFrame({"y": rng.normal(size=6), "x": rng.normal(size=6),
                         "f": pd.Categorical(["f0", "f1", "f2"] * 2),
                         "g": pd.Categorical(["g0", "g0", "g1", "g1", "g2", "g2"])})


def _alarm(signum, frame):
    raise TimeoutError(f"a fit ran longer than {TIMEOUT_S} s")


def _run(problem: Problem) -> GLMMResult | GLMMError:
    """The fit, or the GLMMError it raised (any other exception propagates)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gb.fit(problem.formula, problem.data, problem.family, nagq=problem.nagq)
    except GLMMError as exc:
        return exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _check(problem: Problem) -> str:
    """Run one draw and check its outcome; returns ``"fit"`` or ``"error"``."""
    out = _run(problem)
    where = (problem.formula, problem.family, problem.nagq, problem.damage, len(problem.data))
    if isinstance(out, GLMMError):
        assert str(out).strip(), f"{type(out).__name__} without a message"
        assert problem.must != "fit", (where, f"{type(out).__name__}: {out}")
        return "error"
    assert problem.must != "fail", (where, "fitted", out.loglik, out.status)
    res = out
    assert isinstance(res, GLMMResult)
    # no silent NaN: the estimates and the likelihood are numbers, and a missing
    # standard error comes with a message that says why
    assert np.all(np.isfinite(res.fixef)), (where, res.fixef)
    assert np.isfinite(res.loglik) and np.all(np.isfinite(res.theta)), where
    if not np.all(np.isfinite(res.se)):
        assert any("standard error" in m or "not positive definite" in m
                   for m in res.messages), (where, res.se, res.messages)
    assert res.status in ("ok", "boundary", "not converged", "separation"), where
    table = res.diagnostics()
    assert set(table["verdict"]) <= {"pass", "fail", "n/a"}
    return "fit"


def test_every_call_ends_in_a_result_or_a_clear_error():
    outcomes: Counter[str] = Counter()
    damages: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(problems())
    @example(Problem("y ~ x * f + (1 | g)", _six_rows(), "gaussian", 1, "p_ge_n"))
    @example(Problem("y ~ x * f + (1 | g)", _six_rows().assign(y=[0, 1, 1, 0, 1, 0]),
                     "binomial", 1, "p_ge_n"))
    def check(problem: Problem) -> None:
        outcomes[_check(problem)] += 1
        damages[problem.damage] += 1

    check()
    total = sum(outcomes.values())
    assert total >= EXAMPLES
    assert outcomes["fit"] >= MIN_FIT_SHARE * total, outcomes
    # the draw of damage: about half undamaged, nearly every kind reached
    assert 0.25 <= damages["none"] / total <= 0.75, damages
    assert len(set(DAMAGE) - set(damages)) <= 2, damages


@pytest.mark.parametrize("family", FAMILIES)
def test_the_strategy_reaches_fits_of_every_family(family):
    """The fuzzer is not all errors: undamaged draws of each family fit."""

    @settings(max_examples=3, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(problems(families=st.just(family), damages=st.just("none")))
    def check(problem: Problem) -> None:
        assert problem.must == "fit"
        assert _check(problem) == "fit"

    check()
