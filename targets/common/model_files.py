"""Where an exported model's files are: TF Serving's layout, without importing TensorFlow.

``<model_base>/<version>/saved_model.pb`` (+ ``variables/``); a path may name the base (its
highest version is used) or one version folder. Launchers resolve paths with this before any
server, or Triton's backend, loads the model.
"""

from __future__ import annotations

from pathlib import Path


class ModelNotFoundError(FileNotFoundError):
    """No exported model where one was expected."""


def versions(model_base: Path) -> dict[int, Path]:
    """Numeric subdirectories of ``model_base`` that hold a saved_model.pb."""
    if not model_base.is_dir():
        return {}
    return {
        int(p.name): p
        for p in model_base.iterdir()
        if p.name.isdigit() and p.is_dir() and (p / "saved_model.pb").is_file()
    }


def latest_version_dir(model_base: Path) -> Path:
    """The highest numeric subdirectory of ``model_base`` that holds a saved_model.pb."""
    model_base = Path(model_base)
    found = versions(model_base)
    if not found:
        raise ModelNotFoundError(
            f"no exported model under {model_base} (expected "
            f"{model_base}/<version>/saved_model.pb). Run `servecap model train` to train "
            "and export one."
        )
    return found[max(found)]


def version_dir(path: Path) -> Path:
    """``path`` itself when it is a version folder, else its latest version."""
    path = Path(path)
    return path if (path / "saved_model.pb").is_file() else latest_version_dir(path)
