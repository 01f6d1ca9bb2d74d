"""reference_r without R: name tables, formula translation, data encoding, checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_r import fit_reference
from reference_r.api import _prepare, _record
from reference_r.convert import encode_frame
from reference_r.known_discrepancies import KNOWN_DISCREPANCIES, lookup
from reference_r.names import (
    MGCV_SMOOTH_CLASSES,
    NAME_TABLES,
    apply_rule,
    multinom_names,
    split_formula,
    translate_gamm4,
    translate_mgcv,
)

# ------------------------------------------------------------------ formulas


def test_split_formula_keeps_calls_and_smooths_whole():
    lhs, fixed, random = split_formula(
        'cbind(s, n - s) ~ period + s(x, k = 10, bs = "cr") + offset(log(t)) + (1 + x | g)'
    )
    assert lhs == "cbind(s, n - s)"
    assert fixed == ["period", 's(x, k = 10, bs = "cr")', "offset(log(t))"]
    assert [(r.lhs, r.grp, r.double_bar) for r in random] == [("1 + x", "g", False)]


def test_split_formula_double_bar_and_parenthesised_fixed_terms():
    _, fixed, random = split_formula("y ~ (a + b) + (x || g) + I((x - 1)^2)")
    assert fixed == ["(a + b)", "I((x - 1)^2)"]
    assert [(r.lhs, r.grp, r.double_bar) for r in random] == [("x", "g", True)]


@pytest.mark.parametrize(
    ("formula", "expected", "labels"),
    [
        ("y ~ x + (1 | g)", 'y ~ x + s(g, bs = "re")', {"s(g)": ("g", "(Intercept)")}),
        ("y ~ x + (0 + x | g)", 'y ~ x + s(g, x, bs = "re")', {"s(g,x)": ("g", "x")}),
        ("y ~ x + (-1 + x | g)", 'y ~ x + s(g, x, bs = "re")', {"s(g,x)": ("g", "x")}),
        (
            "y ~ (x || g)",
            'y ~ s(g, bs = "re") + s(g, x, bs = "re")',
            {"s(g)": ("g", "(Intercept)"), "s(g,x)": ("g.1", "x")},
        ),
        (
            "y ~ 1 + (1 | a/b)",
            'y ~ 1 + s(a, bs = "re") + s(a, b, bs = "re")',
            {"s(a)": ("a", "(Intercept)"), "s(a,b)": ("b:a", "(Intercept)")},
        ),
        ("y ~ (1 | a:b)", 'y ~ s(a, b, bs = "re")', {"s(a,b)": ("a:b", "(Intercept)")}),
        ("y ~ s(x) + z", "y ~ s(x) + z", {}),
    ],
)
def test_translate_mgcv(formula, expected, labels):
    out, re_labels, groups = translate_mgcv(formula)
    assert out == expected
    assert re_labels == labels
    assert set(groups) == set(labels)


def test_translate_mgcv_groups_use_lme4_factor_names():
    _, _, groups = translate_mgcv("y ~ (x || g) + (1 | a/b)")
    assert groups == {
        "s(g)": ("g", ["g"]),
        "s(g,x)": ("g", ["g"]),
        "s(a)": ("a", ["a"]),
        "s(a,b)": ("b:a", ["a", "b"]),
    }


@pytest.mark.parametrize("term", ["(1 + x | g)", "(x | g)", "(0 + x + z | g)"])
def test_translate_mgcv_rejects_correlated_terms(term):
    with pytest.raises(ValueError, match="correlated random effects cannot be expressed"):
        translate_mgcv(f"y ~ x + {term}")


def test_translate_gamm4():
    assert translate_gamm4("y ~ s(x) + z + (1 | g) + (0 + z | h)") == (
        "y ~ s(x) + z",
        "~ (1 | g) + (0 + z | h)",
    )
    assert translate_gamm4("y ~ (1 | g)") == ("y ~ 1", "~ (1 | g)")
    with pytest.raises(ValueError, match="at least one random-effect term"):
        translate_gamm4("y ~ s(x)")


def test_unbalanced_formula_raises():
    with pytest.raises(ValueError, match="unbalanced"):
        split_formula("y ~ (1 | g")


# --------------------------------------------------------------- name tables


def test_every_engine_has_a_table():
    assert set(NAME_TABLES) == {"lme4", "glmmTMB", "ordinal", "mgcv", "gamm4"}
    for engine in ("lme4", "glmmTMB", "ordinal", "gamm4"):
        assert NAME_TABLES[engine]["fixef"] == []  # R's model.matrix names are ours


def test_multinom_names():
    names = ["(Intercept)", "Anger", "GenderM", "(Intercept).1", "Anger.1", "GenderM.1"]
    assert multinom_names(names, ["no", "perhaps", "yes"]) == [
        "perhaps~(Intercept)",
        "perhaps~Anger",
        "perhaps~GenderM",
        "yes~(Intercept)",
        "yes~Anger",
        "yes~GenderM",
    ]
    # four categories: ".2" is the third linear predictor
    assert multinom_names(["x.2"], ["a", "b", "c", "d"]) == ["d~x"]


@given(st.lists(st.sampled_from(["(Intercept)", "x", "x:z", "f2", "poly(x, 2)1"]), min_size=1))
def test_multinom_names_roundtrip(terms):
    levels = ["c0", "c1", "c2", "c3"]
    raw = [t + ("" if lp == 0 else f".{lp}") for lp in range(3) for t in terms]
    want = [f"{levels[lp + 1]}~{t}" for lp in range(3) for t in terms]
    assert multinom_names(raw, levels) == want


def test_mgcv_varcorr_rules():
    _, re_labels, _ = translate_mgcv("y ~ (x || g) + (1 | a/b)")
    ctx = {"re_labels": re_labels, "levels": ["no", "perhaps", "yes"]}
    rules = NAME_TABLES["mgcv"]["varcorr"]
    assert apply_rule(rules, "s(g)", ctx) == ("g", "(Intercept)")
    assert apply_rule(rules, "s(g,x)", ctx) == ("g.1", "x")
    assert apply_rule(rules, "s(a,b)", ctx) == ("b:a", "(Intercept)")
    assert apply_rule(rules, "scale", ctx) == ("Residual", None)
    multi = NAME_TABLES["mgcv"]["varcorr_multinomial"]
    assert apply_rule(multi, "s(g)", ctx) == ("g", "perhaps~(Intercept)")
    assert apply_rule(multi, "s.1(g)", ctx) == ("g", "yes~(Intercept)")


def test_smooth_classes():
    assert MGCV_SMOOTH_CLASSES["tprs.smooth"] == "tp"
    assert MGCV_SMOOTH_CLASSES["cr.smooth"] == "cr"
    assert MGCV_SMOOTH_CLASSES["random.effect"] == "re"


def test_record_renames_mgcv_multinomial():
    job, model, ctx = _prepare("mgcv", "resp ~ x + (1 | id)", "multinomial", None, 1, None, {})
    assert job["formula"] == 'resp ~ x + s(id, bs = "re")'
    assert job["options"]["re_groups"] == {"s(id)": ["id"]}
    raw = {
        "engine_version": "1.8.41",
        "r_version": "4.2.2",
        "nobs": 10,
        "ngroups": {},
        "fixef": {"(Intercept)": 1.0, "x": 2.0, "(Intercept).1": 3.0, "x.1": 4.0},
        "se": {"(Intercept)": 0.1, "x": 0.2, "(Intercept).1": 0.3, "x.1": 0.4},
        "thresholds": [],
        "varcorr": {
            "grp": ["s(id)", "s.1(id)"],
            "var1": [None, None],
            "var2": [None, None],
            "vcov": [1.0, 4.0],
            "sdcor": [1.0, 2.0],
        },
        "theta": [],
        "sigma": None,
        "loglik": -1.0,
        "deviance": 2.0,
        "aic": 3.0,
        "bic": 4.0,
        "df": 5.0,
        "converged": True,
        "messages": [],
        "time_s": 0.1,
        "smooths": [],
        "aux": {"levels": ["no", "perhaps", "yes"], "ngroups": {"s(id)": 5}},
    }
    rec = _record(raw, "mgcv", model, ctx)
    assert list(rec["fixef"]) == ["perhaps~(Intercept)", "perhaps~x", "yes~(Intercept)", "yes~x"]
    assert list(rec["se"]) == list(rec["fixef"])
    assert [(v["grp"], v["var1"]) for v in rec["varcorr"]] == [
        ("id", "perhaps~(Intercept)"),
        ("id", "yes~(Intercept)"),
    ]
    assert rec["ngroups"] == {"id": 5} and rec["thresholds"] == {}
    assert rec["model"] == {
        "formula": "resp ~ x + (1 | id)",
        "family": "multinomial",
        "link": "logit",
        "method": "REML",
        "nagq": 1,
        "reml": None,
    }


# ---------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"engine": "nlme"}, ValueError, "unknown engine"),
        ({"engine": "glmmTMB", "family": "ordinal"}, ValueError, "does not fit family"),
        ({"engine": "gamm4", "family": "negative_binomial"}, ValueError, "does not fit"),
        ({"engine": "lme4", "family": "binomial", "link": "log1p"}, ValueError, "link"),
        ({"engine": "lme4", "family": "negative_binomial", "link": "sqrt"}, ValueError, "log"),
        ({"engine": "glmmTMB", "family": "binomial", "nagq": 5}, ValueError, "Laplace only"),
        ({"engine": "lme4", "nagq": -1}, ValueError, "non-negative integer"),
        ({"engine": "glmmTMB", "family": "binomial", "nagq": 0}, ValueError, "nAGQ = 0"),
        ({"engine": "lme4", "threshold": "flexible"}, TypeError, "no option"),
        ({"engine": "ordinal", "family": "ordinal", "threshold": "x"}, ValueError, "threshold"),
        ({"engine": "mgcv", "reml": True, "method": "ML"}, ValueError, "contradicts"),
        ({"engine": "lme4", "family": "nbinom1"}, ValueError, "does not fit family"),
        ({"engine": "mgcv", "family": "Gamma"}, ValueError, "does not fit family"),
        ({"engine": "glmmTMB", "family": "gamma"}, ValueError, "does not fit family"),
        ({"engine": "glmmTMB", "family": "Gamma", "link": "logit"}, ValueError, "link"),
        ({"engine": "lme4", "family": "nbinom2", "link": "sqrt"}, ValueError, "log"),
    ],
)
def test_bad_arguments_fail_before_r(kwargs, exc, match):
    kwargs = {"formula": "y ~ x + (1 | g)", "data": pd.DataFrame({"y": [1.0]}), **kwargs}
    with pytest.raises(exc, match=match):
        fit_reference(**kwargs)


@pytest.mark.parametrize(
    ("engine", "family", "link", "nagq", "reml", "expected"),
    [
        ("lme4", "gaussian", None, 1, None, ("identity", "REML", True)),
        ("lme4", "gaussian", None, 1, False, ("identity", "ML", False)),
        ("lme4", "gaussian", "log", 1, None, ("log", "Laplace", None)),
        ("lme4", "binomial", None, 25, None, ("logit", "AGQ", None)),
        ("ordinal", "ordinal", "probit", 10, None, ("probit", "AGQ", None)),
        ("glmmTMB", "poisson", None, 1, True, ("log", "Laplace", None)),
        ("mgcv", "gaussian", None, 1, False, ("identity", "ML", False)),
        ("gamm4", "gaussian", None, 1, None, ("identity", "REML", True)),
    ],
)
def test_model_description(engine, family, link, nagq, reml, expected):
    _, model, _ = _prepare(engine, "y ~ x + (1 | g)", family, link, nagq, reml, {})
    assert (model["link"], model["method"], model["reml"]) == expected


@pytest.mark.parametrize(
    ("engine", "family", "link", "job_family", "job_link"),
    [
        ("lme4", "nbinom2", None, "negative_binomial", "log"),
        ("glmmTMB", "nbinom2", "sqrt", "negative_binomial", "sqrt"),
        ("glmmTMB", "nbinom1", None, "nbinom1", "log"),
        ("glmmTMB", "Gamma", None, "Gamma", "inverse"),
        ("glmmTMB", "Gamma", "identity", "Gamma", "identity"),
        ("lme4", "Gamma", "log", "Gamma", "log"),
    ],
)
def test_new_families_and_the_nbinom2_alias(engine, family, link, job_family, job_link):
    """The record and the R job carry the canonical family name; Gamma's default link
    is R's canonical inverse, the negative binomials' log."""
    job, model, _ = _prepare(engine, "y ~ x + (1 | g)", family, link, 1, None, {})
    assert (job["family"], job["link"]) == (job_family, job_link)
    assert (model["family"], model["link"], model["method"]) == (job_family, job_link, "Laplace")
    assert model["reml"] is None


# ------------------------------------------------------------- data encoding


def test_encode_frame_kinds_and_codes():
    df = pd.DataFrame(
        {
            "f": [1.0, np.nan],
            "i": np.array([1, 2], dtype=np.int64),
            "ni": pd.array([None, 2], dtype="Int64"),
            "b": [True, False],
            "c": pd.Categorical([20, 10], categories=[20, 10]),
            "o": pd.Categorical([None, "lo"], ["lo", "hi"], ordered=True),
            "s": ["x", None],
        }
    )
    cols = {c.name: c for c in encode_frame(df)}
    assert {n: c.kind for n, c in cols.items()} == {
        "f": "double",
        "i": "integer",
        "ni": "integer",
        "b": "logical",
        "c": "factor",
        "o": "factor",
        "s": "character",
    }
    assert cols["c"].levels == ("20", "10") and cols["c"].values.tolist() == [1, 2]
    assert cols["o"].ordered and cols["o"].values.tolist() == [0, 1]
    assert cols["ni"].na.tolist() == [True, False] and cols["f"].na.tolist() == [False, True]
    assert cols["i"].values.dtype == np.int32


@pytest.mark.parametrize(
    ("column", "exc", "match"),
    [
        (np.array([2**40, 1], dtype=np.int64), ValueError, "32-bit"),
        (pd.Categorical([1, "1"]), ValueError, "collide"),
        (np.array([1, "a"], dtype=object), TypeError, "non-strings"),
        (pd.to_datetime(["2020-01-01", "2020-01-02"]), TypeError, "no R counterpart"),
    ],
)
def test_encode_frame_rejects_naming_the_column(column, exc, match):
    with pytest.raises(exc, match=f"'bad'.*{match}"):
        encode_frame(pd.DataFrame({"ok": [1.0, 2.0], "bad": column}))


# ---------------------------------------------------------- known discrepancies


def test_known_discrepancies_are_well_formed():
    keys = {"id", "engine", "condition", "quantity", "gap", "description", "evidence",
            "measured"}
    ids = [d["id"] for d in KNOWN_DISCREPANCIES]
    assert len(ids) == len(set(ids))
    for d in KNOWN_DISCREPANCIES:
        assert set(d) == keys, d["id"]
        assert d["engine"] in {"lme4", "glmmTMB", "ordinal", "mgcv", "gamm4", "*"}
        assert isinstance(d["quantity"], list) and d["evidence"]
        # a size for fields the entry is about, as {"abs": a}, {"rel": r} (and a
        # "sign" of +-1 where only one direction is explained) or "definition"
        assert set(d["gap"]) <= set(d["quantity"]), d["id"]
        for size in d["gap"].values():
            assert size == "definition" or (
                set(size) <= {"abs", "rel", "sign"} and {"abs", "rel"} & set(size)
                and all(size[k] > 0 for k in ("abs", "rel") if k in size)
                and size.get("sign", 1) in (1, -1)), d["id"]
    assert {d["id"] for d in lookup("lme4", "loglik")} >= {"lme4-agq-binomial-loglik"}
    assert all(d["engine"] in ("mgcv", "*") for d in lookup("mgcv"))


def test_configure_rejects_empty_pool():
    from reference_r import configure

    with pytest.raises(ValueError, match="workers must be >= 1"):
        configure(0)
