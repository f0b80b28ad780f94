"""servecap's own predict API, spoken by every Python target (:mod:`targets.common.payload`).

``POST /v1/predict`` with ``{"images": ...}`` (json), ``{"images_b64": ...}`` (base64) or
``{"images_jpeg_b64": ...}`` (jpeg) -> ``{"classes": [...], "probabilities": [...]}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from targets.common.loopback import RefusedAnswer, http_get
from targets.common.payload import encode_request
from targets.protocols.base import Discovery, Endpoint, Headers, Protocol, image_shape

PREDICT_PATH = "/v1/predict"
HEALTH_PATH = "/healthz"
MODEL_VERSION_HEADER = "X-Model-Version"
"""On every prediction: the version of the model that answered (recorded per request, so a
model update shows when each version served)."""
INFO_PATH = "/v1/info"


class ServecapProtocol(Protocol):
    name = "servecap"
    encodings = ("json", "base64", "jpeg", "binary")

    def predict_path(self, endpoint: Endpoint) -> str:
        return PREDICT_PATH

    def health_path(self, endpoint: Endpoint) -> str | None:
        return HEALTH_PATH

    def discover(self, endpoint: Endpoint, timeout_s: float = 5.0) -> Discovery:
        """A servecap server's ``/v1/info``: its model's image shape and value range."""
        try:
            status, body = http_get(endpoint.base_url + INFO_PATH, timeout_s)
            doc: Any = orjson.loads(body) if status == 200 else {}
        except RefusedAnswer:
            raise  # a redirect, or metadata past the cap: said, not taken as silence
        except (OSError, ValueError):
            return Discovery()
        shape = image_shape(doc.get("input_shape") or []) if isinstance(doc, dict) else None
        if shape is None:
            return Discovery()
        found = doc.get("input_range")
        value_range = (float(found[0]), float(found[1])) if isinstance(found, list) else None
        return Discovery(shape=shape, range=value_range)

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        raw = "base64" if encoding == "binary" else encoding  # raw pixels: base64 in JSON
        body, content_type = encode_request(images, raw, files if raw == "jpeg" else None)
        return body, {"Content-Type": content_type}

    def check(self, answer: bytes, endpoint: Endpoint | None = None) -> None:
        """Under load a 200 is taken as it is: parsing every answer would cost the generator
        CPU that the servers' own schema tests make unnecessary (verify reads them all)."""

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        doc: Any = orjson.loads(answer)
        if not isinstance(doc, dict) or "probabilities" not in doc:
            raise ValueError(f"not a servecap predict answer: {str(doc)[:200]}")
        probs = np.asarray(doc["probabilities"], dtype=np.float32)
        if probs.ndim != 2:
            raise ValueError(f"probabilities must be [n, classes], got {list(probs.shape)}")
        return probs

    def classes(self, answer: bytes, endpoint: Endpoint | None = None) -> list[int]:
        doc: Any = orjson.loads(answer)
        if not isinstance(doc, dict) or not isinstance(doc.get("classes"), list):
            raise ValueError(f"not a servecap predict answer: {str(doc)[:200]}")
        return [int(c) for c in doc["classes"]]
