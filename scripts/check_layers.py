"""Check the import layers of the ``wbpose`` package: no upward import, no import cycle, every module placed.

It also checks the map of the code, ``docs/architecture.md``: its module table must have one row per module of the
package, ``| `wbpose.a.b` | <layer number> <layer name> | ... |``, with the layer of ``LAYERS``, and no row for a
module that no longer exists.

A module may import modules of its own layer or of a lower one (``LAYERS`` below, top to bottom), and the module
import graph must have no cycle. Every ``import wbpose...`` / ``from wbpose... import ...`` (and relative import)
counts, at module level and inside functions alike, except those under ``if TYPE_CHECKING:``.

How imports map to modules:

- ``import wbpose.a.b`` is an edge to the module ``wbpose.a.b`` (a package means its ``__init__.py``);
- ``from wbpose.a import b`` is an edge to the submodule ``wbpose.a.b`` when there is one, else to ``wbpose.a``;
- the parent packages Python also initialises on the way are not counted (``wbpose/a/__init__.py`` importing its
  own submodules is normal, and a submodule importing a sibling by its full name would otherwise always close a
  cycle through the ``__init__``).

Usage: ``python scripts/check_layers.py [--package-dir src/wbpose] [--doc docs/architecture.md]``; exit status 1 on
any violation. Tests load ``check(package_dir, doc_page)`` from this file with importlib.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

PACKAGE = "wbpose"

#: Module prefix -> (layer, name). Longest prefix wins; ``wbpose`` itself is the package root's ``__init__.py``
#: only (a new subpackage or module matches no entry and is reported until it is placed here).
LAYERS: dict[str, tuple[int, str]] = {
    # 4 app: entry points (train / evaluate / demo / sweep), config composition.
    "wbpose.app": (4, "app"),
    # 3 glue: Lightning glue and serving (both build from config).
    "wbpose.engine": (3, "glue"),
    "wbpose.inference": (3, "glue"),
    # 2 build: config -> objects.
    "wbpose.build": (2, "build"),
    # 1 domain: models, codecs, data, metrics, ... (plain PyTorch / NumPy, no Lightning, no config).
    "wbpose.models": (1, "domain"),
    "wbpose.codecs": (1, "domain"),
    "wbpose.data": (1, "domain"),
    "wbpose.metrics": (1, "domain"),
    "wbpose.checkpoints": (1, "domain"),
    "wbpose.synthetic": (1, "domain"),
    "wbpose.visualize": (1, "domain"),
    "wbpose.losses": (1, "domain"),
    # 0 spec: the keypoint specification, geometry, and the package root.
    "wbpose.keypoints": (0, "spec"),
    "wbpose.keypoint_tables": (0, "spec"),
    "wbpose.geometry": (0, "spec"),
    # the Hydra config tree shipped as package data (src/wbpose/conf -> conf/): no code
    "wbpose.conf": (0, "spec"),
    "wbpose": (0, "spec"),
}

DEFAULT_PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / PACKAGE
#: The map of the code: one module-table row per module (``doc_violations``).
DEFAULT_DOC_PAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

#: A module-table row of the map: ``| `wbpose.a.b` | 3 glue | ... |`` (the layer cell starts with its number).
_DOC_ROW = re.compile(r"^\|\s*`(wbpose(?:\.\w+)*)`\s*\|\s*(\d+)?[^|]*\|")


class Import(NamedTuple):
    """One imported ``wbpose`` module: the importing module, the resolved target module, the file and line.

    A ``NamedTuple`` rather than a dataclass: tests load this file with importlib without registering it in
    ``sys.modules``, which dataclasses need.
    """

    source: str
    target: str
    path: Path
    line: int


def layer_of(module: str) -> tuple[int, str] | None:
    """``(layer, name)`` of ``module`` by longest prefix in ``LAYERS`` (the root entry matches only itself)."""
    matches = [p for p in LAYERS if module == p or (p != PACKAGE and module.startswith(p + "."))]
    return LAYERS[max(matches, key=len)] if matches else None


def module_files(package_dir: Path) -> dict[str, Path]:
    """Module name -> file for every ``.py`` under ``package_dir`` (``__init__.py`` is its package)."""
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if any(not part.isidentifier() for part in parts):  # e.g. a stray "foo-bar.py" or ".ipynb_checkpoints"
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING`` (or any ``X.TYPE_CHECKING``)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:  # the ``else:`` branch runs
                if isinstance(other, (ast.Import, ast.ImportFrom)):
                    yield other
                else:
                    yield from _import_nodes(other)
        else:
            yield from _import_nodes(child)


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest existing module that ``name`` starts with (``wbpose.a.b.attr`` -> ``wbpose.a.b``)."""
    parts = name.split(".")
    while len(parts) > 1 and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def module_imports(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The ``wbpose`` modules that ``module`` (file ``path``) imports, one entry per imported name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def add(target: str, node: ast.stmt) -> None:
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            found.append(Import(module, _resolve(target, modules), path, node.lineno))

    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
            continue
        if node.level:  # relative: ``from . import x`` / ``from ..a import b``
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = package[: len(package) - (node.level - 1)]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        if not (stem == PACKAGE or stem.startswith(PACKAGE + ".")):
            continue
        for alias in node.names:
            submodule = f"{stem}.{alias.name}"
            add(submodule if submodule in modules else stem, node)
    return found


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _describe(module: str) -> str:
    layer = layer_of(module)
    return f"{module} (layer {layer[0]} {layer[1]})" if layer else f"{module} (no layer)"


def analyse(package_dir: Path) -> tuple[list[str], int, int]:
    """``(violations, number of modules, number of wbpose imports)`` for the package in ``package_dir``."""
    package_dir = Path(package_dir)
    modules = module_files(package_dir)
    violations: list[str] = []
    for module, path in modules.items():
        if layer_of(module) is None:
            violations.append(f"{_display(path)}: {module} is in no layer: place it in LAYERS ({Path(__file__).name})")

    imports = [imp for module, path in modules.items() for imp in module_imports(module, path, modules)]
    for imp in imports:
        source, target = layer_of(imp.source), layer_of(imp.target)
        if source is not None and target is not None and target[0] > source[0]:
            violations.append(
                f"{_display(imp.path)}:{imp.line}: {_describe(imp.source)} imports {_describe(imp.target)}"
            )

    graph: dict[str, set[str]] = {module: set() for module in modules}
    first_edge: dict[tuple[str, str], Import] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
        first_edge.setdefault((imp.source, imp.target), imp)
    for component in _strongly_connected(graph):
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        members = set(component)
        edges = [first_edge[(source, target)] for source in component for target in sorted(graph[source] & members)]
        lines = [f"import cycle between {len(component)} module(s): {', '.join(component)}"]
        lines += [f"  {_display(e.path)}:{e.line}: {e.source} imports {e.target}" for e in edges]
        violations.append("\n".join(lines))
    return violations, len(modules), len(imports)


def doc_violations(package_dir: Path, doc_page: Path) -> list[str]:
    """What the module table of ``doc_page`` gets wrong about the package in ``package_dir`` (empty when right).

    Every module needs a row ``| `wbpose.a.b` | <layer> <name> | ... |`` whose layer number is the one ``LAYERS``
    gives it; a row naming a module that does not exist (moved, renamed, removed) is reported too.
    """
    doc_page = Path(doc_page)
    if not doc_page.is_file():
        return [f"{_display(doc_page)}: the map of the code is missing (every module needs a row in its module table)"]
    rows: dict[str, tuple[int, int | None]] = {}
    for number, line in enumerate(doc_page.read_text(encoding="utf-8").splitlines(), start=1):
        match = _DOC_ROW.match(line.strip())
        if match:
            rows.setdefault(match.group(1), (number, int(match.group(2)) if match.group(2) else None))
    modules = module_files(Path(package_dir))
    where = _display(doc_page)
    violations: list[str] = []
    for module in modules:
        layer = layer_of(module)
        if module not in rows:
            cell = f"{layer[0]} {layer[1]}" if layer else "<layer>"
            violations.append(
                f"{where}: {module} is missing from the module table: add the row "
                f"| `{module}` | {cell} | <what it holds> |"
            )
        elif layer is not None and rows[module][1] != layer[0]:
            line, written = rows[module]
            violations.append(
                f"{where}:{line}: {module} is listed in layer {written}, but LAYERS places it in layer {layer[0]} "
                f"{layer[1]}"
            )
    for module, (line, _) in sorted(rows.items(), key=lambda item: item[1][0]):
        if module not in modules:
            violations.append(f"{where}:{line}: {module} is listed in the module table but there is no such module")
    return violations


def check(package_dir: Path, doc_page: Path | None = None) -> list[str]:
    """The layer violations of the package in ``package_dir`` (empty when it is clean), and with ``doc_page`` what
    that map of the code gets wrong about it (:func:`doc_violations`)."""
    violations = analyse(package_dir)[0]
    return violations + (doc_violations(package_dir, doc_page) if doc_page is not None else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--package-dir", type=Path, default=DEFAULT_PACKAGE_DIR, help=f"default: {_display(DEFAULT_PACKAGE_DIR)}"
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=DEFAULT_DOC_PAGE,
        help=f"the map whose module table must list every module (default: {_display(DEFAULT_DOC_PAGE)})",
    )
    args = parser.parse_args(argv)
    if not (args.package_dir / "__init__.py").is_file():
        parser.error(f"{args.package_dir} is not a package directory (no __init__.py)")
    violations, n_modules, n_imports = analyse(args.package_dir)
    violations += doc_violations(args.package_dir, args.doc)
    for violation in violations:
        print(violation)
    if violations:
        print(f"{len(violations)} violation(s) in {n_modules} modules, {n_imports} imports", file=sys.stderr)
        return 1
    print(
        f"ok: {n_modules} modules, {n_imports} imports, no upward import, no cycle, "
        f"every module in {_display(args.doc)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
