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

from targets.protocols.base import Endpoint, Headers, Protocol, grpc_unary

MODEL_NAME = "cifar10_cnn"
SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
GRPC_METHOD = "/tensorflow.serving.PredictionService/Predict"


def rest_predict_path(model: str = MODEL_NAME) -> str:
    return f"/v1/models/{model}:predict"


def rest_status_path(model: str = MODEL_NAME) -> str:
    return f"/v1/models/{model}"


def rest_request(images: np.ndarray) -> bytes:
    return orjson.dumps({"signature_name": SIGNATURE, "instances": np.asarray(images).tolist()})


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


def grpc_request(images: np.ndarray, model: str = MODEL_NAME) -> bytes:
    """A serialized ``PredictRequest`` (imports tensorflow-serving-api, hence TensorFlow)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    arr = np.ascontiguousarray(images, dtype="<f4")
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in arr.shape]
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=shape, tensor_content=arr.tobytes()
    )
    request.inputs[INPUT_NAME].CopyFrom(tensor)
    return bytes(request.SerializeToString())


def grpc_probabilities(response: bytes) -> np.ndarray:
    from tensorflow_serving.apis import predict_pb2

    answer = predict_pb2.PredictResponse.FromString(response)
    if OUTPUT_NAME not in answer.outputs:
        raise ValueError(f"answer has no '{OUTPUT_NAME}' output: {list(answer.outputs)}")
    tensor = answer.outputs[OUTPUT_NAME]
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

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        return rest_request(images), {"Content-Type": "application/json"}

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        return rest_probabilities(answer)


class TFServingGrpc(Protocol):
    """TF Serving's gRPC ``PredictionService/Predict``."""

    name = "tfserving-grpc"
    transport = "grpc"
    grpc_method = GRPC_METHOD

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        return grpc_request(images), {}

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        return grpc_probabilities(answer)

    def infer(
        self, endpoint: Endpoint, body: bytes, headers: Headers, timeout_s: float = 30.0
    ) -> bytes:
        return grpc_unary(endpoint, self.grpc_method, body, timeout_s)
