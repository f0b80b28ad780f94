"""Memory bound benchmark: how far hostile request bodies push a Python target's memory.

Run on demand (not in CI)::

    .venv/bin/python -m benchmarks.memory_bound [--kind fastapi] [--concurrency 8]

Starts the target with the process launcher (the quick-start model), then for each body below
sends ``--repeat`` requests, ``--concurrency`` at a time, while a thread samples the resident
memory (RSS) of the target's whole process tree every 5 ms. Printed per body: its size, the
answers' statuses, and the peak RSS increase over the idle target, also as a multiple of the
body size and per concurrent request. Each body is measured on a fresh target (the allocator
keeps freed memory, so a second measurement on the same process would read low). Bodies: a
JSON list of zeros of 1 MB and of 16 MB (refused before parsing: more values than
``max_batch`` images), 1 MB of JSON floats, deeply nested JSON, a decompression bomb (a
600-byte JPEG claiming 30000x30000), and a valid batch of 256 images for comparison.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import http.client
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import psutil

from benchmarks.bodies import deep_json, jpeg_declaring, zeros_list
from targets.common.payload import encode_request
from targets.common.settings import DEFAULT_MODEL_PATH
from targets.launchers.base import free_port
from targets.launchers.process import ProcessLauncher
from targets.protocols.servecap import PREDICT_PATH
from targets.registry import target_config

MB = 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bodies() -> dict[str, tuple[bytes, str]]:
    json_type = "application/json"
    floats = b'{"images": [' + b"0.5," * (MB // 4 - 4) + b"0.5]}"
    bomb = jpeg_declaring(30000, 30000)
    valid, _ = encode_request(np.zeros((256, 32, 32, 3), np.uint8), "json")
    return {
        "zeros 1 MB": (zeros_list(MB), json_type),
        "zeros 16 MB": (zeros_list(16 * MB - 64), json_type),
        "floats 1 MB": (floats, json_type),
        "deep 1 MB": (deep_json(MB // 2 - 16), json_type),
        "bomb (raw)": (bomb, "image/jpeg"),
        "bomb (b64)": (orjson.dumps({"images_jpeg_b64": [b64(bomb)]}), json_type),
        "valid 256 images": (valid, json_type),
    }


class PeakRss:
    """Samples the RSS of a process tree every 5 ms in a thread; ``peak`` is the highest."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def rss(self) -> int:
        total = 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def post(port: int, body: bytes, ctype: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", PREDICT_PATH, body=body, headers={"Content-Type": ctype})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def measure(kind: str, model: str, body: bytes, ctype: str, concurrency: int,
            repeat: int) -> tuple[float, Counter[int], int]:  # fmt: skip
    """Idle RSS of a fresh target, the statuses of ``repeat`` posts of ``body``, and the
    target's peak RSS while they ran."""
    config = target_config(kind=kind, port=free_port(4), model_path=model, threads=8,
                           ready_timeout_s=120)  # fmt: skip
    logs = Path(tempfile.mkdtemp(prefix="servecap-memory-bound-"))
    with ProcessLauncher().launch("mem", config, logs) as target:
        port = target.config.port
        small, small_type = encode_request(np.zeros((1, 32, 32, 3), np.uint8), "json")
        for _ in range(3):  # first-call allocations out of the way
            post(port, small, small_type)
        idle = PeakRss(target.pids[-1]).rss()
        with (
            PeakRss(target.pids[-1]) as sampler,
            concurrent.futures.ThreadPoolExecutor(concurrency) as pool,
        ):
            statuses = Counter(pool.map(lambda _: post(port, body, ctype), range(repeat)))
    return idle, statuses, sampler.peak


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_bound")
    parser.add_argument("--kind", default="fastapi")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=16)
    args = parser.parse_args()
    print(
        f"{args.kind}: a fresh target per body; {args.repeat} requests of it, "
        f"{args.concurrency} at a time; rise = peak RSS - idle RSS of the target's processes"
    )
    print(f"{'body':<18} {'size MB':>8} {'statuses':<10} {'idle MB':>8} {'rise MB':>8} "
          f"{'rise/body':>9} {'per req':>8}")  # fmt: skip
    for name, (body, ctype) in bodies().items():
        idle, statuses, peak = measure(args.kind, args.model, body, ctype, args.concurrency,
                                       args.repeat)  # fmt: skip
        rise = max(0, peak - idle)
        codes = ",".join(f"{code}x{n}" for code, n in sorted(statuses.items()))
        per_request = rise / (min(args.concurrency, args.repeat) * len(body))
        print(f"{name:<18} {len(body) / MB:8.3f} {codes:<10} {idle / MB:8.0f} {rise / MB:8.1f} "
              f"{rise / len(body):9.1f} {per_request:8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
