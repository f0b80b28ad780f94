"""Server-side metrics of servecap's Python servers, in Prometheus' text format (``/metrics``).

What a load test cannot see from outside, per worker process and summed over them (with
several workers, ``prometheus_client``'s multiprocess mode: each process writes its values
under ``PROMETHEUS_MULTIPROC_DIR``, which the launch plan sets to a fresh private folder):

=====================================  ========================================================
``servecap_requests_in_flight``        requests admitted and not answered (live processes)
``servecap_inference_requests_total``  requests that reached the model
``servecap_inference_images_total``    images the model ran
``servecap_inference_batches_total``   model calls (each a batch of one or more requests)
``servecap_queue_seconds``             per request: wait from decoded to its model call
``servecap_model_seconds``             per request: the model call it was part of
``servecap_batch_size``                images per model call
=====================================  ========================================================

The harness scrapes these at its sampling interval (:data:`SOURCE` maps them onto the stage
figures: mean batch size, queue and model time per request); Triton's own metrics map the
same way (``targets/triton/kind.py``).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from targets.common.settings import METRICS_DIR_ENV
from targets.kind import MetricsSource

TIME_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

IN_FLIGHT = Gauge(
    "servecap_requests_in_flight", "Requests admitted, not yet answered",
    multiprocess_mode="livesum",
)  # fmt: skip
REQUESTS = Counter("servecap_inference_requests", "Requests that reached the model")
IMAGES = Counter("servecap_inference_images", "Images the model ran")
BATCHES = Counter("servecap_inference_batches", "Model calls")
QUEUE = Histogram(
    "servecap_queue_seconds", "Per request: wait before its model call", buckets=TIME_BUCKETS_S
)
MODEL = Histogram(
    "servecap_model_seconds", "Per request: the model call it was part of", buckets=TIME_BUCKETS_S
)
BATCH_SIZE = Histogram("servecap_batch_size", "Images per model call", buckets=BATCH_BUCKETS)


def source(url: str, prefix: str = "") -> MetricsSource:
    """How the harness reads a servecap Python server's ``/metrics`` at ``url``; ``prefix``:
    what a framework's exporter puts before the names (Ray: ``ray_``)."""
    return MetricsSource(
        url=url,
        requests=f"{prefix}servecap_inference_requests_total",
        inferences=f"{prefix}servecap_inference_images_total",
        executions=f"{prefix}servecap_inference_batches_total",
        queue_time=f"{prefix}servecap_queue_seconds_sum",
        model_time=f"{prefix}servecap_model_seconds_sum",
        in_flight=f"{prefix}servecap_requests_in_flight",
    )


def observe_request(queue_s: float, model_s: float) -> None:
    REQUESTS.inc()
    QUEUE.observe(queue_s)
    MODEL.observe(model_s)


def observe_batch(images: int) -> None:
    BATCHES.inc()
    IMAGES.inc(images)
    BATCH_SIZE.observe(images)


def exposition() -> tuple[bytes, str]:
    """The metrics of every worker process of this server, and their content type."""
    if os.environ.get(METRICS_DIR_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
