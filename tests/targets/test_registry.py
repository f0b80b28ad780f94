"""The kind registry: every shipped kind is one folder, and a new kind is one folder too.

The integration test adds a kind from a temporary folder (a minimal HTTP server answering
fake predictions in servecap's protocol) through ``SERVECAP_KIND_PATH`` and drives it with
``servecap run`` and the process launcher, changing no file of the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from targets.kind import Kind
from targets.registry import KIND_PATH_ENV, KindError, get_kind, kinds, target_config
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]

SERVER = '''
"""A fake model server: servecap's predict API, class = number of images mod 10."""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200 if self.path == "/healthz" else 404, {"status": "ok"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        try:
            images = json.loads(self.rfile.read(length))["images"]
        except (ValueError, KeyError):
            return self.reply(422, {"error": "send {images: [...]}"})
        probs = [[1.0 if c == len(images) % 10 else 0.0 for c in range(10)] for _ in images]
        self.reply(200, {"classes": [len(images) % 10] * len(images), "probabilities": probs})


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''

KIND = '''
"""A kind that lives outside the repository."""
import sys
from pathlib import Path
from typing import Literal

from targets.config import TargetConfig
from targets.kind import HOST, Kind, Placement
from targets.launchers.base import ProcessSpec


class EchoConfig(TargetConfig):
    kind: Literal["echo"] = "echo"
    greeting: str = "hello"


class EchoKind(Kind):
    name = "echo"
    config_model = EchoConfig
    description = "a fake model server for the registry test"

    def process_plan(self, name, config, placement=HOST):
        server = Path(__file__).with_name("server.py")
        return [ProcessSpec(name=name, role="echo", argv=(sys.executable, str(server),
                            str(config.port)), ready_url=f"{config.base_url}/healthz")]


KIND = EchoKind()
'''


@pytest.fixture
def echo_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "plugins" / "echo"
    folder.mkdir(parents=True)
    (folder / "kind.py").write_text(textwrap.dedent(KIND))
    (folder / "server.py").write_text(textwrap.dedent(SERVER))
    monkeypatch.setenv(KIND_PATH_ENV, str(folder.parent))
    kinds.cache_clear()
    yield folder.parent
    kinds.cache_clear()


REQUIRED: dict[str, dict[str, str]] = {
    "external": {"url": "http://127.0.0.1:8000", "protocol": "servecap"},
    "container": {"image": "team/classifier:1", "protocol": "image-upload"},
}


def test_every_shipped_kind_is_a_folder_with_its_declaration() -> None:
    found = kinds()
    assert {"fastapi", "flask", "django-embedded", "jobqueue", "tfserving"} <= set(found)
    for name, kind in found.items():
        assert kind.name == name and kind.folder.is_relative_to(REPO / "targets")
        assert (kind.folder / "kind.py").is_file()
        assert kind.config_model.model_fields["kind"].default == name
        required = REQUIRED.get(name, {})  # a server servecap did not write: say which
        assert isinstance(target_config(kind=name, **required), kind.config_model)


def test_unknown_kinds_say_which_exist() -> None:
    with pytest.raises(KindError, match="did you mean 'fastapi'"):
        get_kind("fastap")


def test_a_kind_outside_the_repository_is_found_with_its_own_fields(echo_kind: Path) -> None:
    kind = get_kind("echo")
    assert isinstance(kind, Kind) and kind.folder == echo_kind / "echo"
    config = target_config(kind="echo", port=9999, greeting="hi")
    assert type(config).__name__ == "EchoConfig"
    with pytest.raises(ValueError, match="model_path"):  # not a key this kind takes
        target_config(kind="echo", model_path="x")


def test_a_kind_path_that_is_not_a_folder_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KIND_PATH_ENV, str(tmp_path / "missing"))
    kinds.cache_clear()
    try:
        with pytest.raises(KindError, match="not a folder"):
            kinds()
    finally:
        kinds.cache_clear()


@pytest.mark.integration
def test_a_new_kind_runs_through_servecap_run(
    echo_kind: Path, tmp_path: Path, cifar_dir: Path
) -> None:
    port = free_port()
    scenarios = {
        "targets": {"echo": {"kind": "echo", "port": port, "greeting": "hi"}},
        "scenarios": {"try": {"targets": ["echo"], "load": {
            "warmup_requests": 2, "settle_s": 0.5, "image_pool": 32,
            "stages": [{"users": 1, "duration_s": 2}, {"users": 2, "duration_s": 2}]}}},
    }  # fmt: skip
    spec = tmp_path / "scenarios.yaml"
    spec.write_text(yaml.safe_dump(scenarios))
    out = tmp_path / "results"
    before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    env = {**os.environ, KIND_PATH_ENV: str(echo_kind), "SERVECAP_CIFAR10_DIR": str(cifar_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.cli", "run", "try", "--scenarios", str(spec),
         "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    (run,) = summary["runs"]
    assert run["kind"] == "echo" and run["status"] == "ok"
    assert [s["users"] for s in run["stages"]] == [1, 2]
    assert all(s["rps"] > 0 and s["error_rate"] == 0 for s in run["stages"])
    requests = pd.read_parquet(out / "echo" / "requests.parquet")
    assert len(requests) == run["requests"] and (requests["outcome"] == "ok").all()
    after = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert after == before  # no file of the project changed
