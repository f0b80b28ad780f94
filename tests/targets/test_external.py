"""The ``external`` kind: a server servecap does not start, measured like its own targets.

The "user's servers" here are real ones started by the tests themselves: servecap's FastAPI
server, and Triton serving a model of another input (64x64 grey, 5 classes) that servecap
never exported, with a folder of PNG images as its dataset.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from loadtests.orchestrator import RunOptions, run
from loadtests.spec import parse_scenarios
from loadtests.verify import verify
from targets.launchers import LaunchError, get_launcher
from targets.launchers.process import ProcessLauncher
from targets.registry import endpoint_for, get_kind, target_config
from tests.machine import triton_missing
from tests.models import gray_classifier
from tests.ports import free_port

# Open-loop at a modest rate: measured, sampled and scraped as under any load, without keeping
# a core busy for the three runs (closed loop, two users saturated the server).
LOAD = {"mode": "rate", "warmup_requests": 5, "settle_s": 1,
        "stages": [{"rps": 25, "duration_s": 5}]}  # fmt: skip


def external(**fields: object):  # type: ignore[no-untyped-def]
    return target_config(kind="external", **{"url": "http://127.0.0.1:9", **fields})


# ------------------------------------------------------------------ configuration


def test_only_loopback_unless_the_target_allows_remote() -> None:
    for url in ("http://10.0.0.7:8000", "https://models.example.com", "http://[2001:db8::1]:80"):
        with pytest.raises(ValidationError, match="not a loopback address.*allow_remote: true"):
            external(url=url, protocol="servecap")
    with pytest.raises(ValidationError, match="grpc_target .* not a loopback"):
        external(protocol="v2-grpc", model_name="m", grpc_target="10.1.1.1:8001")
    with pytest.raises(ValidationError, match="health_url"):
        external(protocol="servecap", health_url="http://192.168.1.2/ready")
    # said on purpose: accepted (no request is sent by validating)
    remote = external(url="https://models.example.com/", protocol="servecap", allow_remote=True)
    assert remote.base_url == "https://models.example.com"
    for url in ("http://localhost:8000", "http://127.0.0.2:8000", "http://[::1]:8000"):
        assert external(url=url, protocol="servecap").base_url == url


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"url": "http://127.0.0.1:99999"}, "url"), ({"url": "http://127.0.0.1:0/"}, "url"),
     ({"url": "http://localhost:80a"}, "url"),
     ({"health_url": "http://127.0.0.1:70000/ready"}, "health_url"),
     ({"resources": {"prometheus_url": "http://[::1]:123456/metrics"}},
      "resources.prometheus_url"),
     ({"protocol": "v2-grpc", "model_name": "m", "grpc_target": "127.0.0.1:99999"},
      "grpc_target")],
)  # fmt: skip
def test_a_port_out_of_range_is_refused_naming_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError, match=f"{field} \\S+: port '\\w*' is not a number from 1"):
        external(**{"protocol": "servecap", **fields})


def test_a_model_url_port_out_of_range_is_refused() -> None:
    with pytest.raises(ValidationError, match="model_url .*port '99999' is not a number"):
        target_config(kind="fastapi", model_url="https://models.example.com:99999/m.tar.gz",
                      model_sha256="0" * 64)  # fmt: skip


def test_protocol_fields_are_checked_with_the_fix_named() -> None:
    with pytest.raises(ValidationError, match="unknown protocol 'v2-json'.*known"):
        external(protocol="v2-json")
    with pytest.raises(ValidationError, match="needs model_name"):
        external(protocol="v2-rest")
    with pytest.raises(ValidationError, match="needs grpc_target"):
        external(protocol="v2-grpc", model_name="m")
    with pytest.raises(ValidationError, match="upload_field is for protocol image-upload"):
        external(protocol="servecap", upload_field="file")
    with pytest.raises(ValidationError, match="one of containers, label or pid"):
        external(protocol="servecap", resources={"pid": 1, "containers": ["x"]})
    with pytest.raises(ValidationError, match="unknown key 'model_path'"):
        external(protocol="servecap", model_path="/models/x")


def test_the_external_launcher_is_used_whatever_the_run_launcher() -> None:
    kind = get_kind("external")
    for name in ("process", "docker"):
        assert get_launcher(name, kind).name == "external"
    assert get_launcher("process", get_kind("fastapi")).name == "process"


def test_a_server_that_is_not_there_fails_naming_its_url_within_the_timeout() -> None:
    port = free_port()
    config = external(url=f"http://127.0.0.1:{port}", protocol="v2-rest", model_name="m",
                      ready_timeout_s=1.5)  # fmt: skip
    t0 = time.monotonic()
    with pytest.raises(LaunchError) as err:
        get_launcher("process", get_kind("external")).preflight("mine", config)
    assert time.monotonic() - t0 < 5
    message = str(err.value)
    assert f"http://127.0.0.1:{port}/v2/health/ready" in message
    assert "not ready after 2 s" in message and "refused" in message.lower()
    assert "targets.mine.url" in message


# ------------------------------------------------------------------ real servers


@pytest.fixture
def fastapi_server(tiny_model: Path, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """servecap's FastAPI server, started here as a user would start their own: (port, pid)."""
    port = free_port()
    config = target_config(kind="fastapi", port=port, model_path=str(tiny_model))
    with ProcessLauncher().launch("theirs", config, tmp_path / "their-logs") as running:
        yield port, running.pids[0]


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_against_an_external_server_measures_it_and_says_what_it_did_not(
    fastapi_server: tuple[int, int], tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    port, pid = fastapi_server
    url = f"http://127.0.0.1:{port}"
    spec = parse_scenarios({
        "targets": {
            "watched": {"kind": "external", "url": url, "protocol": "servecap",
                        "resources": {"pid": pid, "prometheus_url": f"{url}/metrics",
                                      "prometheus_format": "servecap"},
                        "reference_model": str(tiny_model)},
            "blind": {"kind": "external", "url": url, "protocol": "servecap"},
            "upload": {"kind": "external", "url": url, "protocol": "image-upload",
                       "reference_model": str(tiny_model)},
        },
        "scenarios": {"s": {"targets": ["watched", "blind"], "load": LOAD},
                      "u": {"targets": ["upload"], "load": {**LOAD, "encoding": "file"}}},
    })  # fmt: skip
    out = tmp_path / "results"
    outcome = run(RunOptions("s", spec, tmp_path / "s.yaml", out, data_dir=str(cifar_dir)),
                  echo=lambda _: None)  # fmt: skip
    assert outcome.ok, outcome.failures
    summary = json.loads((out / "summary.json").read_text())
    uploaded = run(RunOptions("u", spec, tmp_path / "s.yaml", tmp_path / "u",
                              data_dir=str(cifar_dir)), echo=lambda _: None)  # fmt: skip
    assert uploaded.ok, uploaded.failures
    (upload,) = json.loads((tmp_path / "u" / "summary.json").read_text())["runs"]
    watched, blind = summary["runs"]
    for entry in (watched, blind, upload):
        assert entry["launcher"] == "external" and entry["status"] == "ok"
        assert entry["stages"][0]["requests"] > 0
    assert watched["resources"] == "psutil"
    assert watched["stages"][0]["cpu_pct"] > 0 and watched["stages"][0]["mem_mb"] > 50
    assert "scraped" in watched["server_metrics"]
    assert blind["resources"].startswith("not measured")
    assert blind["stages"][0]["cpu_pct"] is None and blind["stages"][0]["mem_mb"] is None
    # verify compares it with the model it names: JSON pixels, and JPEG files uploaded
    for verdict in verify(spec, ["watched", "upload"], str(cifar_dir), images=60, batch=20,
                          logs_root=tmp_path / "v", echo=lambda _: None):  # fmt: skip
        assert verdict.ok and verdict.agreement == 1.0, verdict
    (none,) = verify(spec, ["blind"], str(cifar_dir), images=10, logs_root=tmp_path / "v",
                     echo=lambda _: None)  # fmt: skip
    assert not none.ok and none.error is not None and "reference_model" in none.error


GREY_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> Path:
    """Five CIFAR-10 classes as a folder of PNG files (``<class>/*.png``), colour, 32x32:
    the model takes 64x64 grey, so servecap resizes and converts them."""
    root = tmp_path_factory.mktemp("pngs")
    for name in GREY_CLASSES:
        (root / name).mkdir()
        for source in sorted((cifar_dir / "test" / name).glob("*.jpg"))[:12]:
            Image.open(source).save(root / name / f"{source.stem}.png")
    return root


@pytest.fixture(scope="module")
def grey_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    """Triton serving a model servecap did not export: (HTTP port, gRPC port, model)."""
    missing = triton_missing()
    if missing:
        pytest.skip(missing)
    folder = tmp_path_factory.mktemp("grey")
    model = gray_classifier(folder, classes=len(GREY_CLASSES))
    http, grpc = free_port(), free_port()
    config = target_config(kind="triton", port=http, grpc_port=grpc, metrics_port=free_port(),
                           model_path=str(model), model_name="grey",
                           ready_timeout_s=120)  # fmt: skip
    with ProcessLauncher().launch("their-triton", config, folder / "logs"):
        yield http, grpc, model


@pytest.mark.slow
@pytest.mark.integration
def test_your_own_model_on_an_external_triton_is_loaded_and_verified(
    grey_triton: tuple[int, int, Path], png_folder: Path, tmp_path: Path
) -> None:
    http, grpc, model = grey_triton
    url = f"http://127.0.0.1:{http}"
    common = {"kind": "external", "url": url, "model_name": "grey",
              "reference_model": str(model)}  # fmt: skip
    spec = parse_scenarios({
        "targets": {
            "rest": {**common, "protocol": "v2-rest"},
            "grpc": {**common, "protocol": "v2-grpc", "grpc_target": f"127.0.0.1:{grpc}"},
        },
        "scenarios": {"s": {"targets": ["rest", "grpc"],
                            "load": {**LOAD, "dataset": str(png_folder), "encoding": "binary",
                                     "images_per_request": 2}}},
    })  # fmt: skip
    # what Triton says about the model: servecap sizes and types the images by it
    endpoint = endpoint_for(spec.targets["rest"])
    assert endpoint.input.shape == (64, 64, 1) and endpoint.input.dtype == "uint8"
    # the tensor names Triton declares (the triton kind keeps servecap's, mapping the model's)
    assert endpoint.input_name == "images" and endpoint.output_name == "probabilities"
    verdicts = verify(spec, ["rest", "grpc"], str(png_folder), images=60, batch=10,
                      encoding="binary", logs_root=tmp_path / "v", echo=lambda _: None,
                      classes=None)  # fmt: skip
    for verdict in verdicts:
        assert verdict.ok and verdict.images == 60 and verdict.agreement == 1.0, verdict
    out = tmp_path / "results"
    outcome = run(RunOptions("s", spec, tmp_path / "s.yaml", out), echo=lambda _: None)
    assert outcome.ok, outcome.failures
    summary = json.loads((out / "summary.json").read_text())
    for entry in summary["runs"]:
        stage = entry["stages"][0]
        assert stage["requests"] > 0 and stage["error_rate"] == 0, entry
    records = out / "rest" / "requests.parquet"
    assert records.exists()
    # a contradiction between input: and the server is refused before anything runs
    wrong = target_config(**{**common, "protocol": "v2-rest", "input": {"shape": [32, 32, 3]}})
    with pytest.raises(LaunchError, match=r"input.shape .* but the server"):
        endpoint_for(wrong)
    assert np.array_equal(endpoint.input.tensor(np.zeros((1, 64, 64, 1), np.uint8)),
                          np.zeros((1, 64, 64, 1), np.uint8))  # fmt: skip
