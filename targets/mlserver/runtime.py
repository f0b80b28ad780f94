"""MLServer custom inference runtime: servecap's SavedModel behind MLServer's v2 data plane.

An idiomatic ``MLModel`` subclass (MLServer's "custom runtime"), named by
``implementation`` in the ``model-settings.json`` that :mod:`targets.mlserver.launch` writes:

* ``load`` reads ``parameters.uri`` (the SavedModel version folder), loads the model with
  TensorFlow and warms it up (:class:`targets.common.v2_runtime.V2Model`); a model call takes
  at most ``DEFAULT_MAX_IMAGES`` images per request it merges (``max_batch_size`` requests);
* ``predict`` takes the request's one input (its values as JSON data, or gRPC raw contents,
  which MLServer has unpacked), checks it against the signature, runs the model and answers
  ``probabilities``. With adaptive batching on, MLServer merges concurrent requests into one
  ``predict`` call and splits the answer back. A tensor that is not the model's is an
  ``InferenceError``: MLServer answers 400 (gRPC: INVALID_ARGUMENT).

Each call logs MLServer custom metrics (``mlserver.log``, histograms on its metrics port, summed
over parallel workers): the images in the call and its seconds (mapped by
:mod:`targets.mlserver.metrics`).

Runs inside MLServer (its own environment, targets/mlserver/setup.sh), in each parallel worker.
"""

from __future__ import annotations

from pathlib import Path

import mlserver
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor

from targets.common.v2_runtime import (
    BATCH_METRIC,
    DEFAULT_MAX_IMAGES,
    MODEL_TIME_METRIC,
    OUTPUT_NAME,
    BadTensor,
    V2Model,
)


class SavedModelRuntime(MLModel):
    """servecap's image classifier (any SavedModel with one image input)."""

    async def load(self) -> bool:
        parameters = self.settings.parameters
        if parameters is None or not parameters.uri:
            raise InferenceError(f"model {self.name}: model-settings.json has no parameters.uri")
        merged = max(1, self.settings.max_batch_size)  # requests per call with batching on
        self.model = V2Model(Path(parameters.uri), DEFAULT_MAX_IMAGES * merged)
        self.inputs = [MetadataTensor(**spec.to_dict()) for spec in self.model.inputs]
        self.outputs = [MetadataTensor(**spec.to_dict()) for spec in self.model.outputs]
        mlserver.register(BATCH_METRIC, "Images per model call")
        mlserver.register(MODEL_TIME_METRIC, "Seconds per model call")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if len(payload.inputs) != 1:
            raise InferenceError(f"the request has {len(payload.inputs)} inputs; send one")
        (tensor,) = payload.inputs
        data = getattr(tensor.data, "root", tensor.data)
        datatype = str(getattr(tensor.datatype, "value", tensor.datatype))  # enum, or its value
        try:
            batch = self.model.images(tensor.name, datatype, tensor.shape, data)
        except BadTensor as err:
            raise InferenceError(str(err)) from None
        scores, seconds = self.model.timed_predict(batch)
        mlserver.log(**{BATCH_METRIC: len(batch), MODEL_TIME_METRIC: seconds})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(OUTPUT_NAME, scores)],
        )
