"""Video uploads (MP4, WebM, AVI, MOV) decoded with PyAV: frames equal PyAV's own decode, start and
stride pick frames, every limit is applied while decoding, bad files get a 4xx that says why, and
the HTTP routes take videos as multipart files and as raw ``video/*`` bodies."""

from __future__ import annotations

import io
import time
from fractions import Fraction

import numpy as np
import pytest

from service.config import Settings, load_settings
from service.errors import FrameDecodeError, InvalidInput, UnsupportedMediaType
from service.media import video as video_module
from service.media.decode import decode_parts, sniff
from service.media.frames import Limits
from service.media.video import VideoOptions, sniff_video
from tests.service.helpers import FRAMES, clip, files

av = pytest.importorskip("av")

NF = "convlstm2d_next_frame"
PREDICT = f"/v1/models/{NF}/predict"
CLASSIFY = "/v1/models/convlstm2d_classify/classify"

# container -> encoders to try in order, with the pixel format each needs
CANDIDATES = {
    "mp4": [("libx264", "yuv420p"), ("mpeg4", "yuv420p")],
    "webm": [("libvpx", "yuv420p"), ("libvpx-vp9", "yuv420p")],
    "avi": [("mjpeg", "yuvj420p"), ("mpeg4", "yuv420p")],
    "mov": [("mpeg4", "yuv420p"), ("libx264", "yuv420p")],
}
SNIFFED = {"mp4": "MP4", "webm": "WEBM", "avi": "AVI", "mov": "MOV"}


def encoder(container: str) -> tuple[str, str]:
    for codec, pix in CANDIDATES[container]:
        if codec in av.codecs_available:
            try:
                av.Codec(codec, "w")
            except Exception:  # noqa: BLE001 - listed but not usable as an encoder
                continue
            return codec, pix
    pytest.skip(f"no encoder for .{container} in this PyAV build")


def rgb_clip(t: int, h: int = 32, w: int = 32) -> np.ndarray:
    """(t, h, w, 3) uint8: a colour ramp that changes per frame and a moving white square."""
    out = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = (i * 23) % 256
        out[i, ..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        out[i, ..., 2] = 80
        x = (2 * i) % (w - 4)
        out[i, 4:8, x : x + 4] = 255
    return out


def encode(frames: np.ndarray, container: str = "mp4", codec: str | None = None) -> bytes:
    """(t, h, w, 3) uint8 → a video file, encoded by PyAV."""
    if codec is None:
        codec, pix = encoder(container)
    else:
        pix = dict(CANDIDATES[container]).get(codec, "yuv420p")
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def pyav_decode(data: bytes) -> np.ndarray:
    """PyAV's own decode of the first video stream: (t, h, w, 3) float32 in [0, 1]."""
    with av.open(io.BytesIO(data)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack(frames).astype(np.float32) / 255.0


_CACHE: dict[tuple, bytes] = {}


def video(container: str = "mp4", t: int = 12, size: int = 32) -> bytes:
    key = (container, t, size)
    if key not in _CACHE:
        _CACHE[key] = encode(rgb_clip(t, size, size), container)
    return _CACHE[key]


@pytest.fixture
def decoded_count(monkeypatch):
    """Counts the frames the decoder hands out (kept or skipped)."""
    count = [0]
    inner = video_module._decoded

    def counting(container, stream, max_packets):
        for frame in inner(container, stream, max_packets):
            count[0] += 1
            yield frame

    monkeypatch.setattr(video_module, "_decoded", counting)
    return count


# --------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize("container", list(CANDIDATES))
def test_each_container_is_recognised_by_its_leading_bytes(container):
    data = video(container)
    assert sniff_video(data) == SNIFFED[container]
    assert sniff(data) == SNIFFED[container]


def test_old_quicktime_boxes_and_still_image_brands():
    for box in (b"moov", b"mdat", b"wide", b"free"):
        assert sniff_video(b"\x00\x00\x00\x08" + box + b"\x00" * 8) == "MOV"
    assert sniff_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00") is None  # HEIC: an image
    assert sniff_video(b"RIFF\x10\x00\x00\x00WEBPVP8 ") is None
    assert sniff_video(b"RIFF\x10\x00\x00\x00AVI LIST") == "AVI"
    assert sniff_video(b"\x1a\x45\xdf\xa3\x9f") == "WEBM"
    assert sniff_video(b"") is None


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("container", list(CANDIDATES))
def test_every_container_decodes_to_pyavs_own_frames(container):
    data = video(container, t=12)
    frames = decode_parts([(f"clip.{container}", data)])
    assert len(frames) == 12
    assert all(f.data.shape == (32, 32, 3) and f.data.dtype == np.float32 for f in frames)
    assert frames[5].source == f"file 'clip.{container}' frame 5"
    got = np.stack([f.data for f in frames])
    np.testing.assert_allclose(got, pyav_decode(data), atol=1e-6)
    assert 0.0 <= got.min() and got.max() <= 1.0
    # and close to what was encoded (lossy codecs: on average)
    assert np.abs(got - rgb_clip(12) / 255.0).mean() < 0.06


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_start_and_stride_pick_the_frames(container):
    data = video(container, t=20)
    ref = pyav_decode(data)
    frames = decode_parts([("c", data)], video=VideoOptions(start=3, stride=4))
    assert [f.source for f in frames] == [f"file 'c' frame {i}" for i in (3, 7, 11, 15, 19)]
    np.testing.assert_allclose(np.stack([f.data for f in frames]), ref[3::4], atol=1e-6)
    assert len(decode_parts([("c", data)], video=VideoOptions(start=19))) == 1
    assert len(decode_parts([("c", data)], video=VideoOptions(stride=7))) == 3  # 0, 7, 14


def test_skipped_frames_count_no_pixels():
    limits = Limits(max_total_pixels=5 * 32 * 32)
    frames = decode_parts([("c", video(t=20))], limits, video=VideoOptions(start=3, stride=4))
    assert len(frames) == 5 and limits.used_pixels == [5 * 32 * 32]


def test_start_past_the_end_is_422():
    with pytest.raises(InvalidInput, match=r"start=40 is past the end .* 12 frames"):
        decode_parts([("c.mp4", video(t=12))], video=VideoOptions(start=40))


def test_bad_options_are_refused():
    with pytest.raises(InvalidInput, match="stride"):
        VideoOptions(stride=0)
    with pytest.raises(InvalidInput, match="start"):
        VideoOptions(start=-1)


# --------------------------------------------------------------------------- limits


def test_the_frame_limit_stops_the_decoding_early(decoded_count):
    data = video("mp4", t=200, size=16)
    t0 = time.perf_counter()
    with pytest.raises(InvalidInput) as e:
        decode_parts([("long.mp4", data)], Limits(max_frames=5))
    assert decoded_count[0] <= 6  # the 6th frame is the one over the limit, not 200
    msg = e.value.message
    for word in ("long.mp4", "FRAMECAST_MAX_FRAMES", "start=", "stride=", "200 frames"):
        assert word in msg, msg
    assert "stride=40" in msg  # ceil(200 / 5)
    assert time.perf_counter() - t0 < 2.0


def test_the_frame_limit_with_a_stride_decodes_only_what_it_needs(decoded_count):
    data = video("mp4", t=200, size=16)
    with pytest.raises(InvalidInput, match="FRAMECAST_MAX_FRAMES"):
        decode_parts([("long.mp4", data)], Limits(max_frames=5), video=VideoOptions(stride=10))
    assert decoded_count[0] <= 10 * 5 + 1
    decoded_count[0] = 0
    frames = decode_parts([("long.mp4", data)], Limits(max_frames=5), video=VideoOptions(stride=40))
    assert len(frames) == 5 and frames[-1].source.endswith("frame 160")


def test_the_frame_limit_counts_the_frames_of_earlier_parts():
    pngs = [(f"f{i}.png", files(clip(3))[i][1][1]) for i in range(3)]
    with pytest.raises(InvalidInput, match="more than 2 frames, bringing the upload over 5"):
        decode_parts(pngs + [("c.mp4", video(t=12))], Limits(max_frames=5))
    frames = decode_parts(
        pngs + [("c.mp4", video(t=12))], Limits(max_frames=5), video=VideoOptions(stride=6)
    )
    assert len(frames) == 5 and frames[-1].source == "file 'c.mp4' frame 6"


def test_a_video_exactly_at_the_frame_limit_is_accepted():
    assert len(decode_parts([("c.mp4", video(t=12))], Limits(max_frames=12))) == 12


def test_the_per_frame_pixel_limit_is_checked_before_any_frame_is_decoded(decoded_count):
    with pytest.raises(InvalidInput, match=r"32x32 = 1024 pixels.*FRAMECAST_MAX_FRAME_PIXELS"):
        decode_parts([("c.mp4", video())], Limits(max_frame_pixels=1000))
    assert decoded_count[0] == 0


def test_the_total_pixel_limit_is_checked_frame_by_frame(decoded_count):
    with pytest.raises(InvalidInput, match="FRAMECAST_MAX_TOTAL_PIXELS"):
        decode_parts([("c.mp4", video(t=200, size=16))], Limits(max_total_pixels=10 * 256))
    assert decoded_count[0] == 11


def mpeg4_packets(w, h, n):
    enc = av.CodecContext.create("mpeg4", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 25), 25
    out = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), i * 10, np.uint8), format="rgb24")
        frame.pts = i
        out += [bytes(p) for p in enc.encode(frame.reformat(format="yuv420p"))]
    return out + [bytes(p) for p in enc.encode(None)]


def test_a_frame_size_change_mid_stream_is_checked_frame_by_frame():
    """An AVI declaring 16x16 whose MPEG-4 stream switches to 64x64 at frame 3."""
    if "mpeg4" not in av.codecs_available:
        pytest.skip("no MPEG-4 encoder")
    buf = io.BytesIO()
    with av.open(buf, "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 16, 16
        for i, data in enumerate(mpeg4_packets(16, 16, 3) + mpeg4_packets(64, 64, 3)):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts = stream, i, i
            packet.is_keyframe = i in (0, 3)
            out.mux(packet)
    data = buf.getvalue()
    assert [f.data.shape[0] for f in decode_parts([("m.avi", data)])] == [16] * 3 + [64] * 3
    with pytest.raises(InvalidInput, match=r"frame 3 .*64x64 = 4096 pixels.*at most 1000"):
        decode_parts([("m.avi", data)], Limits(max_frame_pixels=1000))


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("container", ["mp4", "webm", "avi", "mov"])
def test_garbage_after_a_valid_header_is_422(container):
    data = video(container, t=12)
    rng = np.random.default_rng(1)
    keep = 48 if container in ("mp4", "mov") else 200
    bad = data[:keep] + rng.integers(0, 256, len(data) - keep, dtype=np.uint8).tobytes()
    with pytest.raises(FrameDecodeError, match="not a readable") as e:
        decode_parts([(f"bad.{container}", bad)])
    assert f"bad.{container}" in e.value.message


def test_a_truncated_mp4_is_422():
    data = video("mp4", t=12)
    with pytest.raises(FrameDecodeError, match=r"not a readable MP4 video .*truncated"):
        decode_parts([("half.mp4", data[: len(data) // 2])])


SIGNATURES = {
    "MP4": b"\x00\x00\x00\x18ftypisom",
    "MOV": b"\x00\x00\x00\x08moov",
    "WebM/Matroska": b"\x1a\x45\xdf\xa3",
    "AVI": b"RIFF\x10\x00\x00\x00AVI ",
}


@pytest.mark.parametrize("fmt", list(SIGNATURES))
@pytest.mark.parametrize("n", [0, 10, 3000])
def test_random_bytes_with_a_video_signature_get_a_clear_4xx(fmt, n):
    rng = np.random.default_rng(n)
    data = SIGNATURES[fmt] + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    with pytest.raises((FrameDecodeError, UnsupportedMediaType)) as e:
        decode_parts([("x.bin", data)])
    assert e.value.status in (415, 422)
    assert "x.bin" in e.value.message and fmt in e.value.message, e.value.message


def test_random_bytes_with_a_video_signature_over_http_never_give_500(client):
    rng = np.random.default_rng(7)
    for sig in SIGNATURES.values():
        data = sig + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
        r = client.post(PREDICT, content=data, headers={"content-type": "video/mp4"})
        assert r.status_code in (415, 422), r.text
        assert r.json()["message"]


def test_an_avi_whose_codec_no_decoder_knows_is_415():
    data = video("avi", t=4)
    fourcc = b"MJPG" if b"MJPG" in data else b"FMP4"
    if fourcc not in data:
        pytest.skip("the AVI's codec tag is not one this test knows")
    with pytest.raises(UnsupportedMediaType, match=r"cannot be decoded.*MP4, WebM"):
        decode_parts([("odd.avi", data.replace(fourcc, b"ZZZZ"))])


def test_a_file_without_a_video_stream_is_415():
    if "aac" not in av.codecs_available:
        pytest.skip("no AAC encoder")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(UnsupportedMediaType, match="no video stream"):
        decode_parts([("sound.mp4", buf.getvalue())])


# --------------------------------------------------------------------------- settings, OpenAPI


def test_the_max_video_stride_setting(monkeypatch):
    assert Settings.model_fields["max_video_stride"].default == 1000
    monkeypatch.setenv("FRAMECAST_MAX_VIDEO_STRIDE", "7")
    assert load_settings().max_video_stride == 7


def test_openapi_documents_start_stride_and_video_bodies(client):
    spec = client.get("/openapi.json").json()
    for path in (PREDICT.replace(NF, "{name}"), "/v1/compare/next-frame", "/v1/compare/classify"):
        op = spec["paths"][path]["post"]
        params = {p["name"]: p for p in op["parameters"]}
        assert {"start", "stride"} <= set(params), path
        assert params["stride"]["schema"]["minimum"] == 1
        assert "video/mp4" in op["requestBody"]["content"]


# --------------------------------------------------------------------------- over HTTP


def test_an_mp4_as_a_multipart_file_is_predicted_from(client):
    data = video("mp4", t=12, size=16)
    r = client.post(
        PREDICT, params={"stride": 2}, files=[("files", ("clip.mp4", data, "video/mp4"))]
    )
    assert r.status_code == 200, r.text
    assert r.json()["frames_received"] == 6
    assert r.json()["shape"] == [1, 16, 16, 1]


def test_an_mp4_as_a_raw_body_is_classified(client):
    data = video("mp4", t=12, size=16)
    r = client.post(CLASSIFY, content=data, headers={"content-type": "video/mp4"})
    assert r.status_code == 200, r.text
    assert r.json()["frames_received"] == 12
    r = client.post(
        CLASSIFY,
        params={"start": 1, "stride": 3},
        content=data,
        headers={"content-type": "video/mp4"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["frames_received"] == 4  # frames 1, 4, 7, 10


def test_a_webm_raw_body_is_predicted_from(client):
    r = client.post(
        PREDICT, content=video("webm", t=8, size=16), headers={"content-type": "video/webm"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["frames_received"] == 8


@pytest.mark.parametrize(
    "params,says",
    [
        ({"stride": 0}, "stride=0"),
        ({"stride": 1001}, "FRAMECAST_MAX_VIDEO_STRIDE"),
        ({"stride": "two"}, "stride='two' is not an integer"),
        ({"start": -1}, "start=-1"),
    ],
)
def test_bad_start_or_stride_is_422(client, params, says):
    data = video("mp4", t=12, size=16)
    r = client.post(PREDICT, params=params, content=data, headers={"content-type": "video/mp4"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_input"
    assert says in r.json()["message"]


def test_too_many_video_frames_over_http_is_422_naming_the_setting(client):
    # the session client allows 64 frames
    r = client.post(
        PREDICT, content=video("mp4", t=80, size=16), headers={"content-type": "video/mp4"}
    )
    assert r.status_code == 422, r.text
    assert "FRAMECAST_MAX_FRAMES" in r.json()["message"]
    assert "stride=" in r.json()["message"]


def test_a_corrupt_video_over_http_is_422(client):
    data = video("mp4", t=12, size=16)
    r = client.post(
        PREDICT,
        files=[("files", ("bad.mp4", data[:40] + b"\x00" * 500, "video/mp4"))],
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "frame_decode_error"
    assert "bad.mp4" in r.json()["message"]


def test_start_and_stride_leave_images_alone(client):
    r = client.post(PREDICT, params={"start": 2, "stride": 3}, files=files(clip()))
    assert r.status_code == 200, r.text
    assert r.json()["frames_received"] == FRAMES


def test_a_video_with_holdout_and_a_video_as_truth_on_compare(client):
    data = video("mp4", t=12, size=16)
    params = {"holdout": 2, "stride": 2}  # frames 0, 2, ..., 10: the last 2 are the truth
    r = client.post(
        "/v1/compare/next-frame", params=params, content=data, headers={"content-type": "video/mp4"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["truth"] == "holdout" and r.json()["horizon"] == 2
    # start/stride apply to every video part of the request, the truth file too
    truth = video("mp4", t=4, size=16)
    r = client.post(
        "/v1/compare/next-frame",
        params={"stride": 2},
        files=[("files", ("c.mp4", data, "video/mp4")), ("truth", ("t.mp4", truth, "video/mp4"))],
    )
    assert r.status_code == 200, r.text
    assert r.json()["truth"] == "upload" and r.json()["horizon"] == 2
