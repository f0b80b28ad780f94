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

Images go as the model's input tensor (:class:`targets.inputs.InputSpec`: FP32 values in its
range, or UINT8 pixels), shape ``[n, h, w, c]``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import orjson

from targets.common.loopback import RefusedAnswer, http_get
from targets.inputs import CIFAR_INPUT, CNN_INPUT_NAME, CNN_OUTPUT_NAME, InputSpec
from targets.protocols.base import (
    Discovery,
    Endpoint,
    Headers,
    Protocol,
    grpc_unary,
    image_shape,
)

HEALTH_PATH = "/v2/health/ready"
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {"FP32": "<f4", "FP64": "<f8", "UINT8": "u1", "INT32": "<i4", "INT64": "<i8"}


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def model_ready_path(model: str) -> str:
    """Answers 200 once ``model`` is loaded (the server's own ready path may answer before)."""
    return f"/v2/models/{model}/ready"


def metadata_path(model: str) -> str:
    return f"/v2/models/{model}"


def discover(endpoint: Endpoint, timeout_s: float = 5.0) -> Discovery:
    """The model metadata (``GET /v2/models/<model>``, over HTTP): its image input (name,
    shape, datatype) and its output of scores (the one named like the endpoint's, or the
    first)."""
    try:
        status, body = http_get(endpoint.base_url + metadata_path(endpoint.model_name or
                                                                   "model"), timeout_s)  # fmt: skip
        doc: Any = orjson.loads(body) if status == 200 else {}
    except RefusedAnswer:
        raise  # a redirect, or metadata past the cap: said, not taken as silence
    except (OSError, ValueError):
        return Discovery()
    inputs, outputs = doc.get("inputs") or [], doc.get("outputs") or []
    if len(inputs) != 1 or not outputs:
        return Discovery()
    (tensor,) = inputs
    datatype = str(tensor.get("datatype", ""))
    dtype = "uint8" if datatype.startswith(("UINT", "INT")) else "float32"
    named = [o for o in outputs if o.get("name") == endpoint.output_name]
    output = (named or outputs)[0]
    out_dims = [int(d) for d in output.get("shape") or []]
    return Discovery(
        input_name=str(tensor.get("name")), shape=image_shape(tensor.get("shape") or []),
        dtype=dtype, output_name=str(output.get("name")),
        classes=out_dims[-1] if out_dims and out_dims[-1] > 0 else None,
    )  # fmt: skip


def _names(endpoint: Endpoint | None) -> tuple[str, str]:
    if endpoint is None:
        return CNN_INPUT_NAME, CNN_OUTPUT_NAME
    return endpoint.input_name, endpoint.output_name


def _tensor(images: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, str]:
    """The input tensor of ``images`` (uint8 pixels) and its v2 datatype."""
    tensor = spec.tensor(images)
    return (tensor, "UINT8") if spec.dtype == "uint8" else (tensor.astype("<f4"), "FP32")


def rest_request(
    images: np.ndarray, binary: bool, input_name: str = CNN_INPUT_NAME,
    output: str = CNN_OUTPUT_NAME, spec: InputSpec = CIFAR_INPUT,
) -> tuple[bytes, Headers]:  # fmt: skip
    """A v2 HTTP request for ``images`` (JSON tensor, or the binary extension)."""
    tensor, datatype = _tensor(images, spec)
    spec_doc: dict[str, Any] = {
        "name": input_name, "shape": list(tensor.shape), "datatype": datatype,
    }  # fmt: skip
    if not binary:
        spec_doc["data"] = tensor.ravel().tolist()
        doc = {"inputs": [spec_doc], "outputs": [{"name": output}]}
        return orjson.dumps(doc), {"Content-Type": "application/json"}
    raw = tensor.tobytes()
    spec_doc["parameters"] = {"binary_data_size": len(raw)}
    outputs = [{"name": output, "parameters": {"binary_data": True}}]
    doc = {"inputs": [spec_doc], "outputs": outputs}
    header = orjson.dumps(doc)
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + raw, headers


def rest_output(answer: bytes, name: str = CNN_OUTPUT_NAME) -> np.ndarray:
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


def _probabilities(values: np.ndarray, endpoint: Endpoint | None = None) -> np.ndarray:
    if endpoint is not None and endpoint.output_kind == "class_id":
        return values
    if values.ndim != 2:
        raise ValueError(f"scores must be [n, classes], got {list(values.shape)}")
    return values


class V2Rest(Protocol):
    """KServe v2 over HTTP: JSON tensors (``encoding: json``) or the binary tensor extension
    (``binary``, or ``base64``: the same raw pixels)."""

    name = "v2-rest"
    encodings: ClassVar[tuple[str, ...]] = ("json", "binary", "base64")

    def predict_path(self, endpoint: Endpoint) -> str:
        return infer_path(endpoint.model_name or "model")

    def health_path(self, endpoint: Endpoint) -> str | None:
        return HEALTH_PATH

    def discover(self, endpoint: Endpoint, timeout_s: float = 5.0) -> Discovery:
        return discover(endpoint, timeout_s)

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        spec = endpoint.input if endpoint is not None else CIFAR_INPUT
        return rest_request(images, encoding != "json", *_names(endpoint), spec=spec)

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        return _probabilities(rest_output(answer, _names(endpoint)[1]), endpoint)


class V2RestJson(V2Rest):
    """KServe v2 over HTTP with JSON tensors only, for servers without the binary tensor
    extension (MLServer): a run asking for another encoding is refused before it starts."""

    name = "v2-rest-json"
    encodings = ("json",)


def grpc_request(
    images: np.ndarray, model: str, input_name: str = CNN_INPUT_NAME, output: str = CNN_OUTPUT_NAME,
    spec: InputSpec = CIFAR_INPUT,
) -> bytes:  # fmt: skip
    from tritonclient.grpc import service_pb2

    tensor, datatype = _tensor(images, spec)
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor_spec = request.inputs.add()
    tensor_spec.name, tensor_spec.datatype = input_name, datatype
    tensor_spec.shape.extend(tensor.shape)
    request.outputs.add().name = output
    request.raw_input_contents.append(tensor.tobytes())
    return bytes(request.SerializeToString())


def grpc_output(answer: bytes, name: str = CNN_OUTPUT_NAME) -> np.ndarray:
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

    def health_path(self, endpoint: Endpoint) -> str | None:
        return HEALTH_PATH  # the server's HTTP side: Triton, KServe and MLServer have both

    def discover(self, endpoint: Endpoint, timeout_s: float = 5.0) -> Discovery:
        return discover(endpoint, timeout_s)

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        model = (endpoint.model_name if endpoint else None) or "model"
        spec = endpoint.input if endpoint is not None else CIFAR_INPUT
        return grpc_request(images, model, *_names(endpoint), spec=spec), {}

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        return _probabilities(grpc_output(answer, _names(endpoint)[1]), endpoint)

    def infer(
        self, endpoint: Endpoint, body: bytes, headers: Headers, timeout_s: float = 30.0
    ) -> bytes:
        return grpc_unary(endpoint, self.grpc_method, body, timeout_s)
