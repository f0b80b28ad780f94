"""Request bodies for the load generator, encoded once before the load starts.

Kept apart from the Locust users so the orchestrator can build (and so validate) the bodies
without importing Locust, whose import monkey-patches the whole process with gevent.
"""

from __future__ import annotations

from loadtests.image_files import load_jpeg_bytes
from loadtests.runconfig import LoadRunConfig
from targets.common.dataset import Split, load_split
from targets.common.payload import as_jpeg_files
from targets.protocols.base import Headers


def test_images(config: LoadRunConfig, count: int) -> Split:
    """``count`` test images of the run's dataset, at the target's input size (resized with
    its method when they differ), in the seeded order."""
    return load_split("test", config.data_dir, limit=count, seed=config.seed,
                      spec=config.endpoint.input, classes=config.plan.class_names,
                      resize=True)  # fmt: skip


def test_files(config: LoadRunConfig, count: int) -> list[bytes]:
    """The same images as files (JPEG or PNG as they are; resized ones encoded again)."""
    found, _ = load_jpeg_bytes("test", config.data_dir, limit=count, seed=config.seed,
                               spec=config.endpoint.input, classes=config.plan.class_names,
                               resize=True)  # fmt: skip
    return found


def build_bodies(config: LoadRunConfig) -> tuple[list[bytes], Headers]:
    """Pre-encode the request bodies in the target's protocol; returns (bodies, headers).

    Each body carries ``images_per_request`` consecutive images of a seeded selection of
    ``image_pool`` test images. ValueError when the protocol cannot send the plan's encoding.
    """
    plan = config.plan
    protocol = config.protocol
    protocol.check_encoding(plan.encoding)
    count = max(plan.image_pool, plan.images_per_request)
    test = test_images(config, count)
    files = None
    if plan.encoding == "jpeg":
        files = as_jpeg_files(test_files(config, count))  # PNG files are sent as JPEG files
    elif protocol.uploads_files:
        files = test_files(config, count)  # the files as they are (their own format)
    n = plan.images_per_request
    bodies: list[bytes] = []
    headers: Headers = {}
    for start in range(0, len(test.images) - n + 1, n):
        images = test.images[start : start + n]
        chosen = files[start : start + n] if files is not None else None
        body, headers = protocol.encode(images, plan.encoding, chosen, config.endpoint)
        bodies.append(body)
    return bodies, headers
