"""Read docker-compose.yml as Compose does: services, profiles, ``${VAR:-default}`` values.

The Docker launcher runs the real ``docker compose``/``docker-compose``; this module only lets
the harness know, before starting anything, which services and images a profile needs, which
ports they use and which variables the file refers to (tests check that the launcher sets every
one of them). Interpolation follows the Compose specification: ``$VAR``, ``${VAR}``,
``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset), ``${VAR:?message}``,
``${VAR?message}``, ``$$`` for a literal dollar.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
GPU_FILE = REPO_ROOT / "docker-compose.gpu.yml"

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|"
    r"\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class ComposeError(RuntimeError):
    """docker-compose.yml cannot be read, or a required variable is missing."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("plain") or match.group("braced")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        missing = not current if op in (":-", ":?") else current is None
        if not missing:
            return str(current)
        if op in (":-", "-"):
            return interpolate(arg, env)
        if op in (":?", "?"):
            raise ComposeError(f"required variable {name} is missing: {arg}")
        return ""

    return _VAR.sub(repl, value)


def _walk(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The raw document (YAML merge keys resolved, variables not yet interpolated)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ComposeError(f"cannot read {path}: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ComposeError(f"{path} has no services")
    return doc


def services(
    env: Mapping[str, str], profile: str | None = None, path: Path = COMPOSE_FILE
) -> dict[str, dict[str, Any]]:
    """Interpolated service definitions, only those of ``profile`` when given."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in load(path)["services"].items():
        if profile is None or profile in (spec.get("profiles") or []):
            out[name] = _walk(spec, env)
    return out


def variables(path: Path = COMPOSE_FILE, profile: str | None = None) -> set[str]:
    """Every variable name the file's values refer to (comments are not interpolated); with
    ``profile``, those of that profile's services only."""
    found: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, str):
            found.update(m.group("plain") or m.group("braced") for m in _VAR.finditer(node)
                         if not m.group("escaped"))  # fmt: skip
        elif isinstance(node, list):
            for item in node:
                collect(item)
        elif isinstance(node, dict):
            for value in node.values():
                collect(value)

    doc = load(path)
    if profile is not None:
        doc = {n: s for n, s in doc["services"].items() if profile in (s.get("profiles") or [])}
    collect(doc)
    return found


@cache
def compose_command() -> tuple[str, ...]:
    """``docker compose`` (v2 plugin) when it answers, else ``docker-compose`` (v1)."""
    docker = shutil.which("docker")
    if docker is not None:
        try:
            proc = subprocess.run([docker, "compose", "version"], capture_output=True,
                                  timeout=30, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            proc = None
        if proc is not None and proc.returncode == 0:
            return (docker, "compose")
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return (legacy,)
    raise ComposeError(
        "neither `docker compose` (the Compose v2 plugin) nor `docker-compose` (v1) is "
        "installed; Debian: apt-get install docker-compose"
    )
