"""The ``glmmbench`` command.

    glmmbench run --suite quick|full --out DIR [--store FILE] [--workers N]
                  [--scheduler ADDR] [--replicates K] [--seed S] [--problems A,B]
                  [--no-report] [--quiet]
    glmmbench run --spec study.toml --out DIR [--store FILE] [--workers N]
                  [--scheduler ADDR] [--no-report] [--quiet]     (glmmbench.harness.spec)
    glmmbench report --store FILE --out DIR
    glmmbench list [--suite NAME]
    glmmbench bench ...            (glmmbench.harness.bench: native vs glmer timings)

``run`` resumes: rerunning the same command skips the fits already in the store
(default ``DIR/study.sqlite``) and writes the report at the end. A problem whose
definition changed since its rows were written (an edited spec or catalogue entry)
is refused before the first fit: give it a new name or another ``--store``. With
``--scheduler`` the workers must be allowed to start their R process: start
them as ``DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker ADDR --nthreads 1``.

``report`` reads the store and creates or changes nothing in it. A mistake in the
arguments, the spec or the store ends in a one-line ``glmmbench: ...`` message on
stderr and exit status 1 (2 for argparse's usage errors, 130 after Ctrl-C); set
``GLMMBENCH_TRACEBACK=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["main"]

DEFAULT_SEED = 20240601
MAX_SEED = 2**63 - 1


def _parser() -> argparse.ArgumentParser:
    from glmmbench.harness.catalogue import SUITES

    p = argparse.ArgumentParser(prog="glmmbench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite into a store, then write the report")
    run.add_argument("--suite", choices=list(SUITES), default=None,
                     help="a built-in suite (default quick)")
    run.add_argument("--spec", help="a TOML study spec instead of a suite (glmmbench.harness.spec)")
    run.add_argument("--out", required=True, help="report directory")
    run.add_argument("--store", help="SQLite store (default OUT/study.sqlite)")
    run.add_argument("--workers", type=int, help="local Dask cluster of N processes")
    run.add_argument("--scheduler", help="address of an existing Dask scheduler")
    run.add_argument("--replicates", type=int, help="replicates per simulated problem")
    run.add_argument("--seed", type=int, help=f"default {DEFAULT_SEED}; a spec gives its own")
    run.add_argument("--problems", help="comma-separated names: only these problems of the suite")
    run.add_argument("--no-report", action="store_true", help="only fill the store")
    run.add_argument("--quiet", action="store_true", help="no progress line")

    rep = sub.add_parser("report", help="write the report of a store")
    rep.add_argument("--store", required=True)
    rep.add_argument("--out", required=True)

    lst = sub.add_parser("list", help="list the problems of a suite")
    lst.add_argument("--suite", choices=list(SUITES), default="quick")

    sub.add_parser("bench", help="native vs R timings (glmmbench.harness.bench)",
                   add_help=False)
    return p


def _report(store_path: Path, out: Path) -> None:
    from glmmbench.harness.report import write_report
    from glmmbench.harness.store import Store

    with Store(store_path, readonly=True) as store:
        fits, meta, problems = store.frame(), store.meta(), store.problems()
    if fits.empty:
        raise SystemExit(f"glmmbench: store {store_path} has no fits")
    paths = write_report(fits, out, meta=meta, problems=problems)
    print(f"report: {paths['report.md']}, {paths['report.html']}, {paths['results.csv']}",
          file=sys.stderr)


def _run(args) -> int:
    from glmmbench.harness.catalogue import MAX_REPLICATES, get_suite
    from glmmbench.harness.store import Store
    from glmmbench.harness.study import check_store, plan, run_study

    if args.workers is not None and args.workers < 1:
        raise SystemExit("glmmbench: --workers must be >= 1")
    if args.replicates is not None and not 1 <= args.replicates <= MAX_REPLICATES:
        raise SystemExit(f"glmmbench: --replicates must be from 1 to {MAX_REPLICATES}")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise SystemExit("glmmbench: --seed must be an integer from 0 to 2**63 - 1")
    if args.spec is not None:
        return _run_spec(args)
    suite = get_suite(args.suite or "quick")
    problems = suite.problems
    if args.problems:
        wanted = args.problems.split(",")
        unknown = set(wanted) - set(suite.problem_names)
        if unknown:
            raise SystemExit(f"glmmbench: not in suite {suite.name}: {', '.join(sorted(unknown))}")
        problems = tuple(p for p in problems if p.name in wanted)
    out = Path(args.out)
    store_path = Path(args.store) if args.store else out / "study.sqlite"
    seed = DEFAULT_SEED if args.seed is None else args.seed
    tasks = plan(problems, suite.replicates, seed, args.replicates)
    t0 = time.perf_counter()
    with Store(store_path) as store:
        check_store(tasks, store)  # another seed or definition: refused, nothing written
        meta = store.meta()
        if "started" not in meta:
            store.set_meta("started", datetime.now(UTC).isoformat(timespec="seconds"))
        store.set_meta("suite", suite.name)
        store.set_meta("replicates", args.replicates or suite.replicates)
        store.set_meta("workers", args.scheduler or args.workers or "serial")
        summary = run_study(tasks, store, workers=args.workers, scheduler=args.scheduler,
                            progress=not args.quiet)
        store.set_meta("finished", datetime.now(UTC).isoformat(timespec="seconds"))
        store.set_meta("elapsed_s", round(meta.get("elapsed_s", 0) + summary["elapsed_s"], 1))
    print(f"{summary['run']} fits run, {summary['skipped']} already in {store_path}, "
          f"{summary['failures']} failures, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if not args.no_report:
        _report(store_path, out)
    return 0


def _run_spec(args) -> int:
    from glmmbench.harness.spec import SpecError, load_spec, run_spec

    for flag in ("suite", "problems", "replicates", "seed"):
        if getattr(args, flag) is not None:
            raise SystemExit(f"glmmbench: --{flag} does not go with --spec (the spec says; "
                             "edit its [study] table)")
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        raise SystemExit(f"glmmbench: {exc}") from None
    t0 = time.perf_counter()
    summary = run_spec(spec, args.out, store=args.store, workers=args.workers,
                       scheduler=args.scheduler, progress=not args.quiet,
                       report=not args.no_report)
    print(f"{summary['run']} fits run, {summary['skipped']} already in the store, "
          f"{summary['failures']} failures, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _list(args) -> int:
    from glmmbench.harness.catalogue import get_suite, replicates_of

    suite = get_suite(args.suite)
    print(f"suite {suite.name}: {suite.description}")
    for p in suite.problems:
        n = replicates_of(p, suite.replicates)
        formula = p.formula or "(scenario's true model)"
        link = p.link or "canonical"
        print(f"  {p.name:24s} {p.family:18s} {link:9s} x{n:<3d} "
              f"{', '.join(p.all_engines):32s} nagq={p.nagq} {formula}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command; a user's mistake is a one-line message and a non-zero status."""
    from glmmbench.errors import GLMMError

    if os.environ.get("GLMMBENCH_TRACEBACK"):
        return _main(argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("glmmbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (GLMMError, OSError, sqlite3.Error) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"glmmbench: {text}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from glmmbench.harness import bench

        return bench.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "report":
        _report(Path(args.store), Path(args.out))
        return 0
    return _list(args)


if __name__ == "__main__":
    raise SystemExit(main())
