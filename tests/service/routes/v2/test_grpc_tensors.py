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


def test_a_malformed_message_is_left_to_protobuf():
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        guarded_request(10)(b"\x2a\xff\xff\xff\xff\x0f")
