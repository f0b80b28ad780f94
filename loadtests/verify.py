"""``servecap verify``: does every target answer exactly what the model answers in-process?

Each target is started, sent the same N CIFAR-10 test images (in batches no larger than it
takes, through the client its kind uses), and its classes are compared image by image with
the SavedModel run in this process. Reports agreement and test accuracy per target; a target
that cannot start is reported as such and the others are still verified.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from loadtests.image_files import load_jpeg_bytes
from loadtests.spec import ScenarioFile
from targets.common.dataset import CLASSES, Split, load_split
from targets.common.payload import as_jpeg_files
from targets.config import ModelConfig, TargetConfig
from targets.inputs import InputSpec
from targets.launch_types import resolve_model_path
from targets.launchers import LaunchError, get_launcher
from targets.protocols import ProtocolError, get_protocol
from targets.protocols.base import Endpoint, Protocol
from targets.registry import endpoint_for, get_kind

Echo = Callable[[str], None]


class VerifyError(RuntimeError):
    """A target answered something that is not a valid prediction."""


@dataclass
class Verdict:
    target: str
    images: int
    agreement: float | None
    accuracy: float | None
    mismatches: list[int]
    error: str | None = None
    skipped: str | None = None
    """Why the target was not tried (it cannot run with this launcher; not named)."""

    @property
    def ok(self) -> bool:
        return self.skipped is not None or (self.error is None and self.agreement == 1.0)


def predict_classes(
    config: TargetConfig, images: np.ndarray, encoding: str = "json", timeout_s: float = 60.0,
    files: list[bytes] | None = None, endpoint: Endpoint | None = None,
) -> list[int]:  # fmt: skip
    """The classes a running target answers for ``images`` (one request, in its protocol;
    ``files``: the images' files, for encodings that upload them)."""
    endpoint = endpoint or endpoint_for(config)
    protocol = get_protocol(endpoint.protocol)
    body, headers = protocol.encode(images, encoding, files, endpoint=endpoint)
    try:
        return protocol.classes(protocol.infer(endpoint, body, headers, timeout_s), endpoint)
    except ProtocolError as err:
        raise VerifyError(str(err)) from None


def answered_classes(
    config: TargetConfig, endpoint: Endpoint, given: Inputs, encoding: str, batch: int
) -> list[int]:
    """The target's class for every image of ``given``, sent ``batch`` at a time or fewer:
    never more than the target takes in one request (:meth:`Protocol.images_limit`: one
    for image uploads, Triton's max_batch_size...)."""
    per_request = min(batch, get_protocol(endpoint.protocol).images_limit(endpoint) or batch)
    answered: list[int] = []
    for i in range(0, len(given.test.images), per_request):
        chunk = given.files[i : i + per_request] if given.files is not None else None
        answered += predict_classes(config, given.test.images[i : i + per_request], encoding,
                                    files=chunk, endpoint=endpoint)  # fmt: skip
    return answered


def compare(target: str, test: Split, reference: np.ndarray, answered: list[int]) -> Verdict:
    got = np.asarray(answered)
    mismatches = [int(i) for i in np.flatnonzero(got != reference)]
    return Verdict(
        target=target,
        images=len(got),
        agreement=float((got == reference).mean()),
        accuracy=float((got == test.labels[: len(got)]).mean()),
        mismatches=mismatches,
    )


def file_pixels(files: list[bytes], spec: InputSpec) -> np.ndarray:
    """The pixels a server decodes from exactly these image files (uint8 ``[n, *shape]``)."""
    out = np.empty((len(files), *spec.shape), dtype=np.uint8)
    for i, data in enumerate(files):
        with Image.open(io.BytesIO(data)) as img:
            out[i] = np.asarray(img.convert(spec.pil_mode), dtype=np.uint8).reshape(spec.shape)
    return out


@dataclass(frozen=True)
class Inputs:
    """What verify sends a target and what the reference model sees: like with like."""

    test: Split
    pixels: np.ndarray
    """What the server decodes: the reference model runs on these."""
    files: list[bytes] | None


def inputs_for(
    endpoint: Endpoint, encoding: str, data_dir: str | None, images: int,
    classes: Sequence[str] | None,
) -> Inputs:  # fmt: skip
    """The test images at the target's input size; for file uploads (``jpeg`` encoding:
    JPEG files, others transcoded as a client would; ``image-upload``: the files as they
    are) the pixels the server decodes from exactly those bytes, so a correct server agrees
    100% whatever the files' original format."""
    spec = endpoint.input
    test = load_split("test", data_dir, limit=images, spec=spec, classes=classes, resize=True)
    uploads = get_protocol(endpoint.protocol).uploads_files
    if encoding != "jpeg" and not uploads:
        return Inputs(test, test.images, None)
    found, _ = load_jpeg_bytes("test", data_dir, limit=images, spec=spec, classes=classes,
                               resize=True)  # fmt: skip
    files = as_jpeg_files(found) if encoding == "jpeg" else found
    return Inputs(test, file_pixels(files, spec), files)


def reference_model(config: TargetConfig) -> Path | None:
    """The model verify compares a target with: the one it serves, or, for a server servecap
    does not start, the ``reference_model`` it names."""
    if isinstance(config, ModelConfig):
        return resolve_model_path(config)
    path = getattr(config, "reference_model", None)
    return Path(path).resolve() if path else None


def verify(
    spec: ScenarioFile,
    targets: list[str],
    data_dir: str | None,
    images: int = 500,
    batch: int = 50,
    encoding: str = "json",
    launcher_name: str = "process",
    logs_root: Path = Path("results/verify"),
    echo: Echo = print,
    named: bool = True,
    classes: Sequence[str] | None = CLASSES,
) -> list[Verdict]:
    """Verify ``targets``. With ``named`` False (every target of the file), targets that
    cannot run with the launcher are skipped with the reason instead of failing. ``classes``:
    the dataset's class names in label order (None: its folders, sorted)."""
    from targets.common.model import Predictor  # TensorFlow: only when verifying

    verdicts: list[Verdict] = []
    references: dict[tuple[Path, InputSpec, str], np.ndarray] = {}
    for name in targets:
        config = spec.targets[name]
        kind = get_kind(config.kind)
        launcher = get_launcher(launcher_name, kind)
        why = kind.unsupported(launcher.name)
        if why is not None and not named:
            verdicts.append(Verdict(name, 0, None, None, [], skipped=why))
            echo(format_verdict(verdicts[-1]))
            continue
        model = reference_model(config)
        if model is None:
            error = "no model to compare with (a target servecap does not start: set its " \
                    "reference_model)"  # fmt: skip
            verdicts.append(Verdict(name, 0, None, None, [], error=error))
            echo(format_verdict(verdicts[-1]))
            continue
        try:
            echo(f"[{name}] starting")
            with launcher.launch(name, config, logs_root / name) as running:
                # once it runs: a server servecap did not write says its model's input then
                endpoint = endpoint_for(config)
                sent = encoding_for(get_protocol(endpoint.protocol), encoding)
                if sent != encoding:
                    echo(f"[{name}] {endpoint.protocol} cannot send {encoding}: sending {sent}")
                given = inputs_for(endpoint, sent, data_dir, images, classes)
                key = (model, endpoint.input, sent)
                if key not in references:
                    predictor = Predictor(model, endpoint.input.range)
                    references[key] = np.concatenate([
                        predictor.predict(given.pixels[i : i + batch]).argmax(axis=1)
                        for i in range(0, len(given.pixels), batch)
                    ])  # fmt: skip
                echo(f"[{name}] ready in {running.time_to_ready_s:.1f} s; sending {images} images")
                answered = answered_classes(config, endpoint, given, sent, batch)
            verdict = compare(name, given.test, references[key], answered)
        except (LaunchError, VerifyError, OSError, ValueError) as err:
            verdict = Verdict(name, 0, None, None, [], error=str(err))
        verdicts.append(verdict)
        echo(format_verdict(verdict))
    return verdicts


def encoding_for(protocol: Protocol, encoding: str) -> str:
    """``encoding`` when the protocol sends it, else the protocol's own (verify checks every
    target of a file, whatever protocols they speak)."""
    try:
        protocol.check_encoding(encoding)
    except ValueError:
        return protocol.encodings[0]
    return encoding


def format_verdict(v: Verdict) -> str:
    if v.skipped is not None:
        return f"[{v.target}] skipped: {v.skipped}"
    if v.error is not None:
        return f"[{v.target}] NOT VERIFIED: {v.error}"
    assert v.agreement is not None and v.accuracy is not None
    detail = "" if not v.mismatches else f" (first mismatches at images {v.mismatches[:10]})"
    return (
        f"[{v.target}] agreement {v.agreement:.2%} on {v.images} images, "
        f"test accuracy {v.accuracy:.2%}{detail}"
    )
