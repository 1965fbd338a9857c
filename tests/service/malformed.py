"""A corpus of malformed requests, generated here (nothing binary is committed).

``corpus()`` returns :class:`Case` objects: a request (method, path, body, headers, params) and
the 4xx it must get. The server the cases run against uses the limits in ``CORPUS_SETTINGS``
(tests/service/http/test_uploads.py). Run ``python -m tests.service.malformed`` to list them.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tests.service.helpers import FRAMES, H, W, clip, encode, npy, png

NF = "convlstm2d_next_frame"
CL = "convlstm2d_classify"
PREDICT = f"/v1/models/{NF}/predict"
CLASSIFY = f"/v1/models/{CL}/classify"
COMPARE = "/v1/compare/next-frame"
INFER = f"/v2/models/{NF}/infer"

# the server's limits for the corpus (small, so that every limit is reachable cheaply)
CORPUS_SETTINGS = dict(
    max_upload_bytes=2 * 1024 * 1024,
    max_frames=64,
    max_horizon=5,
    max_json_items=4096,
    max_json_depth=32,
)


@dataclass
class Case:
    name: str
    status: int
    body: bytes | None = None
    ctype: str | None = "application/octet-stream"
    path: str = PREDICT
    method: str = "POST"
    params: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    chunked: bool = False  # send the body without Content-Length, in chunks
    says: str = ""  # a phrase the error message must hold

    def request_headers(self) -> dict:
        h = dict(self.headers)
        if self.ctype is not None:
            h.setdefault("content-type", self.ctype)
        return h


# --------------------------------------------------------------------------- byte builders


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` grey pixels and holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def png_bad_crc() -> bytes:
    data = bytearray(png(clip()[0]))
    data[29] ^= 0xFF  # inside IHDR's CRC
    return bytes(data)


def gif_frames(n: int) -> bytes:
    """A valid GIF of ``n`` 1x1 frames (~23 bytes a frame): 10,000 frames in 230 kB."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = (
        b"\x21\xf9\x04\x00\x01\x00\x00\x00"
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00"
    )
    return head + frame * n + b"\x3b"


def bmp_claiming(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + b"\x00" * 16


def npy_header_only(shape, dtype="<f4") -> bytes:
    """An .npy header declaring ``shape`` followed by 16 bytes of data."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\x00" * 16


class Boom:
    """Unpickling this would write a file; a server that unpickles uploads fails the test."""

    marker = "/tmp/framecast-unpickled-marker"

    def __reduce__(self):
        return (open, (self.marker, "w"))


def npy_pickle(obj) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([obj, obj], dtype=object), allow_pickle=True)
    return buf.getvalue()


def multipart(parts: list[tuple[str, str, bytes, str]], boundary: str = "corpusboundary") -> bytes:
    out = b""
    for field_name, filename, data, ctype in parts:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
                f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


MP = "multipart/form-data; boundary=corpusboundary"


def pngs(frames, sizes=None) -> list[tuple[str, str, bytes, str]]:
    return [("files", f"f{i}.png", png(f), "image/png") for i, f in enumerate(frames)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def nested(depth: int) -> bytes:
    return b'{"frames": ' + b"[" * depth + b"]" * depth + b"}"


def v2(data, shape, datatype="FP32", **extra) -> bytes:
    body = {"inputs": [{"name": "frames", "shape": shape, "datatype": datatype, "data": data}]}
    body.update(extra)
    return json.dumps(body).encode()


# --------------------------------------------------------------------------- the corpus


def corpus() -> list[Case]:
    c = clip()  # (FRAMES, H, W) uint8
    good_png = png(c[0])
    good_gif = encode(c, "GIF", loop=0)
    good_npy = npy(c)
    jpeg = io.BytesIO()
    Image.fromarray(c[0]).save(jpeg, format="JPEG")
    jpeg = jpeg.getvalue()
    tiff = encode(c, "TIFF")
    webp = encode(c, "WEBP", lossless=True)
    shape = [1, FRAMES, H, W, 1]
    ok_v2 = (c[None, ..., None] / 255.0).reshape(-1).round(4).tolist()
    cases = [
        # ---- image files
        Case(
            "zero-byte file (multipart)", 422, multipart([("files", "a.png", b"", "image/png")]), MP
        ),
        Case("zero-byte raw body", 422, b""),
        Case("truncated PNG", 422, good_png[: len(good_png) // 2], "image/png"),
        Case("PNG signature only", 422, good_png[:8], "image/png"),
        Case("PNG with a bad IHDR CRC", 422, png_bad_crc(), "image/png"),
        Case(
            "PNG claiming 100000x100000",
            422,
            png_claiming(100_000, 100_000),
            "image/png",
            says="FRAMECAST_MAX_FRAME_PIXELS",
        ),
        Case(
            "PNG claiming 5000x5000 (over the per-frame limit)",
            422,
            png_claiming(5000, 5000),
            says="FRAMECAST_MAX_FRAME_PIXELS",
        ),
        Case("PNG claiming 0x0", 422, png_claiming(0, 0)),
        Case("wrong magic: text", 415, b"hello, these are not pixels", "image/png"),
        Case("wrong magic: random bytes", 415, bytes(range(256)) * 4),
        Case("wrong magic: PDF", 415, b"%PDF-1.4\n" + b"0" * 100),
        Case("JPEG magic + garbage", 422, b"\xff\xd8\xff" + b"\x00garbage" * 20, "image/jpeg"),
        Case("truncated JPEG", 422, jpeg[: len(jpeg) // 3], "image/jpeg"),
        Case("GIF magic + garbage", 422, b"GIF89a" + b"\xff" * 40, "image/gif"),
        Case("truncated GIF", 422, good_gif[:40], "image/gif"),
        Case(
            "GIF with 10,000 frames",
            422,
            gif_frames(10_000),
            "image/gif",
            says="FRAMECAST_MAX_FRAMES",
        ),
        Case(
            "BMP claiming 100000x100000",
            422,
            bmp_claiming(100_000, 100_000),
            "image/bmp",
            says="FRAMECAST_MAX_FRAME_PIXELS",
        ),
        Case("BMP magic + garbage", 422, b"BM" + b"\x01" * 60, "image/bmp"),
        Case("TIFF magic + garbage", 422, b"II*\x00" + b"\xff" * 60, "image/tiff"),
        Case("truncated TIFF", 422, tiff[: len(tiff) // 2], "image/tiff"),
        Case(
            "WebP RIFF + garbage", 422, b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 20, "image/webp"
        ),
        Case("truncated WebP", 422, webp[: len(webp) // 2], "image/webp"),
        Case(
            "mismatched frame sizes (resize=false)",
            422,
            multipart(
                pngs(c[:2]) + [("files", "small.png", png(c[2][:8, :8]), "image/png")] + pngs(c[3:])
            ),
            MP,
            params={"resize": "false"},
        ),
        Case(
            "wrong frame size (resize=false)",
            422,
            npy(np.zeros((FRAMES, 8, 8), np.uint8)),
            params={"resize": "false"},
        ),
        Case("too few frames", 422, multipart(pngs(c[:2])), MP),
        Case(
            "too many frames (65 PNG files)",
            422,
            multipart(pngs(np.repeat(c, 17, 0)[:65])),
            MP,
            says="FRAMECAST_MAX_FRAMES",
        ),
        Case(
            "a text field and no files",
            422,
            b'--corpusboundary\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
            b"--corpusboundary--\r\n",
            MP,
        ),
        Case("multipart without a boundary", 422, b"--x\r\n\r\n", "multipart/form-data"),
        Case("multipart garbage", 422, b"this is not multipart at all", MP),
        Case(
            "one good frame, one garbage frame",
            415,
            multipart(pngs(c[:3]) + [("files", "x.png", b"\x00" * 40, "image/png")]),
            MP,
        ),
        # ---- .npy arrays
        Case("npy with NaN", 422, npy(np.full((FRAMES, H, W), np.nan, np.float32))),
        Case("npy with +inf", 422, npy(np.full((FRAMES, H, W), np.inf, np.float32))),
        Case("npy with -inf", 422, npy(np.full((FRAMES, H, W), -np.inf, np.float64))),
        Case("npy object dtype (pickled)", 422, npy_pickle({"a": 1}), says="never unpickled"),
        Case("npy pickle that would write a file", 422, npy_pickle(Boom())),
        Case("npy int64", 422, npy(np.zeros((FRAMES, H, W), np.int64))),
        Case("npy complex", 422, npy(np.zeros((FRAMES, H, W), np.complex64))),
        Case("npy bool", 422, npy(np.zeros((FRAMES, H, W), bool))),
        Case(
            "npy structured dtype",
            422,
            npy(np.zeros((FRAMES, H), dtype=[("a", "u1"), ("b", "f4")])),
        ),
        Case("npy 2-D", 422, npy(np.zeros((H, W), np.uint8))),
        Case("npy 5-D", 422, npy(np.zeros((1, FRAMES, H, W, 1), np.uint8))),
        Case("npy 5 channels", 422, npy(np.zeros((FRAMES, H, W, 5), np.uint8))),
        Case("npy zero frames", 422, npy(np.zeros((0, H, W), np.uint8))),
        Case("npy floats above 1", 422, npy(np.full((FRAMES, H, W), 1.5, np.float32))),
        Case("npy negative floats", 422, npy(np.full((FRAMES, H, W), -0.5, np.float32))),
        Case(
            "npy header claiming 10^12 values",
            422,
            npy_header_only((10_000, 10_000, 10_000)),
            says="declares shape",
        ),
        Case(
            "npy header claiming 100000x100000 frames", 422, npy_header_only((4, 100_000, 100_000))
        ),
        Case("npy truncated", 422, good_npy[: len(good_npy) // 2]),
        Case("npy magic only", 422, b"\x93NUMPY"),
        Case(
            "npy with a garbage header",
            422,
            b"\x93NUMPY\x01\x00\x10\x00{'descr': !!!}\n" + b"0" * 16,
        ),
        Case("npy with too many frames", 422, npy(np.zeros((65, H, W), np.uint8))),
        # ---- JSON (v1)
        Case("invalid JSON", 422, b"{not json", "application/json"),
        Case("JSON list, not an object", 422, b"[1, 2, 3]", "application/json"),
        Case("JSON frames is a string", 422, b'{"frames": "abc"}', "application/json"),
        Case("JSON frames are numbers", 422, b'{"frames": [1, 2, 3, 4]}', "application/json"),
        Case("JSON frames null", 422, b'{"frames": null}', "application/json"),
        Case("JSON empty body", 422, b"", "application/json"),
        Case("JSON empty frames", 422, b'{"frames": []}', "application/json"),
        Case(
            "base64 garbage",
            422,
            json.dumps({"frames": ["not base64!!"] * FRAMES}).encode(),
            "application/json",
        ),
        Case(
            "base64 of non-image bytes",
            415,
            json.dumps({"frames": [b64(b"just some text")] * FRAMES}).encode(),
            "application/json",
        ),
        Case(
            "data: URL with broken base64",
            422,
            json.dumps({"frames": ["data:image/png;base64,%%%%"] * FRAMES}).encode(),
            "application/json",
        ),
        Case("deeply nested JSON (100 levels)", 422, nested(100), "application/json"),
        Case(
            "deeply nested JSON (100000 levels)",
            422,
            nested(100_000),
            "application/json",
            says="FRAMECAST_MAX_JSON_DEPTH",
        ),
        Case(
            "JSON with too many values",
            413,
            json.dumps({"frames": [""] * 5000}).encode(),
            "application/json",
            says="FRAMECAST_MAX_JSON_ITEMS",
        ),
        Case(
            "JSON with too many base64 files",
            422,
            json.dumps({"frames": ["AA=="] * 300}).encode(),
            "application/json",
        ),
        Case(
            "JSON truth on predict",
            422,
            json.dumps({"frames": [b64(png(f)) for f in c], "truth": [b64(good_png)]}).encode(),
            "application/json",
        ),
        # ---- content types, sizes, methods, routes
        Case("text/plain body", 415, b"abc", "text/plain"),
        Case("application/xml body", 415, b"<frames/>", "application/xml"),
        Case("no Content-Type", 415, b"abc", None),
        Case("form-urlencoded body", 415, b"frames=1", "application/x-www-form-urlencoded"),
        # the server answers 413 at once, then reads and drops the body (it is within
        # FRAMECAST_OVERSIZE_DRAIN_BYTES over the limit) before it closes: never a reset
        Case(
            "body over the limit (declared)",
            413,
            b"\x89PNG\r\n\x1a\n" + b"\x00" * (3 << 20),
            "image/png",
        ),
        Case(
            "body over the limit (chunked, no length)",
            413,
            b"\x93NUMPY" + b"\x00" * (3 << 20),
            chunked=True,
            says="FRAMECAST_MAX_UPLOAD_BYTES",
        ),
        Case("GET on predict", 405, None, None, method="GET"),
        Case("unknown route", 404, None, None, path="/v1/nothing/here", method="GET"),
        Case("unknown model", 404, good_npy, path="/v1/models/ghost/predict"),
        Case("predict on a classifier", 422, good_npy, path=f"/v1/models/{CL}/predict"),
        # ---- parameters
        Case(
            "huge horizon",
            422,
            good_npy,
            params={"horizon": "1000000000"},
            says="FRAMECAST_MAX_HORIZON",
        ),
        Case("horizon beyond int64", 422, good_npy, params={"horizon": "1" + "0" * 30}),
        Case("horizon 0", 422, good_npy, params={"horizon": "0"}),
        Case("horizon -1", 422, good_npy, params={"horizon": "-1"}),
        Case("horizon not a number", 422, good_npy, params={"horizon": "abc"}),
        Case("output unknown", 422, good_npy, params={"output": "bmp"}),
        Case("resize not a boolean", 422, good_npy, params={"resize": "maybe"}),
        Case("top_k 0", 422, good_npy, path=CLASSIFY, params={"top_k": "0"}),
        Case("top_k huge", 422, good_npy, path=CLASSIFY, params={"top_k": "100000000"}),
        Case(
            "compare holdout leaves no context",
            422,
            good_npy,
            path=COMPARE,
            params={"holdout": str(FRAMES)},
        ),
        Case(
            "compare unknown label",
            422,
            good_npy,
            path="/v1/compare/classify",
            params={"label": "UP-LEFT-ISH"},
        ),
        Case("compare huge horizon", 422, good_npy, path=COMPARE, params={"horizon": "99999"}),
        # ---- Open Inference Protocol (v2): 400s
        Case("v2 invalid JSON", 400, b"{nope", "application/json", path=INFER),
        Case(
            "v2 deeply nested data",
            400,
            v2(json.loads(b"[" * 60 + b"0" + b"]" * 60), shape),
            "application/json",
            path=INFER,
        ),
        Case("v2 wrong datatype", 400, v2(ok_v2, shape, "BYTES"), "application/json", path=INFER),
        Case("v2 shape/data mismatch", 400, v2(ok_v2[:10], shape), "application/json", path=INFER),
        Case(
            "v2 NaN data",
            400,
            json.dumps(
                {
                    "inputs": [
                        {"name": "frames", "shape": [1], "datatype": "FP32", "data": [float("nan")]}
                    ]
                }
            ).encode(),
            "application/json",
            path=INFER,
        ),
        Case(
            "v2 UINT8 out of range",
            400,
            v2([300] * len(ok_v2), shape, "UINT8"),
            "application/json",
            path=INFER,
        ),
        Case(
            "v2 binary size past the end",
            400,
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "frames",
                            "shape": shape,
                            "datatype": "FP32",
                            "parameters": {"binary_data_size": 4096},
                        }
                    ]
                }
            ).encode(),
            "application/octet-stream",
            path=INFER,
            headers={"Inference-Header-Content-Length": "120"},
        ),
        Case(
            "v2 bogus header length",
            400,
            v2(ok_v2, shape),
            "application/json",
            path=INFER,
            headers={"Inference-Header-Content-Length": "-5"},
        ),
        Case(
            "v2 huge shape claim",
            400,
            v2([0.0] * 4, [10**6, 10**6, 16, 16, 1]),
            "application/json",
            path=INFER,
        ),
        Case(
            "v2 horizon not an integer",
            400,
            v2(ok_v2, shape, parameters={"horizon": "ten"}),
            "application/json",
            path=INFER,
        ),
        Case("v2 inputs missing", 400, b'{"outputs": []}', "application/json", path=INFER),
    ]
    return cases


if __name__ == "__main__":  # list the corpus
    for case in corpus():
        size = len(case.body) if case.body is not None else 0
        print(f"{case.status}  {case.method:4} {case.path:42} {size:>9} B  {case.name}")
    print(len(corpus()), "cases")
