"""An independent gRPC client for :mod:`benchmarks.fidelity`: ``tritonclient.grpc``, threads.

::

    python -m benchmarks.threaded_grpc --url 127.0.0.1:8302 --model cifar10_cnn \\
        --body request.bin --threads 8 --duration-s 10 --out requests.json

The plain way to load a v2 (Open Inference Protocol) gRPC server from Python: one
``InferenceServerClient`` (its own channel) per thread, each thread sending ``infer`` calls
one after another (a closed loop, as servecap's users). The request is rebuilt with
tritonclient's own ``InferInput`` from the tensor in servecap's serialized ``ModelInferRequest``
(``--body``), so both send the same images. No gevent, no Locust: native threads, the gRPC
C core's own polling. Each request is timed from just before ``infer`` to just after it.
Writes one JSON object to ``--out``: per request its start time (s since the epoch), latency
(ms) and whether it succeeded.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def inputs_of(body: bytes) -> tuple[str, np.ndarray, list[str]]:
    """(input name, tensor, output names) of a serialized ``ModelInferRequest``."""
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import triton_to_np_dtype

    request = service_pb2.ModelInferRequest.FromString(body)
    (tensor,) = request.inputs
    dtype = triton_to_np_dtype(tensor.datatype)
    data = np.frombuffer(request.raw_input_contents[0], dtype=dtype).reshape(list(tensor.shape))
    return tensor.name, data, [o.name for o in request.outputs]


def drive(url: str, model: str, body: bytes, duration_s: float, rows: list[Any]) -> None:
    """One thread: a client of its own, requests one after another until the time is up."""
    import tritonclient.grpc as triton

    name, data, outputs = inputs_of(body)
    client = triton.InferenceServerClient(url)
    tensor = triton.InferInput(name, list(data.shape), triton.np_to_triton_dtype(data.dtype))
    tensor.set_data_from_numpy(data)
    wanted = [triton.InferRequestedOutput(o) for o in outputs] or None
    end = time.monotonic() + duration_s
    try:
        while time.monotonic() < end:
            sent = time.time()
            start = time.perf_counter()
            try:
                result = client.infer(model, [tensor], outputs=wanted, client_timeout=30)
                ok = result.as_numpy(outputs[0]) is not None if outputs else True
            except triton.InferenceServerException:
                ok = False
            rows.append((sent, (time.perf_counter() - start) * 1000, ok))
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", required=True, help="host:port of the gRPC server")
    parser.add_argument("--model", required=True)
    parser.add_argument("--body", type=Path, required=True,
                        help="a serialized ModelInferRequest (servecap's body)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True, help="where the requests go (JSON)")
    args = parser.parse_args()
    body = args.body.read_bytes()
    rows: list[Any] = []
    threads = [threading.Thread(target=drive, args=(args.url, args.model, body,
                                                    args.duration_s, rows))
               for _ in range(args.threads)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    args.out.write_text(json.dumps({"requests": [{"ts": ts, "latency_ms": ms, "ok": ok}
                                                 for ts, ms, ok in rows]}))  # fmt: skip


if __name__ == "__main__":
    main()
