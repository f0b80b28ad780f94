"""``servecap verify``: does every target answer exactly what the model answers in-process?

Each target is started, sent the same N CIFAR-10 test images (in batches, through the client
its kind uses), and its classes are compared image by image with the SavedModel run in this
process. Reports agreement and test accuracy per target; a target that cannot start is
reported as such and the others are still verified.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtests.spec import ScenarioFile
from targets.common.dataset import Split, load_split
from targets.common.payload import encode_request
from targets.config import TargetConfig
from targets.launchers import LaunchError, get_launcher
from targets.registry import resolve_model_path
from targets.tfserving import protocol as tfs

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


def _post(url: str, body: bytes, content_type: str, timeout_s: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, body, {"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def _get(url: str, timeout_s: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def predict_classes(
    config: TargetConfig, images: np.ndarray, encoding: str = "json", timeout_s: float = 60.0
) -> list[int]:
    """The classes a running target answers for ``images`` (one request)."""
    base = config.base_url
    if config.client == "tfserving-rest":
        status, body = _post(base + tfs.rest_predict_path(), tfs.rest_request(images),
                             "application/json", timeout_s)  # fmt: skip
        _check(status, body)
        return [int(c) for c in tfs.rest_probabilities(body).argmax(axis=1)]
    if config.client == "tfserving-grpc":
        import grpc

        with grpc.insecure_channel(f"127.0.0.1:{config.tf_grpc_port}") as channel:
            answer = channel.unary_unary(tfs.GRPC_METHOD)(tfs.grpc_request(images),
                                                          timeout=timeout_s)  # fmt: skip
        return [int(c) for c in tfs.grpc_probabilities(answer).argmax(axis=1)]
    body, ctype = encode_request(images, encoding)
    if config.client == "jobqueue":
        status, answer = _post(base + "/v1/jobs", body, ctype, timeout_s)
        _check(status, answer, accepted=(202,))
        job_id = json.loads(answer)["job_id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status, answer = _get(f"{base}/v1/jobs/{job_id}?wait_s=10", timeout_s)
            doc = json.loads(answer)
            if status == 200 and doc.get("status") == "finished":
                return [int(c) for c in doc["classes"]]
            if doc.get("status") == "failed" or status not in (200, 202):
                raise VerifyError(f"job {job_id} failed: HTTP {status} {answer[:200]!r}")
        raise VerifyError(f"job {job_id} not finished after {timeout_s:.0f} s")
    status, answer = _post(base + "/v1/predict", body, ctype, timeout_s)
    _check(status, answer)
    return [int(c) for c in json.loads(answer)["classes"]]


def _check(status: int, body: bytes, accepted: tuple[int, ...] = (200,)) -> None:
    if status not in accepted:
        raise VerifyError(f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}")


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
