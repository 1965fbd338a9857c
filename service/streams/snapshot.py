"""A stream taken out of a server and put back in another: its snapshot, one ``.npz`` file.

``GET /v1/streams/{id}/snapshot`` gives the stream as numpy's ``.npz`` (never a pickle): the array
``framecast_snapshot`` holds its description as UTF-8 JSON (model, version, checkpoint, mode,
step, context, …) and the others its window frames (``w0``…), recurrent states (``s0``…) and the
frame it expects next (``e``). Opening a stream with that file (the form field ``snapshot`` of
``POST /v1/models/{name}/streams``) continues it exactly: the next prediction is the uninterrupted
stream's (on another version of the model, the stream replays its window first, as after a swap).

A snapshot is read as untrusted input: its size (members and their declared sizes, before any is
read), its model and frame shape, its array shapes, and its values (finite, within the memory a
stream may hold) are checked, and a fault is a 4xx naming it.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from service.errors import InvalidInput, PayloadTooLarge
from service.streams.records import Stream, describe, most_bytes, new_incarnation, rebuild

FORMAT = 1
META = "framecast_snapshot"
MAX_META_BYTES = 64 * 1024


def take(stream: Stream) -> bytes:
    """``stream`` as a snapshot file."""
    meta, arrays = describe(stream)
    meta.pop("last", None)
    arrays.pop("answer", None)
    meta["last"] = None
    meta["format"] = FORMAT
    buf = io.BytesIO()
    np.savez(
        buf,
        allow_pickle=False,
        **{META: np.frombuffer(json.dumps(meta).encode(), np.uint8)},
        **arrays,
    )
    return buf.getvalue()


def _bad(message: str) -> InvalidInput:
    return InvalidInput(f"snapshot: {message}")


def _members(data: bytes, limit: int, most: int) -> dict[str, np.ndarray]:
    """The arrays of the file, read only after its members' declared sizes were checked."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        infos = z.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise _bad(f"not an .npz file (GET /v1/streams/{{id}}/snapshot makes one): {e}") from None
    if len(infos) > most:
        raise _bad(f"{len(infos)} arrays; a stream's snapshot has at most {most}")
    total = sum(i.file_size for i in infos)
    if total > limit:
        raise PayloadTooLarge(
            f"snapshot: its arrays unpack to {total} bytes, more than the {limit} a stream of "
            "this model may hold (FRAMECAST_STREAM_MAX_BYTES)"
        )
    declared = 0  # what each array's own header says it holds: a zip's sizes may lie
    for info in infos:
        declared += _declared_bytes(z, info)
        if declared > limit:
            raise PayloadTooLarge(
                f"snapshot: its arrays declare more than the {limit} bytes a stream of this "
                "model may hold (FRAMECAST_STREAM_MAX_BYTES)"
            )
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for name in npz.files:
                out[name] = np.asarray(npz[name])
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise _bad(f"an array cannot be read ({type(e).__name__}: {e})") from None
    except MemoryError:
        raise PayloadTooLarge("snapshot: an array is too large to read") from None
    return out


def _declared_bytes(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The bytes the ``.npy`` header of one member says its array holds (0 for a member that
    is not an ``.npy``: np.load refuses it after); 422 for a header that cannot be read."""
    if not info.filename.endswith(".npy"):
        return 0
    try:
        with z.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, RuntimeError) as e:
        raise _bad(f"array {info.filename!r} cannot be read ({type(e).__name__}: {e})") from None
    n = 1
    for d in shape:
        n *= int(d)
    return n * max(1, int(dtype.itemsize))


def _shape(name: str, a: np.ndarray, want: tuple[int, ...]) -> None:
    if a.dtype != np.float32 or tuple(a.shape) != tuple(want):
        raise _bad(
            f"array {name!r} is {a.dtype} {tuple(a.shape)}; this model's stream holds float32 "
            f"{tuple(want)}"
        )
    if not np.isfinite(a).all():
        raise _bad(f"array {name!r} holds values that are not finite (NaN or infinity)")


def restore(data: bytes, runner: Any, settings: Any, template: Stream) -> Stream:
    """The stream a snapshot holds, checked against the model it is opened on (``runner``) and
    made a new stream of this server from ``template`` (id, times, idle timeout, owner)."""
    m = runner.manifest
    limit = template.most_bytes + MAX_META_BYTES
    arrays = _members(data, min(limit, settings.stream_max_bytes + MAX_META_BYTES), 64)
    raw = arrays.pop(META, None)
    if raw is None or raw.dtype != np.uint8 or raw.nbytes > MAX_META_BYTES:
        raise _bad(f"no {META!r} description; GET /v1/streams/{{id}}/snapshot makes the file")
    try:
        meta = json.loads(raw.tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
        if meta.get("format") != FORMAT or meta.get("kind") != "stream":
            raise ValueError(f"format {meta.get('format')!r}, kind {meta.get('kind')!r}")
        model, step = str(meta["model"]), int(meta["step"])
        window_n = int(meta["window"])
        states_n = None if meta["states"] is None else int(meta["states"])
        frame_shape = tuple(int(x) for x in meta["frame_shape"])
        mode = str(meta["mode"])
        expected = bool(meta["expected"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise _bad(f"its description cannot be read ({type(e).__name__}: {e})") from None
    if model != m.name:
        raise _bad(f"it is a stream of model {model!r}; open it on that model, not {m.name!r}")
    want = (m.height, m.width, m.channels)
    if frame_shape != want:
        raise _bad(
            f"its frames are {'x'.join(map(str, frame_shape))}; model {m.name!r} reads "
            f"{'x'.join(map(str, want))} frames"
        )
    if mode not in ("carry", "window") or step < 0:
        raise _bad(f"mode {mode!r}, step {step}: not a stream's")
    if not 0 <= window_n <= template.keeps or window_n > step:
        raise _bad(f"it keeps {window_n} frames; a stream of this model keeps {template.keeps}")
    for i in range(window_n):
        _shape(f"w{i}", arrays.get(f"w{i}", np.empty(0)), want)
    if expected:
        _shape("e", arrays.get("e", np.empty(0)), want)
    carry = mode == "carry" and bool(getattr(runner, "carries", False))
    if carry and states_n is not None:
        shapes = [tuple(s) for s in runner.state_shapes]
        if states_n != len(shapes):
            raise _bad(f"it holds {states_n} states; model {m.name!r} carries {len(shapes)}")
        for k, shape in enumerate(shapes):
            _shape(f"s{k}", arrays.get(f"s{k}", np.empty(0)), shape)
    known = {f"w{i}" for i in range(window_n)} | ({"e"} if expected else set())
    known |= {f"s{k}" for k in range(states_n or 0)}
    if set(arrays) - known:
        raise _bad(f"unexpected arrays {sorted(set(arrays) - known)}")
    try:
        s: Stream = rebuild({**meta, "last": None}, arrays)  # type: ignore[assignment]
        version, sha = int(meta.get("version") or 1), meta.get("sha256")
        if sha is not None and not isinstance(sha, str):
            raise TypeError(f"sha256 is a {type(sha).__name__}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _bad(f"its description cannot be read ({type(e).__name__}: {e})") from None
    out = Stream(
        template.id,
        m.name,
        mode="carry" if carry else "window",
        needs=template.needs,
        keeps=template.keeps,
        frame_bytes=template.frame_bytes,
        state_bytes=sum(int(np.prod(x)) * 4 for x in runner.state_shapes) if carry else 0,
        created=template.created,
        touched=template.touched,
        idle_timeout_s=template.idle_timeout_s,
        frame_shape=want,
        state_shapes=[tuple(x) for x in runner.state_shapes] if carry else [],
        version=version,
        sha256=sha,
        pinned=template.pinned,
        incarnation=new_incarnation(),
        owner=template.owner,
        step=step,
        window=s.window,
        states=s.states if carry else None,
        expected=s.expected,
    )
    if out.held_bytes > most_bytes(out.keeps, out.frame_bytes, out.state_bytes):
        raise PayloadTooLarge("snapshot: it holds more than a stream of this model may hold")
    return out
