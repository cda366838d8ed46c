"""The import rules of docs/architecture.md, checked on the source with ``ast``.

- No cycle between modules, counting imports under ``if TYPE_CHECKING:``.
- Imports at module level only, except the CLI's per-command lazy loading (``alpcrun.cli``)
  and optional third-party dependencies.
- No module imports a private (``_name``) module of another package.
- Importing a sans-I/O core loads neither grpc nor pydantic.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("alpcrun", "workers_sdk")
GENERATED = "alpcrun.proto._gen"
LAZY_LOADERS = ("alpcrun.cli",)
"""Packages whose functions may import: the CLI loads each command's code when it runs."""
OPTIONAL = frozenset({"kubernetes", "cupy", "matplotlib", "psutil", "uvloop"})
"""Third-party packages that are extras: imported where they are used, so others need not
install them."""
LAYERS = (
    ("alpcrun", "alpcrun._clock", "alpcrun.constants", "alpcrun.errors"),
    (
        "alpcrun.addresses",
        "alpcrun.affinity",
        "alpcrun.closed_pipe",
        "alpcrun.lifeline",
        "alpcrun.logs",
        "alpcrun.tls",
    ),
    ("alpcrun.config", "alpcrun.proto", "alpcrun.tls_flags"),
    ("alpcrun.payload",),
    ("alpcrun.cache", "alpcrun.queue_manager", "alpcrun.scaler"),
    ("alpcrun.client", "workers_sdk"),
    ("alpcrun.demo", "alpcrun.local", "alpcrun.testing"),
    ("alpcrun.cli",),
)
"""The layers of docs/architecture.md, lowest first: a unit (a package, or a top-level module)
imports only from itself and from units of lower layers."""
SANS_IO_CORES = (
    "alpcrun.queue_manager.scheduler",
    "alpcrun.queue_manager.core",
    "alpcrun.queue_manager.queues",
    "alpcrun.cache.ttl",
    "alpcrun.payload.catalog",
    "alpcrun.cache.lru",
    "alpcrun.proto.frames",
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            if not name.startswith(GENERATED):
                found[name] = path
    return found


MODULES = _modules()


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(importer: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules an import statement names (a name imported from a package may be one)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    module = _resolve(importer, node)
    for alias in node.names:
        sub = f"{module}.{alias.name}"
        yield sub if sub in MODULES else module


def _imports(name: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str, bool]]:
    """Every import of module ``name``: the node, a target, and whether it is in a function."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            yield child, inner
            yield from visit(child, inner)

    for node, in_function in visit(tree, False):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(name, node):
                yield node, target, in_function


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for _, target, in_function in _imports(name):
            if not in_function and target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (its modules, the first repeated at the end), or [] if there is none."""
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return []


def _package_of(module: str) -> str:
    if MODULES[module].name == "__init__.py":
        return module
    return module.rpartition(".")[0]


def test_the_checker_sees_the_tree():
    """The rules below look at the real modules (a broken walk would check nothing)."""
    assert len(MODULES) > 100
    graph = _graph()
    assert "alpcrun.queue_manager.scheduler" in graph["alpcrun.queue_manager.core"]
    assert sorted(_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})) == ["a", "a", "b", "c"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    """No module reaches itself through module-level imports, TYPE_CHECKING ones included."""
    assert _cycle(_graph()) == []


def test_no_imports_inside_functions():
    """Functions import only optional dependencies, or a command's code in the CLI."""
    hidden = []
    for name in MODULES:
        if name.startswith(LAZY_LOADERS):
            continue
        for node, target, in_function in _imports(name):
            if in_function and target.split(".")[0] not in OPTIONAL:
                hidden.append(f"{name}:{node.lineno} imports {target}")
    assert hidden == []


def test_no_private_module_of_another_package():
    """A ``_private`` module is imported only from inside the package that holds it."""
    leaks = []
    for name in MODULES:
        for node, target, _ in _imports(name):
            parts = target.split(".")
            private = [i for i, part in enumerate(parts) if part.startswith("_")]
            if not private or target.split(".")[0] not in PACKAGES:
                continue
            owner = ".".join(parts[: private[0]])
            home = _package_of(name)
            if home != owner and not home.startswith(owner + "."):
                leaks.append(f"{name}:{node.lineno} imports {target}")
    assert leaks == []


def _unit(module: str) -> str:
    """The layered unit a module belongs to: its subpackage, or itself at the top level."""
    parts = module.split(".")
    if len(parts) > 1 and (ROOT / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0] if parts[0] == "workers_sdk" else module


def test_every_unit_has_a_layer():
    """Each package and top-level module is placed in a layer (a new one must be placed)."""
    placed = {unit for layer in LAYERS for unit in layer}
    assert {_unit(name) for name in MODULES} - placed == set()


def test_layers_import_downward_only():
    """A unit imports only from itself and from lower layers, never sideways or up."""
    rank = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    upward = []
    for name in MODULES:
        for node, target, in_function in _imports(name):
            if in_function or target not in MODULES:
                continue
            src, dst = _unit(name), _unit(target)
            if src != dst and rank[dst] >= rank[src]:
                upward.append(f"{name}:{node.lineno} imports {target}")
    assert upward == []


@pytest.mark.parametrize("module", SANS_IO_CORES)
def test_sans_io_cores_load_no_grpc_or_pydantic(module):
    """Importing a sans-I/O core (in a fresh interpreter) loads neither grpc nor pydantic."""
    code = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'grpc', 'pydantic'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"
