"""The V2 gRPC messages in and out: a ``ModelInferRequest`` as the same request the HTTP route
parses (its JSON header and the binary tensor bytes after it), and the answer as a
``ModelInferResponse``; the model configuration and statistics as their protobuf messages.

The messages are the ones ``tritonclient[grpc]`` ships, generated from Triton's
``grpc_service.proto`` and ``model_config.proto`` (the KServe V2 gRPC protocol plus Triton's
extensions): the server speaks exactly what Triton's own clients send.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from service.inference import Runner
from service.routes.v2.tensors import V2Error, output_bytes

# where InferTensorContents keeps each datatype the models take (when raw contents are not used)
_CONTENTS = {"FP32": "fp32_contents", "UINT8": "uint_contents"}


def param_value(p: pb.InferParameter) -> Any:
    """An ``InferParameter``'s value (bool, int, float or str; None when unset)."""
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)


def _params(params: Any) -> dict[str, Any]:
    return {k: param_value(v) for k, v in params.items()}


def request_dict(r: pb.ModelInferRequest) -> tuple[dict[str, Any], bytes]:
    """``r`` as the HTTP route's request: the JSON header (``inputs`` with ``binary_data_size``
    for raw contents, or ``data`` from typed contents; ``outputs``; ``parameters``; ``id``) and
    the raw input bytes in order."""
    raw = list(r.raw_input_contents)
    if raw and len(raw) != len(r.inputs):
        raise V2Error(
            f"the request has {len(r.inputs)} input(s) but {len(raw)} raw_input_contents; "
            "send one per input, or none and typed contents"
        )
    inputs = []
    for i, t in enumerate(r.inputs):
        d: dict[str, Any] = {
            "name": t.name,
            "shape": list(t.shape),
            "datatype": t.datatype,
            "parameters": _params(t.parameters),
        }
        if raw:
            d["parameters"]["binary_data_size"] = len(raw[i])
        elif t.datatype in _CONTENTS and t.HasField("contents"):
            d["data"] = list(getattr(t.contents, _CONTENTS[t.datatype]))
        inputs.append(d)
    req: dict[str, Any] = {"inputs": inputs, "parameters": _params(r.parameters)}
    if r.outputs:
        req["outputs"] = [{"name": o.name, "parameters": _params(o.parameters)} for o in r.outputs]
    if r.id:
        req["id"] = r.id
    return req, b"".join(raw)


def infer_response(
    req: dict[str, Any],
    runner: Runner,
    wanted: list[tuple[str, bool, int | None]],
    arrays: dict[str, np.ndarray],
    parameters: dict[str, Any] | None = None,
) -> pb.ModelInferResponse:
    """The outputs asked for, as raw contents (what tritonclient's ``as_numpy`` reads), and the
    response's parameters (a sequence's step)."""
    resp = pb.ModelInferResponse(
        model_name=runner.name, model_version=str(runner.version), id=str(req.get("id", ""))
    )
    for key, value in (parameters or {}).items():
        p = resp.parameters[key]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int):
            p.int64_param = value
        elif isinstance(value, float):
            p.double_param = value
        else:
            p.string_param = str(value)
    for name, _binary, k in wanted:
        datatype, shape, raw = output_bytes(runner, name, k, arrays)
        resp.outputs.add(name=name, datatype=datatype, shape=shape)
        resp.raw_output_contents.append(raw)
    return resp


def metadata_response(meta: dict[str, Any]) -> pb.ModelMetadataResponse:
    """The V2 model metadata (service.routes.v2.infer.model_metadata) as its message."""
    return pb.ModelMetadataResponse(
        name=meta["name"],
        versions=meta["versions"],
        platform=meta["platform"],
        inputs=[_tensor(t) for t in meta["inputs"]],
        outputs=[_tensor(t) for t in meta["outputs"]],
    )


def _tensor(t: dict[str, Any]) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=t["name"], datatype=t["datatype"], shape=t["shape"]
    )


def config_message(config: dict[str, Any]) -> mc.ModelConfig:
    """Triton's JSON model configuration (model_config.py) as ``ModelConfig``; every field must
    be one the message has, so the two shapes cannot drift apart."""
    return json_format.ParseDict(config, mc.ModelConfig())


def stats_message(stats: dict[str, Any]) -> pb.ModelStatistics:
    return json_format.ParseDict(stats, pb.ModelStatistics())
