"""Request bodies for the load generator, encoded once before the load starts.

Kept apart from the Locust users so the orchestrator can build (and so validate) the bodies
without importing Locust, whose import monkey-patches the whole process with gevent.
"""

from __future__ import annotations

from loadtests.runconfig import LoadRunConfig
from targets.common.dataset import load_jpeg_bytes, load_split
from targets.common.payload import JSON, encode_request
from targets.tfserving import protocol as tfs


def build_bodies(config: LoadRunConfig) -> tuple[list[bytes], str]:
    """Pre-encode the request bodies; returns (bodies, content type) for the run's client.

    Each body carries ``images_per_request`` consecutive images of a seeded selection of
    ``image_pool`` test images.
    """
    plan = config.plan
    count = max(plan.image_pool, plan.images_per_request)
    test = load_split("test", config.data_dir, limit=count, seed=config.seed)
    files = None
    if plan.encoding == "jpeg" and config.client in ("predict", "jobqueue"):
        files, _ = load_jpeg_bytes("test", config.data_dir, limit=count, seed=config.seed)
    n = plan.images_per_request
    bodies: list[bytes] = []
    content_type = JSON
    for start in range(0, len(test.images) - n + 1, n):
        images = test.images[start : start + n]
        if config.client == "tfserving-rest":
            bodies.append(tfs.rest_request(images))
        elif config.client == "tfserving-grpc":
            bodies.append(tfs.grpc_request(images))
            content_type = "application/grpc"
        else:
            jpeg = files[start : start + n] if files is not None else None
            body, content_type = encode_request(images, plan.encoding, jpeg)
            bodies.append(body)
    return bodies, content_type
