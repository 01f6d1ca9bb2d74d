"""Run R code in a child ``Rscript`` and get its value back as JSON.

For live comparisons in tests (marked ``pytest.mark.r``)::

    run_r("colnames(model.matrix(~ period, d))", d=df)

DataFrames passed as keyword arguments are bound to those names in R, with
factors rebuilt from ``pd.Categorical`` (same levels, same order, ordered flag)
and missing values as ``NA``. The value of the code's last expression is
converted with ``jsonlite::toJSON``: ``NA`` -> ``None``; doubles travel as
17-significant-digit text (jsonlite stops at 15), so they come back exactly;
data frames become ``{column: values}``; matrices are flattened column-major;
wrap a vector in ``I()`` to keep a length-1 vector a list.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["run_r", "r_available", "RError"]


class RError(RuntimeError):
    """R failed; the message carries R's error output."""


def r_available() -> bool:
    return shutil.which("Rscript") is not None


_PRELUDE = r"""
suppressPackageStartupMessages({library(jsonlite); library(lme4)})
.read_frame <- function(csv, meta) {
  m <- fromJSON(meta, simplifyVector = FALSE)
  raw <- read.csv(csv, colClasses = "character", na.strings = "\001NA\001",
                  check.names = FALSE)
  out <- list()
  for (col in names(m)) {
    info <- m[[col]]
    x <- raw[[col]]
    out[[col]] <- switch(info$type,
      factor = factor(x, levels = unlist(info$levels), ordered = isTRUE(info$ordered)),
      logical = as.logical(x),
      integer = as.integer(x),
      numeric = as.numeric(x),
      character = x)
  }
  as.data.frame(out, check.names = FALSE, stringsAsFactors = FALSE)
}
.exact <- function(x) {
  if (is.data.frame(x)) x <- as.list(x)
  if (is.list(x)) {
    nm <- names(x)
    x <- lapply(x, .exact)
    names(x) <- nm
    return(x)
  }
  if (is.double(x)) {
    keep <- inherits(x, "AsIs") || length(x) != 1
    v <- as.vector(unclass(x))
    s <- ifelse(is.na(v) & !is.nan(v), NA, sprintf("%.17g", v))
    return(list(`__double__` = if (keep) I(s) else s))
  }
  x
}
"""


def _column_meta(s: pd.Series) -> dict[str, Any]:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return {"type": "factor", "levels": [str(c) for c in s.cat.categories],
                "ordered": bool(s.cat.ordered)}
    if pd.api.types.is_bool_dtype(s.dtype):
        return {"type": "logical"}
    if pd.api.types.is_integer_dtype(s.dtype):
        return {"type": "integer"}
    if pd.api.types.is_numeric_dtype(s.dtype):
        return {"type": "numeric"}
    return {"type": "character"}


def _write_frame(df: pd.DataFrame, folder: Path, name: str) -> str:
    csv, meta = folder / f"{name}.csv", folder / f"{name}.json"
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_float_dtype(s.dtype):
            text = s.map(lambda v: repr(float(v)))
        elif pd.api.types.is_bool_dtype(s.dtype):
            text = s.map(lambda v: "TRUE" if v else "FALSE")
        else:
            text = s.astype(object).map(str)
        out[col] = text.where(s.notna(), "\001NA\001")
    out.to_csv(csv, index=False)
    meta.write_text(json.dumps({c: _column_meta(df[c]) for c in df.columns}))
    return f"{name} <- .read_frame({str(csv)!r}, {str(meta)!r})\n"


def run_r(code: str, timeout: float = 300, **frames: pd.DataFrame) -> Any:
    """Evaluate ``code`` in a fresh R (lme4 loaded) and return its value via JSON."""
    with tempfile.TemporaryDirectory(prefix="glmmbench-r-") as tmp:
        folder = Path(tmp)
        setup = "".join(_write_frame(df, folder, name) for name, df in frames.items())
        result = folder / "result.json"
        script = folder / "script.R"
        script.write_text(
            _PRELUDE + setup
            + f".value <- local({{\n{code}\n}})\n"
            + f"writeLines(toJSON(.exact(.value), auto_unbox = TRUE, null = 'null', "
            f"na = 'null'), {str(result)!r})\n"
        )
        env = dict(os.environ, LANG=os.environ.get("LANG", "C.UTF-8"))
        proc = subprocess.run(["Rscript", "--vanilla", str(script)], capture_output=True,
                              text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RError(proc.stderr.strip()[-3000:])
        return json.loads(result.read_text(), object_hook=_decode)


def _decode(obj: dict) -> Any:
    if set(obj) != {"__double__"}:
        return obj
    value = obj["__double__"]
    if isinstance(value, list):
        return [None if v is None else float(v) for v in value]
    return None if value is None else float(value)
