"""Check your own models against R in your own test suite.

    from glmmbench import fit
    from glmmbench.testing import assert_matches

    def test_my_model(reference_r):                   # the pytest fixture below
        native = fit("y ~ x + (1 | g)", data, "binomial")
        r = reference_r("lme4", "y ~ x + (1 | g)", data, family="binomial")
        assert_matches(native, r)

`assert_matches` compares a native fit with an R FitRecord (`reference_r.fit_reference`)
quantity by quantity, as the harness's parity report does (`glmmbench.harness.compare`):
the per-quantity two-sided tolerances of `compare.PARITY_TOL` (or yours), and the
known R-side discrepancies of `reference_r.known_discrepancies` whose rules apply,
each of which excuses only a gap of its own measured size (or says the pair is not
comparable: R reports another quantity there). It fails with every comparison that
is outside its tolerance and not so excused, and with every name that only one of
the two fits has.

The pytest plugin (entry point ``glmmbench``, active once glmmbench is installed)
gives the session fixture ``reference_r``: ``reference_r(engine, formula, data,
**kw)`` is `reference_r.fit_reference` on the package's pool of R workers, started
on first use and shut down at the end of the session. Tests that use it are
skipped, with the reason, when rpy2 or R cannot be loaded, except under CI
(``CI`` set in the environment), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import pytest

from glmmbench.harness import compare
from glmmbench.harness.catalogue import NATIVE

__all__ = ["assert_matches", "comparisons", "reference_r"]


def comparisons(native_fit, r_record: Mapping[str, Any],
                tol: Mapping[str, compare.Tolerance] | None = None) -> pd.DataFrame:
    """The parity table of one native fit against one R record (`compare.parity`'s
    columns: quantity, name, native, reference, diff, rel_diff, within_tol, known)."""
    model = r_record.get("model") or {}
    native = native_fit.to_record() if hasattr(native_fit, "to_record") else dict(native_fit)
    engine = r_record.get("engine")
    if not engine or engine == NATIVE:
        raise ValueError("r_record is not an R engine's FitRecord (reference_r.fit_reference)")
    nm = native["model"]
    rows = [{"problem": "model", "replicate": 0, "engine": e, "family": nm["family"],
             "link": nm["link"], "formula": nm["formula"], "nagq": nm.get("nagq") or 1,
             "status": "ok", "converged": rec.get("converged"), "loglik": rec.get("loglik"),
             "time_s": rec.get("time_s"), "message": "", "record": rec, "truth": None}
            for e, rec in ((NATIVE, native), (engine, dict(r_record)))]
    if model.get("family") not in (None, nm["family"]):
        raise ValueError(f"the R record is a {model.get('family')} model, the native fit "
                         f"{nm['family']}: not the same model")
    return compare.parity(pd.DataFrame(rows), tol=None if tol is None
                          else {**compare.PARITY_TOL, **tol})


def assert_matches(native_fit, r_record: Mapping[str, Any],
                   tol: Mapping[str, compare.Tolerance] | None = None) -> pd.DataFrame:
    """Raise AssertionError unless every comparison of ``native_fit`` with
    ``r_record`` is within tolerance or excused by a known R-side discrepancy of
    its size; return the comparisons.

    ``tol`` overrides `compare.PARITY_TOL` per quantity (``loglik``, ``fixef``,
    ``threshold``, ``se``, ``sdcor``, ``edf``), e.g.
    ``{"se": compare.Tolerance(atol=1e-4, rtol=0.05)}``.
    """
    par = comparisons(native_fit, r_record, tol)
    if par.empty:
        raise AssertionError("no quantity of the two fits could be compared")
    bad = par[par["unexplained"]]
    if len(bad):
        engine = r_record.get("engine")
        lines = [f"  {r.quantity} {r.name}: " + (
                 f"only the {'native fit' if r.only == 'native' else engine} has it"
                 if r.only else
                 f"native {r.native:.6g}, {engine} {r.reference:.6g} (diff {r.diff:.3g})"
                 + (f"; {r.exceeded} does not cover it" if r.exceeded else ""))
                 for r in bad.itertuples()]
        raise AssertionError(f"{len(bad)} of {len(par)} comparisons with {engine} outside "
                             "tolerance:\n" + "\n".join(lines))
    return par


@pytest.fixture(scope="session")
def reference_r() -> Callable[..., dict]:
    """``reference_r(engine, formula, data, **kw)``: an R fit's FitRecord."""
    try:
        import reference_r as ref
        from reference_r.errors import RWorkerDied

        ref.describe_in_r(pd.DataFrame({"x": [1.0]}), timeout=120)
    except Exception as exc:  # no rpy2, no R, no packages: say so
        reason = f"R is not available to glmmbench.testing: {type(exc).__name__}: {exc}"
        if os.environ.get("CI"):  # in CI live R is the contract: fail, never skip
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)

    def fit(engine: str, formula: str, data: pd.DataFrame, **kw) -> dict:
        try:
            return ref.fit_reference(engine, formula, data, **kw)
        except RWorkerDied:  # one more time on a fresh worker
            return ref.fit_reference(engine, formula, data, **kw)

    yield fit
    ref.shutdown()
