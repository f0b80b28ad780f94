"""Schema-driven fuzzing in process, 1,000 inputs each: the payload parser every Python target
decodes with, and the serving core behind every framework adapter (with a fake model).

The parser either returns a batch of the model's shape with pixel values in 0..255, or raises
:class:`PayloadError` carrying a 4xx status; nothing else escapes it. The service answers every
input with a status below 500, and a valid request afterwards with 200. The same bodies go to
each real stack (100 per stack) in tests/targets/test_fuzz.py.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings

from targets.common.payload import IMAGE_SHAPE, PayloadError, decode_request, encode_request
from targets.common.service import InferenceService
from targets.common.settings import ServerSettings
from tests.fakes import FakeModel
from tests.fuzz_bodies import MAX_BODY, bodies, content_types

EXAMPLES = 1000
MAX_BATCH = 16
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=SLOW_OK
)
SERVICE = InferenceService(
    FakeModel(),
    ServerSettings(max_body_bytes=MAX_BODY, max_batch=MAX_BATCH),  # type: ignore[arg-type]
)


@FUZZ
@given(body=bodies, ctype=content_types)
def test_the_parser_returns_a_batch_or_a_4xx(body: bytes, ctype: str) -> None:
    try:
        images = decode_request(body, ctype, max_batch=MAX_BATCH)
    except PayloadError as err:
        assert 400 <= err.status < 500, (err.status, err.message)
        return
    assert images.dtype == np.float32 and images.shape[1:] == IMAGE_SHAPE
    assert 1 <= len(images) <= MAX_BATCH
    assert float(images.min()) >= 0 and float(images.max()) <= 255


@FUZZ
@given(body=bodies, ctype=content_types)
def test_the_service_answers_every_input_below_500(body: bytes, ctype: str) -> None:
    reply = SERVICE.predict(body, ctype)
    assert reply.status < 500, (reply.status, reply.body[:200], ctype, body[:120])
    assert SERVICE.limiter.in_flight == 0  # every admission released


def test_the_service_still_serves_after_fuzzing() -> None:
    body, ctype = encode_request(np.zeros((1, *IMAGE_SHAPE), np.uint8), "json")
    assert SERVICE.predict(body, ctype).status == 200
