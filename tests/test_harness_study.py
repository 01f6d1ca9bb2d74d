"""The study end to end through the CLI, with live R: a clean serial run, a run
killed with SIGKILL and resumed, and the same suite on a local Dask cluster.

All on the ``smoke`` suite (three tiny problems, native + lme4, 10 fits), hence the
``r`` marker on those tests; the tiny validity study fits natively only.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glmmbench.harness import compare
from glmmbench.harness.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
N_FITS = 14  # smoke: 3 simulated problems x 2 replicates x 2 engines + 2 unsupported
KEY = ["problem", "replicate", "engine"]


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "glmmbench.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run_cli(*args: str, timeout: float = 300) -> str:
    proc = cli(*args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return err


def rows(store: Path) -> pd.DataFrame:
    with Store(store) as s:
        return s.frame()


def assert_same_fits(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same keys, statuses and log-likelihoods (the data are the same bits)."""
    assert list(a[KEY].itertuples(index=False)) == list(b[KEY].itertuples(index=False))
    assert list(a["status"]) == list(b["status"])
    np.testing.assert_allclose(a["loglik"].astype(float), b["loglik"].astype(float),
                               rtol=1e-10, atol=0, equal_nan=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    err = run_cli("run", "--suite", "smoke", "--out", str(out), "--seed", "11")
    df = rows(out / "study.sqlite")
    bad = df[~df["status"].isin(["ok", "unsupported"])]
    assert bad.empty, bad[KEY + ["status", "message"]].to_string() + "\n" + err[-3000:]
    assert f"[{N_FITS}/{N_FITS}] failures 0  unsupported 2" in err, err[-3000:]
    return out


@pytest.mark.r  # the smoke suite fits lme4
def test_clean_run_and_report(clean):
    df = rows(clean / "study.sqlite")
    assert len(df) == N_FITS and not df.duplicated(KEY).any()
    assert set(df["status"]) == {"ok", "unsupported"}
    assert (df.loc[df["problem"] == "smoke_tensor", "status"] == "unsupported").all()
    assert (df.loc[df["problem"] == "smoke_smooth", "status"] == "ok").all()
    ok = df[df["status"] == "ok"]
    assert ok["converged"].all() and ok["time_s"].gt(0).all()
    for name in ("report.md", "report.html", "results.csv", "parity.png", "recovery.png",
                 "speed.png", "smooths.png"):
        assert (clean / name).stat().st_size > 0
    html = (clean / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    res = pd.read_csv(clean / "results.csv")
    assert len(res) == N_FITS and {"fixef:x", "se:x", "sigma:sigma"} <= set(res.columns)
    # native Gaussian REML is lme4's: every comparison of both replicates within
    # tolerance, the REML criterion to 1e-6 (measured: 6e-14); the report says so
    par = compare.parity(df)
    gauss = par[(par["problem"] == "smoke_gaussian") & (par["engine"] == "lme4")]
    assert gauss["replicate"].nunique() == 2
    assert set(gauss["quantity"]) == {"loglik", "fixef", "se", "sdcor", "sigma"}
    assert gauss["within_tol"].all(), gauss.to_string()
    assert gauss.loc[gauss["quantity"] == "loglik", "diff"].abs().max() <= 1e-6
    md = (clean / "report.md").read_text()
    summary = [line for line in md.splitlines()
               if line.startswith("| smoke_gaussian | lme4 | 2 |") and "/" in line]
    assert len(summary) == 1 and f"| {len(gauss)}/{len(gauss)} |" in summary[0], summary


@pytest.mark.r  # the smoke suite fits lme4
def test_report_command_rewrites_from_the_store(clean, tmp_path):
    run_cli("report", "--store", str(clean / "study.sqlite"), "--out", str(tmp_path))
    assert (tmp_path / "report.md").read_text().split("## Summary")[1] == \
        (clean / "report.md").read_text().split("## Summary")[1]


@pytest.mark.r  # the smoke suite fits lme4
def test_sigkill_midway_then_resume(clean, tmp_path):
    store = tmp_path / "study.sqlite"
    args = ("run", "--suite", "smoke", "--out", str(tmp_path), "--seed", "11", "--no-report")
    proc = cli(*args, start_new_session=True)  # its own group: R goes down with it
    deadline = time.monotonic() + 240
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            with sqlite3.connect(store, timeout=30) as con:
                try:
                    n = con.execute("SELECT COUNT(*) FROM fits").fetchone()[0]
                except sqlite3.OperationalError:  # schema not there yet
                    n = 0
            if n >= 3:
                break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = rows(store)
    assert 3 <= len(killed) < N_FITS, "the study must be killed half-way"

    err = run_cli(*args)
    assert f"resuming: {len(killed)} fits already in the store" in err
    resumed = rows(store)
    assert len(resumed) == N_FITS and not resumed.duplicated(KEY).any()
    assert_same_fits(resumed, rows(clean / "study.sqlite"))
    # a third run has nothing left to do and leaves the rows alone
    err = run_cli(*args)
    assert f"0 fits run, {N_FITS} already in" in err
    pd.testing.assert_frame_equal(rows(store), resumed)


@pytest.mark.r  # the smoke suite fits lme4
def test_dask_local_cluster_equals_serial(clean, tmp_path):
    err = run_cli("run", "--suite", "smoke", "--out", str(tmp_path), "--seed", "11",
                  "--workers", "2", "--no-report")
    assert f"{N_FITS} fits run" in err
    dask_rows = rows(tmp_path / "study.sqlite")
    assert_same_fits(dask_rows, rows(clean / "study.sqlite"))
    assert dask_rows["worker"].nunique() == 2  # both worker processes fitted
    assert os.getpid() not in {int(w.split(":")[1]) for w in dask_rows["worker"]}


@pytest.mark.r  # the smoke suite fits lme4
def test_existing_scheduler(clean, tmp_path):
    import logging

    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}), LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR) as cluster:
        run_cli("run", "--suite", "smoke", "--problems", "smoke_poisson", "--out", str(tmp_path),
                "--seed", "11", "--scheduler", cluster.scheduler_address, "--no-report")
    got = rows(tmp_path / "study.sqlite")
    want = rows(clean / "study.sqlite")
    assert_same_fits(got, want[want["problem"] == "smoke_poisson"].reset_index(drop=True))


VALIDITY_SUBSET = ("validity_binomial_small_groups_laplace,validity_binomial_small_groups_agq05,"
                   "validity_gaussian_intercept_ml")


def test_tiny_validity_study_on_dask_equals_serial(tmp_path):
    """The validity suite's machinery on a few replicates: two Dask workers fit the
    same data to the same numbers as the serial run, and the report leads with the
    verdict and carries Monte Carlo errors."""
    common = ("run", "--suite", "validity", "--problems", VALIDITY_SUBSET,
              "--replicates", "3", "--seed", "5", "--quiet")
    run_cli(*common, "--out", str(tmp_path / "serial"))
    run_cli(*common, "--out", str(tmp_path / "dask"), "--workers", "2")
    serial, dask = rows(tmp_path / "serial" / "study.sqlite"), rows(tmp_path / "dask" /
                                                                     "study.sqlite")
    assert len(serial) == 9 and (serial["status"] == "ok").all()
    assert sorted(serial["nagq"].unique()) == [1, 5]
    assert_same_fits(serial.sort_values(KEY).reset_index(drop=True),
                     dask.sort_values(KEY).reset_index(drop=True))
    md = (tmp_path / "dask" / "report.md").read_text()
    # the verdict first, figures next, detail tables last
    assert (md.index("## Verdict") < md.index("## Summary") < md.index("## Figures")
            < md.index("# Details") < md.index("## Recovery"))
    assert "bias_mcse" in md and "coverage_mcse" in md
