"""The harness under a user's mistakes (issue 23): an edited spec rerun into the same
store, old stores, a killed study, a huge replicate count, reading a store that is
missing or not a store, and the CLI's one-line errors. Native-only tiny problems;
no R.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from glmmbench.cli import main
from glmmbench.harness import study
from glmmbench.harness.catalogue import MAX_REPLICATES, NATIVE, PROBLEMS, Problem
from glmmbench.harness.spec import load_spec, parse_spec, run_spec
from glmmbench.harness.store import Store, StoreError
from glmmbench.harness.study import Plan, execute, plan, run_study

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
[study]
name = "edited"
replicates = 2
seed = 3

[[scenario]]
name = "g"
family = "gaussian"
n_groups = 20
group_size = 5
var_intercept = 1
engines = []
"""


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _tiny(name: str = "tiny", **scenario) -> Problem:
    base = PROBLEMS["smoke_gaussian"].scenario
    return Problem(name, "gaussian", scenario=dataclasses.replace(base, **scenario))


# ------------------------------------------------------------------ definitions


def test_an_edited_problem_is_refused_not_answered_with_the_old_fits(tmp_path):
    out = tmp_path / "out"
    first = run_spec(load_spec(_write(tmp_path, SPEC)), out, report=False)
    assert (first["run"], first["skipped"]) == (2, 0)
    with Store(out / "study.sqlite") as st:
        before = st.frame()
        described = st.problems()["g"]
        meta = st.meta()
    assert before["definition"].nunique() == 1 and before["definition"].notna().all()
    assert described["scenario"]["n_groups"] == 20

    edited = load_spec(_write(tmp_path, SPEC.replace("n_groups = 20", "n_groups = 60")
                                     .replace("replicates = 2", "replicates = 4")))
    with pytest.raises(StoreError) as err:
        run_spec(edited, out, report=False)
    msg = str(err.value)
    assert "another definition of problem 'g'" in msg
    assert "scenario.n_groups: 20 in the store, 60 now" in msg and "new name" in msg
    with Store(out / "study.sqlite") as st:  # nothing written, the description intact
        assert st.count() == 2 and st.problems()["g"]["scenario"]["n_groups"] == 20
        assert st.meta() == meta

    # what is not the definition extends the study: more replicates, another
    # timeout, the same number written as a float
    more = SPEC.replace("replicates = 2", "replicates = 3").replace(
        "var_intercept = 1", "var_intercept = 1.0\ntimeout = 60")
    assert "1.0" in more and "timeout = 60" in more
    again = run_spec(load_spec(_write(tmp_path, more)), out, report=False)
    assert (again["run"], again["skipped"]) == (1, 2)

    # the changed problem under a new name is a new problem
    renamed = SPEC.replace("n_groups = 20", "n_groups = 60").replace('"g"', '"g60"')
    new = run_spec(load_spec(_write(tmp_path, renamed)), out, report=False)
    assert (new["run"], new["skipped"]) == (2, 0)
    with Store(out / "study.sqlite") as st:
        fits = st.frame()
        assert st.problems()["g60"]["scenario"]["n_groups"] == 60
    assert fits.groupby("problem").size().to_dict() == {"g": 3, "g60": 2}
    n_obs = {p: r["record"]["nobs"] for p, r in fits.groupby("problem").first().iterrows()}
    assert n_obs == {"g": 100, "g60": 300}


def test_the_definition_hash_covers_the_model_not_the_run():
    base = _tiny()
    same = [dataclasses.replace(base, timeout=5.0), dataclasses.replace(base, engines=("lme4",)),
            dataclasses.replace(base, replicates=9),
            dataclasses.replace(base, link="identity"),  # the canonical link spelled out
            dataclasses.replace(base, data_key="tiny")]
    assert {p.definition_hash for p in same} == {base.definition_hash}
    other = [dataclasses.replace(base, scenario=dataclasses.replace(base.scenario, n_groups=9)),
             dataclasses.replace(base, formula="y ~ x + (1 | g)"),
             dataclasses.replace(base, reml=False),
             dataclasses.replace(base, data_key="other"),
             dataclasses.replace(base, engines=("lme4",), options={"lme4": {"x": 1}}),
             Problem("tiny", "poisson", scenario=PROBLEMS["smoke_poisson"].scenario)]
    hashes = {p.definition_hash for p in other}
    assert len(hashes) == len(other) and base.definition_hash not in hashes


def test_a_row_of_another_definition_is_refused(tmp_path):
    p = _tiny()
    with Store(tmp_path / "s.sqlite") as st:
        run_study(plan([p], 1, seed=1), st, progress=False)
        row = execute(plan([p], 2, seed=1)[1])
        with pytest.raises(StoreError, match="under definition"):
            st.add({**row, "definition": "0" * 16})
        assert st.add(row)


def _make_old(path: Path) -> None:
    """Turn a store into one written before definitions were recorded."""
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE fits DROP COLUMN definition")
    con.execute("ALTER TABLE problems DROP COLUMN definition")
    for name, spec in list(con.execute("SELECT name, spec FROM problems")):
        desc = json.loads(spec)
        desc.pop("definition")
        desc.pop("data_key")  # older still: no data_key either
        con.execute("UPDATE problems SET spec = ? WHERE name = ?", (json.dumps(desc), name))
    con.commit()
    con.close()


def test_an_old_store_migrates_resumes_and_refuses_a_changed_problem(tmp_path):
    path = tmp_path / "old.sqlite"
    p = _tiny()
    with Store(path) as st:
        run_study(plan([p], 2, seed=1), st, progress=False)
    _make_old(path)
    # reading leaves it as it is
    with Store(path, readonly=True) as st:
        assert st.frame()["definition"].isna().all() and len(st.frame()) == 2
    assert "definition" not in {r[1] for r in sqlite3.connect(path).execute(
        "PRAGMA table_info(fits)")}
    with Store(path) as st:
        assert set(st.frame()["definition"]) == {p.definition_hash}
        out = run_study(plan([p], 3, seed=1), st, progress=False)
        assert (out["run"], out["skipped"]) == (1, 2)
        bigger = dataclasses.replace(p, scenario=dataclasses.replace(p.scenario, n_groups=16))
        with pytest.raises(StoreError, match="scenario.n_groups: 15 in the store, 16 now"):
            run_study(plan([bigger], 3, seed=1), st, progress=False)


def test_rows_of_an_unrecorded_definition_are_not_taken_for_the_problem(tmp_path):
    path = tmp_path / "bare.sqlite"
    with Store(path) as st:
        st.add({**execute(plan([_tiny()], 1, seed=1)[0]), "definition": None})
        with pytest.raises(StoreError, match="did not record which"):
            run_study(plan([_tiny()], 1, seed=1), st, progress=False)


def test_a_killed_study_resumes_where_it_stopped(tmp_path, monkeypatch):
    p = _tiny()
    calls = {"n": 0}
    real = study.execute

    def dies_after_two(task):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(task)

    monkeypatch.setattr(study, "execute", dies_after_two)
    with Store(tmp_path / "s.sqlite") as st, pytest.raises(KeyboardInterrupt):
        run_study(plan([p], 4, seed=1), st, progress=False)
    monkeypatch.setattr(study, "execute", real)
    with Store(tmp_path / "s.sqlite") as st:
        assert st.count() == 2
        out = run_study(plan([p], 4, seed=1), st, progress=False)
        assert (out["planned"], out["skipped"], out["run"]) == (4, 2, 2)
        fits = st.frame()
    assert list(fits["replicate"]) == [0, 1, 2, 3]
    assert set(fits["definition"]) == {p.definition_hash}


# ------------------------------------------------------------------ the task list


def test_the_plan_is_lazy_and_arithmetic():
    a, b = _tiny("a"), dataclasses.replace(_tiny("b"), engines=("lme4",))
    big = plan([a, PROBLEMS["cbpp"], b], 10**8, seed=1)
    assert isinstance(big, Plan) and len(big) == 10**8 + 3 + 2 * 10**8
    assert big[0].key == ("a", 0, NATIVE) and big[10**8].key == ("cbpp", 0, NATIVE)
    assert big[-1].key == ("b", 10**8 - 1, "lme4") and big[-2].key == ("b", 10**8 - 1, NATIVE)
    assert ("b", 5 * 10**7, "lme4") in big and ("a", 3, "lme4") not in big
    assert ("a", 10**8, NATIVE) not in big and ("zz", 0, NATIVE) not in big
    small = plan([a, PROBLEMS["cbpp"], b], 3, seed=1)
    assert [small[i].key for i in range(len(small))] == [t.key for t in small]
    with pytest.raises(IndexError):
        small[len(small)]


def test_a_study_of_a_million_replicates_does_not_build_its_task_list(tmp_path, monkeypatch):
    def fake(task):
        return {"problem": task.problem.name, "replicate": task.replicate,
                "engine": task.engine, "status": "error", "message": "fake",
                "definition": task.problem.definition_hash}

    fits = {"n": 0}
    real_add = Store.add

    def add_then_stop(self, row):
        real_add(self, row)
        fits["n"] += 1
        if fits["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(study, "execute", fake)
    monkeypatch.setattr(Store, "add", add_then_stop)
    tasks = plan([_tiny()], MAX_REPLICATES, seed=1)
    tracemalloc.start()
    t0 = time.perf_counter()
    with Store(tmp_path / "s.sqlite") as st, pytest.raises(KeyboardInterrupt):
        run_study(tasks, st, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 5 and peak < 20e6  # a list would be ~300 MB
    monkeypatch.setattr(Store, "add", real_add)
    with Store(tmp_path / "s.sqlite") as st:
        assert st.count() == 3
        assert len(st.done({"tiny": _tiny().definition_hash})) == 3


# ------------------------------------------------------------------ reading a store


def test_reading_a_missing_store_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "typo" / "nope.sqlite"
    with pytest.raises(StoreError, match="does not exist"):
        Store(missing, readonly=True)
    assert main(["report", "--store", str(missing), "--out", str(tmp_path / "rep")]) == 1
    err = capsys.readouterr().err
    assert err == f"glmmbench: store {missing} does not exist\n"
    assert not (tmp_path / "typo").exists() and not (tmp_path / "rep").exists()


def test_a_file_that_is_not_a_store_is_named(tmp_path, capsys):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database, just some text " * 40)
    for readonly in (True, False):
        with pytest.raises(StoreError, match=f"{junk} is not a glmmbench store"):
            Store(junk, readonly=readonly)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE people (name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a glmmbench store .no fits table; it has people"):
        Store(other)
    assert {r[0] for r in sqlite3.connect(other).execute(
        "SELECT name FROM sqlite_master")} == {"people"}  # left alone
    assert main(["report", "--store", str(junk), "--out", str(tmp_path / "rep")]) == 1
    assert main(["run", "--suite", "smoke", "--store", str(junk), "--out",
                 str(tmp_path / "rep"), "--quiet"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all("is not a glmmbench store" in ln for ln in lines)
    assert junk.read_text().startswith("not a database")


def test_reading_a_store_changes_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        run_study(plan([_tiny()], 1, seed=1), st, progress=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    stamp = path.stat().st_mtime_ns
    with Store(path, readonly=True) as st:
        assert len(st.frame()) == 1 and "tiny" in st.problems()
        with pytest.raises(sqlite3.OperationalError):
            st.con.execute("DELETE FROM fits")
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    assert path.stat().st_mtime_ns == stamp


# ------------------------------------------------------------------ the CLI


def test_cli_refuses_seed_with_spec(tmp_path, capsys):
    spec = _write(tmp_path, SPEC)
    with pytest.raises(SystemExit) as err:
        main(["run", "--spec", str(spec), "--seed", "5", "--out", str(tmp_path / "o")])
    assert "--seed does not go with --spec" in str(err.value)
    for bad in (["--seed", "-1"], ["--replicates", str(MAX_REPLICATES + 1)]):
        with pytest.raises(SystemExit) as err:
            main(["run", "--suite", "smoke", "--out", str(tmp_path / "o"), *bad])
        assert bad[0] in str(err.value)
    assert not (tmp_path / "o").exists()


def test_cli_edited_spec_is_one_line_and_non_zero(tmp_path):
    """The issue's case end to end: n_groups 20 -> 60 rerun into the same store."""
    out = tmp_path / "out"

    def run(text):
        spec = _write(tmp_path, text)
        return subprocess.run([sys.executable, "-m", "glmmbench.cli", "run", "--spec",
                               str(spec), "--out", str(out), "--no-report", "--quiet"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    first = run(SPEC)
    assert first.returncode == 0, first.stderr
    edited = run(SPEC.replace("n_groups = 20", "n_groups = 60"))
    assert edited.returncode == 1
    assert edited.stderr.count("\n") == 1 and "Traceback" not in edited.stderr
    assert edited.stderr.startswith(f"glmmbench: store {out / 'study.sqlite'} holds fits of "
                                    "another definition of problem 'g' (scenario.n_groups: "
                                    "20 in the store, 60 now)")
    with Store(out / "study.sqlite", readonly=True) as st:
        assert st.count() == 2


def test_every_spec_mistake_is_caught_before_the_first_fit(tmp_path, capsys):
    cases = {
        "seed = 3": ("seed = -1", "[study] seed: must be an integer from 0"),
        "replicates = 2": ("replicates = 100000000", "[study] replicates: 100000000 is more"),
        "engines = []": ('engines = []\ntimeout = "abc"',
                         "[[scenario]] #1 ('g') timeout: must be a positive number"),
        "group_size = 5": ('group_size = 5\nformula = "y ~ x + (1 | g"',
                           "[[scenario]] #1 ('g') formula: unbalanced parentheses"),
    }
    for old, (new, message) in cases.items():
        spec = _write(tmp_path, SPEC.replace(old, new))
        with pytest.raises(SystemExit) as err:
            main(["run", "--spec", str(spec), "--out", str(tmp_path / "o")])
        assert message in str(err.value)
    assert not (tmp_path / "o").exists()
    # and parse_spec says the same from a dict
    raw = {"study": {"name": "s", "replicates": 1, "seed": 0},
           "scenario": [{"name": "g", "family": "gaussian", "timeout": float("nan")}]}
    with pytest.raises(Exception, match="timeout: must be a positive number of seconds, "
                                        "not nan"):
        parse_spec(raw)
