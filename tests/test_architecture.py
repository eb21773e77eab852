"""The package's import graph: no circle, and imports flow one way.

Every module of ``skages`` is parsed (not imported), and every ``import`` in it counts,
those inside functions and ``if TYPE_CHECKING:`` blocks included. The rooms and their
order are the ones documented in ``docs/developers/architecture.rst``: files → arrays →
estimators → catalogue and reports, with ``skages.cli`` on top, imported by nobody.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "skages"

#: The rooms, lowest first. A module may import modules of its own room or of a lower
#: one, never of a higher one. A module belongs to the room of the longest name here
#: that is its name or a package above it.
LAYERS = (
    ("base", ("skages", "skages._version", "skages._atomic", "skages._lock", "skages._units",
              "skages._warnings", "skages._data", "skages._labels", "skages._ages",
              "skages._keras", "skages._workers")),
    ("arrays", ("skages.seismology", "skages.spectra", "skages.quality")),
    ("files", ("skages.io",)),
    ("simulation", ("skages.datasets",)),
    ("estimators", ("skages._ved", "skages._optim", "skages._ved_fit", "skages._ved_checkpoint",
                    "skages._ved_infer", "skages._ved_astronn", "skages.encoder",
                    "skages.forest", "skages.applicability")),
    ("models", ("skages.pipeline", "skages.persistence", "skages._latent")),
    ("figures", ("skages.plotting",)),
    ("reports", ("skages.evaluation",)),
    ("workflows", ("skages.training", "skages.catalogue")),
    ("demo", ("skages.demo",)),
    ("command", ("skages.cli",)),
)  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str:
    """The module that ``import name`` runs last (a name inside a module: the module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> set[str]:
    """The skages modules that ``module`` imports anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(_owner(a.name) for a in node.names if a.name.split(".")[0] == "skages")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "skages":
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.add(full if full in MODULES else _owner(source))
    found.discard(module)
    return found


GRAPH = {m: _imports(m) for m in sorted(MODULES)}


def _layer(module: str) -> int:
    best, rank = "", None
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            # the package root is a room of its own, not a prefix of every module
            inside = name != "skages" and module.startswith(name + ".")
            if (module == name or inside) and len(name) > len(best):
                best, rank = name, i
    if rank is None:
        raise AssertionError(
            f"{module} is in no room of LAYERS: add it to tests/test_architecture.py and "
            "to the module table of docs/developers/architecture.rst"
        )
    return rank


def test_the_graph_sees_imports_inside_functions():
    # plotting imports seismology only inside functions; the parser must see it
    assert "skages.seismology" in GRAPH["skages.plotting"]
    assert "skages.io.astronn" in GRAPH["skages._ved_astronn"]


def test_every_module_is_in_a_room():
    for module in MODULES:
        _layer(module)


def test_no_import_circle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_imports_never_go_up_a_room():
    upward = [
        f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if _layer(t) > _layer(m)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_the_command_line_is_imported_by_nobody():
    importers = sorted(m for m, targets in GRAPH.items() if "skages.cli" in targets)
    assert not importers, f"skages.cli is imported by {importers}"
