"""Run a study: problems x replicates x engines -> one store row per fit.

    tasks = plan(suite.problems, suite.replicates, seed=1)
    summary = run_study(tasks, store)                       # serial
    summary = run_study(tasks, store, workers=2)            # local Dask cluster
    summary = run_study(tasks, store, scheduler="tcp://...")  # existing cluster

A `Task` is one fit. `execute(task)` runs it anywhere (this process or a Dask
worker) and returns a row; it never raises for a failed fit and never touches
the store. Only this process writes, as each fit completes, so a killed study
resumes: `run_study` skips the keys already in the store.

Replicate data are a pure function of (seed, problem key, replicate): the generator
is ``np.random.default_rng(SeedSequence([seed, crc32(key), replicate]))`` with the
problem's ``key`` (its name, or a ``data_key`` shared by a series of estimators),
so serial and distributed runs fit the same data, and every engine of a
replicate sees the same rows.

Times are those the engines measure in the process that fits (`FitRecord`
``time_s``); a process's first native fit follows an untimed warm-up fit.

On Dask every worker is a process with one thread, and runs its R fits in
reference_r's own spawned R worker (a pool of one): one R per Dask worker, and
R is never forked. Workers of an existing cluster must be allowed children:
start them with ``DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker ADDRESS
--nthreads 1``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

import simulate
from glmmbench.errors import NotSupportedError
from glmmbench.harness.catalogue import NATIVE, Problem, replicates_of
from glmmbench.harness.store import Store

__all__ = ["Instance", "Progress", "Task", "execute", "failure_row", "instance", "plan",
           "replicate_rng", "run_study", "unsupported"]


@dataclass(frozen=True)
class Task:
    """One fit: a problem's replicate with one engine."""

    problem: Problem
    replicate: int
    engine: str
    seed: int

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.problem.name, self.replicate, self.engine)


@dataclass(frozen=True)
class Instance:
    """The data one replicate of a problem is fitted to, and its truth (None for datasets)."""

    data: pd.DataFrame
    formula: str
    truth: dict | None


def plan(problems: Iterable[Problem], replicates: int, seed: int,
         override: int | None = None) -> list[Task]:
    """Every fit of a study, in problem, replicate, engine order."""
    return [
        Task(p, r, engine, seed)
        for p in problems
        for r in range(replicates_of(p, replicates, override))
        for engine in p.all_engines
    ]


def replicate_rng(seed: int, problem: str, replicate: int) -> np.random.Generator:
    """The generator of one replicate: independent streams per (problem, replicate)."""
    key = zlib.crc32(problem.encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key, replicate]))


def instance(problem: Problem, replicate: int, seed: int) -> Instance:
    """Data, formula and truth of one replicate of ``problem``."""
    if not problem.simulated:
        from glmmbench import datasets

        return Instance(datasets.load(problem.dataset), problem.formula, None)
    sim = simulate.generate(problem.scenario, replicate_rng(seed, problem.key, replicate))
    return Instance(sim.data, problem.formula or sim.formula, sim.truth)


# ------------------------------------------------------------------ one fit


def unsupported(exc: BaseException) -> bool:
    """Whether the native engine declined the model as beyond what it fits: a
    `NotSupportedError` (a feature it lacks, such as a tensor-product smooth). Such
    rows read "not supported"; they are not failures."""
    return isinstance(exc, NotSupportedError)


_R_READY = False


def _fit_r(task: Task, inst: Instance) -> dict:
    import reference_r

    global _R_READY
    if not _R_READY:
        if os.environ.get("REFERENCE_R_WORKERS", "1") != "1":
            reference_r.configure(workers=1)  # one R per process that runs fits
        _R_READY = True
    p = task.problem
    return reference_r.fit_reference(
        task.engine, inst.formula, inst.data, family=p.family, link=p.link, nagq=p.nagq,
        reml=p.reml, timeout=p.timeout, **p.options.get(task.engine, {}))


_NATIVE_READY = False


def _warm_native() -> None:
    """One untimed fit per process, so that imports and first-call costs do not land
    in the first timed fit (R's worker has loaded its packages before its first)."""
    from glmmbench import datasets
    from glmmbench.fit import fit

    global _NATIVE_READY
    if not _NATIVE_READY:
        fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", datasets.load("cbpp"),
            family="binomial")
        fit("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))
        _NATIVE_READY = True


def _fit_native(task: Task, inst: Instance) -> dict:
    from glmmbench.fit import fit

    _warm_native()
    p = task.problem
    res = fit(inst.formula, inst.data, family=p.family, link=p.link, nagq=p.nagq, reml=p.reml)
    return res.to_record()


def _base_row(task: Task) -> dict:
    p = task.problem
    return {
        "problem": p.name, "replicate": task.replicate, "engine": task.engine,
        "family": p.family, "link": p.link or simulate.FAMILY_LINKS[p.family][0],
        "formula": p.formula, "nagq": p.nagq, "reml": p.reml, "seed": task.seed,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def failure_row(task: Task, exc: BaseException, wall_s: float | None = None) -> dict:
    """The row of a fit that raised ``exc``."""
    from reference_r import RTimeout

    if isinstance(exc, RTimeout):
        status = "timeout"
    elif task.engine == NATIVE and unsupported(exc):
        status = "unsupported"
    else:
        status = "error"
    return {**_base_row(task), "status": status, "message": f"{type(exc).__name__}: {exc}",
            "wall_s": wall_s, "finished": _now()}


def execute(task: Task) -> dict:
    """Run one fit and return its store row; a failed fit is a row, not an exception."""
    t0 = time.perf_counter()
    inst = None
    try:
        inst = instance(task.problem, task.replicate, task.seed)
        fitter = _fit_native if task.engine == NATIVE else _fit_r
        rec = fitter(task, inst)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row
        row = failure_row(task, exc, time.perf_counter() - t0)
        if inst is not None:
            row.update(formula=inst.formula, truth=inst.truth)
        return row
    model = rec["model"]
    return {
        **_base_row(task),
        "link": model["link"], "formula": model["formula"],
        "status": "ok", "message": "; ".join(rec["messages"]) or None,
        "converged": bool(rec["converged"]), "fit_status": fit_status(rec),
        "loglik": rec["loglik"], "time_s": rec["time_s"],
        "wall_s": time.perf_counter() - t0, "finished": _now(), "record": rec, "truth": inst.truth,
    }


def fit_status(rec: dict) -> str:
    """What a fit says of itself: the native record's ``status`` (``GLMMResult.status``);
    for an R record, ``not converged``, ``boundary`` (a singular-fit message) or ``ok``
    (R's engines do not detect separation)."""
    if "status" in rec:
        return rec["status"]
    if not rec["converged"]:
        return "not converged"
    if any("singular" in m or "boundary" in m for m in rec["messages"]):
        return "boundary"
    return "ok"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------ progress


class Progress:
    """``[ 37/120] failures 2  unsupported 5  eta 1m20s`` on a text stream."""

    def __init__(self, total: int, skipped: int = 0, stream=None) -> None:
        self.total, self.skipped = total, skipped
        self.stream = sys.stderr if stream is None else stream
        self.done = self.failures = self.unsupported = 0
        self.t0 = time.perf_counter()
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        if skipped:
            self.stream.write(f"resuming: {skipped} fits already in the store\n")
        self._show()

    def update(self, row: dict) -> None:
        self.done += 1
        self.failures += row["status"] in ("error", "timeout")
        self.unsupported += row["status"] == "unsupported"
        self._show(f"{row['problem']}/{row['replicate']}/{row['engine']} {row['status']}")

    def _show(self, last: str = "") -> None:
        width = len(str(self.total))
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        line = (f"[{self.done:{width}d}/{self.total}] failures {self.failures}  "
                f"unsupported {self.unsupported}  eta {_duration(eta)}  {last}")
        if self.tty:
            self.stream.write("\r" + line.ljust(100)[:100])
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds != seconds:
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


# ------------------------------------------------------------------ the study


def run_study(tasks: Sequence[Task], store: Store, *, workers: int | None = None,
              scheduler: str | None = None, progress: bool = True) -> dict:
    """Run the tasks the store does not have yet; write each row as it completes.

    Parameters
    ----------
    tasks
        From `plan`.
    store
        Rows already in it are skipped (resume); new rows are committed one by one.
    workers
        Run on a local Dask cluster of this many single-threaded processes.
    scheduler
        Address of an existing Dask scheduler (overrides ``workers``).
    progress
        Show a progress line on stderr.

    Returns
    -------
    dict
        ``planned``, ``skipped``, ``run``, ``failures``, ``elapsed_s``.
    """
    seeds = {t.seed for t in tasks}
    stored = store.meta().get("seed")
    if stored is not None and seeds and seeds != {stored}:
        raise ValueError(f"store {store.path} holds a study with seed {stored}; "
                         f"this one has seed {sorted(seeds)}: use another store")
    if seeds:
        store.set_meta("seed", seeds.pop())
    for spec in {t.problem.name: t.problem for t in tasks}.values():
        store.put_problem(spec.describe())
    done = store.done()
    todo = [t for t in tasks if t.key not in done]
    bar = Progress(len(todo), len(tasks) - len(todo)) if progress else None
    counts = {"failures": 0}

    def on_row(row: dict) -> None:
        store.add(row)
        counts["failures"] += row["status"] in ("error", "timeout")
        if bar:
            bar.update(row)

    t0 = time.perf_counter()
    if todo and (scheduler or workers):
        _run_dask(todo, on_row, workers, scheduler)
    else:
        for task in todo:
            on_row(execute(task))
    return {"planned": len(tasks), "skipped": len(tasks) - len(todo), "run": len(todo),
            "failures": counts["failures"], "elapsed_s": time.perf_counter() - t0}


def _daemonic() -> bool:
    import multiprocessing

    return bool(multiprocessing.current_process().daemon)


def _run_dask(tasks: Sequence[Task], on_row: Callable[[dict], None], workers: int | None,
              scheduler: str | None) -> None:
    import logging

    import dask
    from distributed import Client, LocalCluster, as_completed

    # A daemonic worker process may not start children, and each worker needs its R.
    settings = {"distributed.worker.daemon": False,
                "distributed.worker.multiprocessing-method": "spawn"}
    with dask.config.set(settings):
        if scheduler:
            cluster, client = None, Client(scheduler)
            if any(client.run(_daemonic).values()) and any(t.engine != NATIVE for t in tasks):
                client.close()
                raise RuntimeError(
                    "the cluster's workers are daemonic and cannot start R; start them with "
                    "DASK_DISTRIBUTED__WORKER__DAEMON=False")
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR,
                                   env={"REFERENCE_R_WORKERS": "1"})
            client = Client(cluster)
        try:
            futures = {}
            for i, task in enumerate(tasks):
                fut = client.submit(execute, task, pure=False, priority=-i)
                futures[fut.key] = (fut, task)
            for fut in as_completed([f for f, _ in futures.values()]):
                task = futures.pop(fut.key)[1]
                try:
                    row = fut.result()
                except Exception as exc:  # noqa: BLE001 - a lost worker is a failed fit
                    row = failure_row(task, exc)
                on_row(row)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
