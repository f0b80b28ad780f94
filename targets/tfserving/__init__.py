"""TensorFlow Serving (the paper's architecture d): the official image serving the SavedModel.

No TF Serving binary installs on a plain Python host, so this target runs only as a container
(``docker-compose.yml`` service ``tfserving``); the request formats live in
:mod:`targets.tfserving.protocol`.
"""
