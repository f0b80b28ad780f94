"""Imports point one way: the static import graph, read with ``ast``.

Every import statement counts, those inside functions and under ``TYPE_CHECKING`` included
(a function-level import is still a dependency; it only hides a cycle until the function
runs). Importing ``a.b.c`` also runs ``a`` and ``a.b``, so a module depends on the packages
above what it imports. The rules (the team brief's):

* no import cycle among the modules of ``targets/``;
* ``targets/`` never imports the load side, the benchmarks or the tests;
* a kind (a folder ``targets/<kind>/`` with a ``kind.py``) imports no other kind, and the
  shared modules (``targets/common``, ``targets/launchers``...) import no kind: what two kinds
  share lives in ``targets/common/``;
* ``benchmarks/`` never imports the tests, and test modules do not import each other (shared
  helpers live in ``tests/conftest.py`` or the helper modules beside it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("targets", "loadtests", "analysis", "benchmarks", "tests")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    """Every module of ``package``, by dotted name."""
    return {module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}


def imported_names(name: str, path: Path) -> Iterator[str]:
    """Dotted names ``path`` imports, anywhere in the file, relative imports resolved
    (``from x import y`` yields both ``x`` and ``x.y``: y may be a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def dependencies(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that importing ``name`` runs directly (packages included)."""
    found: set[str] = set()
    for imported in imported_names(name, path):
        parts = imported.split(".")
        for end in range(1, len(parts) + 1):
            candidate = ".".join(parts[:end])
            if candidate in known and candidate != name and not name.startswith(candidate + "."):
                found.add(candidate)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    known = modules(package)
    return {name: dependencies(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``a -> ... -> a``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def external_imports(package: str) -> dict[str, set[str]]:
    """Per module of ``package``: the names it imports from servecap's other packages."""
    found: dict[str, set[str]] = {}
    for name, path in modules(package).items():
        for imported in imported_names(name, path):
            top = imported.split(".")[0]
            if top in PACKAGES and top != package:
                found.setdefault(name, set()).add(imported)
    return found


def kind_folders() -> set[str]:
    return {p.parent.name for p in (REPO / "targets").glob("*/kind.py")}


def owner(module: str) -> str | None:
    """The kind whose folder holds ``module`` (None: a shared module of targets/)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in kind_folders() else None


def test_find_cycle_finds_one_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_function_level_and_relative_imports_are_counted(tmp_path: Path) -> None:
    file = tmp_path / "mod.py"
    file.write_text("def f():\n    from . import sibling\n    import targets.kind\n")
    names = set(imported_names("targets.x.mod", file))
    assert {"targets.x.sibling", "targets.kind"} <= names


def test_targets_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph("targets"))
    assert cycle is None, "import cycle in targets/: " + " -> ".join(cycle or [])


def test_targets_imports_nothing_of_the_load_side_analysis_benchmarks_or_tests() -> None:
    """The images carry targets/ alone (targets/docker/runtime.Dockerfile)."""
    outside = ("loadtests", "analysis", "benchmarks", "tests")
    wrong = {
        module: sorted(i for i in names if i.split(".")[0] in outside)
        for module, names in external_imports("targets").items()
    }
    assert not {m: n for m, n in wrong.items() if n}


def test_kinds_do_not_import_other_kinds_and_shared_modules_import_no_kind() -> None:
    kinds = kind_folders()
    assert {"fastapi", "flask", "jobqueue"} <= kinds
    wrong: dict[str, list[str]] = {}
    for module, deps in import_graph("targets").items():
        mine = owner(module)
        bad = sorted(d for d in deps if owner(d) is not None and owner(d) != mine)
        if bad:
            wrong[module] = bad
    assert not wrong, f"kinds import other kinds (share through targets/common/): {wrong}"


def test_benchmarks_do_not_import_tests() -> None:
    wrong = {
        module: sorted(i for i in names if i.split(".")[0] == "tests")
        for module, names in external_imports("benchmarks").items()
    }
    assert not {m: n for m, n in wrong.items() if n}


def test_test_modules_do_not_import_each_other() -> None:
    graph = import_graph("tests")
    wrong = {
        module: sorted(d for d in deps if d.rpartition(".")[2].startswith("test_"))
        for module, deps in graph.items()
    }
    assert not {m: d for m, d in wrong.items() if d}
