"""The V2 gRPC messages in and out: a ``ModelInferRequest`` as the same request the HTTP route
parses (its JSON header and the binary tensor bytes after it), and the answer as a
``ModelInferResponse``; the model configuration and statistics as their protobuf messages.

The messages are the ones ``tritonclient[grpc]`` ships, generated from Triton's
``grpc_service.proto`` and ``model_config.proto`` (the KServe V2 gRPC protocol plus Triton's
extensions): the server speaks exactly what Triton's own clients send.

Typed contents are bounded as HTTP bounds JSON: at most FRAMECAST_MAX_JSON_ITEMS values in a
request. :func:`guarded_request` is the ``ModelInfer`` deserializer: it counts the values of every
input's typed contents in the message's bytes (packed fields: their bytes; no value is decoded)
before protobuf parses them, so a request of 60 M zeros is refused (413, RESOURCE_EXHAUSTED) at
once, without the gigabytes its parsed lists would take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from service.errors import FramecastError, PayloadTooLarge
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


def request_dict(
    r: pb.ModelInferRequest, max_items: int | None = None
) -> tuple[dict[str, Any], bytes]:
    """``r`` as the HTTP route's request: the JSON header (``inputs`` with ``binary_data_size``
    for raw contents, or ``data`` from typed contents; ``outputs``; ``parameters``; ``id``) and
    the raw input bytes in order. Typed contents past ``max_items`` values in all are refused
    (413) before any list is made of them."""
    raw = list(r.raw_input_contents)
    if raw and len(raw) != len(r.inputs):
        raise V2Error(
            f"the request has {len(r.inputs)} input(s) but {len(raw)} raw_input_contents; "
            "send one per input, or none and typed contents"
        )
    if max_items is not None and not raw:
        total = sum(
            len(getattr(t.contents, _CONTENTS[t.datatype]))
            for t in r.inputs
            if t.datatype in _CONTENTS and t.HasField("contents")
        )
        if total > max_items:
            raise too_many_values(max_items)
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


# --------------------------------------------------------------------------- typed contents


def too_many_values(most: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request's typed contents hold more than {most} values "
        "(FRAMECAST_MAX_JSON_ITEMS, as for a JSON body): send the tensor as raw_input_contents"
    )


class Refused:
    """What :func:`guarded_request` gives for a request it refuses: its error, raised by the
    call (:func:`check_refused`) after the key is checked, so the answer is the call's own."""

    def __init__(self, error: FramecastError, model_name: str = ""):
        self.error, self.model_name, self.id = error, model_name, ""


def check_refused(r: Any) -> None:
    if isinstance(r, Refused):
        raise r.error


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


class _TooManyFields(Exception):
    pass


def _fields(buf: bytes, start: int, end: int, budget: list[int]):  # noqa: ANN202
    """The fields of the message in ``buf[start:end]``: number, wire type and the value's span
    (a length-delimited value's bytes; a scalar's encoding); each one spends one of
    ``budget[0]`` (:class:`_TooManyFields` when none is left)."""
    pos = start
    while pos < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooManyFields
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, stop = _varint(buf, pos)
        elif wire == 1:
            stop = pos + 8
        elif wire == 5:
            stop = pos + 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            stop = pos + size
        else:
            raise ValueError(f"wire type {wire}")
        if stop > end:
            raise ValueError("a field runs past its message")
        yield number, wire, pos, stop
        pos = stop


_FIXED = {6: 4, 7: 8}  # InferTensorContents: fp32 (4 bytes a value), fp64 (8)
_CHUNK = 1 << 22


def _packed_varints(buf: bytes, start: int, end: int) -> int:
    """How many varints ``buf[start:end]`` holds: its bytes without the continuation bit."""
    view, n = np.frombuffer(buf, np.uint8), 0
    for at in range(start, end, _CHUNK):
        n += int(np.count_nonzero(view[at : min(end, at + _CHUNK)] < 0x80))
    return n


def _count_values(buf: bytes, start: int, end: int, most: int, budget: list[int]) -> int:
    """The values of one ``InferTensorContents`` (stops counting past ``most``)."""
    n = 0
    for number, wire, a, b in _fields(buf, start, end, budget):
        if wire != 2 or number == 8:  # one value (unpacked), or one bytes_contents item
            n += 1
        elif number in _FIXED:
            n += (b - a) // _FIXED[number]
        else:
            n += _packed_varints(buf, a, b)
        if n > most:
            break
    return n


def too_many_fields(most: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the message holds more than {most} protobuf fields (FRAMECAST_GRPC_MAX_FIELDS; each "
        "unpacked repeated value or bytes item is one): send typed contents packed, as "
        "protobuf's own clients do, or the tensor as raw_input_contents"
    )


def guarded_request(max_items: int, max_fields: int = 100_000):  # noqa: ANN201 - deserializer
    """The ``ModelInferRequest`` deserializer that counts typed contents first: the parsed
    request, or a :class:`Refused` past ``max_items`` values or ``max_fields`` fields at any
    depth (each walked here in Python: the bound keeps the walk short); a malformed message:
    protobuf's own parse says why."""

    def parse(raw: bytes) -> Any:
        total, name, budget = 0, "", [max_fields]
        try:
            for number, wire, a, b in _fields(raw, 0, len(raw), budget):
                if number == 1 and wire == 2:
                    name = raw[a:b].decode("utf-8", "replace")[:200]
                if number != 5 or wire != 2:
                    continue
                for n2, w2, c, d in _fields(raw, a, b, budget):  # an InferInputTensor
                    if n2 == 5 and w2 == 2:
                        total += _count_values(raw, c, d, max_items - total, budget)
                if total > max_items:
                    return Refused(too_many_values(max_items), name)
        except _TooManyFields:
            return Refused(too_many_fields(max_fields), name)
        except ValueError:
            pass  # not a well-formed message: FromString raises, as before
        return pb.ModelInferRequest.FromString(raw)

    return parse


class _Handlers:
    """Stands for the server while the generated code registers the service's handlers."""

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, name: str, handlers: dict) -> None:
        self.name, self.handlers = name, handlers


def add_servicer(servicer: Any, server: Any, parse: Callable[[bytes], Any]) -> None:
    """The service's handlers (as tritonclient's generated code makes them) on ``server``, with
    ``parse`` as the deserializer of the inference calls (typed contents counted first)."""
    caught = _Handlers()
    pbg.add_GRPCInferenceServiceServicer_to_server(servicer, caught)
    handlers = dict(caught.handlers)
    for method in ("ModelInfer", "ModelStreamInfer"):
        handlers[method] = handlers[method]._replace(request_deserializer=parse)
    generic = grpc.method_handlers_generic_handler(caught.name, handlers)
    server.add_generic_rpc_handlers((generic,))
    server.add_registered_method_handlers(caught.name, handlers)
