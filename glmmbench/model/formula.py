"""lme4 formula syntax -> a frozen, data-free specification.

``parse_formula("y ~ x + (1 + x | g)")`` reads the formula with R's grammar
(operator precedence as in R's ``?Syntax``), then does what lme4 and R's
``terms()`` do before any data is seen:

- ``(x || g)`` becomes ``(1 | g) + (0 + x | g)`` (lme4's ``expandDoubleVerts``);
- ``(1 | a/b)`` becomes ``(1 | b:a) + (1 | a)`` (lme4's ``findbars``);
- the fixed part is expanded into terms as R's ``terms.formula`` does
  (``*``, ``/``, ``^``, ``%in%``, ``-``, ``0``/``1``), terms ordered by degree;
- ``offset(...)`` terms and GAMM smooths ``s()``, ``te()``, ``ti()``, ``t2()``
  are set aside.

Names are produced with R's ``deparse`` rules, so that model-matrix columns
and grouping-factor names come out exactly as R prints them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from glmmbench.errors import FormulaError

__all__ = [
    "Node", "Name", "Num", "Str", "Const", "Call", "BinOp", "Unary", "Paren",
    "TermSpec", "RandomSpec", "SmoothTerm", "FormulaSpec",
    "parse_expr", "parse_formula", "parse_dispformula", "deparse", "expand_terms", "format_number",
    "SMOOTH_FUNCTIONS",
]

SMOOTH_FUNCTIONS = ("s", "te", "ti", "t2")


# ----------------------------------------------------------------------------
# Syntax tree
# ----------------------------------------------------------------------------

class Node:
    """Base class of the syntax-tree nodes (all frozen dataclasses)."""

    def __str__(self) -> str:
        return deparse(self)


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Num(Node):
    value: float
    integer: bool = False  # R's ``2L``


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Const(Node):
    """``TRUE``, ``FALSE``, ``NA``, ``NULL``, ``Inf``, ``NaN``."""

    id: str


@dataclass(frozen=True)
class Call(Node):
    fn: str
    args: tuple[tuple[str | None, Node], ...]

    @property
    def positional(self) -> tuple[Node, ...]:
        return tuple(a for k, a in self.args if k is None)

    @property
    def named(self) -> dict[str, Node]:
        return {k: a for k, a in self.args if k is not None}


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class Paren(Node):
    expr: Node


def _strip(node: Node) -> Node:
    while isinstance(node, Paren):
        node = node.expr
    return node


# ----------------------------------------------------------------------------
# Tokenizer and parser (R's grammar, restricted to what formulas use)
# ----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
    |(?P<name>(?:[^\W\d_]|\.(?!\d))[\w.]*)
    |(?P<bq>`[^`]*`)
    |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<op>%[^%\s]*%|\|\||&&|<=|>=|==|!=|\*\*|[~+\-*/^:|&!<>(),=])
    """,
    re.VERBOSE,
)

_CONSTANTS = {"TRUE", "FALSE", "NA", "NULL", "Inf", "NaN"}

# Binding powers: (left bp, right bp); higher binds tighter (R's ?Syntax).
_BINARY = {
    "~": (10, 11),
    "||": (20, 21), "|": (20, 21),
    "&&": (30, 31), "&": (30, 31),
    "==": (40, 41), "!=": (40, 41), "<": (40, 41), ">": (40, 41),
    "<=": (40, 41), ">=": (40, 41),
    "+": (50, 51), "-": (50, 51),
    "*": (60, 61), "/": (60, 61),
    "%": (70, 71),  # every %op%
    ":": (80, 81),
    "^": (90, 89),  # right-associative
}
_PREFIX = {"~": 11, "!": 35, "-": 85, "+": 85}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormulaError(
                f"unexpected character {text[pos]!r} at position {pos} in formula {text!r}"
            )
        kind = m.lastgroup
        if kind != "ws":
            tok = m.group()
            if kind == "op" and tok == "**":
                tok = "^"
            out.append(_Tok(kind, tok, pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


def _unquote(s: str) -> str:
    body = s[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


MAX_TERMS = 100_000  # terms an interaction may expand into
MAX_DEPTH = 200  # nesting of parentheses, calls and prefix or right-associative operators


class _Parser:
    """A Pratt parser: chains of left-associative operators (``a + b + c + ...``, a
    formula of thousands of terms) are read in a loop; only nesting (parentheses,
    calls, prefix and right-associative operators) recurses, up to ``MAX_DEPTH``."""

    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, msg: str) -> FormulaError:
        text = self.text if len(self.text) <= 200 else self.text[:200] + "..."
        return FormulaError(f"{msg} in formula {text!r}")

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("empty formula")
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            if tok.text == ")":
                raise self.fail(f"unbalanced parentheses: unexpected ')' at position {tok.pos}")
            raise self.fail(f"unexpected {tok.text!r} at position {tok.pos}")
        return node

    def expr(self, min_bp: int, after: _Tok | None = None) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                tok = self.peek()
                raise self.fail(f"expression nested more than {MAX_DEPTH} levels deep "
                                f"(at position {tok.pos})")
            return self._expr(min_bp, after)
        finally:
            self.depth -= 1

    def _expr(self, min_bp: int, after: _Tok | None) -> Node:
        left = self.prefix(after)
        while True:
            tok = self.peek()
            if tok.kind != "op":
                if tok.kind != "end":
                    raise self.fail(
                        f"unexpected {tok.text!r} at position {tok.pos} (missing operator?)"
                    )
                return left
            key = "%" if tok.text.startswith("%") else tok.text
            if key == "(":
                raise self.fail(f"unexpected '(' at position {tok.pos} (missing operator?)")
            if key not in _BINARY:
                return left
            lbp, rbp = _BINARY[key]
            if lbp < min_bp:
                return left
            self.next()
            right = self.expr(rbp, after=tok)
            left = BinOp(tok.text, left, right)

    def prefix(self, after: _Tok | None) -> Node:
        tok = self.next()
        if tok.kind == "num":
            body = tok.text[:-1] if tok.text.endswith("L") else tok.text
            return Num(float(body), integer=tok.text.endswith("L"))
        if tok.kind == "str":
            return Str(_unquote(tok.text))
        if tok.kind == "bq":
            return self.maybe_call(Name(tok.text[1:-1]))
        if tok.kind == "name":
            if tok.text in _CONSTANTS and self.peek().text != "(":
                return Const(tok.text)
            return self.maybe_call(Name(tok.text))
        if tok.text == "(":
            if self.peek().text == ")":
                raise self.fail(f"empty parentheses at position {tok.pos}")
            inner = self.expr(0, after=tok)
            close = self.next()
            if close.text != ")":
                raise self.fail(
                    f"unbalanced parentheses: '(' at position {tok.pos} is never closed"
                )
            return Paren(inner)
        if tok.text in _PREFIX:
            return Unary(tok.text, self.expr(_PREFIX[tok.text], after=tok))
        raise self.missing(tok, after)

    def missing(self, tok: _Tok, after: _Tok | None) -> FormulaError:
        if tok.text in ("|", "||"):
            return self.fail(
                f"empty random-effects term: nothing before {tok.text!r} at position {tok.pos}"
            )
        if after is not None and after.text in ("|", "||"):
            return self.fail(
                f"empty random-effects term: no grouping factor after {after.text!r} "
                f"at position {after.pos}"
            )
        if tok.kind == "end":
            if after is not None and after.text == "(":
                return self.fail(
                    f"unbalanced parentheses: '(' at position {after.pos} is never closed"
                )
            what = f"after {after.text!r} at position {after.pos}" if after else ""
            return self.fail(f"formula ends unexpectedly {what}".rstrip())
        if after is not None:
            return self.fail(
                f"missing term after {after.text!r} at position {after.pos} "
                f"(found {tok.text!r})"
            )
        return self.fail(f"unexpected {tok.text!r} at position {tok.pos}")

    def maybe_call(self, fn: Name) -> Node:
        if self.peek().text != "(":
            return fn
        open_tok = self.next()
        args: list[tuple[str | None, Node]] = []
        if self.peek().text == ")":
            self.next()
            return Call(fn.id, ())
        while True:
            key = None
            if self.peek().kind in ("name", "bq", "str") and self.toks[self.i + 1].text == "=":
                raw = self.next().text
                key = raw[1:-1] if raw[0] in "`'\"" else raw
                self.next()
            args.append((key, self.expr(0, after=open_tok)))
            tok = self.next()
            if tok.text == ")":
                return Call(fn.id, tuple(args))
            if tok.text != ",":
                if tok.kind == "end":
                    raise self.fail(
                        f"unbalanced parentheses: '(' at position {open_tok.pos} "
                        "is never closed"
                    )
                raise self.fail(f"unexpected {tok.text!r} at position {tok.pos}")


def parse_expr(text: str) -> Node:
    """Parse one R expression (a formula or a part of one) into a syntax tree."""
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, not {type(text).__name__}")
    try:
        return _Parser(text).parse()
    except RecursionError as exc:  # MAX_DEPTH should come first; a last resort
        raise FormulaError(f"formula nested too deeply to parse: {text[:80]!r}...") from exc


# ----------------------------------------------------------------------------
# Deparsing, as R's deparse() prints calls
# ----------------------------------------------------------------------------

_NO_SPACE = {"/", "^", ":", "%%", "%/%"}
_SYNTACTIC = re.compile(r"^(?:[^\W\d_]|\.(?!\d))[\w.]*$|^\.$")
_RESERVED = {
    "if", "else", "repeat", "while", "function", "for", "next", "break", "in",
    "TRUE", "FALSE", "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_",
    "NA_character_", "NA_complex_",
}


def format_number(value: float, digits: int = 15) -> str:
    """A double as R prints it with ``as.character``/``deparse``.

    At most 15 significant digits, as few as represent the value to that
    precision; fixed notation unless scientific notation is narrower
    (R's ``scipen = 0`` rule).
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    v = abs(value)
    target = float(f"{v:.{digits - 1}e}")
    sig = next(d for d in range(1, digits + 1) if float(f"{v:.{d - 1}e}") == target)
    mant, exp = f"{v:.{sig - 1}e}".split("e")
    e10 = int(exp)
    sci = f"{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    decimals = max(0, sig - 1 - e10)
    fixed = f"{v:.{decimals}f}"
    return sign + (fixed if len(fixed) <= len(sci) else sci)


def _prec(node: Node) -> tuple[int, str]:
    if isinstance(node, BinOp):
        key = "%" if node.op.startswith("%") and node.op not in _BINARY else node.op
        return _BINARY.get(key, _BINARY["%"])[0], "binary"
    if isinstance(node, Unary):
        return _PREFIX[node.op], "unary"
    return 1000, "atom"


def _quote_name(name: str) -> str:
    if _SYNTACTIC.match(name) and name not in _RESERVED:
        return name
    return "`" + name.replace("`", "\\`") + "`"


def deparse(node: Node) -> str:
    """R's ``deparse()`` of the expression (spacing and parentheses as R prints)."""
    if isinstance(node, Name):
        return _quote_name(node.id)
    if isinstance(node, Num):
        return format_number(node.value) + ("L" if node.integer else "")
    if isinstance(node, Str):
        return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(node, Const):
        return node.id
    if isinstance(node, Paren):
        return "(" + deparse(node.expr) + ")"
    if isinstance(node, Call):
        parts = [
            (f"{_quote_name(k)} = " if k is not None else "") + deparse(a) for k, a in node.args
        ]
        return f"{_quote_name(node.fn)}({', '.join(parts)})"
    if isinstance(node, Unary):
        inner = deparse(node.operand)
        if _prec(node.operand)[0] < _PREFIX[node.op]:
            inner = f"({inner})"
        return node.op + inner
    if isinstance(node, BinOp):
        # the left spine in a loop (a + b + c + ... of thousands of terms), the
        # right operands (shallow) recursively
        spine: list[BinOp] = []
        cur: Node = node
        while isinstance(cur, BinOp):
            spine.append(cur)
            cur = cur.left
        text = deparse(cur)
        for b in reversed(spine):
            p = _prec(b)[0]
            right_assoc = b.op == "^"
            left, right = text, deparse(b.right)
            lp, rp = _prec(b.left)[0], _prec(b.right)[0]
            if lp < p or (lp == p and right_assoc):
                left = f"({left})"
            if rp < p or (rp == p and not right_assoc):
                right = f"({right})"
            text = f"{left}{b.op}{right}" if b.op in _NO_SPACE else f"{left} {b.op} {right}"
        return text
    raise TypeError(f"not a formula node: {node!r}")


# ----------------------------------------------------------------------------
# R's terms() algebra
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TermSpec:
    """A right-hand side expanded into terms, as R's ``terms.formula``.

    Attributes
    ----------
    intercept : bool
    variables : tuple of (name, Node)
        Variables in order of first appearance (R's ``variables`` attribute);
        ``name`` is the R deparse, which is how model-matrix columns are named.
    terms : tuple of tuple of int
        Each term is the sorted indices of its variables; terms ordered by
        degree, stably (R's ``keep.order = FALSE``).
    codes : tuple of tuple of int
        R's ``factors`` attribute: per term, per variable, 1 if the variable is
        coded by contrasts (the term without it is marginal to a preceding
        term) and 2 if it is coded by indicators.
    """

    intercept: bool
    variables: tuple[tuple[str, Node], ...]
    terms: tuple[tuple[int, ...], ...]
    codes: tuple[tuple[int, ...], ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """R's ``term.labels``."""
        return tuple(":".join(self.variables[i][0] for i in t) for t in self.terms)


class _TermEncoder:
    """R's EncodeVars (src/library/stats/src/model.c), on frozensets of variables."""

    def __init__(self, context: str):
        self.context = context
        self.names: list[str] = []
        self.nodes: list[Node] = []
        self.intercept = True
        self.parity = True

    def var(self, node: Node) -> int:
        name = deparse(node)
        if name not in self.names:
            self.names.append(name)
            self.nodes.append(node)
        return self.names.index(name)

    @staticmethod
    def trim(terms: list[frozenset]) -> list[frozenset]:
        return [t for t in dict.fromkeys(terms) if t]

    def encode(self, node: Node) -> list[frozenset]:
        if isinstance(node, Paren):
            return self.encode(node.expr)
        if isinstance(node, BinOp) and node.op in ("+", "-", ":", "*"):
            return self.encode_chain(node)
        if isinstance(node, Num):
            if node.value in (0.0, 1.0):
                self.intercept = (node.value == 1.0) == self.parity
                return []
            raise FormulaError(f"invalid number {deparse(node)} in {self.context}")
        if isinstance(node, Name) and node.id == ".":
            raise FormulaError(f"'.' (all other columns) is not supported in {self.context}")
        if isinstance(node, Unary) and node.op in "+-":
            if node.op == "+":
                return self.encode(node.operand)
            return self.delete([], node.operand)
        if isinstance(node, BinOp):
            op = node.op
            if op == "+":
                return self.trim(self.encode(node.left) + self.encode(node.right))
            if op == "-":
                return self.delete(self.encode(node.left), node.right)
            if op == ":":
                left, right = self.encode(node.left), self.encode(node.right)
                return self.trim([a | b for a in left for b in right])
            if op == "*":
                left, right = self.encode(node.left), self.encode(node.right)
                return self.trim(left + right + [a | b for a in left for b in right])
            if op == "/":
                left, right = self.encode(node.left), self.encode(node.right)
                allbits = frozenset().union(*left) if left else frozenset()
                return self.trim(left + [allbits | b for b in right])
            if op == "%in%":
                left, right = self.encode(node.left), self.encode(node.right)
                allbits = frozenset().union(*right) if right else frozenset()
                return self.trim([a | allbits for a in left])
            if op == "^":
                power = _strip(node.right)
                if not isinstance(power, Num) or power.value < 1 or power.value % 1:
                    raise FormulaError(
                        f"invalid power in {deparse(node)!r} ({self.context}): "
                        "use I() for arithmetic"
                    )
                base = self.encode(node.left)
                result = base
                for _ in range(int(power.value) - 1):
                    result = self.trim([a | b for a in base for b in result])
                return result
            if op in ("|", "||"):
                raise FormulaError(
                    f"random-effects term {deparse(node)!r} must be added to the formula "
                    f"with '+' and wrapped in parentheses ({self.context})"
                )
            if op == "~":
                raise FormulaError(f"more than one '~' in {self.context}")
        return [frozenset([self.var(node)])]

    def encode_chain(self, node: BinOp) -> list[frozenset]:
        """``a + b - c + ...``, ``a:b:c``, ``a*b*c``: the left spine of these operators
        in a loop (a formula of thousands of terms does not recurse as deep), in order."""
        spine: list[BinOp] = []
        cur: Node = node
        while isinstance(cur, BinOp) and cur.op in ("+", "-", ":", "*"):
            spine.append(cur)
            cur = cur.left
        terms = dict.fromkeys(self.encode(cur))
        for b in reversed(spine):
            if b.op == "-":
                terms = dict.fromkeys(self.delete(list(terms), b.right))
                continue
            right = self.encode(b.right)
            if b.op in ":*" and len(terms) * len(right) > MAX_TERMS:
                raise FormulaError(
                    f"{deparse(b)!r} expands into more than {MAX_TERMS} terms "
                    f"({self.context})")
            products = dict.fromkeys(a | r for a in terms for r in right)
            if b.op == "+":
                terms.update(dict.fromkeys(right))
            elif b.op == ":":
                terms = products
            else:  # a*b = a + b + a:b
                terms.update(dict.fromkeys(right))
                terms.update(products)
        return [t for t in terms if t]

    def delete(self, left: list[frozenset], right: Node) -> list[frozenset]:
        self.parity = not self.parity
        drop = self.encode(right)
        self.parity = not self.parity
        return [t for t in left if t not in drop]


def expand_terms(rhs: Node | None, context: str = "formula") -> TermSpec:
    """Expand a right-hand side into R's terms (see ``TermSpec``)."""
    enc = _TermEncoder(context)
    found = enc.encode(rhs) if rhs is not None else []
    # Re-index variables by first appearance, which encode() already gives.
    ordered = sorted(found, key=len)  # stable: R orders by degree only
    terms = tuple(tuple(sorted(t)) for t in ordered)
    sets = [frozenset(t) for t in terms]
    codes = []
    for j, term in enumerate(terms):
        row = []
        for v in term:
            rest = sets[j] - {v}
            marginal = not rest or any(rest <= prev for prev in sets[:j])
            row.append(1 if marginal else 2)
        codes.append(tuple(row))
    return TermSpec(
        intercept=enc.intercept,
        variables=tuple(zip(enc.names, enc.nodes, strict=True)),
        terms=terms,
        codes=tuple(codes),
    )


# ----------------------------------------------------------------------------
# Formula specification
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RandomSpec:
    """One random-effects term ``(lhs | group)`` after lme4's expansions.

    ``group_name`` is R's name of the grouping factor (``"Subject"``,
    ``"b:a"``, ``"c:(b:a)"``); ``text`` is lme4's name of the term
    (``"0 + Days | Subject"``).
    """

    lhs: Node
    group: Node
    model: TermSpec
    double_bar: bool = False

    @property
    def group_name(self) -> str:
        return deparse(self.group)

    @property
    def text(self) -> str:
        return deparse(BinOp("|", self.lhs, self.group))


@dataclass(frozen=True)
class SmoothTerm:
    """A GAMM smooth such as ``s(x, k = 10, bs = "cr")`` (mgcv's syntax).

    ``variables`` are the deparsed positional arguments, ``args`` the named
    ones (literal values as Python values, other expressions deparsed),
    ``label`` mgcv's label (``s(x)``, ``te(x,z)``, ``s(x):f`` for ``by = f``).
    """

    kind: str
    variables: tuple[str, ...]
    args: tuple[tuple[str, Any], ...]
    text: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.args)

    @property
    def label(self) -> str:
        base = f"{self.kind}({','.join(self.variables)})"
        by = self.options.get("by")
        return f"{base}:{by}" if isinstance(by, str) and by != "NA" else base


@dataclass(frozen=True)
class FormulaSpec:
    """A parsed lme4 formula; data-free and frozen.

    Attributes
    ----------
    response : Node
        Left-hand side (``y``, ``cbind(s, f)``, ``log(y)``).
    fixed : TermSpec
        Fixed-effects part without random terms, offsets and smooths.
    fixed_rhs : Node or None
        Its syntax tree (None for an intercept-only model).
    random : tuple of RandomSpec
        In lme4's ``findbars`` order (before data-dependent reordering).
    offsets : tuple of Node
        Arguments of the ``offset()`` terms.
    smooths : tuple of SmoothTerm
    disp : TermSpec or None
        glmmTMB's ``dispformula`` (``parse_dispformula``): the fixed effects of the
        log dispersion; None without one.
    """

    response: Node
    fixed: TermSpec
    fixed_rhs: Node | None
    random: tuple[RandomSpec, ...]
    offsets: tuple[Node, ...] = ()
    smooths: tuple[SmoothTerm, ...] = ()
    text: str = field(default="", compare=False)
    disp: TermSpec | None = None

    @property
    def response_name(self) -> str:
        return deparse(self.response)

    @property
    def is_cbind(self) -> bool:
        r = _strip(self.response)
        return isinstance(r, Call) and r.fn == "cbind"

    @property
    def response_parts(self) -> tuple[Node, ...]:
        """The response's variables: ``(successes, failures)`` for ``cbind()``, else one."""
        r = _strip(self.response)
        return r.positional if self.is_cbind else (r,)


def _summands(node: Node, sign: int = 1) -> list[tuple[int, Node]]:
    """Flatten the top-level ``+``/``-`` chain (looking through parentheses), in order."""
    out: list[tuple[int, Node]] = []
    stack = [(sign, node)]
    while stack:
        sgn, cur = stack.pop()
        inner = _strip(cur)
        if isinstance(inner, BinOp) and inner.op in "+-":
            stack.append((sgn if inner.op == "+" else -sgn, inner.right))
            stack.append((sgn, inner.left))
        else:
            out.append((sgn, cur))
    return out


def _is_bar(node: Node) -> bool:
    node = _strip(node)
    return isinstance(node, BinOp) and node.op in ("|", "||")


def _children(node: Node) -> list[Node]:
    if isinstance(node, BinOp):
        return [node.left, node.right]
    if isinstance(node, Unary):
        return [node.operand]
    if isinstance(node, Paren):
        return [node.expr]
    if isinstance(node, Call):
        return [a for _, a in node.args]
    return []


def _contains_bar(node: Node) -> bool:
    stack = [node]
    while stack:
        cur = stack.pop()
        if _is_bar(cur):
            return True
        stack.extend(_children(cur))
    return False


def _expand_double_bar(lhs: Node, group: Node) -> list[tuple[Node, bool]]:
    """lme4's expandDoubleVert: ``(x + z || g)`` -> ``(1|g) + (0+x|g) + (0+z|g)``."""
    spec = expand_terms(lhs, context=f"random-effects term ({deparse(lhs)} || ...)")
    out: list[tuple[Node, bool]] = []
    if spec.intercept:
        out.append((Num(1.0), True))
    for term in spec.terms:
        expr = spec.variables[term[0]][1]
        for v in term[1:]:
            expr = BinOp(":", expr, spec.variables[v][1])
        out.append((BinOp("+", Num(0.0), expr), True))
    del group
    return out


def _slash_groups(group: Node) -> list[Node]:
    """lme4's expandSlash: ``a/b`` -> ``[b:a, a]``; ``a/b/c`` -> ``[c:(b:a), b:a, a]``."""

    def slash_terms(x: Node):
        x = _strip(x)
        if isinstance(x, BinOp) and x.op == "/":
            return [slash_terms(x.left), slash_terms(x.right)]
        if _has_slash(x):
            raise FormulaError(f"unparseable grouping factor {deparse(x)!r}")
        return x

    def make_interaction(x):
        if not isinstance(x, list):
            return x
        first = make_interaction(x[0])
        head = first[0] if isinstance(first, list) else first
        return [BinOp(":", x[1], head), first]

    def flatten(x) -> list[Node]:
        if isinstance(x, list):
            return [n for item in x for n in flatten(item)]
        return [x]

    if not _has_slash(group):
        return [group]
    return flatten(make_interaction(slash_terms(group)))


def _has_slash(node: Node) -> bool:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, BinOp):
            if cur.op == "/":
                return True
            stack += [cur.left, cur.right]
        elif isinstance(cur, Paren):
            stack.append(cur.expr)
    return False


def _literal(node: Node) -> Any:
    node = _strip(node)
    if isinstance(node, Num):
        return int(node.value) if node.value.is_integer() else node.value
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Num):
        return -_literal(node.operand)
    if isinstance(node, Str):
        return node.value
    if isinstance(node, Const) and node.id in ("TRUE", "FALSE"):
        return node.id == "TRUE"
    if isinstance(node, Name) and node.id in ("T", "F"):
        return node.id == "T"
    return deparse(node)


def _smooth(call: Call) -> SmoothTerm:
    if not call.positional:
        raise FormulaError(f"smooth term {deparse(call)!r} names no variable")
    return SmoothTerm(
        kind=call.fn,
        variables=tuple(deparse(a) for a in call.positional),
        args=tuple((k, _literal(a)) for k, a in call.args if k is not None),
        text=deparse(call),
    )


def _join(summands: list[tuple[int, Node]]) -> Node | None:
    out: Node | None = None
    for sign, node in summands:
        if out is None:
            out = node if sign > 0 else Unary("-", node)
        else:
            out = BinOp("+" if sign > 0 else "-", out, node)
    return out


def parse_formula(formula: str | FormulaSpec) -> FormulaSpec:
    """Parse an lme4 formula into a ``FormulaSpec``.

    Raises
    ------
    FormulaError
        Syntax errors (naming the problem and its position), a missing ``~`` or
        response, a random term used other than as a ``+`` summand, a
        malformed ``offset()``/``cbind()``, or neither a random-effects term nor a
        smooth (whose penalised part is a random effect).
    """
    if isinstance(formula, FormulaSpec):
        return formula
    tree = parse_expr(formula)
    top = _strip(tree)
    if not (isinstance(top, BinOp) and top.op == "~"):
        if isinstance(top, Unary) and top.op == "~":
            raise FormulaError(f"formula {formula!r} has no response on the left of '~'")
        raise FormulaError(f"formula {formula!r} has no '~' separating response and terms")
    response, rhs = top.left, top.right
    if _contains_bar(response) or "~" in deparse(response):
        raise FormulaError(f"invalid response {deparse(response)!r} in formula {formula!r}")
    _check_response(response, formula)

    random: list[RandomSpec] = []
    offsets: list[Node] = []
    smooths: list[SmoothTerm] = []
    fixed: list[tuple[int, Node]] = []
    for sign, node in _summands(rhs):
        inner = _strip(node)
        if _is_bar(inner):
            if sign < 0:
                raise FormulaError(f"random-effects term {deparse(node)!r} cannot be subtracted")
            random.extend(_random_specs(inner))
        elif _contains_bar(inner):
            raise FormulaError(
                f"random-effects term inside {deparse(node)!r}: write each "
                "(expr | group) as its own '+' term"
            )
        elif isinstance(inner, Call) and inner.fn == "offset":
            if sign < 0 or len(inner.args) != 1 or inner.args[0][0] is not None:
                raise FormulaError(f"invalid offset term {deparse(node)!r}: use + offset(expr)")
            offsets.append(inner.args[0][1])
        elif isinstance(inner, Call) and inner.fn in SMOOTH_FUNCTIONS:
            if sign < 0:
                raise FormulaError(f"smooth term {deparse(node)!r} cannot be subtracted")
            smooths.append(_smooth(inner))
        else:
            fixed.append((sign, node))
    if not random and not smooths:
        raise FormulaError(
            f"no random-effects terms in formula {formula!r}: glmmbench fits mixed models "
            "only; add a term such as (1 | group) or a smooth s(x), or use a GLM for a "
            "fixed-effects model"
        )
    fixed_rhs = _join(fixed)
    return FormulaSpec(
        response=response,
        fixed=expand_terms(fixed_rhs, context=f"fixed part of {formula!r}"),
        fixed_rhs=fixed_rhs,
        random=tuple(random),
        offsets=tuple(offsets),
        smooths=tuple(smooths),
        text=formula,
    )


def parse_dispformula(dispformula: str) -> TermSpec:
    """Parse glmmTMB's one-sided ``dispformula`` (``"~ x + f"``): fixed effects of the
    log dispersion, no response, random effects, smooths or offsets (glmmTMB 1.1.5
    has none in it either)."""
    if not isinstance(dispformula, str):
        raise FormulaError(f"dispformula must be a one-sided formula string such as "
                           f"'~ x', not {type(dispformula).__name__}")
    top = _strip(parse_expr(dispformula))
    if isinstance(top, BinOp) and top.op == "~":
        raise FormulaError(f"dispformula {dispformula!r} has a left-hand side: write it "
                           "one-sided, as '~ x + f'")
    if not (isinstance(top, Unary) and top.op == "~"):
        raise FormulaError(f"dispformula {dispformula!r} has no '~': write it as '~ x + f'")
    for _, node in _summands(top.operand):
        inner = _strip(node)
        if _contains_bar(inner):
            raise FormulaError(f"dispformula {dispformula!r}: random-effects term "
                               f"{deparse(node)!r}; the dispersion model has fixed effects "
                               "only (as glmmTMB 1.1.5's)")
        if isinstance(inner, Call) and inner.fn in ("offset", *SMOOTH_FUNCTIONS):
            raise FormulaError(f"dispformula {dispformula!r}: {deparse(node)!r} is not "
                               "allowed there; the dispersion model takes fixed-effect "
                               "terms only")
    return expand_terms(top.operand, context=f"dispformula {dispformula!r}")


def _check_response(response: Node, formula: str) -> None:
    r = _strip(response)
    if isinstance(r, Call) and r.fn == "cbind":
        if len(r.args) != 2 or any(k is not None for k, _ in r.args):
            raise FormulaError(
                f"cbind() response needs exactly two columns (successes, failures), "
                f"got {deparse(r)!r} in formula {formula!r}"
            )
    if isinstance(r, Num | Const | Str):
        raise FormulaError(f"response {deparse(r)!r} is a constant in formula {formula!r}")


def _random_specs(bar: BinOp) -> list[RandomSpec]:
    lhs, group = bar.left, bar.right
    name = deparse(bar)
    if isinstance(_strip(group), Num | Str | Const):
        raise FormulaError(f"grouping factor of random-effects term ({name}) is a constant")
    if _contains_bar(lhs) or _contains_bar(group):
        raise FormulaError(f"nested '|' in random-effects term ({name})")
    if bar.op == "||":
        pieces = _expand_double_bar(lhs, group)
    else:
        pieces = [(lhs, False)]
    out = []
    for expr, double in pieces:
        for g in _slash_groups(group):
            model = expand_terms(expr, context=f"random-effects term ({name})")
            out.append(RandomSpec(lhs=expr, group=g, model=model, double_bar=double))
    return out
