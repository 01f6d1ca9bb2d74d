"""The lme4 formula parser: syntax, lme4's expansions, R's terms algebra, errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glmmbench.errors import FormulaError, GLMMError
from glmmbench.model.formula import (
    BinOp,
    Call,
    Name,
    Num,
    Paren,
    Unary,
    deparse,
    expand_terms,
    format_number,
    parse_expr,
    parse_formula,
)

from .rscript import run_r

# ---------------------------------------------------------------- basic parse


def test_sleepstudy_formula():
    spec = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert spec.response_name == "Reaction"
    assert spec.fixed.intercept
    assert spec.fixed.labels == ("Days",)
    assert [(r.text, r.group_name) for r in spec.random] == [("Days | Subject", "Subject")]
    assert spec.random[0].model.intercept and spec.random[0].model.labels == ("Days",)
    assert spec.offsets == () and spec.smooths == ()


def test_cbind_response_and_offsets():
    spec = parse_formula(
        "cbind(incidence, size - incidence) ~ period + offset(log(size)) + offset(t) + (1 | herd)"
    )
    assert spec.is_cbind
    assert spec.response_name == "cbind(incidence, size - incidence)"
    assert [deparse(o) for o in spec.offsets] == ["log(size)", "t"]
    assert spec.fixed.labels == ("period",)


def test_random_term_only_means_intercept_only():
    spec = parse_formula("y ~ (1 | g)")
    assert spec.fixed.intercept and spec.fixed.terms == ()
    spec0 = parse_formula("y ~ 0 + (1 | g)")
    assert not spec0.fixed.intercept


def test_double_bar_expansion_as_lme4():
    spec = parse_formula("y ~ x + (x + z || g)")
    assert [r.text for r in spec.random] == ["1 | g", "0 + x | g", "0 + z | g"]
    assert all(r.double_bar for r in spec.random)
    spec = parse_formula("y ~ (0 + x || g)")
    assert [r.text for r in spec.random] == ["0 + x | g"]
    spec = parse_formula("y ~ (x * z || g)")
    assert [r.text for r in spec.random] == ["1 | g", "0 + x | g", "0 + z | g", "0 + x:z | g"]
    spec = parse_formula("y ~ (1 || g)")
    assert [r.text for r in spec.random] == ["1 | g"]


def test_slash_expansion_as_lme4():
    # lme4::findbars(y ~ (1|a/b/c) + (x||g) + (1|a:b)), checked in R 4.2.2 / lme4 1.1-31
    spec = parse_formula("y ~ x + (1|a/b/c) + (x||g) + (1|a:b)")
    assert [r.group_name for r in spec.random] == ["c:(b:a)", "b:a", "a", "g", "g", "a:b"]
    spec = parse_formula("y ~ (x || a/b)")
    assert [r.text for r in spec.random] == ["1 | b:a", "1 | a", "0 + x | b:a", "0 + x | a"]
    spec = parse_formula("y ~ (1 | herd/period)")
    assert [r.group_name for r in spec.random] == ["period:herd", "herd"]


def test_smooth_terms_are_kept():
    spec = parse_formula('y ~ x + s(z, k = 10, bs = "cr") + te(u, v) + s(w, by = f) + (1 | g)')
    kinds = [(s.kind, s.variables, s.options, s.label) for s in spec.smooths]
    assert kinds == [
        ("s", ("z",), {"k": 10, "bs": "cr"}, "s(z)"),
        ("te", ("u", "v"), {}, "te(u,v)"),
        ("s", ("w",), {"by": "f"}, "s(w):f"),
    ]
    assert spec.smooths[0].text == 's(z, k = 10, bs = "cr")'
    assert spec.fixed.labels == ("x",)


# ---------------------------------------------------------------- R's terms()

# attr(terms(f), c("intercept", "term.labels")) and the nonzero entries of
# attr(, "factors") (column-major), from R 4.2.2.
R_TERMS = [
    ("y ~ a*b - a", True, ("b", "a:b"), "112"),
    ("y ~ x + b:a + a", True, ("x", "a", "b:a"), "1112"),
    ("y ~ (a+b+c)^2 - a:b", True, ("a", "b", "c", "a:c", "b:c"), "1111111"),
    ("y ~ a/b", True, ("a", "a:b"), "121"),
    ("y ~ b %in% a", True, ("b:a",), "22"),
    ("y ~ -1 + x", False, ("x",), "1"),
    ("y ~ x - 0", True, ("x",), "1"),
    ("y ~ a + b - 1 + 1", True, ("a", "b"), "11"),
    ("y ~ a*b*c - a:b:c", True, ("a", "b", "c", "a:b", "a:c", "b:c"), "111111111"),
    ("y ~ (a + b)/c", True, ("a", "b", "a:b:c"), "11222"),
    ("y ~ x + 0 + z", False, ("x", "z"), "11"),
    ("y ~ log(x) + I(x^2):a", True, ("log(x)", "I(x^2):a"), "122"),
    ("y ~ a:b + a", True, ("a", "a:b"), "121"),
    ("y ~ c:b:a + a + b", True, ("a", "b", "c:b:a"), "11222"),
]


@pytest.mark.parametrize(("formula", "intercept", "labels", "factors"), R_TERMS)
def test_terms_algebra_matches_r(formula, intercept, labels, factors):
    spec = expand_terms(parse_expr(formula.split("~")[1]))
    assert spec.intercept == intercept
    assert spec.labels == labels
    assert "".join(str(c) for row in spec.codes for c in row) == factors


@pytest.mark.r
def test_terms_algebra_live_r():
    formulas = [f for f, *_ in R_TERMS] + [
        "y ~ (a + b + c)^3 - a", "y ~ a*(b + c)", "y ~ (a + b) %in% c", "y ~ a - a", "y ~ 0",
        "y ~ a:b:c + a:b + c", "y ~ x*(a + I(x^2))", "y ~ b + a + a:b + b:a",
    ]
    code = (
        f"f <- fromJSON({json.dumps(json.dumps(formulas))})\n"
        "lapply(f, function(ff) { t <- terms(as.formula(ff)); fa <- attr(t, 'factors');"
        " list(intercept = attr(t, 'intercept') == 1, labels = I(attr(t, 'term.labels')),"
        " factors = paste(fa[fa != 0], collapse = '')) })"
    )
    for formula, r in zip(formulas, run_r(code), strict=True):
        spec = expand_terms(parse_expr(formula.split("~")[1]))
        assert spec.intercept == r["intercept"], formula
        assert list(spec.labels) == r["labels"], formula
        assert "".join(str(c) for row in spec.codes for c in row) == r["factors"], formula


# ---------------------------------------------------------------- deparse / numbers

# deparse(str2lang(.)) in R 4.2.2
R_DEPARSE = {
    "x/y": "x/y", "x*y": "x * y", "x^2": "x^2", "-x": "-x", "!x": "!x",
    "x %in% y": "x %in% y", "x%%2": "x%%2", "x%/%2": "x%/%2", "a:b": "a:b", "a|b": "a | b",
    "a||b": "a || b", "x>=0": "x >= 0", 'f(x,k=10,bs="cr")': 'f(x, k = 10, bs = "cr")',
    "I(x^2.50)": "I(x^2.5)", "log(x+1e6)": "log(x + 1e+06)", "x+1e5": "x + 1e+05",
    "x*100000": "x * 1e+05", "x*123456": "x * 123456", "x*1e-5": "x * 1e-05",
    "x*0.0001": "x * 1e-04", "x*2L": "x * 2L", "(x+1)^2": "(x + 1)^2", "a&b": "a & b",
    "x==1": "x == 1", "c:(b:a)": "c:(b:a)", "TRUE": "TRUE", "x-(-1)": "x - (-1)",
    "- 1": "-1", "`my var`+1": "`my var` + 1", "1/3": "1/3", "x ** 2": "x^2",
    "y ~ x + (1 | g)": "y ~ x + (1 | g)", "-a^2": "-a^2", "(-a)^2": "(-a)^2",
}


@pytest.mark.parametrize(("text", "expected"), sorted(R_DEPARSE.items()))
def test_deparse_as_r(text, expected):
    assert deparse(parse_expr(text)) == expected


def test_deparse_adds_parentheses_to_built_calls():
    # substitute(foo:bar, ...) in lme4's expandSlash; R deparses these so
    assert deparse(BinOp(":", Name("c"), BinOp(":", Name("b"), Name("a")))) == "c:(b:a)"
    assert deparse(BinOp(":", BinOp("+", Name("c"), Name("d")), Name("a"))) == "(c + d):a"
    assert deparse(Unary("-", BinOp("+", Name("a"), Name("b")))) == "-(a + b)"


# as.character() of doubles in R 4.2.2
R_NUMBERS = [
    (0.001, "0.001"), (0.0001234, "0.0001234"), (1234.5678, "1234.5678"), (1e-300, "1e-300"),
    (2.0 ** 60, "1152921504606846976"), (0.1 + 0.2, "0.3"), (100.0, "100"),
    (1e5 + 0.1, "100000.1"), (-0.5, "-0.5"), (1.5e10, "1.5e+10"), (1e5, "1e+05"),
    (123456.0, "123456"), (1e-5, "1e-05"), (1e-4, "1e-04"), (1 / 3, "0.333333333333333"),
    (1e15, "1e+15"), (15.0, "15"), (2.5, "2.5"),
]


@pytest.mark.parametrize(("value", "expected"), R_NUMBERS)
def test_format_number_as_r(value, expected):
    assert format_number(value) == expected


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("formula", "pattern"),
    [
        ("y ~ x + (1 | g", r"unbalanced parentheses.*never closed"),
        ("y ~ x + 1 | g)", r"unbalanced parentheses: unexpected '\)'"),
        ("y ~ log(x + (1 | g)", r"unbalanced parentheses"),
        ("y + x + (1 | g)", r"no '~'"),
        ("~ x + (1 | g)", r"no response"),
        ("y ~ x + ( | g)", r"empty random-effects term.*before '\|'"),
        ("y ~ x + (1 | )", r"empty random-effects term.*no grouping factor"),
        ("y ~ x + (1 || )", r"empty random-effects term"),
        ("y ~ x", r"no random-effects terms.*GLM"),
        ("y ~ x + z", r"no random-effects terms"),
        ("y ~ x +", r"ends unexpectedly after '\+'"),
        ("y ~ x + $z + (1|g)", r"unexpected character '\$'"),
        ("y ~ x y + (1|g)", r"missing operator"),
        ("y ~ x * (1 | g)", r"random-effects term inside"),
        ("y ~ x - (1 | g)", r"cannot be subtracted"),
        ("cbind(a, b, c) ~ x + (1 | g)", r"cbind\(\) response needs exactly two"),
        ("y ~ (a + b)^x + (1 | g)", r"invalid power"),
        ("y ~ . + (1 | g)", r"'\.'"),
        ("y ~ x + (1 | g) ~ z", r"more than one '~'|invalid response"),
        ("y ~ 2 + (1 | g)", r"invalid number 2"),
        ("y ~ x + ()", r"empty parentheses"),
        ("", r"empty formula"),
        ("y ~ x + (1 | 3)", r"grouping factor.*constant"),
    ],
)
def test_syntax_errors_are_formula_errors(formula, pattern):
    with pytest.raises(FormulaError, match=pattern):
        parse_formula(formula)


def test_formula_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_formula("y ~ x")
    assert issubclass(FormulaError, GLMMError)


def test_non_string_formula():
    with pytest.raises(FormulaError, match="string"):
        parse_formula(42)


# ---------------------------------------------------------------- properties

_FORMULAS = [
    "Reaction ~ Days + (Days | Subject)",
    "cbind(incidence, size - incidence) ~ period + (1 | herd)",
    "y ~ a * b + log(x) + I(x^2) + offset(log(t)) + (1 + x | g) + (1 | h:k)",
    "y ~ 0 + x + (x || g) + (1 | a/b)",
    "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
]


def _tokens(text: str) -> list[str]:
    pattern = r"%[^%]*%|\|\||\*\*|[A-Za-z_.][\w.]*|\d+\.?\d*(?:e[+-]?\d+)?|\S"
    return re.findall(pattern, text)


@given(st.sampled_from(_FORMULAS), st.data())
@settings(max_examples=60, deadline=None)
def test_whitespace_does_not_matter(formula, data):
    toks = _tokens(formula)
    gaps = data.draw(st.lists(st.sampled_from(["", " ", "  ", "\n", "\t "]),
                              min_size=len(toks), max_size=len(toks)))
    # names must stay separated: a gap between two word tokens cannot be empty
    text = ""
    for tok, gap in zip(toks, gaps, strict=True):
        def wordy(c: str) -> bool:
            return c.isalnum() or c in "._"

        if text and wordy(text[-1]) and wordy(tok[0]):
            gap = gap or " "
        text += gap + tok
    assert parse_formula(text) == parse_formula(formula)


@given(st.permutations(["x", "log(z)", "(1 | g)", "(0 + x | h)", "offset(t)"]))
@settings(max_examples=40, deadline=None)
def test_position_of_random_and_offset_terms_does_not_matter(order):
    spec = parse_formula("y ~ " + " + ".join(order))
    fixed_order = [t for t in order if t in ("x", "log(z)")]
    random_order = [t for t in order if "|" in t]
    ref = parse_formula("y ~ " + " + ".join(fixed_order + random_order + ["offset(t)"]))
    assert spec.fixed == ref.fixed
    assert spec.random == ref.random
    assert spec.offsets == ref.offsets


_leaf = st.one_of(
    st.sampled_from(["x", "y", "g", "my.var", "`odd name`"]).map(
        lambda s: Name(s.strip("`"))),
    st.integers(0, 100).map(lambda i: Num(float(i))),
    st.sampled_from([0.5, 1e-5, 2.25, 1e6]).map(Num),
)


def _extend(children):
    ops = ["+", "-", "*", "/", ":", "^", "|", "%in%", "==", "&"]
    return st.one_of(
        st.tuples(st.sampled_from(ops), children, children).map(lambda t: BinOp(*t)),
        st.tuples(st.sampled_from(["-", "!"]), children).map(lambda t: Unary(*t)),
        children.map(Paren),
        st.tuples(st.sampled_from(["log", "I", "f"]), st.lists(children, min_size=1,
                                                                max_size=2))
        .map(lambda t: Call(t[0], tuple((None, a) for a in t[1]))),
    )


@given(st.recursive(_leaf, _extend, max_leaves=12))
@settings(max_examples=200, deadline=None)
def test_deparse_parse_round_trip(tree):
    """deparse() adds exactly the parentheses R would: re-parsing gives the same text."""
    text = deparse(tree)
    assert deparse(parse_expr(text)) == text


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300))
def test_format_number_keeps_15_digits(value):
    text = format_number(value)
    if value != 0:
        assert np.isclose(float(text), value, rtol=1e-14, atol=0)
