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
from targets.common.dataset import Split, load_split
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

    @property
    def ok(self) -> bool:
        return self.error is None and self.agreement == 1.0


def predict_classes(
    config: TargetConfig, images: np.ndarray, encoding: str = "json", timeout_s: float = 60.0
) -> list[int]:
    """The classes a running target answers for ``images`` (one request, in its protocol)."""
    endpoint = get_kind(config.kind).endpoint(config)
    protocol = get_protocol(endpoint.protocol)
    body, headers = protocol.encode(images, encoding, endpoint=endpoint)
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
) -> list[Verdict]:
    from targets.common.model import Predictor  # TensorFlow: only when verifying

    test = load_split("test", data_dir, limit=images)
    verdicts: list[Verdict] = []
    references: dict[Path, np.ndarray] = {}
    launcher = get_launcher(launcher_name)
    for name in targets:
        config = spec.targets[name]
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
                        predictor.predict(test.images[i : i + batch]).argmax(axis=1)
                        for i in range(0, len(test.images), batch)
                    ]
                )
            echo(f"[{name}] starting")
            with launcher.launch(name, config, logs_root / name) as running:
                echo(f"[{name}] ready in {running.time_to_ready_s:.1f} s; sending {images} images")
                answered: list[int] = []
                for i in range(0, len(test.images), batch):
                    answered += predict_classes(config, test.images[i : i + batch], encoding)
            verdict = compare(name, test, references[model], answered)
        except (LaunchError, VerifyError, OSError, ValueError) as err:
            verdict = Verdict(name, 0, None, None, [], error=str(err))
        verdicts.append(verdict)
        echo(format_verdict(verdict))
    return verdicts


def format_verdict(v: Verdict) -> str:
    if v.error is not None:
        return f"[{v.target}] NOT VERIFIED: {v.error}"
    assert v.agreement is not None and v.accuracy is not None
    detail = "" if not v.mismatches else f" (first mismatches at images {v.mismatches[:10]})"
    return (
        f"[{v.target}] agreement {v.agreement:.2%} on {v.images} images, "
        f"test accuracy {v.accuracy:.2%}{detail}"
    )
