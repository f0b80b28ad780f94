"""NVIDIA Triton Inference Server with its dynamic batcher (kind ``triton``).

The real ``tritonserver`` binary (from the ``nvidia-pytriton`` wheel, see ``setup.sh``) serves
the same SavedModel as every other target through its Python backend
(``backend/model.py``), which runs TensorFlow over each batch the dynamic batcher forms.
Clients speak the Open Inference Protocol (:mod:`targets.protocols.v2`), over HTTP or gRPC.
Declaration: :mod:`targets.triton.kind`; start-up: :mod:`targets.triton.launch`.
"""
