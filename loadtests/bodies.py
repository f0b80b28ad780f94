"""Request bodies for the load generator, encoded once before the load starts.

Kept apart from the Locust users so the orchestrator can build (and so validate) the bodies
without importing Locust, whose import monkey-patches the whole process with gevent.
"""

from __future__ import annotations

from loadtests.runconfig import LoadRunConfig
from targets.common.dataset import load_jpeg_bytes, load_split
from targets.common.payload import encode_request


def build_bodies(config: LoadRunConfig) -> tuple[list[bytes], str]:
    """Pre-encode the request bodies once, so the generator spends no CPU on encoding."""
    plan = config.plan
    count = plan.image_pool
    test = load_split("test", config.data_dir, limit=count, seed=config.seed)
    files = None
    if plan.encoding == "jpeg":
        files, _ = load_jpeg_bytes("test", config.data_dir, limit=count, seed=config.seed)
    bodies: list[bytes] = []
    content_type = "application/json"
    n = plan.images_per_request
    for start in range(0, max(count - n + 1, 1), n):
        images = test.images[start : start + n]
        jpeg = files[start : start + n] if files is not None else None
        body, content_type = encode_request(images, plan.encoding, jpeg)
        bodies.append(body)
    return bodies, content_type
