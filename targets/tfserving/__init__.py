"""TensorFlow Serving (the paper's architecture d): the official image serving the SavedModel.

No TF Serving binary installs on a plain Python host, so this target runs only as a container
(``docker-compose.yml`` service ``tfserving``); its declaration is
:mod:`targets.tfserving.kind`, its request formats :mod:`targets.protocols.tfserving`.
"""
