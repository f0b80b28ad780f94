"""A served model's input and output, as its serving signature declares them.

servecap serves any image classifier exported as a SavedModel (TF Serving's layout, or one
version folder) or saved as a ``.keras`` file: one image input ``[batch, height, width,
channels]`` (channels 1 or 3; float or uint8) and one output of scores ``[batch, classes]``
(a ``probabilities`` output when there are several). :func:`read_signature` says which,
without importing TensorFlow when it can: ``servecap model train`` writes the signature into
``assets.extra/servecap.json``; for any other model it asks a short-lived Python process
(``python -m targets.common.signature PATH``, which loads the model), once per model folder
and modification time.

The value range a float input expects cannot be read from a signature: it is the target's
``input.range`` (default [0, 255], the paper's CNN).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from targets.common.model_files import version_dir
from targets.inputs import CNN_INPUT_NAME, CNN_OUTPUT_NAME

SIGNATURE = "serving_default"
METADATA_FILE = Path("assets.extra") / "servecap.json"
PREFERRED_OUTPUT = CNN_OUTPUT_NAME
READ_TIMEOUT_S = 180


class SignatureError(ValueError):
    """The model is not an image classifier servecap can serve; the message says why."""


@dataclass(frozen=True)
class ModelSignature:
    input_name: str
    shape: tuple[int, int, int]
    """height, width, channels of one image."""
    dtype: str
    """``float32`` or ``uint8``: what servecap sends (cast to the model's own type)."""
    output_name: str
    classes: int | None
    """Scores per image (None when the signature leaves it open)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _servecap_dtype(name: str) -> str:
    if name.startswith(("float", "bfloat", "half")):
        return "float32"
    if name.startswith(("uint", "int")):
        return "uint8"
    raise SignatureError(f"the model's input is {name}: servecap sends images as float or uint8")


def from_specs(
    inputs: dict[str, tuple[list[int | None], str]], outputs: dict[str, list[int | None]]
) -> ModelSignature:
    """The signature of a model with these inputs (name -> shape, dtype) and outputs."""
    if len(inputs) != 1:
        raise SignatureError(
            f"the model takes {len(inputs)} inputs ({', '.join(sorted(inputs))}); servecap "
            "serves image classifiers with one image input"
        )
    (name, (shape, dtype)), = inputs.items()  # fmt: skip
    dims = list(shape)[1:]
    if len(dims) != 3 or any(d is None for d in dims) or dims[2] not in (1, 3):
        raise SignatureError(
            f"the model's input '{name}' has shape {list(shape)}; servecap needs "
            "[batch, height, width, 1 or 3] with fixed height and width"
        )
    if not outputs:
        raise SignatureError("the model has no output")
    out = PREFERRED_OUTPUT if PREFERRED_OUTPUT in outputs else sorted(outputs)[0]
    if len(outputs) > 1 and PREFERRED_OUTPUT not in outputs:
        raise SignatureError(
            f"the model has several outputs ({', '.join(sorted(outputs))}) and none named "
            f"'{PREFERRED_OUTPUT}': servecap reads one output of scores per class"
        )
    out_shape = list(outputs[out])
    classes = out_shape[1] if len(out_shape) == 2 else None
    height, width, channels = (int(d) for d in dims if d is not None)
    return ModelSignature(name, (height, width, channels), _servecap_dtype(dtype), out, classes)


def _from_metadata(meta: dict[str, Any]) -> ModelSignature | None:
    spec_in, spec_out = meta.get("input"), meta.get("output")
    if not isinstance(spec_in, dict) or not isinstance(spec_out, dict):
        return None
    inputs = {str(spec_in["name"]): (list(spec_in["shape"]), str(spec_in["dtype"]))}
    return from_specs(inputs, {str(spec_out["name"]): list(spec_out["shape"])})


def read_signature(model_path: str | Path) -> ModelSignature:
    """The signature of the model at ``model_path`` (a model base, a version folder, or a
    ``.keras`` file); SignatureError when servecap cannot serve it."""
    path = Path(model_path).resolve()
    if path.suffix != ".keras":
        folder = version_dir(path)
        meta_path = folder / METADATA_FILE
        if meta_path.is_file():
            found = _from_metadata(json.loads(meta_path.read_text()))
            if found is not None:
                return found
        path = folder
    return _read_in_subprocess(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _read_in_subprocess(path: str, mtime_ns: int) -> ModelSignature:
    done = subprocess.run(
        [sys.executable, "-m", "targets.common.signature", path],
        capture_output=True, text=True, timeout=READ_TIMEOUT_S, check=False,
        env=_quiet_env(),
    )  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SignatureError(f"cannot read the model at {path}: {last}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    doc["shape"] = tuple(doc["shape"])
    return ModelSignature(**doc)


def _quiet_env() -> dict[str, str]:
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded by TensorFlow: ``run(tensor)`` gives the scores of a batch."""

    signature: ModelSignature
    input_dtype: Any
    """The TensorFlow dtype of the input: tensors are cast to it."""
    call: Any
    handle: Any
    """What keeps the model's variables alive."""

    def run(self, tensor: Any) -> Any:
        import tensorflow as tf

        value = tf.constant(tensor, self.input_dtype)
        outputs = self.call(**{self.signature.input_name: value})
        return outputs[self.signature.output_name].numpy()


def load_in_process(model_path: Path) -> LoadedModel:
    """Load the model with TensorFlow (a SavedModel version folder or a ``.keras`` file)."""
    import tensorflow as tf

    if model_path.suffix == ".keras":
        import keras

        model = keras.saving.load_model(model_path, compile=False)
        layer = model.inputs[0]
        inputs = {CNN_INPUT_NAME: (list(layer.shape), str(layer.dtype))}
        signature = from_specs(inputs, {PREFERRED_OUTPUT: list(model.outputs[0].shape)})

        def call(**kwargs: Any) -> dict[str, Any]:
            return {PREFERRED_OUTPUT: model(kwargs[CNN_INPUT_NAME], training=False)}

        return LoadedModel(signature, tf.as_dtype(layer.dtype), call, model)
    loaded = tf.saved_model.load(str(model_path))
    if SIGNATURE not in loaded.signatures:
        raise SignatureError(f"{model_path} has no '{SIGNATURE}' signature")
    fn = loaded.signatures[SIGNATURE]
    specs = fn.structured_input_signature[1]
    inputs = {n: (s.shape.as_list(), s.dtype.name) for n, s in specs.items()}
    outputs = {n: s.shape.as_list() for n, s in fn.structured_outputs.items()}
    signature = from_specs(inputs, outputs)
    return LoadedModel(signature, specs[signature.input_name].dtype, fn, loaded)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m targets.common.signature MODEL_PATH", file=sys.stderr)
        return 2
    try:
        loaded = load_in_process(Path(args[0]))
    except (SignatureError, OSError, ValueError) as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(loaded.signature.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
