"""The app factories of servecap's own servers, as their servers' command lines name them.

Each server's code lives in its kind's folder; the chains run the same servers behind Django,
so the names are defined here once, for every kind that starts one.
"""

FASTAPI_APP = "targets.fastapi.app:create_app"
"""uvicorn ``--factory``: the FastAPI adapter over :mod:`targets.common.service`."""
FLASK_APP = "targets.flask.app:create_app()"
"""gunicorn: the Flask adapter over :mod:`targets.common.service`."""
DJANGO_APP = "targets.django_embedded.wsgi:create_app()"
"""gunicorn: Django, embedded (the model in each worker) or forwarding to a model server."""
