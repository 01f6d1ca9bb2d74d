"""The result store: one SQLite row per fit, keyed by (problem, replicate, engine).

Rows are append-only and committed one at a time as fits finish, so a study that
is killed loses at most the fit in flight and a rerun resumes where it stopped:
`Store.done` tells the runner which keys to skip, and the UNIQUE key makes a
second insert of the same fit a no-op. A fit that failed, timed out or that the
engine does not support yet is a row too (``status``, ``message``).

Each row holds the full FitRecord as JSON (``record``, None when there is no
fit), the simulated truth of its replicate (``truth``), and flat columns for
queries. Only the process that runs the study writes; workers return rows.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pandas as pd

__all__ = ["COLUMNS", "STATUSES", "FIT_STATUSES", "Store"]

STATUSES = ("ok", "unsupported", "error", "timeout")
# what an "ok" fit says of itself (GLMMResult.status; R's from converged and messages)
FIT_STATUSES = ("ok", "boundary", "not converged", "separation")

# name -> SQL type; the key columns come first
COLUMNS: dict[str, str] = {
    "problem": "TEXT NOT NULL",
    "replicate": "INTEGER NOT NULL",
    "engine": "TEXT NOT NULL",
    "family": "TEXT",
    "link": "TEXT",
    "formula": "TEXT",
    "nagq": "INTEGER",
    "reml": "INTEGER",
    "status": "TEXT NOT NULL",
    "message": "TEXT",
    "converged": "INTEGER",
    "fit_status": "TEXT",
    "loglik": "REAL",
    "time_s": "REAL",
    "wall_s": "REAL",
    "seed": "INTEGER",
    "worker": "TEXT",
    "finished": "TEXT",
    "record": "TEXT",
    "truth": "TEXT",
}
_JSON = ("record", "truth")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS fits (
    {", ".join(f"{k} {v}" for k, v in COLUMNS.items())},
    UNIQUE (problem, replicate, engine)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS problems (name TEXT PRIMARY KEY, spec TEXT);
"""


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, allow_nan=True)


class Store:
    """A study's SQLite file. Use as a context manager or call `close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        # WAL: readers (a report, a test polling progress) never block the writer.
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.executescript(_SCHEMA)
        # a store written before a column existed gets it (its rows read NULL there)
        have = {r[1] for r in self.con.execute("PRAGMA table_info(fits)")}
        for name, kind in COLUMNS.items():
            if name not in have:
                self.con.execute(f"ALTER TABLE fits ADD COLUMN {name} {kind}")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    # ------------------------------------------------------------------ writing

    def add(self, row: dict) -> bool:
        """Insert one fit and commit; False (and nothing written) if its key exists."""
        missing = {"problem", "replicate", "engine", "status"} - set(row)
        if missing:
            raise ValueError(f"row lacks {sorted(missing)}")
        if row["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {row['status']!r}")
        if row.get("fit_status") not in (None, *FIT_STATUSES):
            raise ValueError(f"fit_status must be one of {FIT_STATUSES}, got "
                             f"{row['fit_status']!r}")
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"row has unknown column(s) {sorted(unknown)}")
        values = {k: (_json(row.get(k)) if k in _JSON else row.get(k)) for k in COLUMNS}
        for k in ("loglik", "time_s", "wall_s"):
            if isinstance(values[k], float) and math.isnan(values[k]):
                values[k] = None
        sql = (f"INSERT OR IGNORE INTO fits ({', '.join(COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(COLUMNS))})")
        cur = self.con.execute(sql, [values[k] for k in COLUMNS])
        return cur.rowcount == 1

    def set_meta(self, key: str, value) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def put_problem(self, spec: dict) -> None:
        self.con.execute("INSERT OR REPLACE INTO problems VALUES (?, ?)",
                         (spec["name"], json.dumps(spec)))

    # ------------------------------------------------------------------ reading

    def done(self) -> set[tuple[str, int, str]]:
        """Keys (problem, replicate, engine) that have a row."""
        cur = self.con.execute("SELECT problem, replicate, engine FROM fits")
        return {(p, int(r), e) for p, r, e in cur}

    def count(self) -> int:
        return self.con.execute("SELECT COUNT(*) FROM fits").fetchone()[0]

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.con.execute("SELECT key, value FROM meta")}

    def problems(self) -> dict[str, dict]:
        cur = self.con.execute("SELECT name, spec FROM problems")
        return {name: json.loads(spec) for name, spec in cur}

    def frame(self) -> pd.DataFrame:
        """Every fit, ordered by key; ``record`` and ``truth`` parsed to dicts."""
        cols = ", ".join(COLUMNS)
        df = pd.read_sql_query(f"SELECT {cols} FROM fits ORDER BY problem, replicate, engine",
                               self.con)
        for k in _JSON:
            df[k] = [json.loads(v) if isinstance(v, str) else None for v in df[k]]
        df["converged"] = df["converged"].astype("boolean")
        return df
