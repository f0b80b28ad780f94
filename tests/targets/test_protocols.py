"""The client protocols: requests built from images, answers read back (no server needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from targets.protocols import Endpoint, get_protocol
from targets.protocols.v2 import HEADER_LENGTH, grpc_output, rest_output

IMAGES = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
SCORES = np.eye(10, dtype=np.float32)[[2, 7, 4]]
ENDPOINT = Endpoint(protocol="v2-rest", base_url="http://127.0.0.1:1", model_name="m",
                    input_name="x", output_name="y")  # fmt: skip


def test_v2_json_request_and_answer() -> None:
    v2 = get_protocol("v2-rest")
    body, headers = v2.encode(IMAGES, "json", endpoint=ENDPOINT)
    doc = json.loads(body)
    (tensor,) = doc["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("x", "FP32", [3, 32, 32, 3])
    assert tensor["data"][:3] == IMAGES.ravel()[:3].astype(float).tolist()
    assert doc["outputs"] == [{"name": "y"}] and headers["Content-Type"] == "application/json"
    answer = json.dumps({"outputs": [{"name": "y", "datatype": "FP32", "shape": [3, 10],
                                      "data": SCORES.ravel().tolist()}]}).encode()  # fmt: skip
    assert v2.classes(answer, ENDPOINT) == [2, 7, 4]
    assert v2.predict_path(ENDPOINT) == "/v2/models/m/infer"


def test_v2_binary_extension_both_ways() -> None:
    v2 = get_protocol("v2-rest")
    body, headers = v2.encode(IMAGES, "binary", endpoint=ENDPOINT)
    length = int(headers[HEADER_LENGTH])
    header = json.loads(body[:length])
    size = header["inputs"][0]["parameters"]["binary_data_size"]
    assert size == IMAGES.size * 4 and len(body) == length + size
    raw = np.frombuffer(body[length:], dtype="<f4").reshape(IMAGES.shape)
    assert (raw == IMAGES).all()
    assert header["outputs"] == [{"name": "y", "parameters": {"binary_data": True}}]
    # the answer: JSON part, then the raw output bytes (read without the HTTP header)
    spec = {"name": "y", "datatype": "FP32", "shape": [3, 10],
            "parameters": {"binary_data_size": SCORES.nbytes}}  # fmt: skip
    out = json.dumps({"outputs": [spec]})
    answer = out.encode() + SCORES.astype("<f4").tobytes()
    assert (rest_output(answer, "y") == SCORES).all()
    assert v2.encode(IMAGES, "base64", endpoint=ENDPOINT)[0] == body  # raw pixels either way
    with pytest.raises(ValueError, match="load.encoding"):
        v2.encode(IMAGES, "jpeg")
    with pytest.raises(ValueError, match="no output 'z'"):
        rest_output(answer, "z")
    with pytest.raises(ValueError, match="not a v2 inference answer"):
        rest_output(b'{"error": "bad"}')


def test_v2_grpc_messages() -> None:
    from tritonclient.grpc import service_pb2

    v2 = get_protocol("v2-grpc")
    endpoint = ENDPOINT.model_copy(update={"protocol": "v2-grpc"})
    body, headers = v2.encode(IMAGES, "json", endpoint=endpoint)
    request = service_pb2.ModelInferRequest.FromString(body)
    assert request.model_name == "m" and request.inputs[0].name == "x"
    assert list(request.inputs[0].shape) == [3, 32, 32, 3] and headers == {}
    assert np.frombuffer(request.raw_input_contents[0], "<f4").size == IMAGES.size
    response = service_pb2.ModelInferResponse(model_name="m")
    out = response.outputs.add()
    out.name, out.datatype = "y", "FP32"
    out.shape.extend([3, 10])
    response.raw_output_contents.append(SCORES.astype("<f4").tobytes())
    assert (grpc_output(response.SerializeToString(), "y") == SCORES).all()
    assert v2.classes(response.SerializeToString(), endpoint) == [2, 7, 4]


def test_servecap_sends_base64_for_binary_and_every_protocol_states_its_encodings() -> None:
    servecap = get_protocol("servecap")
    assert servecap.encode(IMAGES, "binary") == servecap.encode(IMAGES, "base64")
    with pytest.raises(ValueError, match="sends"):
        get_protocol("tfserving-rest").encode(IMAGES, "jpeg")
    with pytest.raises(ValueError, match="did you mean 'v2-rest'"):
        get_protocol("v2-res")


def test_image_upload_sends_the_file_as_the_body_or_a_form_field() -> None:
    import io
    from email.parser import BytesParser

    from PIL import Image

    upload = get_protocol("image-upload")
    raw = Endpoint(protocol="image-upload", base_url="http://127.0.0.1:1")
    jpeg = io.BytesIO()
    Image.fromarray(IMAGES[0]).save(jpeg, format="JPEG")
    body, headers = upload.encode(IMAGES[:1], "file", [jpeg.getvalue()], endpoint=raw)
    assert body == jpeg.getvalue() and headers["Content-Type"] == "image/jpeg"
    png, headers = upload.encode(IMAGES[:1], "png", endpoint=raw)
    assert headers["Content-Type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), IMAGES[0])  # lossless
    form = raw.model_copy(update={"upload_field": "file", "predict_path": "/classify"})
    body, headers = upload.encode(IMAGES[:1], "file", [jpeg.getvalue()], endpoint=form)
    assert upload.predict_path(form) == "/classify" and upload.predict_path(raw) == "/v1/predict"
    message = BytesParser().parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
    )
    (part,) = message.get_payload()
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_payload(decode=True) == jpeg.getvalue()
    with pytest.raises(ValueError, match="one image per request"):
        upload.encode(IMAGES[:2], "png", endpoint=raw)


def test_image_upload_reads_scores_or_class_ids_from_a_named_field() -> None:
    upload = get_protocol("image-upload")
    scores = Endpoint(protocol="image-upload", base_url="http://127.0.0.1:1",
                      output_name="result.scores", output_kind="logits")  # fmt: skip
    answer = json.dumps({"result": {"scores": [-1.0, 3.5, 0.2]}}).encode()
    assert upload.classes(answer, scores) == [1]
    ids = scores.model_copy(update={"output_name": "label", "output_kind": "class_id"})
    assert upload.classes(b'{"label": 7}', ids) == [7]
    with pytest.raises(ValueError, match="answer has no 'label'"):
        upload.classes(b'{"class": 7}', ids)
