"""Modules stay under 450 lines and functions under 80 (the team brief's sizes).

Run ``python tests/test_sizes.py`` to list every offender; the tests fail on any that is not
in :data:`KNOWN`, and on a :data:`KNOWN` entry that no longer offends (so the list shrinks).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("loadtests", "targets", "analysis", "benchmarks", "tests", "scripts")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
KNOWN: set[str] = set()
"""Offenders tolerated for now (none: keep it that way)."""


def python_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py"))


def offenders() -> dict[str, int]:
    """``path`` (module) or ``path::function`` -> its length in lines, for each one too long."""
    found: dict[str, int] = {}
    for path in python_files():
        name = path.relative_to(REPO).as_posix()
        source = path.read_text(encoding="utf-8")
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
            found[name] = lines
        for node in ast.walk(ast.parse(source, filename=name)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found[f"{name}::{node.name}"] = length
    return found


def test_offenders_are_found() -> None:
    assert python_files() and all(p.suffix == ".py" for p in python_files())
    assert all(entry.split("::")[0] in {p.relative_to(REPO).as_posix() for p in python_files()}
               for entry in KNOWN)  # fmt: skip


def test_no_module_or_function_is_too_long() -> None:
    new = {name: n for name, n in offenders().items() if name not in KNOWN}
    assert not new, (
        f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function "
        f"(split by what each part is for): {new}"
    )


def test_known_offenders_still_offend() -> None:
    fixed = KNOWN - set(offenders())
    assert not fixed, f"no longer too long: remove from KNOWN in tests/test_sizes.py: {fixed}"


if __name__ == "__main__":
    for entry, lines in sorted(offenders().items()):
        print(f"{lines:5d}  {entry}{'  (known)' if entry in KNOWN else ''}")
    sys.exit(0)
