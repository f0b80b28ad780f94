"""The kind registry: kind name -> its declaration (:class:`targets.kind.Kind`).

Kinds are found, once per process, in

* ``targets/<folder>/kind.py`` of this repository (the stacks servecap ships), and
* ``SERVECAP_KIND_PATH``: folders (``os.pathsep``-separated) that either are a kind folder
  (holding a ``kind.py``) or hold kind folders: your own serving stack, kept outside the
  repository. Its ``kind.py`` may import its sibling modules relatively (``from . import x``).

Each ``kind.py`` binds ``KIND``, an instance of a :class:`~targets.kind.Kind` subclass whose
``name`` is the ``kind:`` value of scenarios.yaml. Nothing else in servecap lists kinds.

A target's mapping becomes the config model of its kind here (:func:`target_config`, or a
pydantic field typed :data:`KindConfig`): ``targets.config`` defines the models and knows no
kind, so the registry imports it and not the other way round.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import types
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import InitErrorDetails, PydanticCustomError

from targets.config import TargetConfig
from targets.kind import Kind
from targets.protocols.base import Endpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS_DIR = REPO_ROOT / "targets"
KIND_PATH_ENV = "SERVECAP_KIND_PATH"
KIND_MODULE = "kind.py"


class KindError(ValueError):
    """A kind is unknown, or a kind folder does not declare a valid KIND."""


@cache
def kinds() -> dict[str, Kind]:
    """Every kind, by name: the repository's, then those of ``SERVECAP_KIND_PATH``."""
    found: dict[str, Kind] = {}
    for folder in sorted(p.parent for p in TARGETS_DIR.glob(f"*/{KIND_MODULE}")):
        _add(found, importlib.import_module(f"targets.{folder.name}.kind"), folder)
    for folder in external_kind_folders():
        _add(found, _import_external(folder), folder)
    return found


def get_kind(name: str) -> Kind:
    """The kind called ``name``; KindError naming the known ones (and the closest) if none."""
    known = kinds()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise KindError(
        f"unknown kind '{name}'; {hint}known kinds: {', '.join(sorted(known))} (a kind is a "
        f"folder under targets/ with a {KIND_MODULE}, or one on ${KIND_PATH_ENV})"
    )


def external_kind_folders() -> list[Path]:
    folders: list[Path] = []
    for entry in filter(None, os.environ.get(KIND_PATH_ENV, "").split(os.pathsep)):
        path = Path(entry).expanduser().resolve()
        if (path / KIND_MODULE).is_file():
            folders.append(path)
        elif path.is_dir():
            folders += sorted(p.parent for p in path.glob(f"*/{KIND_MODULE}"))
        else:
            raise KindError(f"{KIND_PATH_ENV} names {path}, which is not a folder")
    return folders


def _import_external(folder: Path) -> types.ModuleType:
    """Import ``folder/kind.py`` as ``servecap_kinds.<folder>.kind`` (relative imports work)."""
    package = "servecap_kinds." + re.sub(r"\W", "_", folder.name)
    for name, path in (("servecap_kinds", None), (package, folder)):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(path)] if path else []
            sys.modules[name] = module
    spec = importlib.util.spec_from_file_location(f"{package}.kind", folder / KIND_MODULE)
    if spec is None or spec.loader is None:
        raise KindError(f"cannot import {folder / KIND_MODULE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _add(found: dict[str, Kind], module: types.ModuleType, folder: Path) -> None:
    kind = getattr(module, "KIND", None)
    if not isinstance(kind, Kind) or not kind.name:
        raise KindError(f"{folder / KIND_MODULE} must bind KIND to a named targets.kind.Kind")
    if kind.name in found:
        raise KindError(f"kind '{kind.name}' of {folder} is already defined")
    kind.folder = folder
    found[kind.name] = kind


def endpoint_for(config: TargetConfig) -> Endpoint:
    """Where and how clients reach a target, its model's input included
    (:meth:`Kind.endpoint` and :meth:`Kind.input_spec`). LaunchError when the target's model
    cannot be served (not an image classifier, an input that contradicts it)."""
    kind = get_kind(config.kind)
    return kind.endpoint(config).model_copy(update={"input": kind.input_spec(config)})


def _of_its_kind(data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a mapping with the config model of its ``kind`` (an unknown kind is an error
    at ``kind`` naming the known ones)."""
    if isinstance(data, dict) and "kind" in data:
        try:
            model = get_kind(str(data["kind"])).config_model
        except KindError as err:
            detail = InitErrorDetails(type=PydanticCustomError("kind", str(err)),
                                      loc=("kind",), input=data["kind"])  # fmt: skip
            raise ValidationError.from_exception_data("TargetConfig", [detail]) from None
        return model.model_validate(data)
    return handler(data)


KindConfig = Annotated[TargetConfig, WrapValidator(_of_its_kind)]
"""A target's config as a pydantic field type: a mapping validates as its kind's model."""

_KIND_CONFIG: TypeAdapter[TargetConfig] = TypeAdapter(KindConfig)


def target_config(**fields: Any) -> TargetConfig:
    """A validated config of the kind ``fields["kind"]`` (as scenarios.yaml would give it);
    pydantic's ValidationError when a field is wrong."""
    return _KIND_CONFIG.validate_python(fields)
