"""TF Serving's request and response formats, as its documentation gives them.

REST (``POST /v1/models/<name>:predict``), row format::

    {"signature_name": "serving_default", "instances": [<32x32x3 nested lists>, ...]}
    -> {"predictions": [[10 floats], ...]}

gRPC (``tensorflow.serving.PredictionService/Predict``): a ``PredictRequest`` whose
``inputs["images"]`` is a float32 ``TensorProto`` [n,32,32,3]; the answer's
``outputs["probabilities"]`` is float32 [n,10].

Health (REST): ``GET /v1/models/<name>`` -> ``model_version_status[].state == "AVAILABLE"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from targets.common.loopback import RefusedAnswer, http_get
from targets.inputs import CIFAR_INPUT, CNN_INPUT_NAME, CNN_MODEL_NAME, CNN_OUTPUT_NAME, InputSpec
from targets.protocols.base import (
    Discovery,
    Endpoint,
    Headers,
    Protocol,
    grpc_unary,
    image_shape,
)

MODEL_NAME = CNN_MODEL_NAME
SIGNATURE = "serving_default"
INPUT_NAME = CNN_INPUT_NAME
OUTPUT_NAME = CNN_OUTPUT_NAME
GRPC_METHOD = "/tensorflow.serving.PredictionService/Predict"


def rest_predict_path(model: str = MODEL_NAME) -> str:
    return f"/v1/models/{model}:predict"


def rest_status_path(model: str = MODEL_NAME) -> str:
    return f"/v1/models/{model}"


def discover(endpoint: Endpoint, timeout_s: float = 5.0) -> Discovery:
    """The serving signature from ``GET /v1/models/<model>/metadata`` (REST port)."""
    model = endpoint.model_name or MODEL_NAME
    try:
        status, body = http_get(f"{endpoint.base_url}/v1/models/{model}/metadata", timeout_s)
        doc: Any = orjson.loads(body) if status == 200 else {}
        signature = doc["metadata"]["signature_def"]["signature_def"][SIGNATURE]
        inputs, outputs = signature["inputs"], signature["outputs"]
    except RefusedAnswer:
        raise  # a redirect, or metadata past the cap: said, not taken as silence
    except (OSError, ValueError, KeyError, TypeError):
        return Discovery()
    if len(inputs) != 1 or not outputs:
        return Discovery()
    (name, tensor), = inputs.items()  # fmt: skip
    out_name = OUTPUT_NAME if OUTPUT_NAME in outputs else sorted(outputs)[0]

    def dims(spec: Any) -> list[int]:
        return [int(d.get("size", -1)) for d in spec.get("tensor_shape", {}).get("dim", [])]

    out_dims = dims(outputs[out_name])
    dtype = "uint8" if str(tensor.get("dtype", "")).startswith(("DT_UINT", "DT_INT")) else "float32"
    return Discovery(
        input_name=name, shape=image_shape(dims(tensor)), dtype=dtype, output_name=out_name,
        classes=out_dims[-1] if out_dims and out_dims[-1] > 0 else None,
    )  # fmt: skip


def rest_request(images: np.ndarray, spec: InputSpec = CIFAR_INPUT) -> bytes:
    """The row-format request of ``images`` (uint8 pixels) as the model's input values."""
    instances = spec.tensor(images).tolist()
    return orjson.dumps({"signature_name": SIGNATURE, "instances": instances})


def rest_probabilities(body: bytes) -> np.ndarray:
    """The probabilities of a REST answer; ValueError when it is not a predict answer."""
    doc: Any = orjson.loads(body)
    if not isinstance(doc, dict) or "predictions" not in doc:
        raise ValueError(f"not a TF Serving predict answer: {str(doc)[:200]}")
    probs = np.asarray(doc["predictions"], dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != 10:
        raise ValueError(f"predictions must be [n,10], got {list(probs.shape)}")
    return probs


def rest_is_available(body: bytes) -> bool:
    doc: Any = orjson.loads(body)
    states = [s.get("state") for s in doc.get("model_version_status", [])]
    return "AVAILABLE" in states


def grpc_request(
    images: np.ndarray, model: str = MODEL_NAME, spec: InputSpec = CIFAR_INPUT,
    input_name: str = INPUT_NAME,
) -> bytes:  # fmt: skip
    """A serialized ``PredictRequest`` (imports tensorflow-serving-api, hence TensorFlow)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    uint8 = spec.dtype == "uint8"
    arr = spec.tensor(images) if uint8 else spec.tensor(images).astype("<f4")
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in arr.shape]
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    dtype = types_pb2.DT_UINT8 if uint8 else types_pb2.DT_FLOAT
    tensor = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=arr.tobytes())
    request.inputs[input_name].CopyFrom(tensor)
    return bytes(request.SerializeToString())


def grpc_probabilities(response: bytes, output_name: str = OUTPUT_NAME) -> np.ndarray:
    from tensorflow_serving.apis import predict_pb2

    answer = predict_pb2.PredictResponse.FromString(response)
    if output_name not in answer.outputs:
        raise ValueError(f"answer has no '{output_name}' output: {list(answer.outputs)}")
    tensor = answer.outputs[output_name]
    dims = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype="<f4")
    else:
        values = np.asarray(tensor.float_val, dtype=np.float32)
    return values.reshape(dims)


class TFServingRest(Protocol):
    """TF Serving's REST predict API (row format)."""

    name = "tfserving-rest"

    def predict_path(self, endpoint: Endpoint) -> str:
        return rest_predict_path(endpoint.model_name or MODEL_NAME)

    def health_path(self, endpoint: Endpoint) -> str | None:
        return rest_status_path(endpoint.model_name or MODEL_NAME)

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
        return rest_request(images, spec), {"Content-Type": "application/json"}

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        return rest_probabilities(answer)


class TFServingGrpc(Protocol):
    """TF Serving's gRPC ``PredictionService/Predict``."""

    name = "tfserving-grpc"
    transport = "grpc"
    grpc_method = GRPC_METHOD

    def health_path(self, endpoint: Endpoint) -> str | None:
        return rest_status_path(endpoint.model_name or MODEL_NAME)  # the REST port

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
        if endpoint is None:
            return grpc_request(images), {}
        model = endpoint.model_name or MODEL_NAME
        return grpc_request(images, model, endpoint.input, endpoint.input_name), {}

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        return grpc_probabilities(answer, endpoint.output_name if endpoint else OUTPUT_NAME)

    def infer(
        self, endpoint: Endpoint, body: bytes, headers: Headers, timeout_s: float = 30.0
    ) -> bytes:
        return grpc_unary(endpoint, self.grpc_method, body, timeout_s)
