"""Study specs (glmmbench.harness.spec): TOML -> problems -> a real study in SQLite.

A spec with two estimators x 3 replicates x 2 engines (native, lme4) gives 12 ok
rows, the nagq column telling the estimators apart; bad specs name the table and
the key; the example spec under examples/ parses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from glmmbench.harness.spec import SpecError, load_spec, parse_spec, run_spec
from glmmbench.harness.store import Store

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
[study]
name = "two_estimators"
replicates = 3
seed = 11

[[scenario]]
name = "binary"
family = "binomial"
n_groups = 12
group_size = 5
intercept = -0.3
beta_x = 0.8
var_intercept = 1.0
estimators = [{nagq = 1}, {nagq = 5}]
engines = ["lme4"]
"""


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@pytest.mark.r
def test_two_estimators_three_replicates_two_engines_give_twelve_ok_rows(tmp_path):
    spec = load_spec(_spec(tmp_path, SPEC))
    assert [p.name for p in spec.problems] == ["binary_nagq1", "binary_nagq5"]
    summary = run_spec(spec, tmp_path / "out", report=True)
    assert summary["failures"] == 0
    with Store(tmp_path / "out" / "study.sqlite") as store:
        fits = store.frame()
    assert len(fits) == 12 and (fits["status"] == "ok").all()
    assert sorted(fits["nagq"].unique()) == [1, 5]
    assert set(fits["engine"]) == {"glmmbench", "lme4"}
    counts = fits.groupby(["problem", "engine"]).size()
    assert (counts == 3).all()
    assert (tmp_path / "out" / "report.md").exists()
    # rerunning resumes: nothing left to fit
    assert run_spec(spec, tmp_path / "out", report=False)["run"] == 0


def test_the_estimators_share_their_replicates():
    spec = parse_spec({"study": {"name": "s", "replicates": 2, "seed": 1},
                       "scenario": [{"name": "b", "family": "binomial",
                                     "estimators": [{"nagq": 1}, {"nagq": 9}],
                                     "engines": ["lme4", "glmmTMB"]}]})
    a, b = spec.problems
    assert a.key == b.key == "b"
    assert (a.nagq, b.nagq) == (1, 9)
    # glmmTMB has no adaptive quadrature: it drops out of the nagq = 9 problem
    assert a.engines == ("lme4", "glmmTMB") and b.engines == ("lme4",)


def test_default_engines_and_estimator():
    spec = parse_spec({"study": {"name": "s", "replicates": 2, "seed": 1},
                       "scenario": [{"name": "nb", "family": "negative_binomial"}],
                       "dataset": [{"name": "sleep_ml", "dataset": "sleepstudy",
                                    "formula": "Reaction ~ Days + (Days | Subject)",
                                    "family": "gaussian", "estimators": [{"reml": False}]}]})
    nb, sleep = spec.problems
    assert nb.name == "nb" and nb.engines == ("lme4", "glmmTMB") and nb.nagq == 1
    assert sleep.dataset == "sleepstudy" and sleep.reml is False


@pytest.mark.parametrize("raw, message", [
    ({"scenario": [{"name": "a", "family": "binomial"}]}, "[study]: the table is missing"),
    ({"study": {"name": "s", "replicates": 2}}, "[study]: missing key(s) ['seed']"),
    ({"study": {"name": "s", "replicates": "3", "seed": 1}}, "[study] replicates: must be int"),
    ({"study": {"name": "s", "replicates": 0, "seed": 1}}, "[study] replicates: must be >= 1"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1}}, "nothing to fit"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1}, "scenarios": []},
     "unknown table(s) ['scenarios']"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial", "n_group": 5}]},
     "[[scenario]] #1 ('a'): unknown key(s) ['n_group']"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial", "n_groups": 1}]},
     "[[scenario]] #1 ('a'): n_groups"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial", "engines": ["lmer"]}]},
     "[[scenario]] #1 ('a') engines: unknown ['lmer']"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial", "estimators": [{"nAGQ": 5}]}]},
     "[[scenario]] #1 ('a') estimators: unknown key(s) ['nAGQ']"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial", "estimators": [{"nagq": 1},
                                                                      {"nagq": 1}]}]},
     "the same estimator is listed twice"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial"}, {"name": "a", "family": "poisson"}]},
     "problem names are not unique: ['a']"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"family": "binomial"}]}, "[[scenario]] #1 name: a name"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "dataset": [{"name": "nosuch", "formula": "y ~ 1 + (1 | g)", "family": "gaussian"}]},
     "[[dataset]] #1 ('nosuch') name: unknown dataset 'nosuch'"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "dataset": [{"name": "cbpp", "family": "binomial"}]},
     "[[dataset]] #1 ('cbpp'): missing key(s) ['formula']"),
    # issue 23: caught at load, not as an error row per fit
    ({"study": {"name": "s", "replicates": 2, "seed": -1},
      "scenario": [{"name": "a", "family": "binomial"}]},
     "[study] seed: must be an integer from 0 to 2**63 - 1, not -1"),
    ({"study": {"name": "s", "replicates": 2, "seed": 2**63},
      "scenario": [{"name": "a", "family": "binomial"}]}, "[study] seed: must be an integer"),
    ({"study": {"name": "s", "replicates": 100_000_000, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial"}]},
     "[study] replicates: 100000000 is more than 1000000"),
    *[({"study": {"name": "s", "replicates": 2, "seed": 1},
        "scenario": [{"name": "a", "family": "binomial", "timeout": bad}]},
       f"[[scenario]] #1 ('a') timeout: must be a positive number of seconds, not {bad!r}")
      for bad in (-5, 0, float("nan"), float("inf"), "abc", True)],
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "dataset": [{"name": "cbpp", "family": "binomial", "timeout": -1,
                   "formula": "cbind(incidence, size - incidence) ~ period + (1 | herd)"}]},
     "[[dataset]] #1 ('cbpp') timeout: must be a positive number of seconds, not -1"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial", "formula": "y ~ x +"}]},
     "[[scenario]] #1 ('a') formula: formula ends unexpectedly after '+'"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial", "formula": "y ~ x"}]},
     "[[scenario]] #1 ('a') formula: no random-effects terms"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "scenario": [{"name": "a", "family": "binomial", "formula": "y ~ x + (1 | grp)"}]},
     "[[scenario]] #1 ('a') formula: no column(s) ['grp'] in the data; they have y, x"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "dataset": [{"name": "cbpp", "family": "binomial",
                   "formula": "cbind(incidence, size - incidence) ~ period + (1 | herd"}]},
     "[[dataset]] #1 ('cbpp') formula: unbalanced parentheses"),
    ({"study": {"name": "s", "replicates": 2, "seed": 1},
      "dataset": [{"name": "cbpp", "family": "binomial",
                   "formula": "cbind(incidense, size - incidence) ~ period + (1 | herd)"}]},
     "[[dataset]] #1 ('cbpp') formula: no column(s) ['incidense']"),
])
def test_bad_specs_name_the_table_and_key(raw, message):
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert message in str(err.value)


def test_a_formula_the_native_engine_declines_is_not_a_spec_error():
    # te() parses; the native engine declines it at fit time ("not supported" rows)
    spec = parse_spec({"study": {"name": "s", "replicates": 1, "seed": 0},
                       "scenario": [{"name": "t", "family": "gaussian", "smooth": "sin",
                                     "beta_x": 0.0, "formula": "y ~ te(x) + (1 | g)"}]})
    assert spec.problems[0].formula == "y ~ te(x) + (1 | g)"


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(_spec(tmp_path, "[study\nname = 1"))
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.toml")


def test_the_example_spec_parses():
    spec = load_spec(ROOT / "examples" / "study.toml")
    assert [p.name for p in spec.problems] == ["binary_small_nagq1", "binary_small_nagq9",
                                               "cbpp"]


def test_cli_reports_a_bad_spec_without_a_traceback(tmp_path):
    path = _spec(tmp_path, SPEC.replace("group_size = 5", "group_sise = 5"))
    proc = subprocess.run([sys.executable, "-m", "glmmbench.cli", "run", "--spec", str(path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "[[scenario]] #1 ('binary'): unknown key(s) ['group_sise']" in proc.stderr
    assert "Traceback" not in proc.stderr
