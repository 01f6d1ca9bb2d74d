"""glmmbench.testing: assert_matches and the pytest plugin's ``reference_r`` fixture,
as a package author would use them in their own test suite."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pandas as pd
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


# ------------------------------------------------------------------ injected gaps
#
# A real native NB2 fit against glmmTMB's and glmer.nb's real records passes; each kind
# of gap injected into the R record must fail assert_matches and be a failure in a
# report (issue 22: the dispersion was never compared, the loglik had no upper bound,
# a name on one side only dropped out).

NB2 = "TICKS ~ YEAR + (1 | LOCATION)"


@pytest.fixture(scope="module")
def nb2_pair(reference_r):
    data = datasets.load("grouseticks")
    native = fit(NB2, data, "negative_binomial")
    return native, {e: reference_r(e, NB2, data, family="negative_binomial")
                    for e in ("glmmTMB", "lme4")}


def _inject(record: dict, kind: str) -> dict:
    r = copy.deepcopy(record)
    if kind == "sigma 10 % off":
        r["sigma"] *= 1.1
    elif kind == "loglik 1.0 below native":
        r["loglik"] -= 1.0
    elif kind == "loglik 1.0 above native":
        r["loglik"] += 1.0
    elif kind == "a coefficient only R has":
        r["fixef"]["YEAR98"] = 0.1
        r["se"]["YEAR98"] = 0.2
    elif kind == "a coefficient only native has":
        del r["fixef"]["YEAR97"]
        del r["se"]["YEAR97"]
    elif kind == "a variance component only R has":
        r["varcorr"] = [*r["varcorr"], {"grp": "BROOD", "var1": "(Intercept)", "var2": None,
                                        "vcov": 0.25, "sdcor": 0.5}]
    elif kind == "an sd 5 % off":
        r["varcorr"] = [dict(v, sdcor=v["sdcor"] * 1.05) for v in r["varcorr"]]
    elif kind == "a standard error 5 % off":
        r["se"] = {k: v * 1.05 for k, v in r["se"].items()}
    elif kind == "a family parameter only R has":
        r["family_params"] = {"power": 1.5}
    else:
        raise AssertionError(kind)
    return r


INJECTED = ("sigma 10 % off", "loglik 1.0 below native", "loglik 1.0 above native",
            "a coefficient only R has", "a coefficient only native has",
            "a variance component only R has", "an sd 5 % off", "a standard error 5 % off",
            "a family parameter only R has")


@pytest.mark.r
def test_the_real_nb2_pairs_pass(nb2_pair):
    native, records = nb2_pair
    tmb = assert_matches(native, records["glmmTMB"])
    assert tmb["within_tol"].all()  # glmmTMB's approximation: nothing to excuse
    assert set(tmb["quantity"]) >= {"loglik", "fixef", "se", "sdcor", "sigma"}
    lme4 = assert_matches(native, records["lme4"])  # excused by sized entries only
    outside = lme4[~lme4["within_tol"]]
    assert len(outside) and set(outside["known"]) <= {
        "lme4-nb-expected-information-laplace", "lme4-hessian-noise"}
    assert (lme4["only"] == "").all() and lme4["comparable"].all()


@pytest.mark.r
@pytest.mark.parametrize("kind", INJECTED)
@pytest.mark.parametrize("engine", ["glmmTMB", "lme4"])
def test_an_injected_gap_fails(nb2_pair, engine, kind):
    native, records = nb2_pair
    with pytest.raises(AssertionError, match="outside tolerance"):
        assert_matches(native, _inject(records[engine], kind))


@pytest.mark.r
def test_injected_gaps_are_failures_in_a_report(nb2_pair):
    """The same records as a study's fits table: one replicate per kind of gap, each
    counted as a failure by the verdict and the report's summary."""
    from glmmbench.harness import report

    native, records = nb2_pair
    rows = []
    for rep, kind in enumerate(("none", *INJECTED)):
        recs = {"glmmbench": native.to_record(),
                "glmmTMB": records["glmmTMB"] if kind == "none"
                else _inject(records["glmmTMB"], kind)}
        for engine, rec in recs.items():
            rows.append({"problem": "grouseticks_nb", "replicate": rep, "engine": engine,
                         "family": "negative_binomial", "link": "log", "formula": NB2,
                         "nagq": 1, "reml": None, "status": "ok", "message": None,
                         "converged": rec["converged"], "fit_status": "ok",
                         "loglik": rec["loglik"], "time_s": rec["time_s"], "wall_s": None,
                         "seed": 1, "record": rec, "truth": None})
    fits = pd.DataFrame(rows)
    par = compare.parity(fits)
    failed = par[par["unexplained"]].groupby("replicate").size()
    assert 0 not in failed.index  # the real pair
    assert list(failed.index) == list(range(1, len(INJECTED) + 1))  # every injected kind
    verdict = compare.verdict(fits, par, compare.recovery(fits), compare.speed(fits))
    assert verdict.loc[0, "failures"] == int(failed.sum())
    text = report.to_markdown(report.build(fits))
    assert f"{int(failed.sum())} are failures" in text
