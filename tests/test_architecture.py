"""The layout's contract, checked on the source: layers import downwards only, nothing is a cycle.

Every `import` counts, at module level or inside a function (a lazy import is still a
dependency). The contract:

- the function runtime `redrive` is layered, lowest first: core → adapters → runtime → pipeline
  → sweep → entry; a module imports from its own layer or a lower one, never higher;
- the pure core imports no Google client, gRPC, Flask or HTTP library;
- nothing inside `redrive` imports the `redrive` package's facade (its `__init__`), the operator
  tools or the emulator;
- the emulator (`cloudtasks_emulator`) imports nothing of redrive, nor of the tools;
- the tools (`redrive_tools`) use the runtime's public names only: no underscore module or name;
- main.py imports the entry points and the runtime, nothing else of redrive;
- the import graph of all three packages has no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGES = ("redrive", "redrive_tools", "cloudtasks_emulator")
LAYERS = (
    "redrive.core",
    "redrive.adapters",
    "redrive.runtime",
    "redrive.pipeline",
    "redrive.sweep",
    "redrive.entry",
)
"""The runtime's layers, lowest first."""
IMPURE = ("google", "grpc", "flask", "functions_framework", "httpx", "werkzeug", "cloudevents")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    """The imported module (for `from m import name`, m.name when that is a module, else m)."""
    names: tuple[str, ...]
    line: int


def module_name(path: Path) -> str:
    relative = path.relative_to(SRC).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for pkg in PACKAGES for p in (SRC / pkg).rglob("*.py")}
    found["main"] = ROOT / "main.py"
    return found


MODULES = modules()


def imports_of(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                target = full if full in MODULES else base
                yield Import(name, target, (alias.name,), node.lineno)


EDGES = [edge for name, path in MODULES.items() for edge in imports_of(name, path)]


def ours(target: str) -> bool:
    return target.split(".", maxsplit=1)[0] in PACKAGES


def layer(module: str) -> int | None:
    for index, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return index
    return None


def test_the_walk_sees_the_whole_tree() -> None:
    # A guard against a walk that finds nothing and so proves nothing.
    assert {"redrive.core.decide", "redrive.pipeline", "redrive.entry.on_signal"} <= set(MODULES)
    assert any(e.target == "redrive.pipeline" for e in EDGES)
    for name in MODULES:
        if name.startswith("redrive.") and name != "redrive":
            assert layer(name) is not None, f"{name} belongs to no layer of {LAYERS}"


def layering_violations(edges: list[Import]) -> list[str]:
    """Every runtime import that points up a layer, leaves the runtime, or makes the core impure."""
    bad = []
    for edge in edges:
        if not edge.importer.startswith("redrive."):
            continue
        where = f"{edge.importer}:{edge.line} imports {edge.target}"
        if not ours(edge.target):
            if layer(edge.importer) == 0 and edge.target.startswith(IMPURE):
                bad.append(f"{where}: the pure core does no I/O")
            continue
        if edge.target.split(".")[0] != "redrive":
            bad.append(f"{where}: the runtime never imports the tools or the emulator")
        elif edge.target == "redrive":
            bad.append(f"{where}: import the module, not the facade")
        else:
            below, above = layer(edge.target), layer(edge.importer)
            if below is None or above is None or below > above:
                bad.append(f"{where}: a higher layer")
    return bad


def test_runtime_imports_point_down() -> None:
    assert layering_violations(EDGES) == []


def test_the_layer_check_can_fail() -> None:
    up = Import("redrive.core.decide", "redrive.pipeline", (), 1)
    impure = Import("redrive.core.state", "google.cloud.tasks_v2", (), 2)
    tool = Import("redrive.sweep", "redrive_tools.cli", (), 3)
    assert len(layering_violations([up, impure, tool])) == 3


def test_the_emulator_stands_alone() -> None:
    bad = [
        f"{e.importer}:{e.line} → {e.target}"
        for e in EDGES
        if e.importer.startswith("cloudtasks_emulator")
        and ours(e.target)
        and not e.target.startswith("cloudtasks_emulator")
    ]
    assert bad == []


def test_tools_use_public_names_only() -> None:
    bad = [
        f"{e.importer}:{e.line} → {e.target} {e.names}"
        for e in EDGES
        if e.importer.startswith("redrive_tools")
        and e.target.split(".")[0] == "redrive"
        and (
            any(part.startswith("_") for part in e.target.split("."))
            or any(n.startswith("_") for n in e.names)
        )
    ]
    assert bad == []


def test_main_is_wiring_only() -> None:
    targets = {e.target for e in EDGES if e.importer == "main" and ours(e.target)}
    assert targets == {"redrive.entry", "redrive.runtime"}


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a self-import."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for e in edges:
        if e.target in graph and e.target != e.importer:
            graph[e.importer].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    # The package facades re-export their own submodules; an edge from a package to the modules
    # it contains is a re-export, not a dependency loop, so only edges between siblings and
    # across packages count.
    edges = [e for e in EDGES if not e.target.startswith(e.importer + ".")]
    assert cycles(edges) == []


def test_the_cycle_check_can_fail() -> None:
    loop = [Import("redrive.sweep", "redrive.pipeline", (), 1)]
    loop.append(Import("redrive.pipeline", "redrive.sweep", (), 1))
    assert cycles(loop) == [["redrive.pipeline", "redrive.sweep"]]
