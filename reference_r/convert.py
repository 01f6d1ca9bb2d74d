"""Data to R, column by column, and R results back to fresh Python objects.

`encode_frame` is plain Python (testable without R): it validates every column
once and turns it into a `Column` of numpy buffers. `to_r_dataframe` (run inside
a worker) copies those buffers into R vectors and lets R build factors itself,
because rpy2's pandas converter refuses categoricals with non-string categories.
`from_r` copies R values element by element into Python scalars and lists: rpy2
numpy views of R memory become garbage once R collects the vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Column", "encode_frame", "from_r", "to_r_dataframe"]

_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class Column:
    """One column ready for R.

    ``kind`` is the R type to build: ``double``, ``integer``, ``logical``,
    ``factor`` (``values`` are 1-based codes, 0 for NA; ``levels`` the labels) or
    ``character`` (R makes a factor of it with its own default level order).
    ``na`` marks missing values.
    """

    name: str
    kind: str
    values: np.ndarray
    na: np.ndarray
    levels: tuple[str, ...] = ()
    ordered: bool = False


def _encode_categorical(name: str, s: pd.Series) -> Column:
    cat = s.cat
    levels = tuple(str(c) for c in cat.categories)
    if len(set(levels)) != len(levels):
        raise ValueError(f"column {name!r}: categories collide as text labels: {levels}")
    codes = cat.codes.to_numpy().astype(np.int32) + 1  # -1 (missing) -> 0
    return Column(name, "factor", codes, codes == 0, levels, bool(cat.ordered))


def _encode_integer(name: str, s: pd.Series) -> Column:
    na = s.isna().to_numpy()
    values = s.to_numpy(dtype="float64", na_value=0.0)
    if values.size and (values.min() < _INT32.min + 1 or values.max() > _INT32.max):
        raise ValueError(
            f"column {name!r}: integers outside R's 32-bit integer range; cast to float"
        )
    return Column(name, "integer", values.astype(np.int32), na)


def _encode_strings(name: str, s: pd.Series) -> Column:
    na = s.isna().to_numpy()
    bad = [v for v in s[~na] if not isinstance(v, str)]
    if bad:
        raise TypeError(f"column {name!r}: object column holds non-strings, e.g. {bad[0]!r}")
    values = np.array([None if m else v for v, m in zip(s, na, strict=True)], dtype=object)
    return Column(name, "character", values, na)


def encode_column(name: str, s: pd.Series) -> Column:
    """Validate one column and encode it for R (see `Column`)."""
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _encode_categorical(name, s)
    if pd.api.types.is_bool_dtype(dtype):
        na = s.isna().to_numpy()
        return Column(name, "logical", s.to_numpy(dtype="int32", na_value=0), na)
    if pd.api.types.is_integer_dtype(dtype):
        return _encode_integer(name, s)
    if pd.api.types.is_float_dtype(dtype):
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        return Column(name, "double", values, np.isnan(values))
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return _encode_strings(name, s)
    raise TypeError(f"column {name!r}: dtype {dtype} has no R counterpart here")


def encode_frame(data: pd.DataFrame) -> list[Column]:
    """Encode every column of ``data``; raise naming the first bad column."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    names = [str(c) for c in data.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names: {names}")
    return [encode_column(n, data[c]) for n, c in zip(names, data.columns, strict=True)]


def to_r_dataframe(data: pd.DataFrame):
    """Build an R data.frame from ``data`` (call inside a worker with R loaded)."""
    import rpy2.robjects as ro
    from rpy2.rinterface import FloatSexpVector, IntSexpVector, StrSexpVector

    make = ro.globalenv["gb_column"]
    encoded = encode_frame(data)
    columns = ro.ListVector.from_length(len(encoded))
    for i, col in enumerate(encoded):
        na = IntSexpVector.from_memoryview(memoryview(np.ascontiguousarray(col.na, np.int32)))
        if col.kind == "double":
            values = FloatSexpVector.from_memoryview(memoryview(np.ascontiguousarray(col.values)))
        elif col.kind == "character":
            values = StrSexpVector(["" if v is None else v for v in col.values])
        else:
            values = IntSexpVector.from_memoryview(memoryview(np.ascontiguousarray(col.values)))
        columns[i] = make(col.kind, values, na, StrSexpVector(list(col.levels)), col.ordered)
    columns.names = StrSexpVector([c.name for c in encoded])
    return ro.globalenv["gb_data_frame"](columns, len(data))


def from_r(obj):
    """Copy an R value into plain Python: named list/vector -> dict, else list/scalar.

    Unnamed length-1 atomic vectors become scalars; NA and NaN become None.
    """
    from rpy2 import rinterface as ri

    if obj is ri.NULL or obj is None:
        return None
    names = obj.names if hasattr(obj, "names") else ri.NULL
    has_names = names is not ri.NULL and names is not None and len(names) == len(obj)
    if isinstance(obj, ri.ListSexpVector):
        items = [from_r(v) for v in obj]
        if has_names:
            return {str(k): v for k, v in zip(names, items, strict=True)}
        return items
    values = [_scalar(v) for v in obj]
    if has_names:
        return {str(k): v for k, v in zip(names, values, strict=True)}
    return values[0] if len(values) == 1 else values


def _scalar(v):
    from rpy2 import rinterface as ri

    if v is ri.NA_Character or v is ri.NA_Integer or v is ri.NA_Logical or v is ri.NA_Real:
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        f = float(v)
        return None if math.isnan(f) else f
    return str(v)
