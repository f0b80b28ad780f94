"""The job function the workers run: classify the images packed in one job.

A :class:`~targets.jobqueue.worker.BatchWorker` computes a whole batch of jobs in one model call
before it performs them, and leaves each job's outcome in :data:`PRECOMPUTED`; the function then
only hands that outcome to RQ. Run by any other worker it predicts on its own, with the model
named by ``SERVECAP_MODEL_PATH`` loaded once per process.
"""

from __future__ import annotations

import threading
from typing import Any

from rq import get_current_job

from targets.common.payload import IMAGE_SHAPE
from targets.common.service import Model
from targets.jobqueue.common import input_key, result_dict, unpack_images

Outcome = dict[str, list[int] | list[list[float]]] | BaseException
PRECOMPUTED: dict[str, Outcome] = {}
"""job id -> its result or the exception to raise, filled by the batch worker just before."""

_predictor: Model | None = None
_lock = threading.Lock()


def set_predictor(model: Model | None) -> None:
    """Use ``model`` for jobs run outside a batch (the worker sets the one it loaded)."""
    global _predictor
    _predictor = model


def predictor() -> Model:
    """The process's model, loaded on first use if no worker set one."""
    global _predictor
    with _lock:
        if _predictor is None:
            from targets.common.model import Predictor  # TensorFlow: only in workers
            from targets.jobqueue.common import JobQueueSettings

            settings = JobQueueSettings()
            _predictor = Predictor(settings.model_path, settings.input_range)
        return _predictor


def classify(dtype: str, count: int) -> dict[str, Any]:
    """``{"classes": [...], "probabilities": [[...]]}`` for the job's ``count`` packed images
    (stored under the job's input key)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("classify runs only as an RQ job (its images are in Redis)")
    if job.id in PRECOMPUTED:
        outcome = PRECOMPUTED.pop(job.id)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    data = job.connection.get(input_key(job.origin, job.id))
    model = predictor()
    shape = getattr(getattr(model, "input", None), "shape", IMAGE_SHAPE)
    images = unpack_images(data, dtype, count, shape)
    return result_dict(model.predict(images), getattr(model, "version", None))
