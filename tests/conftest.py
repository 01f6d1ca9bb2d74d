"""Shared fixtures. Live-R tests carry the ``r`` marker and skip, with a reason,
only where R or rpy2 is absent; ``make test`` installs both, so in CI they run."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest


def _r_missing_reason() -> str | None:
    if shutil.which("R") is None:
        return "R is not installed (run `make setup`)"
    if importlib.util.find_spec("rpy2") is None:
        return "rpy2 is not installed (run `make setup`)"
    return None


R_MISSING = _r_missing_reason()


def pytest_collection_modifyitems(config, items):
    if R_MISSING is None:
        return
    if os.environ.get("CI"):
        # In CI live R is part of the contract: a missing R is a failure, not a skip.
        raise pytest.UsageError(f"CI run without live R: {R_MISSING}")
    skip = pytest.mark.skip(reason=R_MISSING)
    for item in items:
        if "r" in item.keywords:
            item.add_marker(skip)


# Embedding R in the test process (rpy2) prepends R's library paths, among them
# /usr/lib/x86_64-linux-gnu, to LD_LIBRARY_PATH. Python subprocesses started later
# (the CLI, reference_r's spawned workers, Dask workers) then load the system's
# libpython instead of their own interpreter's and fail in the stdlib (seen here:
# "'_thread.RLock' object has no attribute '_recursion_count'"). Restore it.
_LD_LIBRARY_PATH = os.environ.get("LD_LIBRARY_PATH")


@pytest.fixture(autouse=True)
def _restore_library_path():
    yield
    if _LD_LIBRARY_PATH is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = _LD_LIBRARY_PATH
