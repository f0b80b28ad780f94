"""How the ``triton`` kind starts: write the model repository, then exec ``tritonserver``.

``python -m targets.triton.launch --prefix DIR --model DIR ...`` writes the repository and
backend folder (:mod:`targets.triton.repository`) and replaces itself with::

    tritonserver --model-repository DIR/models --backend-directory DIR/backends
                 --http-address HOST --http-port PORT
                 --grpc-address 127.0.0.1 --grpc-port G --metrics-address 127.0.0.1
                 --metrics-port M --allow-metrics true --allow-gpu-metrics false
                 --model-control-mode none --strict-readiness true --exit-timeout-secs 10

so the process launcher's group and signals reach Triton itself; its backend stubs are its
children (they also exit by themselves when it dies). Every listener binds the target's host
(HTTP) or loopback (gRPC, metrics); SageMaker and Vertex AI endpoints stay off.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from targets.common.signature import read_signature
from targets.triton.repository import ModelSettings, tritonserver_root, write

EXIT_TIMEOUT_S = 10


def tritonserver_argv(
    binary: Path, models: Path, backends: Path, host: str, port: int, grpc_port: int,
    metrics_port: int,
) -> list[str]:  # fmt: skip
    return [
        str(binary),
        f"--model-repository={models}", f"--backend-directory={backends}",
        f"--http-address={host}", f"--http-port={port}",
        "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1", f"--metrics-port={metrics_port}",
        "--allow-metrics=true", "--allow-gpu-metrics=false",
        "--allow-sagemaker=false", "--allow-vertex-ai=false",
        "--model-control-mode=none", "--strict-readiness=true",
        f"--exit-timeout-secs={EXIT_TIMEOUT_S}", "--log-info=false",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m targets.triton.launch")
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="SavedModel version folder")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--max-batch-size", type=int, required=True)
    parser.add_argument("--max-queue-delay-us", type=int, required=True)
    parser.add_argument("--preferred", default="", help="preferred batch sizes, comma-separated")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--backend-env", type=Path, default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args(argv)
    signature = read_signature(args.model)  # any image classifier: its shape, type, classes
    model = ModelSettings(
        name=args.model_name,
        savedmodel_dir=args.model.resolve(),
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        preferred_batch_sizes=tuple(int(n) for n in args.preferred.split(",") if n),
        instances=args.instances,
        backend_env=args.backend_env,
        input_dims=signature.shape,
        input_dtype="TYPE_UINT8" if signature.dtype == "uint8" else "TYPE_FP32",
        output_dims=(signature.classes or -1,),
        signature_input=signature.input_name,
        signature_output=signature.output_name,
    )
    root = tritonserver_root()
    models, backends = write(args.prefix, model, root)
    command = tritonserver_argv(root / "bin" / "tritonserver", models, backends, args.host,
                                args.port, args.grpc_port, args.metrics_port)  # fmt: skip
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
