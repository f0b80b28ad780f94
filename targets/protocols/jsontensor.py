"""``json-tensor``: the images as one JSON array under the input's name, the scores back as a
JSON array, as typed model-serving APIs take a tensor argument (BentoML's ``np.ndarray``).

``POST <predict_path>`` (default ``/predict``) with ``{"<input_name>": [n, h, w, c] pixel values
0..255}``; the answer is the scores ``[n, classes]`` as a JSON array, or an object holding them
under ``output_name`` (a dotted name reaches into objects). One encoding: ``json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from targets.protocols.base import Endpoint, Headers, Protocol
from targets.protocols.upload import field

DEFAULT_PATH = "/predict"


class JsonTensor(Protocol):
    name = "json-tensor"
    encodings = ("json",)

    def predict_path(self, endpoint: Endpoint) -> str:
        return endpoint.predict_path or DEFAULT_PATH

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        name = endpoint.input_name if endpoint is not None else "images"
        pixels = np.asarray(images, dtype=np.uint8)
        return orjson.dumps({name: pixels.tolist()}), {"Content-Type": "application/json"}

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        try:
            doc: Any = orjson.loads(answer)
        except orjson.JSONDecodeError as err:
            raise ValueError(f"answer is not JSON: {answer[:200]!r}") from err
        if isinstance(doc, dict):
            doc = field(doc, endpoint.output_name if endpoint is not None else "probabilities")
        scores = np.asarray(doc, dtype=np.float32)
        if scores.ndim != 2:
            raise ValueError(f"scores must be [n, classes], got {list(scores.shape)}")
        return scores
