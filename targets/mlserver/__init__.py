"""Seldon MLServer serving servecap's SavedModel (kind ``mlserver``).

MLServer's own server, in its own environment (``setup.sh``, ``VENV/mlserver``), runs the model
through a custom runtime (``runtime.py``, an ``MLModel``) with its adaptive batcher and parallel
workers. Clients speak the Open Inference Protocol (:mod:`targets.protocols.v2`), over HTTP
(JSON) or gRPC. Declaration: :mod:`targets.mlserver.kind`; start-up:
:mod:`targets.mlserver.launch` (its settings: :mod:`targets.mlserver.repository`).
"""
