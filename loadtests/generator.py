"""The load generator process: Locust, headless, started on the run's locustfile.

Also the warm-up: a few sequential requests before any measurement, so the first
TensorFlow calls (graph tracing, allocations) never land in a stage's statistics.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from loadtests.runconfig import ENV_VAR, LoadRunConfig
from targets.config import parse_cpuset
from targets.launchers.process import child_setup
from targets.protocols import ProtocolError
from targets.protocols.base import Headers
from targets.registry import REPO_ROOT

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


class GeneratorError(RuntimeError):
    """The load generator failed to start or run."""


def warm_up(config: LoadRunConfig, body: bytes, headers: Headers, requests: int) -> float:
    """Send ``requests`` sequential requests in the target's protocol; their mean latency in ms.

    Any answer that is not a prediction stops the run before the measurement: it means client
    and target disagree (wrong schema, wrong model), and measuring that would be meaningless.
    """
    protocol = config.protocol
    timeout_s = config.plan.request_timeout_s
    total = 0.0
    for _ in range(requests):
        start = time.perf_counter()
        try:
            protocol.check(
                protocol.infer(config.endpoint, body, headers, timeout_s), config.endpoint
            )
        except (ProtocolError, ValueError) as err:
            raise GeneratorError(
                f"target '{config.target}' answered a warm-up request ({protocol.name}) with: {err}"
            ) from None
        except OSError as err:  # urllib's URLError too
            raise GeneratorError(
                f"target '{config.target}' did not answer a warm-up request at "
                f"{config.base_url}: {err}"
            ) from None
        total += time.perf_counter() - start
    return 1000 * total / requests if requests else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


REMOTE_WORKERS_WAIT_S = 300.0
"""How long a master waits for its remote workers to connect."""


FORWARD_ENV_VAR = "SERVECAP_FORWARD_RECORDS"
"""Set for a remote worker: its per-request records go to the master, not to local files."""


def run_worker(config_path: Path, master_host: str, master_port: int) -> int:
    """Run one Locust worker for the run described by ``config_path`` until its master quits.

    The worker sends its per-request records to the master (:data:`FORWARD_ENV_VAR`), so
    they land in the master's results folder whichever host the worker runs on.
    """
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
            "--master-host", master_host, "--master-port", str(master_port),
            "--loglevel", "WARNING"]  # fmt: skip
    return subprocess.call(argv, env={**_locust_env(config_path), FORWARD_ENV_VAR: "1"})


def _locust_env(config_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k != "LOCUST_SKIP_MONKEY_PATCH"},
        ENV_VAR: str(config_path),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
        ),
        "PYTHONUNBUFFERED": "1",
    }


def start_locust(
    config_path: Path, config: LoadRunConfig, run_dir: Path
) -> subprocess.Popen[bytes]:
    plan = config.plan
    # A master passes its --host to every worker, overriding theirs: with remote workers it
    # gets none, so each keeps the target URL it was started with (`servecap worker --host`).
    host = [] if plan.remote_workers else ["--host", config.base_url]
    argv = [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless",
        *host,
        "--csv", str(run_dir / "locust"),
        "--csv-full-history",
        "--exit-code-on-error", "0",
        "--stop-timeout", str(int(config.plan.request_timeout_s) + 1),
        "--loglevel", "WARNING",
    ]  # fmt: skip
    if plan.remote_workers:
        # A master sending no load; `servecap worker` processes connect to it (any host).
        argv += ["--master", "--master-bind-host", plan.master_bind_host,
                 "--master-bind-port", str(plan.master_port),
                 "--expect-workers", str(plan.remote_workers),
                 "--expect-workers-max-wait", str(int(REMOTE_WORKERS_WAIT_S))]  # fmt: skip
    elif plan.workers > 1:
        # Locust's own master/worker mode on this host: one worker process per --processes.
        port = str(_free_port())
        argv += ["--processes", str(plan.workers),
                 "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                 "--master-host", "127.0.0.1", "--master-port", port]  # fmt: skip
    cpus = parse_cpuset(config.plan.generator_cpuset) if config.plan.generator_cpuset else None
    env = _locust_env(config_path)
    log = (run_dir / "locust.log").open("ab")
    try:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_setup(cpus),  # no Locust outlives a killed harness
        )
    finally:
        log.close()
