"""Hostile snapshots (service/streams/snapshot.py) are clear 4xx, never a 500: a description
that is JSON but not an object, or lacks a field, or holds a field of the wrong type; an array
whose own .npy header claims far more than the zip's sizes say (it would be allocated whole
before anything else looks at it)."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.conftest import CARRY
from tests.service.helpers import FRAMES
from tests.service.routes.v1.test_streams import _settings, frames_of, open_stream, post
from tests.service.streams.test_feeding_lifetimes import _edited, _restore, _snapshot

META = "framecast_snapshot"


@pytest.fixture(scope="module")
def sc(stream_models):
    with TestClient(create_app(_settings(stream_models))) as c:
        yield c


@pytest.fixture(scope="module")
def good(sc):
    sid = open_stream(sc, CARRY)
    post(sc, sid, frames_of(FRAMES + 1, seed=36))
    return _snapshot(sc, sid)


def _with_meta(data: bytes, raw: bytes) -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[META] = np.frombuffer(raw, np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"abc"', b"5", b"null", b"true"])
def test_a_description_that_is_not_an_object_is_422(sc, good, raw):
    r = _restore(sc, CARRY, _with_meta(good, raw))
    assert r.status_code == 422, r.text
    assert "description cannot be read" in r.json()["message"]


@pytest.mark.parametrize(
    "change",
    [{"expected": None}, {"version": "abc"}, {"sha256": 5}, {"window": "x"}],
    ids=["expected missing", "version not a number", "sha256 not text", "window not a number"],
)
def test_a_description_with_a_field_missing_or_of_the_wrong_type_is_422(
    sc,
    good,
    change,
):
    with np.load(io.BytesIO(good), allow_pickle=False) as z:
        meta = json.loads(z[META].tobytes())
    for k, v in change.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    r = _restore(sc, CARRY, _with_meta(good, json.dumps(meta).encode()))
    assert r.status_code == 422, r.text


def _npy_header(shape: tuple[int, ...]) -> bytes:
    head = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    head += b" " * (63 - (10 + len(head)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head


@pytest.mark.parametrize("shape", [(100_000, 100_000), (2**40,), (1 << 20, 1 << 20, 4)])
def test_an_array_whose_header_claims_more_than_the_zip_says_is_413_before_it_is_read(
    sc,
    good,
    shape,
):
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "s0.npy":  # the state: its header lies, 64 bytes follow
                data = _npy_header(shape) + bytes(64)
            out.writestr(info.filename, data)
    r = _restore(sc, CARRY, buf.getvalue())
    assert r.status_code == 413, r.text
    assert "FRAMECAST_STREAM_MAX_BYTES" in r.json()["message"]


def test_the_good_one_still_opens(sc, good):
    assert _restore(sc, CARRY, good).status_code == 201
    assert _restore(sc, CARRY, _edited(good)).status_code == 201
