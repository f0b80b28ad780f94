"""Tests for targets.launchers.docker.engine against a real Docker engine: the launcher's own
health check."""

from __future__ import annotations

from targets.launchers.docker import MANAGED_LABEL
from targets.launchers.docker.engine import healthy
from tests.machine import FASTAPI_IMAGE, docker_test


@docker_test(FASTAPI_IMAGE)
def test_the_launchers_own_health_check_waits_for_the_checks_answer() -> None:
    import docker

    client = docker.from_env()
    started = []
    try:
        # Checks that take a moment, as a real one does; Docker's own: not within the hour.
        for test in (["CMD", "sleep", "1"], ["CMD", "sh", "-c", "sleep 1; false"]):
            hour_ns = 3600 * 10**9
            started.append(client.containers.run(
                FASTAPI_IMAGE, entrypoint=["sleep", "60"], detach=True, network_mode="none",
                labels={MANAGED_LABEL: "true"},
                healthcheck={"test": test, "interval": hour_ns, "start_period": hour_ns},
            ))  # fmt: skip
        passing, failing = started
        passing.reload()
        failing.reload()
        assert passing.attrs["State"]["Health"]["Status"] == "starting"
        assert healthy(passing) and not healthy(failing)
    finally:
        for c in started:
            c.remove(force=True)
