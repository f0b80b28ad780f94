"""Chain: client -> nginx -> gunicorn -> Django (forward mode) -> JSON over HTTP -> Fastapi server.

The paper's architecture c. See :mod:`targets.django_to_fastapi.launch`.
"""
