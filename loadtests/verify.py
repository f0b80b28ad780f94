"""``servecap verify``: does every target answer exactly what the model answers in-process?

Each target is started, sent the same N CIFAR-10 test images (in batches, through the client
its kind uses), and its classes are compared image by image with the SavedModel run in this
process. Reports agreement and test accuracy per target; a target that cannot start is
reported as such and the others are still verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtests.spec import ScenarioFile
from targets.common.dataset import Split, load_jpeg_bytes, load_split
from targets.config import ModelConfig, TargetConfig
from targets.launchers import LaunchError, get_launcher
from targets.protocols import ProtocolError, get_protocol
from targets.registry import get_kind, resolve_model_path

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
    files: list[bytes] | None = None,
) -> list[int]:  # fmt: skip
    """The classes a running target answers for ``images`` (one request, in its protocol;
    ``files``: the images' files, for encodings that upload them)."""
    endpoint = get_kind(config.kind).endpoint(config)
    protocol = get_protocol(endpoint.protocol)
    body, headers = protocol.encode(images, encoding, files, endpoint=endpoint)
    try:
        return protocol.classes(protocol.infer(endpoint, body, headers, timeout_s), endpoint)
    except ProtocolError as err:
        raise VerifyError(str(err)) from None


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


def jpeg_inputs(files: list[bytes]) -> tuple[list[bytes], np.ndarray]:
    """What a jpeg-encoded verify sends and what the server sees: the dataset's files as
    JPEG (others transcoded, as a client would), and the pixels a server decodes from exactly
    those bytes. The reference prediction runs on these pixels, so a correct server agrees
    100% whatever the files' original format."""
    from targets.common.payload import JPEG, as_jpeg_files, decode_request

    jpegs = as_jpeg_files(files)
    return jpegs, np.concatenate([decode_request(j, JPEG) for j in jpegs])


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
) -> list[Verdict]:
    """Verify ``targets``. With ``named`` False (every target of the file), targets that
    cannot run with the launcher are skipped with the reason instead of failing."""
    from targets.common.model import Predictor  # TensorFlow: only when verifying

    test = load_split("test", data_dir, limit=images)
    pixels, files = test.images, None
    if encoding == "jpeg":  # like with like: the reference sees what the servers decode
        files, pixels = jpeg_inputs(load_jpeg_bytes("test", data_dir, limit=images)[0])
    verdicts: list[Verdict] = []
    references: dict[Path, np.ndarray] = {}
    launcher = get_launcher(launcher_name)
    for name in targets:
        config = spec.targets[name]
        why = get_kind(config.kind).unsupported(launcher_name)
        if why is not None and not named:
            verdicts.append(Verdict(name, 0, None, None, [], skipped=why))
            echo(format_verdict(verdicts[-1]))
            continue
        if not isinstance(config, ModelConfig):
            verdicts.append(Verdict(name, 0, None, None, [], error="serves no servecap model"))
            echo(format_verdict(verdicts[-1]))
            continue
        model = resolve_model_path(config)
        try:
            if model not in references:
                predictor = Predictor(model)
                references[model] = np.concatenate(
                    [
                        predictor.predict(pixels[i : i + batch]).argmax(axis=1)
                        for i in range(0, len(pixels), batch)
                    ]
                )
            echo(f"[{name}] starting")
            with launcher.launch(name, config, logs_root / name) as running:
                echo(f"[{name}] ready in {running.time_to_ready_s:.1f} s; sending {images} images")
                answered: list[int] = []
                for i in range(0, len(test.images), batch):
                    chunk = files[i : i + batch] if files is not None else None
                    answered += predict_classes(config, test.images[i : i + batch], encoding,
                                                files=chunk)  # fmt: skip
            verdict = compare(name, test, references[model], answered)
        except (LaunchError, VerifyError, OSError, ValueError) as err:
            verdict = Verdict(name, 0, None, None, [], error=str(err))
        verdicts.append(verdict)
        echo(format_verdict(verdict))
    return verdicts


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
