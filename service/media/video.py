"""Video uploads (MP4, MOV, WebM/Matroska, AVI) → frames, decoded with PyAV (FFmpeg in its wheels).

The container is recognised by its leading bytes (:func:`sniff_video`), then the first video
stream is decoded from memory, frame by frame, into the same :class:`~service.media.frames.Frame`
objects as images: ``(H, W, 3)`` float32 RGB in [0, 1] (``(H, W, 1)`` for a grey stream). The query
options ``start`` and ``stride`` (:class:`VideoOptions`) pick which decoded frames are kept; the
others are decoded (a video cannot skip them) but never converted nor counted.

Every limit is applied while decoding, never after: the stream's frame size before the first frame,
each kept frame's size and the upload's running pixel total, and the frame count: the file is
refused as soon as one frame more than the upload has room for would be kept, so a 10,000-frame
video costs no more than the limit's worth. ``av`` is imported on first use, so the app starts
without it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import FrameDecodeError, InvalidInput, UnsupportedMediaType
from service.media.frames import Frame, Limits, check_total

VIDEO_FORMATS = ("MP4", "MOV", "WEBM", "AVI")  # what sniff_video answers
SUPPORTED_VIDEO = "MP4, WebM (Matroska), AVI, MOV"
_LABELS = {"MP4": "MP4", "MOV": "MOV", "WEBM": "WebM/Matroska", "AVI": "AVI"}
_DEMUXERS = {"MP4": "mov", "MOV": "mov", "WEBM": "matroska", "AVI": "avi"}  # FFmpeg input formats
# ISO base media boxes a MOV/MP4 may start with (old QuickTime files have no ftyp)
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
# ftyp brands of still images (HEIF/HEIC, AVIF) share the MP4 layout but are not videos
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif")
SLACK = 8  # decoded frames allowed past start + stride * room (decoder oddities)


@dataclass(frozen=True)
class VideoOptions:
    """Which decoded frames of a video are kept: ``start``, ``start + stride``, ..."""

    start: int = 0
    stride: int = 1

    def __post_init__(self) -> None:
        if self.start < 0:
            raise InvalidInput(f"start={self.start}: must be 0 or more")
        if self.stride < 1:
            raise InvalidInput(f"stride={self.stride}: must be 1 or more")


def sniff_video(data: bytes) -> str | None:
    """The container of ``data`` from its leading bytes (one of VIDEO_FORMATS), or None."""
    box = data[4:8]
    if box == b"ftyp":
        brand = data[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        return "MOV" if brand == b"qt  " else "MP4"
    if box in _ISO_BOXES:
        return "MOV"
    if data.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM and Matroska
        return "WEBM"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "AVI"
    return None


def _why(e: BaseException) -> str:
    """FFmpeg's reason without the errno and file name PyAV adds."""
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _decoded(container: Any, stream: Any, max_packets: int) -> Iterator[Any]:
    """The stream's frames in presentation order, decoded packet by packet (lazily: the caller
    stops the decoding by not asking for more); at most ``max_packets`` packets are read."""
    for n, packet in enumerate(container.demux(stream)):
        if n >= max_packets:
            return
        yield from packet.decode()


def _to_array(frame: Any) -> np.ndarray:
    """One decoded frame → (H, W, 3) RGB, or (H, W, 1) for a grey stream, float32 in [0, 1]."""
    if frame.format.name.startswith("gray"):
        a = frame.to_ndarray(format="gray")[..., None]
    else:
        a = frame.to_ndarray(format="rgb24")
    return a.astype(np.float32) / 255.0


def _too_many(label: str, room: int, limits: Limits, opts: VideoOptions, declared: int) -> str:
    """The 422 message for a video holding more frames than the upload has room for."""
    picked = "" if opts == VideoOptions() else f" (from frame {opts.start}, every {opts.stride})"
    hint = ""
    if declared > opts.start and room > 0:
        hint = (
            f"; it declares {declared} frames, so e.g. stride={-(-(declared - opts.start) // room)}"
        )
    return (
        f"{label} holds more than {room} frames{picked}, bringing the upload over "
        f"{limits.max_frames}; at most {limits.max_frames} frames (FRAMECAST_MAX_FRAMES): keep "
        "fewer with the query parameters start= (index of the first frame kept) and stride= "
        f"(keep every n-th frame){hint}"
    )


def _unsupported(av: Any, e: BaseException) -> bool:
    """Whether FFmpeg's error says "cannot handle this kind of file" (415), not "bad data" (422)."""
    err = av.error
    kinds = (err.DemuxerNotFoundError, err.DecoderNotFoundError, err.PatchWelcomeError)
    return isinstance(e, (*kinds, err.NotImplementedError, err.ExperimentalError))


def _refuse(av: Any, e: BaseException, fmt: str, label: str, where: str) -> Exception:
    """The 415 or 422 for an error FFmpeg raised while opening or decoding."""
    if _unsupported(av, e):
        return UnsupportedMediaType(
            f"{label}: this {_LABELS[fmt]} file cannot be decoded ({_why(e)}); supported: "
            f"{SUPPORTED_VIDEO} with the codecs FFmpeg decodes (H.264, MPEG-4, VP8, VP9, ...)"
        )
    return FrameDecodeError(
        f"{where}: not a readable {_LABELS[fmt]} video ({_why(e)}; corrupt or truncated?)"
    )


def _open(av: Any, data: bytes, fmt: str, label: str, where: str) -> Any:
    """The container, opened from memory with the demuxer ``fmt`` names."""
    try:
        return av.open(io.BytesIO(data), mode="r", format=_DEMUXERS[fmt])
    except Exception as e:  # noqa: BLE001 - FFmpeg raises many types for bad files
        raise _refuse(av, e, fmt, label, where) from None


def _video_stream(container: Any, fmt: str, label: str) -> Any:
    """The first video stream, with a decoder; 415 when there is none."""
    if not container.streams.video:
        raise UnsupportedMediaType(
            f"{label}: this {_LABELS[fmt]} file holds no video stream; supported: "
            f"{SUPPORTED_VIDEO} files with a video stream"
        )
    stream = container.streams.video[0]
    if stream.codec_context is None:
        tag = getattr(stream, "codec_tag", "") or "unknown"
        raise UnsupportedMediaType(
            f"{label}: the video stream's codec ({tag!r}) cannot be decoded; supported: "
            f"{SUPPORTED_VIDEO} with the codecs FFmpeg decodes (H.264, MPEG-4, VP8, VP9, ...)"
        )
    return stream


def _check_pixels(w: int, h: int, where: str, limits: Limits) -> None:
    if w * h > limits.max_frame_pixels:
        raise InvalidInput(
            f"{where} is {w}x{h} = {w * h} pixels; at most {limits.max_frame_pixels} per frame "
            "(FRAMECAST_MAX_FRAME_PIXELS)"
        )


def decode_video(
    data: bytes,
    fmt: str,
    name: str,
    first: int,
    limits: Limits,
    options: VideoOptions | None = None,
) -> list[Frame]:
    """The kept frames of the first video stream of one file (``fmt`` from :func:`sniff_video`);
    ``first`` is the upload's index of the first frame this file adds.

    Raises 422 (FrameDecodeError) for a corrupt, truncated or empty video, 422 (InvalidInput) over
    a limit, 415 (UnsupportedMediaType) for a file with no decodable video stream."""

    label = f"file {name!r}"
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency; a trimmed install may lack it
        raise UnsupportedMediaType(
            f"{label} is a {_LABELS[fmt]} video, and video uploads need PyAV (pip install av)"
        ) from None
    opts = options or VideoOptions()
    room = limits.max_frames - first  # frames this file may still add
    cap = opts.start + opts.stride * max(room, 0) + SLACK  # decoded frames, kept or not
    frames: list[Frame] = []
    with _open(av, data, fmt, label, f"frame {first} ({label})") as container:
        stream = _video_stream(container, fmt, label)
        ctx = stream.codec_context
        if ctx.width and ctx.height:  # before any frame is decoded
            _check_pixels(ctx.width, ctx.height, f"{label} (its video stream)", limits)
        declared = int(stream.frames or 0)
        decoded = _decoded(container, stream, max_packets=2 * cap + 64)
        index = -1  # of the last decoded frame
        while True:
            source = f"{label} frame {index + 1}"
            where = f"frame {first + len(frames)} ({source})"
            try:
                frame = next(decoded, None)
            except Exception as e:  # noqa: BLE001 - FFmpeg raises many types for bad data
                raise _refuse(av, e, fmt, label, where) from None
            if frame is None:
                break
            index += 1
            if index >= cap:  # a decoded-frame time bomb; the frame limit below comes first
                break
            if index < opts.start or (index - opts.start) % opts.stride:
                continue  # decoded, never converted, counts no pixels
            if len(frames) >= room:
                raise InvalidInput(_too_many(label, room, limits, opts, declared))
            _check_pixels(frame.width, frame.height, where, limits)
            check_total(limits, frame.width * frame.height, name)
            try:
                frames.append(Frame(_to_array(frame), source))
            except Exception as e:  # noqa: BLE001 - a pixel format swscale cannot convert
                raise FrameDecodeError(
                    f"{where}: not a readable {_LABELS[fmt]} video ({_why(e)})"
                ) from None
    if index < 0:
        raise FrameDecodeError(
            f"frame {first} ({label}): not a readable {_LABELS[fmt]} video (no frame could be "
            "decoded: corrupt, truncated or empty?)"
        )
    if not frames:
        raise InvalidInput(
            f"{label}: start={opts.start} is past the end of the video, which holds "
            f"{index + 1} frames; send a smaller start"
        )
    return frames
