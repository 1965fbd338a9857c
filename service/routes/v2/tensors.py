"""The V2 tensor codec: requests' JSON and binary tensors in, outputs out, and each model's tensor
specs (``frames`` in; ``next_frame``/``rollout`` or ``scores`` out), apart from the routes."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from fastapi.responses import Response

from service.checks import require_horizon, require_unit_range
from service.errors import BadRequest
from service.inference import Runner

INPUT = "frames"
HEADER_LENGTH = "Inference-Header-Content-Length"
DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


V2Error = BadRequest  # a request that does not follow the protocol (400)


def input_specs(r: Runner) -> list[dict]:
    m = r.manifest
    return [
        {
            "name": INPUT,
            "datatype": "FP32",
            "shape": [-1, m.frames or -1, m.height, m.width, m.channels],
            "parameters": {
                "accepts": ["FP32", "UINT8"],
                "note": "FP32 in [0, 1] or UINT8 0-255; the last frames are used",
            },
        }
    ]


def output_specs(r: Runner) -> list[dict]:
    m = r.manifest
    if m.task == "classify":
        return [
            {
                "name": "scores",
                "datatype": "FP32",
                "shape": [-1, len(m.class_names or [])],
                "parameters": {"class_names": list(m.class_names or [])},
            }
        ]
    return [
        {"name": "next_frame", "datatype": "FP32", "shape": [-1, m.height, m.width, m.channels]},
        {
            "name": "rollout",
            "datatype": "FP32",
            "shape": [-1, -1, m.height, m.width, m.channels],
            "parameters": {"note": "the next `horizon` frames (request parameter, default 1)"},
        },
    ]


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON inference header and the binary tensor data after it."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise V2Error(f"{HEADER_LENGTH}={header_length!r} is not an integer") from None
        if not 0 < n <= len(body):
            raise V2Error(f"{HEADER_LENGTH}={n} does not fit a body of {len(body)} bytes")
        head, rest = body[:n], body[n:]
    else:
        head, rest = body, b""
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise V2Error(f"the inference request is not valid JSON ({e})") from None
    if not isinstance(req, dict):
        raise V2Error('the inference request must be a JSON object {"inputs": [...]}')
    return req, rest


def _shape(t: dict, label: str) -> list[int]:
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise V2Error(f"{label}: 'shape' must be a list of non-negative integers, got {shape!r}")
    return shape


def _decode_tensor(t: dict, binary: bytes, offset: int, label: str) -> tuple[np.ndarray, int]:
    """One input tensor as float32 in [0, 1], with its shape; returns the new binary offset."""
    datatype = t.get("datatype")
    if datatype not in DTYPES:
        raise V2Error(
            f"{label}: datatype {datatype!r} is not supported; send FP32 (0-1) or UINT8 (0-255)"
        )
    shape = _shape(t, label)
    count = math.prod(shape)
    dtype = DTYPES[datatype]
    params = t.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise V2Error(
                f"{label}: binary_data_size={size!r} runs past the {len(binary)} bytes "
                f"of binary data after the JSON header"
            )
        if size != count * dtype.itemsize:
            raise V2Error(
                f"{label}: binary_data_size={size} but shape {shape} of {datatype} "
                f"needs {count * dtype.itemsize} bytes"
            )
        a = np.frombuffer(binary, dtype=dtype, count=count, offset=offset)
        offset += size
    else:
        if "data" not in t:
            raise V2Error(f"{label}: no 'data' (and no binary_data_size parameter)")
        try:
            a = np.asarray(t["data"], dtype=np.float64).reshape(-1)
        except (ValueError, TypeError):
            raise V2Error(
                f"{label}: 'data' must be numbers, flat or nested (rectangular) lists"
            ) from None
        if a.size != count:
            raise V2Error(f"{label}: 'data' holds {a.size} values but shape {shape} needs {count}")
        if datatype == "UINT8" and (np.any(a != np.round(a)) or np.any(a < 0) or np.any(a > 255)):
            raise V2Error(f"{label}: UINT8 data must be integers 0-255")
    a = a.reshape(shape)
    if datatype == "UINT8":
        x = a.astype(np.float32) / 255.0
    else:
        x = a.astype(np.float32)
        require_unit_range(x, label, kind="FP32", hint="or send UINT8 0-255", error=V2Error)
        x = np.clip(x, 0.0, 1.0)
    return x, offset


def parse_inputs(req: dict, binary: bytes, runner: Runner, *, whole: bool = False) -> np.ndarray:
    """The request's clips as (batch, T, H, W, C) float32 in [0, 1] (the last T frames; with
    ``whole``, for a sequence's request, every frame sent, one or more)."""
    m = runner.manifest
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error(f'the request needs "inputs": [{{"name": "{INPUT}", ...}}]')
    found, offset = None, 0
    for i, t in enumerate(inputs):
        if not isinstance(t, dict):
            raise V2Error(f"inputs[{i}] must be an object with name, shape, datatype and data")
        label = f"input {t.get('name', i)!r}"
        x, offset = _decode_tensor(t, binary, offset, label)
        if t.get("name") != INPUT:
            raise V2Error(f"{label}: model {m.name!r} has one input, {INPUT!r}")
        found = x
    assert found is not None, "inputs is a non-empty list: each one decoded, or raised"
    reads = 1 if whole else (m.reads or 1)  # a free axis without a context reads every frame
    want = f"[batch, ≥{reads}, {m.height}, {m.width}, {m.channels}]"
    if found.ndim != 5:
        raise V2Error(
            f"input {INPUT!r} has shape {list(found.shape)}; model {m.name!r} takes {want}"
        )
    b, t, h, w, c = found.shape
    if b < 1:
        raise V2Error(f"input {INPUT!r} has an empty batch; send at least one clip")
    if t < reads or (h, w, c) != (m.height, m.width, m.channels):
        raise V2Error(
            f"input {INPUT!r} has shape {list(found.shape)}; model {m.name!r} takes "
            f"{want} (frames are not resized here; /v1 resizes)"
        )
    return found if whole else found[:, -(m.reads or t) :]


def horizon_of(req: dict, max_horizon: int) -> int | None:
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error("'parameters' must be an object")
    k = params.get("horizon")
    if k is None:
        return None
    return require_horizon(k, max_horizon, label="parameter horizon", error=V2Error)


def requested_outputs(
    req: dict, runner: Runner, horizon: int | None
) -> list[tuple[str, bool, int | None]]:
    """[(output name, binary?, class count or None)] in the order asked; with no ``outputs``
    listed, every output of the model, as the protocol says. A ``classification`` parameter on
    an output (the classification extension: tritonclient's ``class_count``) asks for its top-k
    classes as ``"score:index:label"`` strings."""
    params = req.get("parameters") or {}
    binary_default = bool(params.get("binary_data_output", False))
    names = [o["name"] for o in output_specs(runner)]
    outputs = req.get("outputs")
    if outputs is None:
        return [(n, binary_default, None) for n in names]
    if not isinstance(outputs, list):
        raise V2Error("'outputs' must be a list of {\"name\": ...}")
    out: list[tuple[str, bool, int | None]] = []
    for i, o in enumerate(outputs):
        name = o.get("name") if isinstance(o, dict) else None
        if not isinstance(name, str) or name not in names:
            raise V2Error(
                f"outputs[{i}]: unknown output {name!r}; model {runner.name!r} has "
                f"{', '.join(names)}"
            )
        p = o.get("parameters") or {}
        if not isinstance(p, dict):
            raise V2Error(f"outputs[{i}].parameters must be an object")
        k = p.get("classification")
        if k is not None:
            if name != "scores":
                raise V2Error(
                    f"outputs[{i}]: classification applies to a classifier's 'scores' output, "
                    f"not {name!r}"
                )
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise V2Error(f"outputs[{i}]: classification must be an integer >= 1, got {k!r}")
            k = min(k, len(runner.manifest.class_names or []) or k)
        out.append((name, bool(p.get("binary_data", binary_default)), k))
    return out


def top_classes(scores: np.ndarray, k: int, labels: list[str]) -> np.ndarray:
    """(batch, k) ``"score:index:label"`` strings, best first (the classification extension)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.array(
        [
            [f"{row[i]:f}:{i}:{labels[i] if i < len(labels) else i}" for i in idx]
            for row, idx in zip(scores, order, strict=True)
        ],
        dtype=object,
    )


def _bytes_tensor(strings: np.ndarray) -> bytes:
    """BYTES elements as the binary extension sends them: 4-byte little-endian length, bytes."""
    parts = []
    for s in strings.reshape(-1):
        b = str(s).encode()
        parts.append(len(b).to_bytes(4, "little") + b)
    return b"".join(parts)


# --------------------------------------------------------------------------- infer


def output_bytes(
    runner: Runner, name: str, k: int | None, arrays: dict[str, np.ndarray]
) -> tuple[str, list[int], bytes]:
    """One output as the binary extension and gRPC's raw contents carry it: datatype, shape and
    bytes (FP32 little-endian; BYTES for the top ``k`` classes, each length-prefixed)."""
    if k is not None:
        strings = top_classes(np.asarray(arrays[name]), k, list(runner.manifest.class_names or []))
        return "BYTES", list(strings.shape), _bytes_tensor(strings)
    a = np.ascontiguousarray(arrays[name], dtype="<f4")
    return "FP32", list(a.shape), a.tobytes()


def encode_response(
    req: dict,
    runner: Runner,
    wanted: list[tuple[str, bool, int | None]],
    arrays: dict[str, np.ndarray],
    parameters: dict[str, Any] | None = None,
) -> Response:
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary, k in wanted:
        out: dict[str, Any] = {"name": name}
        if binary:
            datatype, shape, raw = output_bytes(runner, name, k, arrays)
            out.update(datatype=datatype, shape=shape, parameters={"binary_data_size": len(raw)})
            chunks.append(raw)
        elif k is not None:
            strings = top_classes(
                np.asarray(arrays[name]), k, list(runner.manifest.class_names or [])
            )
            out.update(
                datatype="BYTES", shape=list(strings.shape), data=strings.reshape(-1).tolist()
            )
        else:
            a = np.asarray(arrays[name], dtype="<f4")
            out.update(datatype="FP32", shape=list(a.shape), data=a.reshape(-1).tolist())
        outputs.append(out)
    body: dict[str, Any] = {
        "model_name": runner.name,
        "model_version": str(runner.version),
        "outputs": outputs,
    }
    if "id" in req:
        body["id"] = req["id"]
    if parameters:
        body["parameters"] = parameters
    head = json.dumps(body, separators=(",", ":")).encode()
    if not chunks:
        return Response(head, media_type="application/json")
    return Response(
        head + b"".join(chunks),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(head))},
    )
