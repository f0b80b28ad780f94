"""KServe's Python model server serving servecap's SavedModel (kind ``kserve``).

``kserve.ModelServer``, in its own environment (``setup.sh``, ``VENV/kserve``), serves the model
through a custom ``kserve.Model`` (``model.py``). Clients speak the Open Inference Protocol
(:mod:`targets.protocols.v2`), over HTTP (JSON or binary tensors) or gRPC. Declaration:
:mod:`targets.kserve.kind`; start-up: :mod:`targets.kserve.launch`.
"""
