"""glmmbench.testing: assert_matches and the pytest plugin's ``reference_r`` fixture,
as a package author would use them in their own test suite."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from glmmbench import datasets, fit
from glmmbench.harness import compare
from glmmbench.testing import assert_matches, comparisons

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_pair(reference_r):
    data = datasets.load("sleepstudy")
    return fit(SLEEP, data), reference_r("lme4", SLEEP, data)


@pytest.mark.r
def test_a_native_fit_matches_lme4(sleep_pair):
    native, r = sleep_pair
    table = assert_matches(native, r)
    assert set(table["quantity"]) >= {"loglik", "fixef", "se", "sdcor"}
    assert table["within_tol"].all()


@pytest.mark.r
def test_a_gap_fails_and_names_the_comparison(sleep_pair):
    native, r = sleep_pair
    moved = copy.deepcopy(r)
    moved["fixef"]["Days"] *= 1.1
    with pytest.raises(AssertionError, match=r"fixef Days: native 10\.4673"):
        assert_matches(native, moved)
    # a looser tolerance of the caller's own lets it pass
    assert_matches(native, moved, tol={"fixef": compare.Tolerance(atol=0.0, rtol=0.2)})


@pytest.mark.r
def test_comparisons_refuse_a_native_record_or_another_family(sleep_pair):
    native, r = sleep_pair
    with pytest.raises(ValueError, match="not an R engine"):
        comparisons(native, native.to_record())
    other = copy.deepcopy(r)
    other["model"]["family"] = "poisson"
    with pytest.raises(ValueError, match="not the same model"):
        comparisons(native, other)


@pytest.mark.r
def test_the_plugin_serves_a_users_test_file(pytester):
    """The example test file, run by pytest in a fresh process as a user would:
    the ``reference_r`` fixture comes from the installed plugin (entry point)."""
    shutil.copy(ROOT / "examples" / "test_with_r.py", pytester.path / "test_with_r.py")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_with_r.py")
    result.assert_outcomes(passed=1)
