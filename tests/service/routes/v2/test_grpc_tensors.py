"""Typed contents counted before they are parsed (service/routes/v2/grpc_tensors.py): the
ModelInfer deserializer refuses a request past FRAMECAST_MAX_JSON_ITEMS values from its bytes,
parses the others as protobuf does, and request_dict refuses them too before making a list."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from service.errors import PayloadTooLarge
from service.routes.v2.grpc_tensors import Refused, check_refused, guarded_request, request_dict
from tests.service.http.test_security_tenants import typed_request


def typed(kind: str, n: int) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="m")
    t = req.inputs.add(name="frames", datatype="FP32" if kind == "fp32" else "UINT8", shape=[n])
    values = getattr(t.contents, f"{kind}_contents")
    values.extend(np.arange(n) % 200)
    return req


@pytest.mark.parametrize("kind", ["fp32", "uint"])
def test_contents_within_the_limit_parse_as_protobuf_does(kind):
    req = typed(kind, 1000)
    got = guarded_request(1000)(req.SerializeToString())
    assert isinstance(got, pb.ModelInferRequest) and got == req
    header, _ = request_dict(got, 1000)
    assert len(header["inputs"][0]["data"]) == 1000


@pytest.mark.parametrize("kind", ["fp32", "uint"])
def test_one_value_past_the_limit_is_refused_413(kind):
    got = guarded_request(999)(typed(kind, 1000).SerializeToString())
    assert isinstance(got, Refused) and got.model_name == "m"
    with pytest.raises(PayloadTooLarge, match="FRAMECAST_MAX_JSON_ITEMS"):
        check_refused(got)
    with pytest.raises(PayloadTooLarge):  # the parsed request is refused before its list too
        request_dict(typed(kind, 1000), 999)


def test_values_of_several_inputs_add_up():
    req = typed("uint", 600)
    t = req.inputs.add(name="more", datatype="UINT8", shape=[600])
    t.contents.uint_contents.extend([1] * 600)
    assert isinstance(guarded_request(1000)(req.SerializeToString()), Refused)
    assert isinstance(guarded_request(1200)(req.SerializeToString()), pb.ModelInferRequest)


def test_sixty_million_zeros_are_counted_at_once_without_being_parsed():
    raw = typed_request(60_000_000)  # 60 MB of packed zeros
    t0 = time.perf_counter()
    got = guarded_request(4 << 20)(raw)
    assert isinstance(got, Refused) and time.perf_counter() - t0 < 1.0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


@pytest.mark.parametrize(
    "what",
    ["empty inputs", "unknown fields", "unpacked values", "empty raw contents", "bytes items"],
)
def test_millions_of_tiny_fields_are_refused_at_once_before_parsing(what):
    """Each a few MB: the fields are walked in Python, so they are bounded by
    FRAMECAST_GRPC_MAX_FIELDS, not only by the values they hold (an empty one holds none)."""
    n = 3_000_000
    head = b"\x0a\x01m"  # model_name "m"
    if what == "empty inputs":  # field 5 (inputs), length 0, n times
        raw = head + b"\x2a\x00" * n
    elif what == "unknown fields":  # field 99, varint 0
        raw = head + _varint(99 << 3) + b"\x00" + (_varint(99 << 3) + b"\x00") * (n - 1)
    elif what == "empty raw contents":  # field 7 (raw_input_contents), length 0
        raw = head + b"\x3a\x00" * n
    else:  # one input whose contents hold n unpacked uint values (field 4) or bytes items (8)
        item = b"\x20\x00" if what == "unpacked values" else b"\x42\x00"
        contents = item * n
        tensor = b"\x0a\x01x" + b"\x2a" + _varint(len(contents)) + contents
        raw = head + b"\x2a" + _varint(len(tensor)) + tensor
    t0 = time.perf_counter()
    got = guarded_request(4 << 20, 100_000)(raw)
    spent = time.perf_counter() - t0
    assert isinstance(got, Refused) and got.model_name == "m", type(got)
    with pytest.raises(PayloadTooLarge, match="FRAMECAST_GRPC_MAX_FIELDS"):
        check_refused(got)
    assert spent < 0.5, f"{spent:.2f} s to refuse"


def test_a_message_within_the_field_bound_parses():
    req = pb.ModelInferRequest(model_name="m")
    for i in range(50):
        req.inputs.add(name=f"in{i}", datatype="BYTES", shape=[10]).contents.bytes_contents.extend(
            [b"x"] * 10
        )
    raw = req.SerializeToString()  # 751 fields: the model's name, 50 x (the input, its 4, 10)
    assert isinstance(guarded_request(1000, 751)(raw), pb.ModelInferRequest)
    assert isinstance(guarded_request(1000, 750)(raw), Refused)


def test_a_malformed_message_is_left_to_protobuf():
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        guarded_request(10)(b"\x2a\xff\xff\xff\xff\x0f")
