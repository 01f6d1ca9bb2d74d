"""The SQLite store and the parts of the study runner that need no R."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

import simulate
from glmmbench.errors import DataError, FamilyError, FormulaError, NotSupportedError
from glmmbench.harness import catalogue
from glmmbench.harness.catalogue import NATIVE, PROBLEMS, SUITES, Problem
from glmmbench.harness.store import Store
from glmmbench.harness.study import (
    Progress,
    execute,
    failure_row,
    instance,
    plan,
    replicate_rng,
    run_study,
    unsupported,
)


def row(problem="p", replicate=0, engine="lme4", status="ok", **kw):
    return {"problem": problem, "replicate": replicate, "engine": engine, "status": status,
            "family": "gaussian", **kw}


def test_store_key_is_unique_and_rows_persist(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        assert s.add(row(loglik=-1.5, record={"fixef": {"x": 1.0}}, truth=None))
        assert not s.add(row(loglik=-99.0))  # same key: ignored, first row kept
        assert s.add(row(replicate=1, status="timeout", message="RTimeout: 1 s"))
        s.set_meta("seed", 3)
    with Store(path) as s:
        assert s.done() == {("p", 0, "lme4"), ("p", 1, "lme4")}
        df = s.frame()
        assert s.meta() == {"seed": 3}
    assert len(df) == 2
    assert df.loc[0, "loglik"] == -1.5 and df.loc[0, "record"] == {"fixef": {"x": 1.0}}
    assert df.loc[1, "status"] == "timeout" and df.loc[1, "record"] is None
    con = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO fits (problem, replicate, engine, status) "
                    "VALUES ('p', 0, 'lme4', 'ok')")


def test_store_rejects_bad_rows(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        with pytest.raises(ValueError, match="status"):
            s.add(row(status="weird"))
        with pytest.raises(ValueError, match="unknown column"):
            s.add(row(colour="red"))
        with pytest.raises(ValueError, match="lacks"):
            s.add({"problem": "p"})
        s.add(row(loglik=float("nan")))
        assert s.frame()["loglik"].isna().all()


def test_record_round_trips_as_json(tmp_path):
    rec = {"fixef": {"(Intercept)": 0.1}, "varcorr": [{"grp": "g", "var2": None}], "x": [1, 2]}
    with Store(tmp_path / "s.sqlite") as s:
        s.add(row(record=rec, truth={"fixef": {"x": 0.5}}))
        raw = s.con.execute("SELECT record FROM fits").fetchone()[0]
        assert json.loads(raw) == rec
        assert s.frame().loc[0, "truth"] == {"fixef": {"x": 0.5}}


def test_catalogue_quick_covers_every_family_with_an_r_engine():
    from reference_r.api import ENGINES
    from reference_r.names import ENGINE_FAMILIES

    assert set(catalogue.R_ENGINES) == set(ENGINES)
    quick = SUITES["quick"].problems
    families = {f for e in ENGINES for f in ENGINE_FAMILIES[e]}
    assert families <= {p.family for p in quick if p.engines}
    for p in PROBLEMS.values():
        for e in p.engines:
            assert p.family in ENGINE_FAMILIES[e], (p.name, e)
    for suite in SUITES.values():
        assert len(set(suite.problem_names)) == len(suite.problem_names)


def test_problem_validation():
    with pytest.raises(ValueError, match="exactly one"):
        Problem("bad", "gaussian")
    with pytest.raises(ValueError, match="unknown R engine"):
        Problem("bad", "gaussian", dataset="sleepstudy", formula="y ~ 1", engines=("SAS",))


def test_plan_replicates_and_order():
    probs = [PROBLEMS["cbpp"], PROBLEMS["smoke_gaussian"]]
    tasks = plan(probs, replicates=3, seed=7)
    keys = [t.key for t in tasks]
    assert keys[:2] == [("cbpp", 0, NATIVE), ("cbpp", 0, "lme4")]
    assert sum(k[0] == "cbpp" for k in keys) == 3  # a dataset has one replicate
    assert sum(k[0] == "smoke_gaussian" for k in keys) == 3 * 2
    assert len(plan(probs, 3, 7, override=1)) == 3 + 2


def test_replicates_are_reproducible_and_independent():
    p = PROBLEMS["smoke_poisson"]
    a, b = instance(p, 0, seed=5), instance(p, 0, seed=5)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert not instance(p, 1, seed=5).data["y"].equals(a.data["y"])
    assert not instance(p, 0, seed=6).data["y"].equals(a.data["y"])
    x1 = replicate_rng(5, "smoke_poisson", 0).standard_normal(3)
    x2 = replicate_rng(5, "smoke_gaussian", 0).standard_normal(3)
    assert not np.allclose(x1, x2)
    assert a.truth["fixef"] == simulate.generate(p.scenario, replicate_rng(5, p.name, 0)
                                                 ).truth["fixef"]


def test_unsupported_is_the_exception_type_not_its_wording():
    assert unsupported(NotSupportedError("smooth te(x,z): only s() smooths are supported"))
    # the wording alone no longer decides: an input error that says "yet" or "not
    # supported" is an error row, and so is an unknown family (a typo)
    assert not unsupported(ValueError("nagq > 1 is not available in this engine yet"))
    assert not unsupported(FormulaError("'x' is not supported"))
    assert not unsupported(FamilyError("unknown family 'binomal'"))
    assert not unsupported(DataError("column 'y' has negative counts"))
    assert not unsupported(RuntimeError("yet"))


def test_execute_native_rows_without_r():
    ok = execute(plan([PROBLEMS["smoke_gaussian"]], 1, seed=1)[0])
    assert ok["status"] == "ok" and ok["engine"] == NATIVE
    assert ok["formula"] == "y ~ x + z + (1 | g)" and ok["truth"]["fixef"]["x"] == 0.5
    assert ok["loglik"] == ok["record"]["loglik"] and ok["time_s"] > 0
    json.dumps(ok)
    no = execute(plan([PROBLEMS["smoke_tensor"]], 1, seed=1)[0])
    assert no["status"] == "unsupported" and "UnsupportedTermError" in no["message"]
    assert no["truth"]["fixef"]  # the replicate was drawn before the engine declined


def test_failure_rows():
    from reference_r import RError, RTimeout

    task = plan([PROBLEMS["smoke_gaussian"]], 1, seed=1)[1]
    assert failure_row(task, RTimeout("over 1 s"))["status"] == "timeout"
    r = failure_row(task, RError("singular"))
    assert r["status"] == "error" and r["message"] == "RError: singular"
    # only the native engine declines models as "not supported"
    assert failure_row(task, FamilyError("not fitted yet"))["status"] == "error"


def test_run_study_native_only_resumes(tmp_path, capsys):
    probs = [Problem("tiny", "gaussian", scenario=PROBLEMS["smoke_gaussian"].scenario),
             PROBLEMS["smoke_tensor"]]
    probs = [dataclasses.replace(p, engines=()) for p in probs]
    tasks = plan(probs, 2, seed=3)
    with Store(tmp_path / "s.sqlite") as s:
        s.add(execute(tasks[1]))  # as if a killed run had finished one fit
        out = run_study(tasks, s, progress=True)
        assert out == {**out, "planned": 4, "skipped": 1, "run": 3, "failures": 0}
        assert run_study(tasks, s, progress=False)["run"] == 0
        assert s.count() == 4
        with pytest.raises(ValueError, match="seed"):
            run_study(plan(probs, 2, seed=4), s, progress=False)
    err = capsys.readouterr().err
    assert "resuming: 1 fits" in err and "[3/3] failures 0  unsupported 2" in err


def test_progress_line():
    import io

    buf = io.StringIO()
    bar = Progress(2, stream=buf)
    bar.update({"problem": "p", "replicate": 0, "engine": "lme4", "status": "error"})
    assert "[1/2] failures 1  unsupported 0  eta " in buf.getvalue()
