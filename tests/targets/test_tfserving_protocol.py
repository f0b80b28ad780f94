"""TF Serving request/response formats, checked against the protos and documented JSON."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from targets.protocols import tfserving as tfs

IMAGES = np.random.default_rng(3).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)


def test_rest_request_is_row_format_with_signature() -> None:
    doc = orjson.loads(tfs.rest_request(IMAGES))
    assert doc["signature_name"] == "serving_default"
    assert np.array_equal(np.asarray(doc["instances"]), IMAGES)
    assert tfs.rest_predict_path() == "/v1/models/cifar10_cnn:predict"


def test_rest_answer_parsing() -> None:
    probs = np.full((2, 10), 0.1, dtype=np.float32)
    out = tfs.rest_probabilities(orjson.dumps({"predictions": probs.tolist()}))
    np.testing.assert_allclose(out, probs)
    with pytest.raises(ValueError, match="not a TF Serving predict answer"):
        tfs.rest_probabilities(b'{"error": "Servable not found"}')
    with pytest.raises(ValueError, match=r"\[n,10\]"):
        tfs.rest_probabilities(b'{"predictions": [[1, 2]]}')


def test_rest_model_status() -> None:
    status = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}
    ok = {"model_version_status": [status]}
    assert tfs.rest_is_available(orjson.dumps(ok))
    loading = {"model_version_status": [{"version": "1", "state": "LOADING"}]}
    assert not tfs.rest_is_available(orjson.dumps(loading))


def test_grpc_request_is_a_valid_predict_request() -> None:
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest.FromString(tfs.grpc_request(IMAGES))
    assert req.model_spec.name == "cifar10_cnn"
    assert req.model_spec.signature_name == "serving_default"
    tensor = req.inputs["images"]
    assert [d.size for d in tensor.tensor_shape.dim] == [2, 32, 32, 3]
    values = np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(2, 32, 32, 3)
    assert np.array_equal(values, IMAGES.astype(np.float32))


@pytest.mark.parametrize("packed", [True, False])
def test_grpc_answer_parsing(packed: bool) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    probs = np.random.default_rng(0).random((3, 10)).astype(np.float32)
    answer = predict_pb2.PredictResponse()
    proto = tf.make_tensor_proto(probs)
    if not packed:  # TF Serving may answer with float_val instead of tensor_content
        proto.ClearField("tensor_content")
        proto.float_val.extend(probs.ravel().tolist())
    answer.outputs["probabilities"].CopyFrom(proto)
    np.testing.assert_allclose(tfs.grpc_probabilities(answer.SerializeToString()), probs)
    with pytest.raises(ValueError, match="no 'probabilities' output"):
        tfs.grpc_probabilities(predict_pb2.PredictResponse().SerializeToString())


def test_batching_files_are_complete() -> None:
    from targets.registry import get_kind

    folder = get_kind("tfserving").folder / "batching"
    files = sorted(folder.glob("*.txt"))
    assert {f.stem for f in files} >= {"default", "latency", "throughput"}
    for path in files:
        text = path.read_text()
        for field in ("max_batch_size", "batch_timeout_micros", "num_batch_threads",
                      "max_enqueued_batches"):  # fmt: skip
            assert f"{field} {{ value: " in text, (path.name, field)


def test_process_launcher_explains_tfserving_needs_docker() -> None:
    from targets.launchers import LaunchError
    from targets.registry import get_kind, target_config

    with pytest.raises(LaunchError, match="--launcher docker"):
        get_kind("tfserving").process_plan("tfs", target_config(kind="tfserving"))
