"""FastAPI with several uvicorn workers: keep-alive answers are not delayed.

Regression test: uvicorn hands its workers a socket asyncio does not treat as TCP, so without
the pre-bound TCP_NODELAY socket every keep-alive answer waited ~40 ms (Nagle + delayed ACK).
"""

from __future__ import annotations

import http.client
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from targets.common.payload import encode_request
from targets.launchers.process import ProcessLauncher
from targets.registry import target_config
from tests.ports import free_port

pytestmark = pytest.mark.integration


def test_two_workers_answer_fast_on_keep_alive(tiny_model: Path, tmp_path: Path) -> None:
    config = target_config(kind="fastapi", port=free_port(), workers=2, model_path=str(tiny_model))
    body, ctype = encode_request(np.zeros((1, 32, 32, 3), np.uint8), "json")
    with ProcessLauncher().launch("w2", config, tmp_path):
        latencies = []
        for _ in range(8):  # new connections: the workers share them
            conn = http.client.HTTPConnection("127.0.0.1", config.port, timeout=10)
            for _ in range(5):  # keep-alive requests on one connection
                start = time.perf_counter()
                conn.request("POST", "/v1/predict", body, {"Content-Type": ctype})
                assert conn.getresponse().read()
                latencies.append((time.perf_counter() - start) * 1000)
            conn.close()
    assert statistics.median(latencies) < 25, latencies  # was ~45 ms with Nagle
