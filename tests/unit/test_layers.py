"""The layering of fixproxy, read from the source with `ast` (nothing is imported).

Every import counts, at module level or inside a function, except those under `if TYPE_CHECKING:`
(they never run). A lazy import inside a function still ties two modules together, so it counts
for the cycle test too: a cycle broken only by import order is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fixproxy"

# What the sans-IO layers may not reach: the engines and the quickfix binding, I/O, threads and
# processes, the event loop, and the wall clock. `io` is allowed: BytesIO and StringIO are buffers.
FORBIDDEN_OUTSIDE = (
    "fixproxy.engines",
    "quickfix",
    "asyncio",
    "uvloop",
    "aiohttp",
    "socket",
    "selectors",
    "ssl",
    "sqlite3",
    "sqlite_utils",
    "mmap",
    "os",
    "shutil",
    "subprocess",
    "multiprocessing",
    "concurrent",
    "threading",
    "signal",
    "time",
)

# The fixproxy modules each sans-IO layer may import (itself included).
ALLOWED_INSIDE = {
    "fixproxy.core": ("fixproxy.core",),
    "fixproxy.fix": ("fixproxy.core", "fixproxy.fix", "fixproxy.timefmt"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` blocks."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def imports_of(module: str) -> set[str]:
    """The absolute names `module` imports: `from a.b import c` gives `a.b.c` when that is a
    fixproxy module, else `a.b`."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            for alias in node.names:
                child = f"{base}.{alias.name}"
                names.add(child if child in MODULES else base)
    return names


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        targets = set()
        for name in imports_of(module):
            # `import fixproxy.core.events` names a module; anything below a module is an attribute.
            while name and name not in MODULES and _within(name, "fixproxy"):
                name = name.rpartition(".")[0]
            if name in MODULES and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_is_found() -> None:
    """The walk sees the package's layers (a moved root would make every other test pass vacuously)."""
    assert "fixproxy.core.proxy" in MODULES
    assert any(_within(name, "fixproxy.fix") for name in MODULES)
    assert "fixproxy.core.model" in _graph()["fixproxy.core.proxy"]


def test_modules_import_no_cycle() -> None:
    """No two fixproxy modules import each other, directly or round a loop."""
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("layer", sorted(ALLOWED_INSIDE))
def test_sans_io_layer_imports_no_io_engine_or_outer_module(layer: str) -> None:
    """core/ and fix/ import no engine, quickfix, I/O, concurrency or clock, and no outer fixproxy module."""
    allowed = ALLOWED_INSIDE[layer]
    wrong: list[str] = []
    for module in (name for name in MODULES if _within(name, layer)):
        for name in sorted(imports_of(module)):
            if any(_within(name, bad) for bad in FORBIDDEN_OUTSIDE):
                wrong.append(f"{module} imports {name}")
            elif _within(name, "fixproxy") and not any(_within(name, ok) for ok in allowed):
                wrong.append(f"{module} imports {name} (outside {', '.join(allowed)})")
    assert wrong == []


def test_cycle_finder_finds_a_loop() -> None:
    """The cycle search reports a three-module loop and ignores a chain."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
