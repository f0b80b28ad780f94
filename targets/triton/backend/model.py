"""Triton Python-backend model: the SavedModel's serving signature over each dynamic batch.

Runs inside Triton's backend stub, in the stub's own environment (numpy<2, TensorFlow from the
project venv; see targets/triton/setup.sh), not in servecap's processes: it imports nothing of
servecap. Its parameters come from config.pbtxt (written by targets.triton.repository):
``SAVEDMODEL_DIR`` (one version directory), ``SIGNATURE``, and the signature's input and
output names (``SIGNATURE_INPUT``, ``SIGNATURE_OUTPUT``; Triton's own tensor names are the
config's). The input is cast to the signature's dtype.

Each ``execute`` call gets the requests the dynamic batcher grouped; their rows are stacked
into one batch, run once, and split back into one response per request.
"""

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        import tensorflow as tf

        self.tf = tf
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        self.loaded = tf.saved_model.load(params["SAVEDMODEL_DIR"])
        self.fn = self.loaded.signatures[params.get("SIGNATURE", "serving_default")]
        self.sig_input = params.get("SIGNATURE_INPUT", self.input)
        self.sig_output = params.get("SIGNATURE_OUTPUT", self.output)
        self.dtype = self.fn.structured_input_signature[1][self.sig_input].dtype
        dims = [int(d) for d in config["input"][0]["dims"]]
        self.run(np.zeros([1, *dims], dtype=np.float32))  # the first call traces: not on a request

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self.fn(**{self.sig_input: self.tf.constant(batch, dtype=self.dtype)})
        scores: np.ndarray = result[self.sig_output].numpy().astype(np.float32)
        return scores

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        batch = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        scores = self.run(batch)
        responses = []
        start = 0
        for n in sizes:
            rows = np.ascontiguousarray(scores[start : start + n], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output, rows)]))
            start += n
        return responses
