"""KServe model: servecap's SavedModel as a ``kserve.Model`` (its custom-model idiom).

* ``load`` loads the SavedModel version folder with TensorFlow and warms it up
  (:class:`targets.common.v2_runtime.V2Model`), then sets ``ready``;
* ``predict`` takes the v2 request KServe decoded (``InferRequest``: JSON data, the binary
  tensor extension or gRPC raw contents), checks its one input against the signature, runs the
  model and answers ``probabilities`` in the form the client asked for (binary when it asked).
  A tensor that is not the model's raises KServe's ``InvalidInput``: 400 (gRPC:
  INVALID_ARGUMENT);
* ``get_input_types`` / ``get_output_types`` are what ``GET /v2/models/<name>`` declares;
* with ``workers`` > 1 KServe pickles the model into each REST worker process (spawned): the
  TensorFlow model stays behind and each worker loads its own, in the background (requests
  wait for it).

Per model call it observes two Prometheus histograms (KServe serves the default registry on
``/metrics``): the images in the call and its seconds (names in
:mod:`targets.common.v2_runtime`). KServe's own ``request_predict_seconds`` counts the
requests. Runs inside KServe's model server (its own environment, targets/kserve/setup.sh).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput
from prometheus_client import Histogram

from targets.common.v2_runtime import (
    BATCH_METRIC,
    DEFAULT_MAX_IMAGES,
    MODEL_TIME_METRIC,
    OUTPUT_NAME,
    BadTensor,
    V2Model,
)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
IMAGES = Histogram(BATCH_METRIC, "Images per model call", buckets=BATCH_BUCKETS)
MODEL_SECONDS = Histogram(MODEL_TIME_METRIC, "Seconds per model call")


class SavedModelPredictor(Model):
    """servecap's image classifier (any SavedModel with one image input)."""

    def __init__(self, name: str, model_dir: Path, max_images: int = DEFAULT_MAX_IMAGES) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.max_images = max_images
        self.model: V2Model | None = None

    def load(self) -> bool:
        self.model = V2Model(self.model_dir, self.max_images)
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict[str, Any]:
        """With ``workers`` > 1 KServe pickles the model into each REST worker process: the
        TensorFlow model does not travel, the worker loads its own (:meth:`__setstate__`)."""
        state = {**self.__dict__, "model": None}
        state.pop("_loading", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """In a worker: load in the background (KServe kills a worker that does not answer
        its liveness pipe within 5 s), requests wait for it (:meth:`_loaded`)."""
        self.__dict__.update(state)
        self._loading = threading.Thread(target=self.load, name="servecap-load", daemon=True)
        self._loading.start()

    def get_input_types(self) -> list[dict[str, Any]]:
        return [spec.to_dict() for spec in self._loaded().inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [spec.to_dict() for spec in self._loaded().outputs]

    def _loaded(self) -> V2Model:
        loading: threading.Thread | None = getattr(self, "_loading", None)
        if loading is not None:
            loading.join()
        if self.model is None:
            raise InvalidInput(f"model {self.name} is not loaded")
        return self.model

    def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        model = self._loaded()
        if not isinstance(payload, InferRequest):
            raise InvalidInput("send a v2 inference request (/v2/models/<name>/infer)")
        if len(payload.inputs) != 1:
            raise InvalidInput(f"the request has {len(payload.inputs)} inputs; send one")
        (tensor,) = payload.inputs
        try:
            dims = model.check(tensor.name, tensor.datatype, tensor.shape)
            batch = model.images(tensor.name, tensor.datatype, dims, tensor.as_numpy())
        except BadTensor as err:
            raise InvalidInput(str(err)) from None
        except (ValueError, TypeError, InvalidInput) as err:  # values KServe cannot decode
            raise InvalidInput(f"input '{tensor.name}': {err}") from None
        scores, seconds = model.timed_predict(batch)
        IMAGES.observe(len(batch))
        MODEL_SECONDS.observe(seconds)
        output = InferOutput(OUTPUT_NAME, list(scores.shape), "FP32")
        output.set_data_from_numpy(scores, binary_data=payload.use_binary_outputs)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )
