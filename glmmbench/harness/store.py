"""The result store: one SQLite row per fit, keyed by (problem, replicate, engine)
under the problem's definition.

Rows are append-only and committed one at a time as fits finish, so a study that
is killed loses at most the fit in flight and a rerun resumes where it stopped:
`Store.done` tells the runner which keys to skip, and the UNIQUE key makes a
second insert of the same fit a no-op. A fit that failed, timed out or that the
engine does not support yet is a row too (``status``, ``message``).

Each row holds the full FitRecord as JSON (``record``, None when there is no
fit), the simulated truth of its replicate (``truth``), and flat columns for
queries. Only the process that runs the study writes; workers return rows.

Definitions. Every row carries the hash of its problem's definition (``definition``:
`catalogue.definition_hash` of the data, model, estimator and R engine options),
and the ``problems`` table holds each name's description and hash. A store keeps
one definition per problem name: `check_definitions` (called by the study runner
before the first fit) refuses a problem whose name has rows of another definition,
with a `StoreError` that names the problem and what changed; give the changed
problem a new name, or run it into another store. So an edited spec is never
answered with the old fits, and the report never mixes two models under one name.
`done` counts only rows of the definition asked for.

Old stores migrate when opened for writing: missing columns are added, each
problem's hash is computed from the description the store holds, and rows
written before hashes existed take their problem's. (A store whose description was
overwritten by an edited spec under the old code cannot be told apart: it gets the
hash of the description it holds.)

Reading (``Store(path, readonly=True)``, what ``glmmbench report`` does) creates
and changes nothing: a store that does not exist, or a file that is not a
glmmbench store, is a `StoreError` naming the file.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from glmmbench.errors import GLMMError

__all__ = ["COLUMNS", "STATUSES", "FIT_STATUSES", "Store", "StoreError"]


class StoreError(GLMMError):
    """A store that cannot be opened (missing, not SQLite, not a glmmbench store) or
    that holds another study or another definition of a problem; the message names
    the file."""

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
    "definition": "TEXT",
}
_JSON = ("record", "truth")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS fits (
    {", ".join(f"{k} {v}" for k, v in COLUMNS.items())},
    UNIQUE (problem, replicate, engine)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS problems (name TEXT PRIMARY KEY, spec TEXT, definition TEXT);
"""


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, allow_nan=True)


class Store:
    """A study's SQLite file. Use as a context manager or call `close`.

    ``readonly=True`` opens an existing store to read it, creating and changing
    nothing; otherwise the file and its folders are created if need be and an old
    store is migrated.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.con = None
        if self.path.is_dir():
            raise StoreError(f"store {self.path} is a directory, not a file")
        if readonly:
            if not self.path.exists():
                raise StoreError(f"store {self.path} does not exist")
            self.con = self._connect_existing()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            tables = self._tables()
            if tables and "fits" not in tables:
                raise StoreError(f"{self.path} is an SQLite database but not a glmmbench "
                                 f"store (no fits table; it has {', '.join(sorted(tables))})")
            if readonly:
                if "fits" not in tables:
                    raise StoreError(f"{self.path} is not a glmmbench store (an empty "
                                     "database)")
                self.con.execute("PRAGMA query_only=ON")
            else:
                self._create_or_migrate()
        except BaseException:
            self.close()
            raise

    def _connect_existing(self) -> sqlite3.Connection:
        # mode=rw does not create the file; the last connection to close removes the
        # WAL files, which a read-only connection would leave behind
        uri = self.path.resolve().as_uri()
        try:
            return sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=60.0,
                                   isolation_level=None)
        except sqlite3.OperationalError:  # a read-only file or folder
            try:
                return sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60.0,
                                       isolation_level=None)
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path} cannot be opened: {exc}") from None

    def _tables(self) -> set[str]:
        try:
            return {r[0] for r in self.con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a glmmbench store (not an SQLite "
                             f"database: {exc})") from None

    def _create_or_migrate(self) -> None:
        from glmmbench.harness.catalogue import definition_hash

        # WAL: readers (a report, a test polling progress) never block the writer.
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.executescript(_SCHEMA)
        self.con.execute("BEGIN IMMEDIATE")
        try:
            # a store written before a column existed gets it (its rows read NULL there)
            have = self._columns("fits")
            for name, kind in COLUMNS.items():
                if name not in have:
                    self.con.execute(f"ALTER TABLE fits ADD COLUMN {name} {kind}")
            if "definition" not in self._columns("problems"):
                self.con.execute("ALTER TABLE problems ADD COLUMN definition TEXT")
            # descriptions from before definitions were hashed, and their rows
            old = list(self.con.execute(
                "SELECT name, spec FROM problems WHERE definition IS NULL"))
            for name, spec in old:
                self.con.execute("UPDATE problems SET definition = ? WHERE name = ?",
                                 (definition_hash(json.loads(spec)), name))
            self.con.execute(
                "UPDATE fits SET definition = (SELECT definition FROM problems "
                "WHERE problems.name = fits.problem) WHERE definition IS NULL")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.con.execute(f"PRAGMA table_info({table})")}

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
        if row.get("definition") is not None:
            have = self._definition(row["problem"])
            if have is not None and have != row["definition"]:
                raise StoreError(f"store {self.path}: a row of problem {row['problem']!r} "
                                 f"under definition {row['definition']}, but the store "
                                 f"holds definition {have} of that problem")
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

    def check_definitions(self, descriptions: Iterable[Mapping]) -> None:
        """Raise `StoreError` if the store holds rows of one of these problems (by
        `Problem.describe`) under another definition; name the problem and the
        knobs that differ."""
        conflicts = []
        for desc in descriptions:
            name, want = desc["name"], desc["definition"]
            have = {d for (d,) in self.con.execute(
                "SELECT DISTINCT definition FROM fits WHERE problem = ?", (name,))}
            if have - {want}:
                conflicts.append(self._conflict(desc, have - {want}))
        if conflicts:
            raise StoreError(
                f"store {self.path} holds fits of another definition of "
                f"{'; '.join(conflicts)}. Its fits are not those of the problem now "
                "asked for: give the changed problem a new name, or run it into "
                "another store (--store)")

    def _conflict(self, desc: Mapping, have: set) -> str:
        from glmmbench.harness.catalogue import definition

        name = desc["name"]
        row = self.con.execute("SELECT spec, definition FROM problems WHERE name = ?",
                               (name,)).fetchone()
        if None in have or row is None or row[1] not in have:
            return f"problem {name!r} (the store did not record which)"
        old, new = definition(json.loads(row[0])), definition(desc)
        changed = _differences(old, new)
        return f"problem {name!r} ({'; '.join(changed) or 'definition ' + row[1]})"

    def put_problem(self, spec: dict) -> None:
        """Record a problem's description (`Problem.describe`); `StoreError` if the
        store holds its rows under another definition."""
        from glmmbench.harness.catalogue import definition_hash

        spec = {**spec, "definition": spec.get("definition") or definition_hash(spec)}
        self.check_definitions([spec])
        self.con.execute("INSERT OR REPLACE INTO problems (name, spec, definition) "
                         "VALUES (?, ?, ?)",
                         (spec["name"], json.dumps(spec), spec["definition"]))

    def _definition(self, name: str) -> str | None:
        row = self.con.execute("SELECT definition FROM problems WHERE name = ?",
                               (name,)).fetchone()
        return None if row is None else row[0]

    # ------------------------------------------------------------------ reading

    def done(self, definitions: Mapping[str, str] | None = None
             ) -> set[tuple[str, int, str]]:
        """Keys (problem, replicate, engine) that have a row; with ``definitions``
        (problem name -> definition hash), only the rows of those problems fitted
        under those definitions."""
        if definitions is None:
            cur = self.con.execute("SELECT problem, replicate, engine FROM fits")
            return {(p, int(r), e) for p, r, e in cur}
        cur = self.con.execute("SELECT problem, replicate, engine, definition FROM fits")
        return {(p, int(r), e) for p, r, e, d in cur
                if p in definitions and d == definitions[p]}

    def count(self) -> int:
        return self.con.execute("SELECT COUNT(*) FROM fits").fetchone()[0]

    def meta(self) -> dict:
        if "meta" not in self._tables():  # an old store read as it is
            return {}
        return {k: json.loads(v) for k, v in self.con.execute("SELECT key, value FROM meta")}

    def problems(self) -> dict[str, dict]:
        if "problems" not in self._tables():
            return {}
        cur = self.con.execute("SELECT name, spec FROM problems")
        return {name: json.loads(spec) for name, spec in cur}

    def frame(self) -> pd.DataFrame:
        """Every fit, ordered by key; ``record`` and ``truth`` parsed to dicts (an old
        store read as it is has None in the columns it lacks)."""
        have = self._columns("fits")
        cols = ", ".join(c if c in have else f"NULL AS {c}" for c in COLUMNS)
        df = pd.read_sql_query(f"SELECT {cols} FROM fits ORDER BY problem, replicate, engine",
                               self.con)
        for k in _JSON:
            df[k] = [json.loads(v) if isinstance(v, str) else None for v in df[k]]
        df["converged"] = df["converged"].astype("boolean")
        return df


def _differences(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """``key: old in the store, new now`` for each (nested) key whose value differs."""
    out = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} in the store, {b!r} now")
    return out
