"""Django target (the paper's architecture a, and the front tier of b, c and d).

client -> nginx (``port``) -> gunicorn (``app_port``) -> Django. In embedded mode the model is
loaded inside each Django worker process and called as a function; in forward mode
(``SERVECAP_UPSTREAM_URL`` set, see :mod:`targets.common.forward`) Django validates and decodes
the request and forwards the images to a model server. See :mod:`targets.django_embedded.views`
for the endpoints and :mod:`targets.common.django_front` for how it starts.
"""
