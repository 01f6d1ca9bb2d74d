"""A pool of long-lived, spawned worker processes, each with its own embedded R.

R is single-threaded and not fork-safe, and a crash or hang inside R must not
take the caller down. Each worker is started with the ``spawn`` context, loads
R, the reference packages and ``reference_r/R/*.R`` once, and then serves
requests over a pipe. A worker that overruns its timeout or dies is killed and
replaced; the caller gets `RTimeout` / `RWorkerDied` and the next call works.
Workers do not re-run the caller's ``__main__`` script (see `_main_hidden`).
"""

from __future__ import annotations

import atexit
import builtins
import multiprocessing as mp
import os
import queue
import sys
import threading
from contextlib import contextmanager
from importlib import resources

from .errors import RBridgeError, RError, RTimeout, RWorkerDied

__all__ = ["configure", "request", "shutdown", "worker_pids"]

STARTUP_TIMEOUT = 180.0
_PACKAGES = ("ordinal", "glmmTMB", "mgcv", "gamm4", "lme4")


# ---------------------------------------------------------------- child process


def _start_r() -> dict:
    import rpy2.rinterface_lib.callbacks as callbacks
    import rpy2.robjects as ro

    # Warnings and messages are caught as conditions in R; console text is noise.
    callbacks.consolewrite_print = lambda text: None
    callbacks.consolewrite_warnerror = lambda text: None
    libs = "; ".join(f"library({p})" for p in _PACKAGES)
    ro.r(f"suppressPackageStartupMessages({{{libs}}})")
    r_dir = resources.files("reference_r") / "R"
    files = sorted(p.name for p in r_dir.iterdir() if p.name.endswith(".R"))
    for name in ["common.R"] + [f for f in files if f != "common.R"]:
        ro.r["source"](str(r_dir / name))
    return {"pid": os.getpid(), "r_version": str(ro.r("R.version.string")[0])}


def _handle(message: tuple):
    import rpy2.robjects as ro

    from .convert import from_r, to_r_dataframe

    kind = message[0]
    if kind == "describe":
        return ("ok", from_r(ro.globalenv["gb_describe"](to_r_dataframe(message[1]))))
    if kind == "fit":
        job, data = message[1], message[2]
        out = from_r(
            ro.globalenv["gb_fit"](
                job["engine"],
                job["formula"],
                to_r_dataframe(data),
                job["family"],
                job["link"],
                job["nagq"],
                job["reml"],
                _r_options(job["options"]),
            )
        )
        if "error" in out:
            return ("rerror", out["error"], out.get("call"), out.get("messages") or [])
        return ("ok", out)
    if kind == "crash":  # test hook: die the way a crashing R would
        os._exit(3)
    if kind == "pyfail":  # test hook: fail in Python, the way a conversion bug would
        return {}[message[1]]
    raise ValueError(f"unknown request {kind!r}")


def _r_options(options: dict):
    import rpy2.robjects as ro

    def conv(v):
        if isinstance(v, dict):
            return ro.ListVector({k: conv(x) for k, x in v.items()})
        if isinstance(v, list | tuple):
            return ro.StrVector([str(x) for x in v])
        return v

    return ro.ListVector({k: conv(v) for k, v in options.items()})


def _serve(conn) -> None:
    try:
        info = _start_r()
    except BaseException as exc:  # noqa: BLE001 - report any startup failure
        conn.send(("dead", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", info))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        try:
            reply = _handle(message)
        except Exception as exc:  # noqa: BLE001 - every failure goes back as data
            reply = _failure(exc)
        conn.send(reply)


def _failure(exc: Exception) -> tuple:
    """An error raised inside R (rpy2's ``RRuntimeError``) as ``rerror``; any other, a
    Python error of the bridge itself, as ``pyerror`` with its type and traceback, so
    that the caller does not blame R for it."""
    import traceback

    from rpy2.rinterface_lib.embedded import RRuntimeError

    if isinstance(exc, RRuntimeError):
        return ("rerror", str(exc).strip(), None, [])
    return ("pyerror", type(exc).__name__, str(exc), traceback.format_exc())


# ---------------------------------------------------------------- parent side


_MAIN_LOCK = threading.Lock()


@contextmanager
def _main_hidden():
    """Keep a spawned worker from re-running the caller's ``__main__`` script.

    spawn re-imports a script-run ``__main__`` in the child; the worker needs
    none of it (its target lives in this module), and a script without the
    ``if __name__ == "__main__"`` guard would otherwise try to start workers
    from inside a worker.
    """
    main = sys.modules.get("__main__")
    hide = (
        main is not None and getattr(main, "__spec__", None) is None and hasattr(main, "__file__")
    )
    with _MAIN_LOCK:
        if not hide:
            yield
            return
        path = main.__file__
        del main.__file__
        try:
            yield
        finally:
            main.__file__ = path


class _Worker:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_serve, args=(child,), daemon=True, name="reference_r-worker"
        )
        with _main_hidden():
            self.proc.start()
        child.close()
        self.info: dict | None = None

    def ready(self) -> None:
        if self.info is not None:
            return
        if not self.conn.poll(STARTUP_TIMEOUT):
            raise RWorkerDied(f"R worker did not start within {STARTUP_TIMEOUT:.0f} s")
        status, payload = self.conn.recv()
        if status != "ready":
            raise RWorkerDied(f"R worker failed to start: {payload}")
        self.info = payload

    def call(self, message: tuple, timeout: float | None):
        self.conn.send(message)
        if not self.conn.poll(timeout):
            raise TimeoutError
        return self.conn.recv()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(10)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
            self.proc.join(5)
        except (OSError, ValueError):
            pass
        if self.proc.is_alive():
            self.kill()
        self.conn.close()


class _Pool:
    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self.idle: queue.Queue[_Worker | None] = queue.Queue()
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        for _ in range(size):
            self.idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        w = _Worker()
        with self.lock:
            self.workers.append(w)
        return w

    def _drop(self, w: _Worker) -> None:
        w.kill()
        with self.lock:
            self.workers.remove(w)
        self.idle.put(self._spawn())  # start the replacement now, so it warms up

    def run(self, message: tuple, timeout: float | None):
        w = self.idle.get()
        try:
            w.ready()
            reply = w.call(message, timeout)
        except TimeoutError:
            self._drop(w)
            raise RTimeout(f"R fit overran its timeout of {timeout} s; worker replaced") from None
        except (EOFError, OSError, RWorkerDied) as exc:
            self._drop(w)
            raise RWorkerDied(f"R worker died ({exc or 'connection closed'}); replaced") from None
        except BaseException:
            self._drop(w)
            raise
        self.idle.put(w)
        return reply

    def close(self) -> None:
        with self.lock:
            workers, self.workers = self.workers, []
        for w in workers:
            w.stop()


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()
_SIZE = int(os.environ.get("REFERENCE_R_WORKERS", "1"))


def configure(workers: int) -> None:
    """Set the number of R workers (default 1, or ``$REFERENCE_R_WORKERS``).

    Takes effect for the next pool; a running pool is shut down first.
    """
    global _SIZE
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    shutdown()
    _SIZE = int(workers)


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():  # a forked child starts afresh
            _POOL = _Pool(_SIZE)
        return _POOL


def request(message: tuple, timeout: float | None = None):
    """Send one request to a free worker; return its reply or raise.

    Replies ``("ok", value)`` come back as ``value``; R errors raise `RError`. A
    Python error in the worker's own code (bad data: ``ValueError``; a conversion bug:
    ``KeyError``, ...) is re-raised as its built-in type, or as `RBridgeError` for any
    other, with the worker's traceback in its notes.
    """
    status, *payload = _pool().run(message, timeout)
    if status == "ok":
        return payload[0]
    if status == "pyerror":
        kind, text, trace = payload
        cls = getattr(builtins, kind, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            exc = cls(text)
        else:
            exc = RBridgeError(f"{kind}: {text}")
        exc.add_note(f"raised in the R worker's Python code:\n{trace}")
        raise exc
    text, call, messages = payload
    raise RError(text, call, messages)


def worker_pids() -> list[int]:
    """Process ids of the running workers (those started so far)."""
    pool = _POOL
    if pool is None:
        return []
    with pool.lock:
        return [w.proc.pid for w in pool.workers if w.proc.pid is not None]


def shutdown() -> None:
    """Stop every worker (registered with `atexit`)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


atexit.register(shutdown)
