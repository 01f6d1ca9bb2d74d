"""R datasets used by examples and tests, shipped as CSV + JSON column metadata.

The files in ``glmmbench/data`` were written by ``data/export_datasets.R`` from the
copies in R's lme4 and ordinal packages. Factors come back as ``pd.Categorical``
with R's level order; ordered factors are ordered.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import pandas as pd

__all__ = ["load", "names"]

_DTYPES = {"integer": "Int64", "double": "float64", "logical": "boolean"}


def names() -> list[str]:
    """Names of the shipped datasets."""
    files = resources.files("glmmbench.data").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".json"))


@cache
def _read(name: str) -> pd.DataFrame:
    root = resources.files("glmmbench.data")
    meta_file = root / f"{name}.json"
    if not meta_file.is_file():
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(names())}")
    meta = json.loads(meta_file.read_text())
    cols = meta["columns"]
    # Read factor columns as strings so that level labels like "01" survive intact.
    str_cols = {c: str for c, m in cols.items() if m["type"] in ("factor", "ordered")}
    with (root / f"{name}.csv").open() as fh:
        raw = pd.read_csv(fh, dtype=str_cols, keep_default_na=False, na_values=[""])
    out = {}
    for col, m in cols.items():
        kind = m["type"]
        if kind in ("factor", "ordered"):
            dtype = pd.CategoricalDtype(m["levels"], ordered=kind == "ordered")
            out[col] = raw[col].astype(dtype)
        else:
            out[col] = raw[col].astype(_DTYPES[kind])
            if kind == "integer" and not out[col].isna().any():
                out[col] = out[col].astype("int64")
    frame = pd.DataFrame(out)
    if len(frame) != meta["nrow"]:
        raise RuntimeError(f"dataset {name!r}: {len(frame)} rows, expected {meta['nrow']}")
    return frame


def load(name: str) -> pd.DataFrame:
    """Return R's dataset ``name`` (a fresh copy) as a DataFrame.

    Available: sleepstudy, Penicillin, cbpp, grouseticks, VerbAgg (lme4);
    wine, soup (ordinal).
    """
    return _read(name).copy()
