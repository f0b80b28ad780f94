"""How the harness reads MLServer's Prometheus metrics (``/metrics`` on its metrics port).

================================  =====================================  ====================
server_metrics column             MLServer sample                        from
================================  =====================================  ====================
requests                          ``model_infer_request_success_total``  MLServer's data plane
inferences (images run)           ``servecap_batch_images_sum``          the runtime
executions (model calls)          ``servecap_batch_images_count``        the runtime
model_s                           ``servecap_model_seconds_sum``         the runtime
queue_s                           not exposed
================================  =====================================  ====================

The runtime's two histograms are MLServer custom metrics (``mlserver.log``), summed over its
parallel workers. MLServer's adaptive batcher does not say how many requests it merged into a
model call, and MLServer has no queue-time metric: with batching on, neither the per-request
model time nor the queue time is known (``model_s`` is left out then; without batching each
request is one model call, so the per-call time is the request's).
"""

from __future__ import annotations

from targets.common.v2_runtime import BATCH_METRIC, MODEL_TIME_METRIC
from targets.kind import MetricsSource

REQUESTS_METRIC = "model_infer_request_success"


def source(url: str, batching: bool) -> MetricsSource:
    """MLServer's metrics at ``url`` (its metrics port's ``/metrics``)."""
    return MetricsSource(
        url=url,
        requests=REQUESTS_METRIC,
        inferences=f"{BATCH_METRIC}_sum",
        executions=f"{BATCH_METRIC}_count",
        model_time=None if batching else f"{MODEL_TIME_METRIC}_sum",
    )
