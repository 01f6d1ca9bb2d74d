"""Run a study: problems x replicates x engines -> one store row per fit.

    tasks = plan(suite.problems, suite.replicates, seed=1)  # lazy: tasks made as run
    summary = run_study(tasks, store)                       # serial
    summary = run_study(tasks, store, workers=2)            # local Dask cluster
    summary = run_study(tasks, store, scheduler="tcp://...")  # existing cluster

A `Task` is one fit. `execute(task)` runs it anywhere (this process or a Dask
worker) and returns a row; it never raises for a failed fit and never touches
the store. Only this process writes, as each fit completes, so a killed study
resumes: `run_study` skips the keys already in the store under the same problem
definition, and refuses (`StoreError`, before the first fit) a problem whose name
the store holds under another definition (see glmmbench.harness.store).

The task list is lazy (`Plan`: its length and membership are arithmetic), and a
Dask run keeps a bounded window of tasks submitted, so a study of many replicates
does not build its task list up front.

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

import itertools
import os
import socket
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

import simulate
from glmmbench.errors import GLMMError, NotSupportedError
from glmmbench.harness.catalogue import NATIVE, Problem, replicates_of
from glmmbench.harness.store import Store, StoreError

__all__ = ["Instance", "Plan", "Progress", "StudyError", "Task", "check_store", "execute",
           "failure_row", "instance", "plan", "replicate_rng", "run_study", "unsupported"]


class StudyError(GLMMError):
    """A study that cannot run as asked (e.g. a Dask cluster whose workers cannot
    start R)."""


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
    dispformula: str | None = None


class Plan(Sequence[Task]):
    """Every fit of a study, in problem, replicate, engine order, made as it is
    iterated: its length, ``plan[i]`` and ``key in plan`` are arithmetic, so a
    study of a million replicates holds its problems, not its tasks."""

    def __init__(self, problems: Iterable[Problem], replicates: int, seed: int,
                 override: int | None = None) -> None:
        self.problems = tuple(problems)
        self.seed = seed
        self.replicates = tuple(replicates_of(p, replicates, override) for p in self.problems)
        self._sizes = tuple(n * len(p.all_engines)
                            for p, n in zip(self.problems, self.replicates, strict=True))
        self._by_name = {p.name: (p, n) for p, n in zip(self.problems, self.replicates,
                                                         strict=True)}

    def __len__(self) -> int:
        return sum(self._sizes)

    def __iter__(self) -> Iterator[Task]:
        for p, n in zip(self.problems, self.replicates, strict=True):
            for r in range(n):
                for engine in p.all_engines:
                    yield Task(p, r, engine, self.seed)

    def __getitem__(self, i: int) -> Task:  # type: ignore[override]
        if not isinstance(i, int):
            raise TypeError("a Plan is indexed by an integer")
        j = i + len(self) if i < 0 else i
        if not 0 <= j < len(self):
            raise IndexError(f"task {i} of a plan of {len(self)}")
        for p, size in zip(self.problems, self._sizes, strict=True):
            if j < size:
                r, e = divmod(j, len(p.all_engines))
                return Task(p, r, p.all_engines[e], self.seed)
            j -= size
        raise AssertionError("unreachable")

    def __contains__(self, item) -> bool:
        """A `Task` or its key (problem, replicate, engine)."""
        key = item.key if isinstance(item, Task) else item
        try:
            name, r, engine = key
        except (TypeError, ValueError):
            return False
        if name not in self._by_name:
            return False
        p, n = self._by_name[name]
        return isinstance(r, int | np.integer) and 0 <= r < n and engine in p.all_engines


def plan(problems: Iterable[Problem], replicates: int, seed: int,
         override: int | None = None) -> Plan:
    """Every fit of a study, in problem, replicate, engine order (a lazy `Plan`)."""
    return Plan(problems, replicates, seed, override)


def replicate_rng(seed: int, problem: str, replicate: int) -> np.random.Generator:
    """The generator of one replicate: independent streams per (problem, replicate)."""
    key = zlib.crc32(problem.encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key, replicate]))


def instance(problem: Problem, replicate: int, seed: int) -> Instance:
    """Data, formula and truth of one replicate of ``problem``."""
    if not problem.simulated:
        from glmmbench import datasets

        return Instance(datasets.load(problem.dataset), problem.formula, None,
                        problem.model_dispformula)
    sim = simulate.generate(problem.scenario, replicate_rng(seed, problem.key, replicate))
    return Instance(sim.data, problem.formula or sim.formula, sim.truth,
                    problem.model_dispformula)


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
    options = dict(p.options.get(task.engine, {}))
    if inst.dispformula is not None:
        options["dispformula"] = inst.dispformula
    return reference_r.fit_reference(
        task.engine, inst.formula, inst.data, family=p.family, link=p.link, nagq=p.nagq,
        reml=p.reml, timeout=p.timeout, **options)


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
    res = fit(inst.formula, inst.data, family=p.family, link=p.link, nagq=p.nagq, reml=p.reml,
              dispformula=inst.dispformula)
    return res.to_record()


def _base_row(task: Task) -> dict:
    p = task.problem
    return {
        "problem": p.name, "replicate": task.replicate, "engine": task.engine,
        "family": p.family, "link": p.link or simulate.FAMILY_LINKS[p.family][0],
        "formula": p.formula, "nagq": p.nagq, "reml": p.reml, "seed": task.seed,
        "worker": f"{socket.gethostname()}:{os.getpid()}", "definition": p.definition_hash,
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
        From `plan` (or any sequence of tasks).
    store
        Rows already in it under the same problem definitions are skipped (resume);
        new rows are committed one by one. A store of another seed, or with rows of
        another definition of one of the problems, is refused (`StoreError`) before
        the first fit.
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
    problems, seeds = _problems_and_seeds(tasks)
    descriptions = check_store(tasks, store)
    if seeds:
        store.set_meta("seed", next(iter(seeds)))
    for desc in descriptions:
        store.put_problem(desc)
    done = store.done({name: p.definition_hash for name, p in problems.items()})
    if isinstance(tasks, Plan):
        skipped = sum(key in tasks for key in done)
    else:
        skipped = len(done & {t.key for t in tasks})
    planned = len(tasks)
    todo = (t for t in tasks if t.key not in done)
    bar = Progress(planned - skipped, skipped) if progress else None
    counts = {"failures": 0, "run": 0}

    def on_row(row: dict) -> None:
        store.add(row)
        counts["run"] += 1
        counts["failures"] += row["status"] in ("error", "timeout")
        if bar:
            bar.update(row)

    t0 = time.perf_counter()
    if planned > skipped and (scheduler or workers):
        needs_r = any(p.engines for p in problems.values())
        _run_dask(todo, on_row, workers, scheduler, needs_r)
    else:
        for task in todo:
            on_row(execute(task))
    return {"planned": planned, "skipped": skipped, "run": counts["run"],
            "failures": counts["failures"], "elapsed_s": time.perf_counter() - t0}


def _problems_and_seeds(tasks: Sequence[Task]) -> tuple[dict[str, Problem], set[int]]:
    if isinstance(tasks, Plan):
        return {p.name: p for p in tasks.problems}, ({tasks.seed} if len(tasks) else set())
    return {t.problem.name: t.problem for t in tasks}, {t.seed for t in tasks}


def check_store(tasks: Sequence[Task], store: Store) -> list[dict]:
    """Refuse, writing nothing, a store that holds a study of another seed or rows of
    another definition of one of the tasks' problems (`StoreError`); return the
    problems' descriptions. `run_study` calls it first; callers that write their
    own metadata into the store call it before that."""
    problems, seeds = _problems_and_seeds(tasks)
    stored = store.meta().get("seed")
    if stored is not None and seeds and seeds != {stored}:
        raise StoreError(f"store {store.path} holds a study with seed {stored}; "
                         f"this one has seed {sorted(seeds)}: use another store")
    descriptions = [p.describe() for p in problems.values()]
    store.check_definitions(descriptions)
    return descriptions


def _daemonic() -> bool:
    import multiprocessing

    return bool(multiprocessing.current_process().daemon)


def _run_dask(tasks: Iterable[Task], on_row: Callable[[dict], None], workers: int | None,
              scheduler: str | None, needs_r: bool = True) -> None:
    import logging

    import dask
    from distributed import Client, LocalCluster, as_completed

    # A daemonic worker process may not start children, and each worker needs its R.
    settings = {"distributed.worker.daemon": False,
                "distributed.worker.multiprocessing-method": "spawn"}
    with dask.config.set(settings):
        if scheduler:
            cluster, client = None, Client(scheduler)
            if any(client.run(_daemonic).values()) and needs_r:
                client.close()
                raise StudyError(
                    "the cluster's workers are daemonic and cannot start R; start them with "
                    "DASK_DISTRIBUTED__WORKER__DAEMON=False")
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR,
                                   env={"REFERENCE_R_WORKERS": "1"})
            client = Client(cluster)
        try:
            # a bounded window of submitted tasks, refilled as fits complete
            n_workers = len(client.scheduler_info().get("workers", {})) or (workers or 1)
            window = max(64, 8 * n_workers)
            order = itertools.count()
            pending = iter(tasks)
            futures = {}
            done_iter = as_completed()

            def submit(k: int) -> None:
                for task in itertools.islice(pending, k):
                    fut = client.submit(execute, task, pure=False, priority=-next(order))
                    futures[fut.key] = task
                    done_iter.add(fut)

            submit(window)
            for fut in done_iter:
                task = futures.pop(fut.key)
                try:
                    row = fut.result()
                except Exception as exc:  # noqa: BLE001 - a lost worker is a failed fit
                    row = failure_row(task, exc)
                on_row(row)
                fut.release()
                submit(1)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
