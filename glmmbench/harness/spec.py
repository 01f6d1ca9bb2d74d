"""Studies that users write: a TOML spec -> problems -> the study runner.

    [study]
    name = "small clusters"
    replicates = 200
    seed = 1

    [[scenario]]                      # simulate.Scenario's own knobs
    name = "binary_small"
    family = "binomial"
    n_groups = 100
    group_size = 3
    intercept = -0.5
    beta_x = 1.0
    var_intercept = 2.0
    estimators = [{nagq = 1}, {nagq = 9}]    # default [{}]: Laplace / REML
    engines = ["lme4"]                # default: every R engine that fits the model

    [[dataset]]                       # a shipped dataset (glmmbench.datasets)
    name = "cbpp"                     # the problem; the dataset too unless `dataset` says
    dataset = "cbpp"
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    family = "binomial"
    engines = ["lme4", "glmmTMB"]

The native engine fits every problem. Each estimator of a scenario is its own
problem in the store (``binary_small_nagq9``; the ``nagq`` column says which),
drawn from the same replicates (one ``data_key``). From Python::

    spec = load_spec("study.toml")           # or parse_spec(dict)
    summary = run_spec(spec, "out/", workers=2)

A spec that is not right raises ``SpecError`` naming the table and the key, when
it is loaded, before the first fit: among others a negative seed, more than
`MAX_REPLICATES` replicates, a timeout that is not a positive number of seconds, a
formula that does not parse or names a column the data do not have.

Rerunning a spec into the same store resumes it. After an edit that changes a
problem's definition (its data, formula, family, link, estimator or R engine
options; not its engines, timeout or replicate count) the store refuses the run
before the first fit, naming the problem and what changed: give the changed problem
a new name, or write to another store (see glmmbench.harness.store).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import simulate
from glmmbench.errors import GLMMError, NotSupportedError
from glmmbench.harness.catalogue import (
    MAX_REPLICATES,
    NATIVE,
    R_ENGINES,
    Problem,
    default_r_engines,
)

__all__ = ["Spec", "SpecError", "load_spec", "parse_spec", "run_spec"]

_STUDY_KEYS = {"name": str, "replicates": int, "seed": int}
MAX_SEED = 2**63 - 1  # the store's seed column is a signed 64-bit integer
_DEFAULT_TIMEOUT = 300.0
_ESTIMATOR_KEYS = {"nagq": int, "reml": bool}
_SCENARIO_EXTRA = ("name", "formula", "estimators", "engines", "timeout")
_DATASET_KEYS = ("name", "dataset", "formula", "family", "link", "engines", "estimators",
                 "timeout")
# engines that fit adaptive quadrature (nAGQ > 1): lme4 alone
_AGQ_ENGINES = ("lme4",)


class SpecError(GLMMError):
    """A study spec that cannot be run; the message names the table and the key."""


@dataclass(frozen=True)
class Spec:
    """A parsed study: its problems, replicates of the simulated ones, and the seed."""

    name: str
    replicates: int
    seed: int
    problems: tuple[Problem, ...]


def load_spec(path: str | Path) -> Spec:
    """Read a TOML study spec (see the module docstring)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SpecError(f"spec {path}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"spec {path}: not valid TOML: {exc}") from exc
    return parse_spec(raw)


def parse_spec(raw: Mapping[str, Any]) -> Spec:
    """A spec from its TOML tables as a dict (``[study]``, ``[[scenario]]``, ``[[dataset]]``)."""
    unknown = set(raw) - {"study", "scenario", "dataset"}
    if unknown:
        raise SpecError(f"unknown table(s) {sorted(unknown)}; valid: [study], [[scenario]], "
                        "[[dataset]]")
    study = raw.get("study")
    if not isinstance(study, Mapping):
        raise SpecError("[study]: the table is missing (name, replicates, seed)")
    _check_keys("[study]", study, _STUDY_KEYS, required=tuple(_STUDY_KEYS))
    for key, kind in _STUDY_KEYS.items():
        _check_type("[study]", key, study[key], kind)
    if study["replicates"] < 1:
        raise SpecError(f"[study] replicates: must be >= 1, not {study['replicates']}")
    if study["replicates"] > MAX_REPLICATES:
        raise SpecError(f"[study] replicates: {study['replicates']} is more than "
                        f"{MAX_REPLICATES}, the most a study runs (a typo?)")
    if not 0 <= study["seed"] <= MAX_SEED:
        raise SpecError(f"[study] seed: must be an integer from 0 to 2**63 - 1, not "
                        f"{study['seed']}")
    problems: list[Problem] = []
    for i, table in enumerate(_tables(raw, "scenario")):
        problems += _scenario_problems(table, f"[[scenario]] #{i + 1}")
    for i, table in enumerate(_tables(raw, "dataset")):
        problems += _dataset_problems(table, f"[[dataset]] #{i + 1}")
    if not problems:
        raise SpecError("the spec has no [[scenario]] and no [[dataset]] table: nothing to fit")
    names = [p.name for p in problems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"problem names are not unique: {dup} (give each table its own name)")
    return Spec(study["name"], study["replicates"], study["seed"], tuple(problems))


def run_spec(spec: Spec, out: str | Path, *, store: str | Path | None = None,
             workers: int | None = None, scheduler: str | None = None,
             progress: bool = False, report: bool = True) -> dict:
    """Run a spec's study into ``out/study.sqlite`` (or ``store``), resuming what is
    there, and write the report to ``out``; returns `run_study`'s summary."""
    from glmmbench.harness.store import Store
    from glmmbench.harness.study import check_store, plan, run_study

    out = Path(out)
    store_path = Path(store) if store else out / "study.sqlite"
    tasks = plan(spec.problems, spec.replicates, spec.seed)
    with Store(store_path) as st:
        check_store(tasks, st)  # another seed or definition: refused, nothing written
        st.set_meta("suite", f"spec:{spec.name}")
        st.set_meta("replicates", spec.replicates)
        st.set_meta("workers", scheduler or workers or "serial")
        summary = run_study(tasks, st, workers=workers, scheduler=scheduler,
                            progress=progress)
        if report:
            from glmmbench.harness.report import write_report

            write_report(st.frame(), out, meta=st.meta(), problems=st.problems())
    return summary


# ------------------------------------------------------------------ tables
def _tables(raw: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    tables = raw.get(kind, [])
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        raise SpecError(f"[[{kind}]]: write each {kind} as its own [[{kind}]] table")
    return tables


def _check_keys(where: str, table: Mapping[str, Any], valid, required=()) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(valid)}")
    missing = [k for k in required if k not in table]
    if missing:
        raise SpecError(f"{where}: missing key(s) {missing}")


def _check_type(where: str, key: str, value, kind) -> None:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise SpecError(f"{where} {key}: must be {kind.__name__}, not {value!r}")


def _timeout(where: str, table: Mapping[str, Any]) -> float:
    value = table.get("timeout", _DEFAULT_TIMEOUT)
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and value > 0)
    if not ok:
        raise SpecError(f"{where} timeout: must be a positive number of seconds, "
                        f"not {value!r}")
    return float(value)


def _names(tree) -> set[str]:
    """The variables (names) of a formula's syntax tree (iteratively: a formula of
    many terms is a deep tree)."""
    from glmmbench.model import formula as fm

    out, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, fm.Name):
            out.add(node.id)
        elif isinstance(node, fm.Call):
            stack += [a for _, a in node.args]
        elif isinstance(node, fm.BinOp):
            stack += [node.left, node.right]
        elif isinstance(node, fm.Unary):
            stack.append(node.operand)
        elif isinstance(node, fm.Paren):
            stack.append(node.expr)
    return out


def _check_formula(where: str, formula: str, columns) -> None:
    """Parse with glmmbench's parser and look the variables up in the data's columns."""
    from glmmbench.model.formula import parse_expr, parse_formula

    try:
        parse_formula(formula)
    except NotSupportedError:
        return  # a term the native engine declines: "not supported" rows, by design
    except GLMMError as exc:
        raise SpecError(f"{where} formula: {exc}") from None
    except RecursionError:
        raise SpecError(f"{where} formula: too deeply nested for glmmbench's formula "
                        "parser") from None
    missing = sorted(_names(parse_expr(formula)) - set(columns))
    if missing:
        raise SpecError(f"{where} formula: no column(s) {missing} in the data; they have "
                        f"{', '.join(map(str, columns))}")


def _label(where: str, table: Mapping[str, Any]) -> str:
    name = table.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"{where} name: a name of letters, digits and _ is required, "
                        f"not {name!r}")
    return f"{where} ({name!r})"


def _estimators(where: str, table: Mapping[str, Any]) -> list[dict]:
    ests = table.get("estimators", [{}])
    if not isinstance(ests, list) or not ests or not all(isinstance(e, Mapping) for e in ests):
        raise SpecError(f"{where} estimators: a non-empty list of tables such as "
                        "[{nagq = 1}, {nagq = 9}]")
    out = []
    for e in ests:
        _check_keys(f"{where} estimators", e, _ESTIMATOR_KEYS)
        for key, kind in _ESTIMATOR_KEYS.items():
            if key in e:
                _check_type(f"{where} estimators", key, e[key], kind)
        if e.get("nagq", 1) < 0:
            raise SpecError(f"{where} estimators nagq: must be >= 0, not {e['nagq']}")
        out.append(dict(e))
    if len({tuple(sorted(e.items())) for e in out}) < len(out):
        raise SpecError(f"{where} estimators: the same estimator is listed twice")
    return out


def _engines(where: str, table: Mapping[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    if "engines" not in table:
        return default
    engines = table["engines"]
    if not isinstance(engines, list) or not all(isinstance(e, str) for e in engines):
        raise SpecError(f"{where} engines: a list of names from {NATIVE}, "
                        f"{', '.join(R_ENGINES)}")
    unknown = sorted(set(engines) - {NATIVE, *R_ENGINES})
    if unknown:
        raise SpecError(f"{where} engines: unknown {unknown}; valid: {NATIVE}, "
                        f"{', '.join(R_ENGINES)} (the native engine always runs)")
    return tuple(e for e in engines if e != NATIVE)


def _estimator_name(base: str, est: Mapping[str, Any], several: bool) -> str:
    if not several:
        return base
    parts = [f"nagq{est['nagq']}" if "nagq" in est else "",
             {True: "reml", False: "ml"}.get(est.get("reml"), "")]
    return "_".join([base, *(p for p in parts if p)]) if any(parts) else f"{base}_default"


def _problems(where: str, base: dict, estimators: list[dict], engines: tuple[str, ...],
              several_key: str) -> list[Problem]:
    out = []
    for est in estimators:
        nagq = est.get("nagq", 1)
        # R engines without adaptive quadrature drop out of that estimator's problem
        r_engines = tuple(e for e in engines if nagq <= 1 or e in _AGQ_ENGINES)
        name = _estimator_name(base["name"], est, len(estimators) > 1)
        try:
            out.append(Problem(**{**base, "name": name, "nagq": nagq, "reml": est.get("reml"),
                                  "engines": r_engines, "data_key": several_key}))
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}") from exc
    return out


def _scenario_problems(table: Mapping[str, Any], where: str) -> list[Problem]:
    where = _label(where, table)
    knobs = [f.name for f in dataclasses.fields(simulate.Scenario)]
    _check_keys(where, table, [*_SCENARIO_EXTRA, *knobs], required=("name", "family"))
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()
              if k in knobs}
    try:
        scenario = simulate.Scenario(**values)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"{where}: {exc}") from exc
    formula = table.get("formula")
    if formula is not None and not isinstance(formula, str):
        raise SpecError(f"{where} formula: must be a string, not {formula!r}")
    if formula is not None:  # the columns of a replicate (they do not depend on the draw)
        columns = simulate.generate(scenario, np.random.default_rng(0)).data.columns
        _check_formula(where, formula, columns)
    base = {"name": table["name"], "family": scenario.family, "link": scenario.resolved_link,
            "scenario": scenario, "formula": formula, "timeout": _timeout(where, table)}
    engines = _engines(where, table, default_r_engines(scenario))
    return _problems(where, base, _estimators(where, table), engines, table["name"])


def _dataset_problems(table: Mapping[str, Any], where: str) -> list[Problem]:
    from glmmbench import datasets

    where = _label(where, table)
    _check_keys(where, table, _DATASET_KEYS, required=("name", "formula", "family"))
    dataset = table.get("dataset", table["name"])
    if dataset not in datasets.names():
        key = "dataset" if "dataset" in table else "name"
        raise SpecError(f"{where} {key}: unknown dataset {dataset!r}; shipped: "
                        f"{', '.join(datasets.names())}")
    for key in ("formula", "family", "link"):
        if key in table:
            _check_type(where, key, table[key], str)
    _check_formula(where, table["formula"], datasets.load(dataset).columns)
    base = {"name": table["name"], "family": table["family"], "link": table.get("link"),
            "dataset": dataset, "formula": table["formula"], "timeout": _timeout(where, table)}
    engines = _engines(where, table, ("lme4", "glmmTMB"))
    return _problems(where, base, _estimators(where, table), engines, table["name"])
