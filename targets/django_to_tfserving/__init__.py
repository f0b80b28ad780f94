"""Chain: client -> nginx -> gunicorn -> Django (forward mode) -> JSON (REST) -> TF Serving.

The paper's architecture d. TF Serving runs only as a container (``--launcher docker``); the
Django side is :mod:`targets.common.forward` with ``SERVECAP_UPSTREAM_PROTOCOL=tfserving-rest``.
"""
