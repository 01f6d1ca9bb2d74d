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
