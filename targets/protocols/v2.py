"""The Open Inference Protocol (KServe v2), as Triton, KServe and MLServer speak it.

HTTP (``POST /v2/models/<model>/infer``)::

    json     {"inputs": [{"name", "shape", "datatype", "data": [flat numbers]}],
              "outputs": [{"name"}]}  ->  {"outputs": [{"name", "shape", "datatype", "data"}]}
    binary   the binary tensor extension: the JSON header with ``parameters.binary_data_size``
             on the input (and ``binary_data: true`` on the output), then the raw
             little-endian tensor bytes; header ``Inference-Header-Content-Length`` gives the
             JSON part's length, in the request and in the answer (whose raw output bytes
             follow its JSON part the same way)

gRPC (``inference.GRPCInferenceService/ModelInfer``): a ``ModelInferRequest`` whose tensor
travels in ``raw_input_contents`` (as Triton's own clients send it), answered by a
``ModelInferResponse`` with ``raw_output_contents``; messages from ``tritonclient``'s
generated protos. Health: ``GET /v2/health/ready``.

Images go as FP32 pixel values (the model's declared input), shape ``[n, h, w, c]``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from targets.protocols.base import Endpoint, Headers, Protocol, grpc_unary

HEALTH_PATH = "/v2/health/ready"
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {"FP32": "<f4", "FP64": "<f8", "UINT8": "u1", "INT32": "<i4", "INT64": "<i8"}


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def _names(endpoint: Endpoint | None) -> tuple[str, str]:
    if endpoint is None:
        return "images", "probabilities"
    return endpoint.input_name, endpoint.output_name


def _tensor(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images, dtype="<f4")


def rest_request(
    images: np.ndarray, binary: bool, input_name: str = "images", output: str = "probabilities"
) -> tuple[bytes, Headers]:
    """A v2 HTTP request for ``images`` (JSON tensor, or the binary extension)."""
    tensor = _tensor(images)
    spec: dict[str, Any] = {"name": input_name, "shape": list(tensor.shape), "datatype": "FP32"}
    if not binary:
        spec["data"] = tensor.ravel().tolist()
        doc = {"inputs": [spec], "outputs": [{"name": output}]}
        return orjson.dumps(doc), {"Content-Type": "application/json"}
    raw = tensor.tobytes()
    spec["parameters"] = {"binary_data_size": len(raw)}
    doc = {"inputs": [spec], "outputs": [{"name": output, "parameters": {"binary_data": True}}]}
    header = orjson.dumps(doc)
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + raw, headers


def rest_output(answer: bytes, name: str = "probabilities") -> np.ndarray:
    """The named output of a v2 HTTP answer, JSON or binary (the JSON part is read up to its
    end, so the ``Inference-Header-Content-Length`` header is not needed); ValueError when the
    answer is not an inference answer."""
    try:
        doc, end = json.JSONDecoder().raw_decode(answer.decode("latin-1"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"not a v2 inference answer: {answer[:200]!r}") from err
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list):
        raise ValueError(f"not a v2 inference answer: {str(doc)[:200]}")
    offset = end
    for out in outputs:
        size = (out.get("parameters") or {}).get("binary_data_size")
        dtype = DATATYPES.get(out.get("datatype", ""), "<f4")
        if size is not None:
            data = np.frombuffer(answer, dtype=dtype, count=int(size) // np.dtype(dtype).itemsize,
                                 offset=offset)  # fmt: skip
            offset += int(size)
        else:
            data = np.asarray(out.get("data", []), dtype=dtype)
        if out.get("name") == name:
            return data.reshape(out["shape"]).astype(np.float32)
    raise ValueError(f"answer has no output '{name}': {[o.get('name') for o in outputs]}")


def _probabilities(values: np.ndarray) -> np.ndarray:
    if values.ndim != 2:
        raise ValueError(f"scores must be [n, classes], got {list(values.shape)}")
    return values


class V2Rest(Protocol):
    """KServe v2 over HTTP: JSON tensors (``encoding: json``) or the binary tensor extension
    (``binary``, or ``base64``: the same raw pixels)."""

    name = "v2-rest"
    encodings = ("json", "binary", "base64")

    def predict_path(self, endpoint: Endpoint) -> str:
        return infer_path(endpoint.model_name or "model")

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        return rest_request(images, encoding != "json", *_names(endpoint))

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        return _probabilities(rest_output(answer, _names(endpoint)[1]))


def grpc_request(
    images: np.ndarray, model: str, input_name: str = "images", output: str = "probabilities"
) -> bytes:
    from tritonclient.grpc import service_pb2

    tensor = _tensor(images)
    request = service_pb2.ModelInferRequest(model_name=model)
    spec = request.inputs.add()
    spec.name, spec.datatype = input_name, "FP32"
    spec.shape.extend(tensor.shape)
    request.outputs.add().name = output
    request.raw_input_contents.append(tensor.tobytes())
    return bytes(request.SerializeToString())


def grpc_output(answer: bytes, name: str = "probabilities") -> np.ndarray:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(answer)
    for i, out in enumerate(response.outputs):
        if out.name != name:
            continue
        dtype = DATATYPES.get(out.datatype, "<f4")
        if i < len(response.raw_output_contents):
            data = np.frombuffer(response.raw_output_contents[i], dtype=dtype)
        else:
            data = np.asarray(out.contents.fp32_contents, dtype=dtype)
        return data.reshape(list(out.shape)).astype(np.float32)
    raise ValueError(f"answer has no output '{name}': {[o.name for o in response.outputs]}")


class V2Grpc(Protocol):
    """KServe v2 over gRPC, tensors as raw bytes."""

    name = "v2-grpc"
    transport = "grpc"
    encodings = ("binary", "json", "base64")
    """gRPC carries raw tensor bytes whatever the scenario's encoding."""
    grpc_method = GRPC_METHOD

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        model = (endpoint.model_name if endpoint else None) or "model"
        return grpc_request(images, model, *_names(endpoint)), {}

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        return _probabilities(grpc_output(answer, _names(endpoint)[1]))

    def infer(
        self, endpoint: Endpoint, body: bytes, headers: Headers, timeout_s: float = 30.0
    ) -> bytes:
        return grpc_unary(endpoint, self.grpc_method, body, timeout_s)
