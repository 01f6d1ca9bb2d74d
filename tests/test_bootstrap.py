"""The parametric bootstrap (res.bootstrap) and refit: reproducible from the seed
wherever it runs (this process, local processes, Dask), bootstrap SEs near the Wald
SEs of a well-behaved model, failed refits counted, and refit equal to a fit of the
new data."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

import glmmbench as gb
from glmmbench import datasets
from glmmbench.errors import GLMMError
from glmmbench.fit import refit
from glmmbench.inference.bootstrap import BootstrapWarning

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return gb.fit(SLEEP, datasets.load("sleepstudy"))


def test_the_same_seed_gives_the_same_table(sleep):
    a = sleep.bootstrap(8, seed=42)
    b = sleep.bootstrap(8, seed=42)
    c = sleep.bootstrap(8, seed=43)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["Days"], c["Days"])
    assert list(a.columns) == [".sig01", ".sig02", ".sig03", ".sigma", "(Intercept)", "Days",
                               "loglik", "converged", "error"]
    assert a.attrs == {"nsim": 8, "nfailed": 0, "seed": 42}


def test_local_processes_give_the_serial_table(sleep):
    pd.testing.assert_frame_equal(sleep.bootstrap(6, seed=7, workers=2),
                                  sleep.bootstrap(6, seed=7))


def test_dask_gives_the_serial_table(sleep):
    import distributed  # dask[distributed] is a dependency: no skip

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pd.testing.assert_frame_equal(sleep.bootstrap(4, seed=3, workers=client),
                                      sleep.bootstrap(4, seed=3))


def test_bootstrap_standard_errors_are_near_the_wald_ones():
    """sleepstudy (LMM) and a well-identified simulated Poisson GLMM: the bootstrap SD of
    each fixed effect within 20 % of its Wald SE (200 replicates: the SD's own Monte
    Carlo error is about 5 %)."""
    import simulate

    sim = simulate.generate("poisson_intercept", np.random.default_rng(2))
    for res in (gb.fit(SLEEP, datasets.load("sleepstudy")),
                gb.fit(sim.formula, sim.data, "poisson")):
        table = res.bootstrap(200, seed=1)
        assert table.attrs["nfailed"] == 0
        sd = table[list(res.fixef.index)].std()
        np.testing.assert_allclose(sd, res.se, rtol=0.2)
        # centred on the estimates
        bias = (table[list(res.fixef.index)].mean() - res.fixef).abs()
        assert np.all(bias < 3 * sd / np.sqrt(200) + 1e-8)


def test_failed_refits_are_counted_and_reported(sleep, monkeypatch):
    fit_module = importlib.import_module("glmmbench.fit")  # gb.fit is the function
    original = fit_module.refit
    calls = []

    def flaky(res, y, control=None):
        calls.append(1)
        if len(calls) % 3 == 0:
            raise GLMMError("PIRLS failed to converge")
        return original(res, y, control)

    monkeypatch.setattr(fit_module, "refit", flaky)
    with pytest.warns(BootstrapWarning, match="2 of 6 bootstrap refits failed"):
        table = sleep.bootstrap(6, seed=1)
    assert table.attrs["nfailed"] == 2
    failed = table["error"] != ""
    assert failed.sum() == 2 and table.loc[failed, "Days"].isna().all()
    assert table.loc[failed, "error"].str.contains("PIRLS failed").all()


def test_refit_equals_a_fit_of_the_new_data():
    d = datasets.load("cbpp")
    res = gb.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, "binomial")
    y = res.simulate(1, seed=4).iloc[:, 0]
    new = d.assign(incidence=np.round(y * d["size"]).astype(int))
    direct = gb.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", new,
                    "binomial")
    again = refit(res, y)
    np.testing.assert_allclose(again.fixef, direct.fixef, rtol=1e-6)
    assert again.loglik == pytest.approx(direct.loglik, rel=1e-9)
    w = datasets.load("wine")
    ordinal = gb.fit("rating ~ temp + (1 | judge)", w, "ordinal")
    y = ordinal.simulate(1, seed=2).iloc[:, 0]
    direct = gb.fit("rating ~ temp + (1 | judge)", w.assign(rating=y.values), "ordinal")
    np.testing.assert_allclose(refit(ordinal, y).fixef, direct.fixef, rtol=1e-6)


def test_bad_inputs_get_clear_errors(sleep):
    with pytest.raises(GLMMError, match="nsim must be a positive integer, not 0"):
        sleep.bootstrap(0)
    with pytest.raises(GLMMError, match="nsim must be a positive integer"):
        sleep.bootstrap(2.5)
    with pytest.raises(GLMMError, match="seed must be an integer"):
        sleep.bootstrap(2, seed="x")
    with pytest.raises(GLMMError, match="workers must be None"):
        sleep.bootstrap(2, workers="dask")
    with pytest.raises(GLMMError, match="newresp has 3 values, the fit 180"):
        refit(sleep, [1.0, 2.0, 3.0])
