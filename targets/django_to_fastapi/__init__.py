"""Chain: client -> nginx -> gunicorn -> Django (forward mode) -> JSON over HTTP -> FastAPI server.

The paper's architecture c. Its declaration: :mod:`targets.django_to_fastapi.kind`.
"""
