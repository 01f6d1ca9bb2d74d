"""Degenerate fits say what is wrong: res.diagnostics() passes a healthy model and
fails the right check on each degenerate one; res.status; summary() shows the failed
checks on top; a covariate on a far scale gives the rescaled model's optimum and the
advice to rescale, naming the column; the store keeps each fit's status."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmbench as gb
from glmmbench import datasets
from glmmbench.harness.store import Store

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _failed(res) -> set[str]:
    t = res.diagnostics()
    return set(t.index[t["verdict"] == "fail"])


def test_a_healthy_model_passes_every_check():
    res = gb.fit(CBPP, datasets.load("cbpp"), "binomial")
    table = res.diagnostics()
    assert list(table.columns) == ["check", "verdict", "value", "message"]
    assert list(table.index) == ["convergence", "singular", "gradient", "hessian", "pirls",
                                 "dispersion", "separation", "large_coefficients",
                                 "collinearity", "scale", "groups"]
    assert _failed(res) == set()
    assert table.loc["dispersion", "verdict"] == "n/a"  # binomial: no dispersion
    assert table.loc["separation", "verdict"] == "pass"
    assert res.status == "ok" and "Diagnostics" not in res.summary()
    sleep = gb.fit("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))
    assert _failed(sleep) == set()
    assert sleep.diagnostics().loc["pirls", "verdict"] == "n/a"


def _groups(k: int, per: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(k), per)
    x = rng.normal(size=g.size)
    return pd.DataFrame({"y": 1 + x + rng.normal(size=g.size), "x": x,
                         "g": pd.Categorical([f"g{i}" for i in g])})


def test_few_groups_and_a_variance_at_zero():
    res = gb.fit("y ~ x + (1 | g)", _groups(3, 20, 1))
    assert _failed(res) == {"singular", "groups"}
    table = res.diagnostics()
    assert "g (3 levels)" in table.loc["groups", "message"]
    assert ".sig01 (sd (Intercept) | g) estimated at 0" in table.loc["singular", "message"]
    assert table.loc["hessian", "verdict"] == "n/a"  # every parameter on its boundary
    assert res.status == "boundary"
    top = res.summary().splitlines()
    assert top[0].startswith("Diagnostics: 2 check(s) failed")
    assert any(line.startswith("  groups: too few groups") for line in top[:4])


def test_near_collinear_fixed_effects():
    d = _groups(12, 10, 2)
    d["x2"] = d["x"] + 1e-3 * np.random.default_rng(0).normal(size=len(d))
    res = gb.fit("y ~ x + x2 + (1 | g)", d)
    assert "collinearity" in _failed(res)
    msg = res.diagnostics().loc["collinearity", "message"]
    assert "x (VIF" in msg and "x2 (VIF" in msg


def test_a_dispersion_on_its_boundary():
    """Poisson counts fitted as negative binomial: theta runs off to infinity."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=g.size)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + 0.5 * rng.normal(size=20)[g]))
    res = gb.fit("y ~ x + (1 | g)", pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)}),
                 "negative_binomial")
    assert "dispersion" in _failed(res)
    assert "theta -> infinity" in res.diagnostics().loc["dispersion", "message"]
    assert res.status in ("boundary", "not converged")


def test_pirls_failing_at_the_optimum():
    """Poisson counts near 0 with an identity link: the conditional modes leave the
    link's domain, PIRLS fails at the optimum, and the check says so."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(10), 10)
    x = rng.normal(size=g.size)
    y = rng.poisson(np.clip(0.3 + 0.3 * x, 0.01, None)).astype(float)
    res = gb.fit("y ~ x + (1 | g)", pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)}),
                 "poisson", link="identity")
    assert "pirls" in _failed(res) and res.status == "not converged"
    assert "PIRLS did not converge" in res.diagnostics().loc["pirls", "message"]


def test_a_fit_stopped_early_fails_its_convergence_checks():
    res = gb.fit("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"),
                 control={"maxfeval": 6})
    assert {"convergence", "hessian"} <= _failed(res) or {"convergence", "gradient"} <= \
        _failed(res)
    assert res.status == "not converged"


def test_a_covariate_on_a_far_scale():
    """x in micro-units next to an intercept: the same optimum as the rescaled model (to
    1e-3 relative on the slope) and lme4's advice to rescale, naming the column."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 8)
    x = rng.normal(size=g.size)
    y = rng.binomial(1, 1 / (1 + np.exp(-(-0.3 + 0.8 * x + 0.7 * rng.normal(size=30)[g]))))
    d = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})
    plain = gb.fit("y ~ x + (1 | g)", d, "binomial")
    for scale in (1e-6, 1e6):
        far = gb.fit("y ~ x + (1 | g)", d.assign(x=x * scale), "binomial")
        assert far.fixef["x"] * scale == pytest.approx(plain.fixef["x"], rel=1e-3)
        assert far.loglik == pytest.approx(plain.loglik, abs=1e-6)
        msg = far.diagnostics().loc["scale", "message"]
        assert msg.startswith("Some predictor variables are on very different scales: "
                              "consider rescaling x (sd ")
        assert any(m.startswith("Some predictor variables") and "x (sd" in m
                   for m in far.messages)
    assert plain.diagnostics().loc["scale", "verdict"] == "pass"


def test_the_store_keeps_the_fit_status_and_migrates_old_files(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)  # a store from before fit_status existed
    con.execute("CREATE TABLE fits (problem TEXT NOT NULL, replicate INTEGER NOT NULL, "
                "engine TEXT NOT NULL, status TEXT NOT NULL, "
                "UNIQUE (problem, replicate, engine))")
    con.execute("INSERT INTO fits VALUES ('p', 0, 'glmmbench', 'ok')")
    con.commit()
    con.close()
    with Store(path) as store:
        assert store.add({"problem": "p", "replicate": 1, "engine": "glmmbench",
                          "status": "ok", "fit_status": "separation"})
        with pytest.raises(ValueError, match="fit_status must be one of"):
            store.add({"problem": "p", "replicate": 2, "engine": "glmmbench",
                       "status": "ok", "fit_status": "weird"})
        rows = store.con.execute("SELECT replicate, fit_status FROM fits ORDER BY replicate")
        assert list(rows) == [(0, None), (1, "separation")]


def test_study_rows_carry_the_fit_status():
    from glmmbench.harness.study import fit_status

    res = gb.fit("y ~ x + (1 | g)", _groups(3, 20, 1))
    assert fit_status(res.to_record()) == "boundary"
    assert fit_status({"converged": True, "messages": ["boundary (singular) fit: see "
                                                      "help('isSingular')"]}) == "boundary"
    assert fit_status({"converged": False, "messages": []}) == "not converged"
    assert fit_status({"converged": True, "messages": []}) == "ok"


def _binary(seed: int = 1, n_groups: int = 12, per: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    f = rng.integers(0, 3, size=g.size)
    eta = -0.2 + 0.7 * x + 0.8 * rng.normal(size=n_groups)[g]
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float), "x": x,
                         "f": pd.Categorical([f"f{i}" for i in f]),
                         "g": pd.Categorical([f"g{i}" for i in g])})


def _says_separation(res, coefficients: list[str]) -> None:
    assert res.status == "separation" and not res.converged
    msg = res.messages[0]
    assert "separation" in msg and "estimates are infinite" in msg
    for name in coefficients:
        assert name in msg
    assert res.diagnostics().loc["separation", "verdict"] == "fail"
    top = res.summary().splitlines()
    assert top[0].startswith("Diagnostics:") and top[1].startswith("  separation: ")


def test_complete_separation_by_a_continuous_covariate():
    d = _binary()
    d["y"] = (d["x"] > 0).astype(float)
    res = gb.fit("y ~ x + (1 | g)", d, "binomial")
    _says_separation(res, ["x"])
    assert res.messages[0].startswith("complete separation")
    assert "large_coefficients" in _failed(res)  # the optimizer's x ran off


def test_quasi_separation_by_a_factor_level():
    d = _binary(2)
    d.loc[d["f"] == "f2", "y"] = 1.0
    res = gb.fit("y ~ x + f + (1 | g)", d, "binomial")
    _says_separation(res, ["ff2 (+Inf)"])
    assert res.messages[0].startswith("quasi-complete separation")
    assert "x (" not in res.messages[0]  # x's estimate is finite


def test_one_group_all_ones_is_not_separation_in_the_fixed_effects():
    d = _binary(3)
    d.loc[d["g"] == "g0", "y"] = 1.0
    res = gb.fit("y ~ x + (1 | g)", d, "binomial")
    assert res.status in ("ok", "boundary")
    assert not any("separation" in m for m in res.messages)
    assert res.diagnostics().loc["separation", "verdict"] == "pass"


def test_ordinal_separation_and_none_on_wine():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(10), 8)
    x = rng.normal(size=g.size)
    codes = np.digitize(x, [-0.5, 0.5])  # the category is a step function of x
    d = pd.DataFrame({"y": pd.Categorical(np.array(["lo", "mid", "hi"])[codes],
                                          categories=["lo", "mid", "hi"], ordered=True),
                      "x": x, "g": pd.Categorical(g)})
    _says_separation(gb.fit("y ~ x + (1 | g)", d, "ordinal"), ["x"])
    wine = gb.fit("rating ~ temp + contact + (1 | judge)", datasets.load("wine"), "ordinal")
    assert wine.status == "ok"
    assert wine.diagnostics().loc["separation", "verdict"] == "pass"
