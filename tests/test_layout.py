"""The package's layout (issue 24): rooms a newcomer can read from the folder
listing, and imports that go one way.

The import graph is read from the source (every ``import`` statement, those inside
functions included, those under ``if TYPE_CHECKING:`` left out), module by module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "glmmbench"

# The layers, lowest first. A module may import from its own layer and those below,
# never from a layer above (the result's methods are the documented exception: they
# delegate to inference with imports inside the methods).
LAYERS = ("errors", "families", "model", "engine", "results", "fit", "inference", "harness")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module a dotted name refers to: itself, or the module it is a name in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    skip = _type_checking_lines(tree)
    out = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("glmmbench"):
                target = _resolve(name)
                if target and target != module:
                    out.add(target)
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def test_a_few_top_level_modules_and_the_subpackages():
    top = [p for p in ROOT.glob("*.py")]
    packages = [p for p in ROOT.iterdir() if (p / "__init__.py").exists()]
    assert len(top) <= 12, sorted(p.name for p in top)
    assert {p.name for p in packages} >= {"model", "families", "engine", "inference",
                                          "harness"}


def _cycles(graph: dict[str, set[str]], longest: int) -> list[tuple[str, ...]]:
    """Every simple cycle of up to ``longest + 1`` modules (each once, from its
    smallest name), so that a longer one shows."""
    found = set()

    def walk(start, node, path):
        for nxt in graph[node]:
            if nxt == start:
                found.add(tuple(path))
            elif nxt > start and nxt not in path and len(path) <= longest:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return sorted(found)


def test_no_import_loop_wider_than_three_modules():
    cycles = _cycles(GRAPH, 3)
    wide = [c for c in cycles if len(c) > 3]
    assert not wide, wide
    # each loop is written down in a docstring of one of its modules
    for cycle in cycles:
        docs = " ".join(ast.get_docstring(ast.parse(MODULES[m].read_text())) or ""
                        for m in cycle)
        assert "loop" in docs, cycle


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    """families < model < engine < results < fit < inference < harness; the result's
    methods may reach fit and inference (delegation, inside the methods)."""
    own = _layer(module)
    if own is None:
        return
    for target in GRAPH[module]:
        other = _layer(target)
        if other is None or module == "glmmbench.results" and other in ("fit", "inference"):
            continue  # the result's methods delegate (imports inside the methods)
        if own == "families" and target == "glmmbench.engine.linalg":
            continue  # multinomial whitens its weight blocks with linalg's batched factor
        assert LAYERS.index(other) <= LAYERS.index(own), (module, target)


def test_the_engine_and_the_model_never_import_the_harness_or_r():
    for module, targets in GRAPH.items():
        if module.startswith(("glmmbench.harness", "glmmbench.cli", "glmmbench.testing")):
            continue
        assert not any(t.startswith("glmmbench.harness") for t in targets), module
        source = MODULES[module].read_text()
        assert "reference_r" not in {n.split(".")[0] for n in _all_names(source)}, module
        assert "rpy2" not in {n.split(".")[0] for n in _all_names(source)}, module


def _all_names(source: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


# ----------------------------------------------------------- families as plug-ins

FAMILY_NAMES = {"gaussian", "binomial", "poisson", "negative_binomial", "nbinom1", "nbinom2",
                "Gamma", "gamma", "ordinal", "multinomial"}
MAX_NAME_BRANCHES = 12  # issue 24's bound


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_strings(e) for e in node.elts)) if node.elts else set()
    return set()


def _name_branches(path: Path) -> list[str]:
    """The comparisons in a module that test a family's name: against a literal name
    (``fam.name == "binomial"``, ``family in ("poisson", "nbinom1")``) or against a
    module-level tuple of names (``family in _COUNT_FAMILIES``)."""
    tree = ast.parse(path.read_text())
    tuples = {t.id for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets
              if isinstance(t, ast.Name) and _strings(node.value) & FAMILY_NAMES}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if any(_strings(s) & FAMILY_NAMES for s in sides) or any(
                isinstance(s, ast.Name) and s.id in tuples for s in sides):
            out.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_few_places_outside_the_families_branch_on_a_family_name():
    """A family is its module and registry entry (``families.base``'s interface); the
    rest of the package reads the interface, not the family's name."""
    found = [f"{path.parent.relative_to(ROOT.parent)}/{b}"
             for path in sorted(ROOT.rglob("*.py"))
             if "families" not in path.relative_to(ROOT).parts
             for b in _name_branches(path)]
    assert len(found) <= MAX_NAME_BRANCHES, "\n".join(found)


def test_the_branch_counter_sees_branches(tmp_path):
    """The counter is not blind: each spelling it claims to see, it sees."""
    source = ("FAMS = ('poisson', 'nbinom1')\n"
              "def f(fam, family):\n"
              "    a = fam.name == 'binomial'\n"
              "    b = family in ('ordinal', 'multinomial')\n"
              "    c = family not in FAMS\n"
              "    d = fam.link.name == 'logit'\n")
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert len(_name_branches(path)) == 3
