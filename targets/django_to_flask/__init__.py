"""Chain: client -> nginx -> gunicorn -> Django (forward mode) -> JSON over HTTP -> Flask server.

The paper's architecture b. Its declaration: :mod:`targets.django_to_flask.kind`.
"""
