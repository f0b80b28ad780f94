"""The model repository and backend folder Triton is started on, written before each start.

::

    <prefix>/models/<model_name>/config.pbtxt   Python backend, dynamic batcher, instances
    <prefix>/models/<model_name>/1/model.py     targets/triton/backend/model.py
    <prefix>/backends/python/                   the wheel's Python backend + the stub for
                                                this Python (links; the wheel keeps its stubs
                                                apart, where tritonserver does not look)

The prefix is a private folder (mode 0700), emptied and rewritten at each start.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from targets.inputs import CNN_INPUT_NAME, CNN_OUTPUT_NAME

BACKEND_MODEL = Path(__file__).with_name("backend") / "model.py"
STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class ModelSettings:
    """What config.pbtxt says about the model and its batching."""

    name: str
    savedmodel_dir: Path
    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    instances: int
    backend_env: Path | None
    input_name: str = CNN_INPUT_NAME
    """Triton's name for the input (clients use it), whatever the signature calls it."""
    input_dims: tuple[int, ...] = (32, 32, 3)
    input_dtype: str = "TYPE_FP32"
    output_name: str = CNN_OUTPUT_NAME
    output_dims: tuple[int, ...] = (10,)
    signature_input: str = CNN_INPUT_NAME
    """The SavedModel signature's input and output names (the backend maps them)."""
    signature_output: str = CNN_OUTPUT_NAME


def _dims(dims: tuple[int, ...]) -> str:
    return ", ".join(str(d) for d in dims)


def config_pbtxt(m: ModelSettings) -> str:
    """The model configuration (protobuf text format)."""
    preferred = (
        f"\n  preferred_batch_size: [ {_dims(m.preferred_batch_sizes)} ]"
        if m.preferred_batch_sizes
        else ""
    )
    env = ""
    if m.backend_env:
        value = f'{{ string_value: "{m.backend_env}" }}'
        env = f'\nparameters: {{ key: "EXECUTION_ENV_PATH" value: {value} }}'
    return f"""# Written by targets/triton/repository.py at each start.
name: "{m.name}"
backend: "python"
max_batch_size: {m.max_batch_size}
input [ {{ name: "{m.input_name}" data_type: {m.input_dtype} dims: [ {_dims(m.input_dims)} ] }} ]
output [ {{ name: "{m.output_name}" data_type: TYPE_FP32 dims: [ {_dims(m.output_dims)} ] }} ]
dynamic_batching {{
  max_queue_delay_microseconds: {m.max_queue_delay_us}{preferred}
}}
instance_group [ {{ kind: KIND_CPU count: {m.instances} }} ]
parameters: {{ key: "SAVEDMODEL_DIR" value: {{ string_value: "{m.savedmodel_dir}" }} }}
parameters: {{ key: "SIGNATURE_INPUT" value: {{ string_value: "{m.signature_input}" }} }}
parameters: {{ key: "SIGNATURE_OUTPUT" value: {{ string_value: "{m.signature_output}" }} }}{env}
"""


def tritonserver_root() -> Path:
    """The tritonserver tree inside the installed nvidia-pytriton wheel."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "nvidia-pytriton is not installed: run `make setup` (targets/triton/setup.sh)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


def backend_dir(prefix: Path, root: Path, python: str = "3.11") -> Path:
    """``<prefix>/backends`` with the Python backend and the stub for ``python``, as links."""
    target = prefix / "backends" / "python"
    target.mkdir(parents=True)
    wheel = root / "backends" / "python"
    for item in wheel.iterdir():
        (target / item.name).symlink_to(item)
    stub = root / "python_backend_stubs" / python / STUB
    if not stub.exists():
        raise FileNotFoundError(f"no Triton backend stub for Python {python} at {stub}")
    (target / STUB).symlink_to(stub)
    return prefix / "backends"


def write(prefix: Path, model: ModelSettings, root: Path) -> tuple[Path, Path]:
    """Empty ``prefix`` (private), write the repository and backend folder in it; returns
    (model repository, backend directory)."""
    if prefix.exists():
        shutil.rmtree(prefix)
    prefix.mkdir(parents=True, mode=0o700)
    os.chmod(prefix, 0o700)
    version = prefix / "models" / model.name / "1"
    version.mkdir(parents=True)
    (version.parent / "config.pbtxt").write_text(config_pbtxt(model), encoding="utf-8")
    shutil.copy(BACKEND_MODEL, version / "model.py")
    return prefix / "models", backend_dir(prefix, root)
