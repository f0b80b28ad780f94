"""The ``container`` kind: an image servecap did not build, run by the Docker launcher.

The user's image is built here from a Dockerfile in a temporary folder (FROM the offline
base image, standard library only): a small image classifier server of the kind teams write,
answering an uploaded image with a class id. A run measures it through the Docker stats API
and leaves no container, whether it succeeds or the server dies at start.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.orchestrator import RunOptions, run
from loadtests.spec import parse_scenarios
from targets.launch_types import LaunchError
from targets.launchers.docker import DockerLauncher, clean
from targets.launchers.docker.engine import managed_containers
from tests.machine import BASE_IMAGE, needs_docker
from tests.ports import free_port

pytestmark = needs_docker(BASE_IMAGE)
BASE = BASE_IMAGE
USER_IMAGE = "servecap-test/their-classifier:1"

SERVER = textwrap.dedent('''
    """The user's server: POST /classify with an image file -> {"label": id}; GET /ready."""
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ready" else 404)
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/classify" or not body:
                self.send_response(400); self.end_headers(); return
            answer = json.dumps({"label": sum(body[-64:]) % 10}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
''')


@pytest.fixture(scope="module")
def user_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("their-image")
    (folder / "server.py").write_text(SERVER)
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY server.py /srv/server.py\n"
        'CMD ["python3", "/srv/server.py", "8080"]\n'
    )
    subprocess.run(["docker", "build", "--network", "host", "-q", "--build-arg",
                    f"BASE_IMAGE={BASE}", "-t", USER_IMAGE, str(folder)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    yield USER_IMAGE
    subprocess.run(["docker", "image", "rm", "-f", USER_IMAGE], capture_output=True, timeout=60)


def spec_for(image: str, port: int, **fields: object):  # type: ignore[no-untyped-def]
    target = {"kind": "container", "image": image, "port": port,
              "command": ["python3", "/srv/server.py", "{port}"], "health_path": "/ready",
              "protocol": "image-upload", "predict_path": "/classify", "output_name": "label",
              "output_kind": "class_id", "cpus": 0.5, "memory_limit_mb": 256,
              "ready_timeout_s": 30, **fields}  # fmt: skip
    load = {"warmup_requests": 5, "settle_s": 1, "encoding": "file",
            "stages": [{"users": 2, "duration_s": 5}]}  # fmt: skip
    return parse_scenarios(
        {"targets": {"theirs": target}, "scenarios": {"s": {"targets": ["theirs"], "load": load}}}
    )


def test_a_user_image_is_measured_from_the_docker_api_and_removed(
    user_image: str, cifar_dir: Path, tmp_path: Path
) -> None:
    spec = spec_for(user_image, free_port())
    out = tmp_path / "results"
    outcome = run(RunOptions("s", spec, tmp_path / "s.yaml", out, launcher="docker",
                             data_dir=str(cifar_dir)), echo=lambda _: None)  # fmt: skip
    assert outcome.ok, outcome.failures
    (entry,) = json.loads((out / "summary.json").read_text())["runs"]
    assert entry["launcher"] == "docker" and entry["resources"] == "docker"
    stage = entry["stages"][0]
    assert stage["requests"] > 0 and stage["error_rate"] == 0
    assert stage["mem_mb"] > 1 and stage["cpu_pct"] > 0
    override = out / "theirs" / "logs" / "compose-override.yml"
    assert "/srv/server.py" in override.read_text()
    assert not managed_containers(_client())


def status_field(pid: int, field: str) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(f"{field}:"))


def test_a_user_container_gets_no_capability_but_those_given_back(
    user_image: str, tmp_path: Path
) -> None:
    """Host network, the image's own user (root here): Docker's defaults would give its server
    NET_RAW and a dozen more. It gets none (no-new-privileges too) and still serves; the
    target's capabilities give back what an image needs."""
    import psutil

    spec = spec_for(user_image, free_port(), capabilities=["NET_BIND_SERVICE"])
    config = spec.targets["theirs"]
    with DockerLauncher().launch("theirs", config, tmp_path / "logs") as target:
        (container,) = [c for c in managed_containers(_client()) if c.id in target.containers]
        host = container.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == ["NET_BIND_SERVICE"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        init = psutil.Process(container.attrs["State"]["Pid"])
        (server,) = init.children()
        assert "/srv/server.py" in " ".join(server.cmdline())
        assert int(status_field(server.pid, "CapEff"), 16) == 1 << 10  # NET_BIND_SERVICE only
        assert status_field(server.pid, "NoNewPrivs") == "1"
        with urllib.request.urlopen(f"{target.base_url}/ready", timeout=5) as resp:
            assert resp.status == 200
    assert container.id not in {c.id for c in managed_containers(_client())}


def test_a_user_container_that_dies_at_start_fails_its_target_and_leaves_nothing(
    user_image: str, cifar_dir: Path, tmp_path: Path
) -> None:
    spec = spec_for(user_image, free_port(), command=["python3", "-c", "raise SystemExit(3)"])
    out = tmp_path / "results"
    outcome = run(RunOptions("s", spec, tmp_path / "s.yaml", out, launcher="docker",
                             data_dir=str(cifar_dir)), echo=lambda _: None)  # fmt: skip
    assert not outcome.ok
    (failure,) = outcome.failures
    assert "exited" in failure and "before the target was ready" in failure
    assert not managed_containers(_client())
    assert clean() == []


def test_an_image_that_is_not_there_says_how_to_get_it(user_image: str, tmp_path: Path) -> None:
    spec = spec_for("servecap-test/never-built:0", free_port())
    launch = DockerLauncher().launch("theirs", spec.targets["theirs"], tmp_path / "logs")
    with pytest.raises(LaunchError, match="docker build -t servecap-test/never-built:0"), launch:
        pass
    assert not managed_containers(_client())


def _client():  # type: ignore[no-untyped-def]
    from targets.launchers.docker.engine import docker_client

    return docker_client()
