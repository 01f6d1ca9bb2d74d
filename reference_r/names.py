"""Formula translation and the per-engine name tables.

Every R package names things its own way; a record names them the glmmbench way
(DESIGN.md, "FitRecord"). Each engine has one explicit table below: a dict from
a record field to the rule that renames R's label. Engines whose R names already
are glmmbench's (lme4, glmmTMB, ordinal) carry empty rule lists, so that a reader
sees the choice was made, not forgotten.

Formula work happens here too, because only mgcv and gamm4 need R-side rewriting:
lme4 random-effect terms become ``s(g, bs = "re")`` smooths (mgcv) or the
``random =`` formula (gamm4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_LINK",
    "ENGINE_FAMILIES",
    "FAMILY_ALIASES",
    "NAME_TABLES",
    "MGCV_SMOOTH_CLASSES",
    "RandomTerm",
    "apply_rule",
    "multinom_names",
    "split_formula",
    "translate_gamm4",
    "translate_mgcv",
]

ENGINE_FAMILIES: dict[str, frozenset[str]] = {
    # multinomial: two categories only, as glmer's binomial model (api._multinomial_by_glmer)
    "lme4": frozenset({"gaussian", "binomial", "poisson", "negative_binomial", "Gamma",
                       "multinomial"}),
    "glmmTMB": frozenset(
        {"gaussian", "binomial", "poisson", "negative_binomial", "nbinom1", "Gamma", "beta",
         "truncated_poisson", "truncated_nbinom2", "truncated_nbinom1", "genpois", "t", "tweedie",
         "betabinomial", "ordbeta", "compois"}
    ),
    "ordinal": frozenset({"ordinal"}),
    "mgcv": frozenset({"gaussian", "binomial", "poisson", "negative_binomial", "multinomial"}),
    "gamm4": frozenset({"gaussian", "binomial", "poisson"}),
}

# Other names a caller may use for a family; records carry the canonical name.
FAMILY_ALIASES: dict[str, str] = {"nbinom2": "negative_binomial"}

# R's canonical link, except log for the negative binomials (as glmer.nb / glmmTMB).
DEFAULT_LINK: dict[str, str] = {
    "gaussian": "identity",
    "binomial": "logit",
    "poisson": "log",
    "negative_binomial": "log",
    "nbinom1": "log",
    "Gamma": "inverse",
    "beta": "logit",
    "truncated_poisson": "log",
    "truncated_nbinom2": "log",
    "truncated_nbinom1": "log",
    "genpois": "log",
    "t": "identity",
    "tweedie": "log",
    "betabinomial": "logit",
    "ordbeta": "logit",
    "compois": "log",
    "ordinal": "logit",
    "multinomial": "logit",
}

# mgcv smooth classes -> the `bs` code that makes them.
MGCV_SMOOTH_CLASSES: dict[str, str] = {
    "tprs.smooth": "tp",
    "ts.smooth": "ts",
    "cr.smooth": "cr",
    "cs.smooth": "cs",
    "cyclic.smooth": "cc",
    "pspline.smooth": "ps",
    "cpspline.smooth": "cp",
    "Bspline.smooth": "bs",
    "duchon.spline": "ds",
    "gp.smooth": "gp",
    "tensor.smooth": "te",
    "t2.smooth": "t2",
    "random.effect": "re",
    "fs.interaction": "fs",
    "mrf.smooth": "mrf",
    "sos.smooth": "sos",
}

# A rule renames one R label: (pattern, template). The template is filled from
# the match's named groups plus a context (see `apply_rule`).
Rule = tuple[re.Pattern[str], Callable[[re.Match[str], dict], object]]


def _lp_category(match: re.Match[str], ctx: dict) -> str:
    # mgcv's linear predictor k (0-based; the suffix ".k" marks k >= 1) models
    # category k + 1 against the baseline category 0.
    lp = int(match["lp"] or 0)
    return ctx["levels"][lp + 1]


_MGCV_LP_COEF = re.compile(r"^(?P<term>.+?)(?:\.(?P<lp>[1-9]\d*))?$")
_MGCV_LP_SMOOTH = re.compile(r"^(?P<kind>s|te|ti|t2)(?:\.(?P<lp>[1-9]\d*))?\((?P<args>.*)\)$")
_MGCV_SCALE = re.compile(r"^scale$")


def _re_entry(match: re.Match[str], ctx: dict) -> tuple[str, str]:
    return ctx["re_labels"][f"{match['kind']}({match['args']})"]


NAME_TABLES: dict[str, dict[str, list[Rule]]] = {
    # lme4: fixef / varcorr / theta names are already glmmbench's.
    "lme4": {"fixef": [], "varcorr": [], "thresholds": []},
    # glmmTMB: fixef(m)$cond names are model.matrix names; varcorr rows are built
    # in R from VarCorr(m)$cond in lme4's as.data.frame order.
    "glmmTMB": {"fixef": [], "varcorr": [], "thresholds": []},
    # ordinal::clmm: thresholds already "1|2", "2|3", ...; fixef is m$beta.
    "ordinal": {"fixef": [], "varcorr": [], "thresholds": []},
    # mgcv: random-effect smooths are renamed from the table built by
    # `translate_mgcv` (label -> (grp, var1)); multinomial coefficients
    # "(Intercept).1" -> "<level 2>~(Intercept)".
    "mgcv": {
        "fixef": [],
        "fixef_multinomial": [
            (_MGCV_LP_COEF, lambda m, ctx: f"{_lp_category(m, ctx)}~{m['term']}"),
        ],
        # gam.vcomp row label -> (grp, var1): "s(g)" -> ("g", "(Intercept)"),
        # "s(g,x)" -> ("g", "x"), "scale" -> ("Residual", None).
        "varcorr": [
            (_MGCV_SCALE, lambda m, ctx: ("Residual", None)),
            (_MGCV_LP_SMOOTH, lambda m, ctx: _re_entry(m, ctx)),
        ],
        # multinomial: one variance per linear predictor, var1 "yes~(Intercept)".
        "varcorr_multinomial": [
            (_MGCV_SCALE, lambda m, ctx: ("Residual", None)),
            (
                _MGCV_LP_SMOOTH,
                lambda m, ctx: (
                    _re_entry(m, ctx)[0],
                    f"{_lp_category(m, ctx)}~{_re_entry(m, ctx)[1]}",
                ),
            ),
        ],
        "thresholds": [],
    },
    # gamm4: fixef from the gam part (model.matrix names); varcorr from the mer
    # part, minus the smooth penalty groups "Xr", "Xr.0", ... which go to smooths.
    "gamm4": {"fixef": [], "varcorr": [], "thresholds": []},
}


def apply_rule(rules: Sequence[Rule], name: str, ctx: dict | None = None) -> object:
    """Rename ``name`` by the first rule whose pattern matches; unchanged if none."""
    for pattern, template in rules:
        match = pattern.match(name)
        if match:
            return template(match, ctx or {})
    return name


def multinom_names(names: Sequence[str], levels: Sequence[str]) -> list[str]:
    """mgcv multinom coefficient names -> ``category~term`` names.

    >>> multinom_names(["(Intercept)", "x", "(Intercept).1", "x.1"], ["no", "perhaps", "yes"])
    ['perhaps~(Intercept)', 'perhaps~x', 'yes~(Intercept)', 'yes~x']
    """
    rules = NAME_TABLES["mgcv"]["fixef_multinomial"]
    return [apply_rule(rules, n, {"levels": list(levels)}) for n in names]


# --------------------------------------------------------------------------------------
# Formula splitting


@dataclass(frozen=True)
class RandomTerm:
    """One lme4 random-effect term ``(lhs | grp)`` or ``(lhs || grp)``."""

    lhs: str
    grp: str
    double_bar: bool

    @property
    def text(self) -> str:
        bar = "||" if self.double_bar else "|"
        return f"({self.lhs} {bar} {self.grp})"


def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` outside parentheses, brackets and quotes."""
    parts, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    if depth != 0 or quote:
        raise ValueError(f"unbalanced parentheses or quotes in {text!r}")
    parts.append(text[start:])
    return parts


def _wrapped(term: str) -> bool:
    """True when ``term`` is one parenthesised group: "(1 | g)", not "(a) + (b)"."""
    if not (term.startswith("(") and term.endswith(")")):
        return False
    depth = 0
    for i, c in enumerate(term):
        depth += c == "("
        depth -= c == ")"
        if depth == 0 and i < len(term) - 1:
            return False
    return True


def _as_random(term: str) -> RandomTerm | None:
    term = term.strip()
    if not _wrapped(term):
        return None
    inner = term[1:-1]
    for bar, double in (("||", True), ("|", False)):
        pieces = _split_top(inner, bar)
        if len(pieces) == 2:
            return RandomTerm(pieces[0].strip(), pieces[1].strip(), double)
    return None


def split_formula(formula: str) -> tuple[str, list[str], list[RandomTerm]]:
    """Split an lme4 formula into its response, fixed terms and random terms.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"y ~ x + s(z) + (1 + x | g)"``.

    Returns
    -------
    lhs : str
        The response (``""`` for a one-sided formula).
    fixed : list of str
        Top-level ``+`` terms that are not random-effect terms (smooths included).
    random : list of RandomTerm
    """
    sides = _split_top(formula, "~")
    if len(sides) != 2:
        raise ValueError(f"formula needs exactly one top-level '~': {formula!r}")
    lhs, rhs = sides[0].strip(), sides[1]
    fixed, random = [], []
    for term in _split_top(rhs, "+"):
        if not term.strip():
            continue
        rt = _as_random(term)
        if rt is None:
            fixed.append(term.strip())
        else:
            random.append(rt)
    return lhs, fixed, random


def _lhs_parts(lhs: str) -> tuple[bool, list[str]]:
    """(has intercept, covariates) of a random term's left-hand side."""
    intercept, covariates = True, []
    for plus_piece in _split_top(lhs, "+"):
        for k, piece in enumerate(_split_top(plus_piece, "-")):
            piece, negative = piece.strip(), k > 0
            if not piece:
                continue
            if piece in ("0", "1"):
                intercept = (piece == "1") != negative
            elif negative:
                raise ValueError(f"cannot translate removed term '-{piece}' in ({lhs} | ...)")
            else:
                covariates.append(piece)
    return intercept, covariates


def _expand_groups(grp: str) -> list[tuple[list[str], str]]:
    """lme4 grouping expression -> [(factor variables, lme4 group name)].

    ``a/b`` expands to ``a`` and ``a:b``; lme4 names the nested group ``b:a``.
    """
    if "/" in grp:
        vars_ = [v.strip() for v in grp.split("/")]
        out = []
        for k in range(1, len(vars_) + 1):
            inner = vars_[:k]
            out.append((inner, ":".join(reversed(inner))))
        return out
    if "+" in grp or "(" in grp:
        raise ValueError(f"cannot translate grouping expression {grp!r}")
    vars_ = [v.strip() for v in grp.split(":")]
    return [(vars_, ":".join(vars_))]


def _dedupe(name: str, seen: dict[str, int]) -> str:
    # lme4 suffixes a repeated grouping factor: "Subject", "Subject.1", ...
    k = seen.get(name, 0)
    seen[name] = k + 1
    return name if k == 0 else f"{name}.{k}"


def translate_mgcv(
    formula: str,
) -> tuple[str, dict[str, tuple[str, str]], dict[str, tuple[str, list[str]]]]:
    """Rewrite an lme4 formula for mgcv::gam, random terms as ``bs = "re"`` smooths.

    ``(1|g)`` -> ``s(g, bs = "re")``; ``(0 + x|g)`` -> ``s(g, x, bs = "re")``;
    ``(x||g)`` -> both; ``(1|a/b)`` -> ``s(a) + s(a, b)`` (``bs = "re"``).
    Correlated terms such as ``(1 + x|g)`` have no gam equivalent and raise.

    Returns
    -------
    formula : str
        The mgcv formula.
    re_labels : dict
        mgcv smooth label (``"s(g,x)"``) -> (lme4 group name, var1).
    groups : dict
        mgcv smooth label -> (lme4 grouping-factor name as in ``ngrps()``, the
        factor variables whose level combinations are the groups).
    """
    lhs, fixed, random = split_formula(formula)
    terms, re_labels, groups, seen = list(fixed), {}, {}, {}
    for rt in random:
        intercept, covariates = _lhs_parts(rt.lhs)
        if not rt.double_bar and (len(covariates) + intercept) > 1:
            raise ValueError(
                f"{rt.text}: correlated random effects cannot be expressed in mgcv::gam "
                "(bs='re' smooths are independent); use (x || g) for uncorrelated "
                "effects or engine 'lme4'/'glmmTMB'/'gamm4'"
            )
        components = (["(Intercept)"] if intercept else []) + covariates
        for vars_, grp_name in _expand_groups(rt.grp):
            for var1 in components:
                args = vars_ + ([] if var1 == "(Intercept)" else [var1])
                label = f"s({','.join(args)})"
                if label in re_labels:
                    raise ValueError(f"random term {rt.text} repeats {label}")
                terms.append(f's({", ".join(args)}, bs = "re")')
                re_labels[label] = (_dedupe(grp_name, seen), var1)
                groups[label] = (grp_name, vars_)
    if not terms:
        terms = ["1"]
    return f"{lhs} ~ {' + '.join(terms)}", re_labels, groups


def translate_gamm4(formula: str) -> tuple[str, str]:
    """Split an lme4 formula into gamm4's ``formula`` and ``random`` arguments.

    >>> translate_gamm4("y ~ s(x) + (1 | g)")
    ('y ~ s(x)', '~ (1 | g)')
    """
    lhs, fixed, random = split_formula(formula)
    if not random:
        raise ValueError(f"gamm4 needs at least one random-effect term: {formula!r}")
    rhs = " + ".join(fixed) if fixed else "1"
    return f"{lhs} ~ {rhs}", "~ " + " + ".join(rt.text for rt in random)
