"""The harness: studies of problems x replicates x engines, and what they report.

- `catalogue`: the named problems and suites (datasets, `simulate` scenarios).
- `spec`: studies users write in TOML.
- `study`: running them, serially or on Dask, into the `store` (SQLite, resumable).
- `compare`: parity, recovery, speed and the verdict, as tables.
- `report`: Markdown and HTML with figures.
- `bench`: native against R timings.

The engine (``glmmbench.fit`` and what it calls) imports nothing from here.
"""
