"""Client protocols, by name: each wire format servecap can load and verify, defined once.

=================  =========  ==============================================================
name               transport  requests
=================  =========  ==============================================================
servecap           http       ``POST /v1/predict`` (:mod:`targets.common.payload`)
servecap-jobs      jobs       ``POST /v1/jobs`` then long polls (:mod:`.jobs`)
tfserving-rest     http       ``POST /v1/models/<model>:predict`` (:mod:`.tfserving`)
tfserving-grpc     grpc       ``PredictionService/Predict`` (:mod:`.tfserving`)
v2-rest            http       ``POST /v2/models/<model>/infer``, JSON or binary (:mod:`.v2`)
v2-rest-json       http       the same, JSON tensors only (servers without the binary extension)
v2-grpc            grpc       ``GRPCInferenceService/ModelInfer`` (:mod:`.v2`)
image-upload       http       the image file as the body or a form field (:mod:`.upload`)
json-tensor        http       ``{"images": [n,h,w,c]}`` -> ``[[scores]...]`` (:mod:`.jsontensor`)
=================  =========  ==============================================================
"""

from __future__ import annotations

import difflib

from targets.protocols.base import Endpoint, Protocol, ProtocolError
from targets.protocols.jobs import JobsProtocol
from targets.protocols.jsontensor import JsonTensor
from targets.protocols.servecap import ServecapProtocol
from targets.protocols.tfserving import TFServingGrpc, TFServingRest
from targets.protocols.upload import ImageUpload
from targets.protocols.v2 import V2Grpc, V2Rest, V2RestJson

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        ServecapProtocol(), JobsProtocol(), TFServingRest(), TFServingGrpc(), V2Rest(),
        V2RestJson(), V2Grpc(), ImageUpload(), JsonTensor(),
    )
}  # fmt: skip


def get_protocol(name: str) -> Protocol:
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    close = difflib.get_close_matches(name, sorted(PROTOCOLS), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ValueError(f"unknown protocol '{name}'; {hint}known: {', '.join(sorted(PROTOCOLS))}")


__all__ = ["PROTOCOLS", "Endpoint", "Protocol", "ProtocolError", "get_protocol"]
