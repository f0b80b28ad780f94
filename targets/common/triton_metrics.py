"""How the harness reads Triton's Prometheus metrics (``/metrics`` on its metrics port): the
one definition, used by the ``triton`` kind and by ``external`` targets that are Tritons
(``prometheus_format: triton``)."""

from __future__ import annotations

from targets.kind import MetricsSource


def source(url: str) -> MetricsSource:
    """Triton's counters at ``url`` (times in microseconds)."""
    return MetricsSource(
        url=url,
        requests="nv_inference_request_success",
        inferences="nv_inference_count",
        executions="nv_inference_exec_count",
        queue_time="nv_inference_queue_duration_us",
        model_time="nv_inference_compute_infer_duration_us",
        time_unit_s=1e-6,
        in_flight="nv_inference_pending_request_count",
    )
