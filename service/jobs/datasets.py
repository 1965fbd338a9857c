"""A data set in the forms users have it → clips (and labels), read from the job's folder.

- an ``.npy`` of clips ``(N, T, H, W[, C])``, uint8 (0-255) or float (0-1), memory-mapped and
  never unpickled;
- an ``.npz`` with arrays ``clips`` (as above) and, for classifiers, ``labels`` (class indices,
  or class names);
- a ``.zip`` or ``.tar(.gz)`` of clips, each a video, a GIF (APNG, WebP, TIFF), an ``.npy`` or
  a folder of images (PNG, JPEG, BMP: its frames in name order); classifiers' labels from the
  folder each clip is in, or from a ``labels.csv`` (``clip,label`` rows, clip named by its path
  in the archive with or without its extension);
- one long video cut into clips of ``window`` frames, a new one every ``stride`` frames.

The body is sniffed by its leading bytes, never by its name. :func:`open_dataset` checks and
indexes it (every 4xx a data set can earn comes from here, before the job is accepted);
:meth:`DataSet.frames` decodes one clip with the decoders of every upload (``service/media``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.checks import require_unit_range
from service.errors import FrameDecodeError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.jobs.archives import ArchiveLimits, Unpacked, unpack
from service.media.decode import decode_parts
from service.media.frames import Frame, Limits
from service.media.video import sniff_video

CLIP_EXT = {".gif", ".apng", ".webp", ".tif", ".tiff", ".npy", ".mp4", ".m4v", ".mov"}
CLIP_EXT |= {".webm", ".mkv", ".avi"}
FRAME_EXT = {".png", ".jpg", ".jpeg", ".bmp"}
FORMS = (
    "an .npy of clips (N, T, H, W[, C]), an .npz with arrays clips (and labels), a .zip or "
    ".tar(.gz) of clips (videos, GIFs, .npy files or folders of images), or one video with "
    "window= (and stride=)"
)


@dataclass
class Clip:
    name: str
    label: str | None = None
    index: int = 0  # its row of the array, or its first frame in the video
    files: tuple[Path, ...] = ()  # a file clip (one) or a folder of images (its frames)


@dataclass
class DataSet:
    form: str  # npy, npz, zip, tar or video
    clips: list[Clip]
    limits: Limits
    array: np.ndarray | None = None  # (N, T, H, W[, C]) clips, or (F, H, W, C) video frames
    window: int | None = None
    labels_from: str | None = None  # npz labels, folder names, labels.csv
    ignored: list[str] = field(default_factory=list)  # archive members that are no clip

    def frames(self, i: int) -> list[Frame]:
        """Clip ``i`` decoded (raises 413/415/422 naming the clip)."""
        clip = self.clips[i]
        limits = Limits(
            self.limits.max_frames, self.limits.max_frame_pixels, self.limits.max_total_pixels
        )
        if self.array is not None:
            if self.window is not None:
                rows = self.array[clip.index : clip.index + self.window]
            else:
                rows = self.array[clip.index]
            return array_frames(np.asarray(rows), f"clip {clip.name!r}")
        parts = [
            (f"{clip.name}/{p.name}" if len(clip.files) > 1 else clip.name, p.read_bytes())
            for p in clip.files
        ]
        try:
            return decode_parts(parts, limits)
        except (InvalidInput, UnsupportedMediaType) as e:
            raise type(e)(f"clip {clip.name!r}: {e.message}") from None

    def summary(self) -> dict:
        lengths = None
        if self.array is not None:
            lengths = self.window or int(self.array.shape[1])
        return {
            "form": self.form,
            "clips": len(self.clips),
            "frames_per_clip": lengths,
            "labels_from": self.labels_from,
            "ignored_members": self.ignored[:20],
        }


def array_frames(a: np.ndarray, where: str) -> list[Frame]:
    """One clip ``(T, H, W[, C])`` of uint8 (kept as bytes) or float in [0, 1] → frames."""
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4) or min(a.shape) < 1:
        raise FrameDecodeError(
            f"{where}: shape {a.shape}; each clip must be (T, H, W[, C]), C 1/3/4"
        )
    if a.dtype == np.uint8:
        u8 = a[..., :3] if a.shape[-1] == 4 else a
        return [
            Frame(None, f"{where} frame {t}", u8=np.ascontiguousarray(u8[t])) for t in range(len(a))
        ]
    x = a.astype(np.float32)
    require_unit_range(x, where, kind="float", hint="send uint8 0-255 or floats 0-1")
    x = np.clip(x[..., :3] if x.shape[-1] == 4 else x, 0.0, 1.0)
    return [Frame(np.ascontiguousarray(x[t]), f"{where} frame {t}") for t in range(len(x))]


def sniff(path: Path) -> str:
    """The data set's form from its leading bytes: npy, zip, tar or video."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    if sniff_video(head):
        return "video"
    raise UnsupportedMediaType(
        f"the data set is not a form framecast reads (its first bytes are {head[:8]!r}); "
        f"send {FORMS}"
    )


def _npy(path: Path, max_clips: int, where: str) -> np.ndarray:
    """The clips array of an .npy file, memory-mapped, its header checked first."""
    with open(path, "rb") as f:
        try:
            major, _ = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(f, max_header_size=10000)
        except Exception as e:  # noqa: BLE001 - a malformed header, of whatever kind
            raise FrameDecodeError(f"{where}: not a readable .npy array ({e})") from None
        offset = f.tell()
    if dtype.hasobject or not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
        raise FrameDecodeError(
            f"{where}: dtype {dtype} is not read (never unpickled); send uint8 (0-255) or "
            "float (0-1) clips"
        )
    if len(shape) not in (4, 5):
        raise FrameDecodeError(
            f"{where}: array of shape {shape}; a data set is (N, T, H, W) or (N, T, H, W, C)"
        )
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > path.stat().st_size - offset:
        raise FrameDecodeError(
            f"{where}: its header declares shape {tuple(shape)} of {dtype} ({need} bytes) but "
            f"the file holds {path.stat().st_size - offset} bytes of data (truncated?)"
        )
    if shape[0] > max_clips:
        raise PayloadTooLarge(
            f"{where} holds {shape[0]} clips; at most {max_clips} (FRAMECAST_JOB_MAX_CLIPS)"
        )
    if shape[0] < 1 or min(shape) < 1:
        raise InvalidInput(f"{where}: array of shape {tuple(shape)} holds no clip")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _labels_array(labels: np.ndarray, n: int) -> list[str]:
    """Class indices (integers, whole floats or one-hot rows) or class names, one per clip."""
    if labels.ndim == 2 and len(labels) == n and labels.dtype.kind in "iufb":
        if not np.all((labels == 0) | (labels == 1)) or not np.all(labels.sum(axis=1) == 1):
            raise InvalidInput(f"labels of shape {labels.shape} are not one-hot rows")
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or len(labels) != n:
        raise InvalidInput(f"labels has shape {labels.shape}; it must be (N,) with N = {n} clips")
    if (
        labels.dtype.kind == "f"
        and np.all(np.isfinite(labels))
        and np.all(labels == np.rint(labels))
    ):
        labels = labels.astype(np.int64)
    if labels.dtype.kind in "iub":
        return [str(int(v)) for v in labels]
    if labels.dtype.kind in "US":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in labels.tolist()]
    raise InvalidInput(f"labels are {labels.dtype}; send class indices (integers) or names")


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _from_members(
    files: list[Unpacked], max_clips: int
) -> tuple[list[Clip], list[str], str | None]:
    """Clips from an archive's files, their labels, and the members that are no clip."""
    ignored: list[str] = []
    images: dict[str, list[Unpacked]] = {}
    clips: list[Clip] = []
    csv_file = None
    for u in files:
        parts = u.name.split("/")
        ext = Path(u.name).suffix.lower()
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            ignored.append(u.name)
        elif u.name.lower() == "labels.csv":
            csv_file = u.file
        elif ext in CLIP_EXT:
            stem = u.name[: -len(ext)]
            clips.append(Clip(stem, parts[-2] if len(parts) > 1 else None, files=(u.file,)))
        elif ext in FRAME_EXT:
            images.setdefault("/".join(parts[:-1]), []).append(u)
        else:
            ignored.append(u.name)
    for folder, members in images.items():
        members.sort(key=lambda u: _natural(u.name))
        up = folder.split("/")
        label = up[-2] if len(up) > 1 else None
        clips.append(Clip(folder or "frames", label, files=tuple(u.file for u in members)))
    if len(clips) > max_clips:
        raise PayloadTooLarge(
            f"the archive holds {len(clips)} clips; at most {max_clips} (FRAMECAST_JOB_MAX_CLIPS)"
        )
    if not clips:
        raise InvalidInput(
            "the archive holds no clip: send videos, GIFs, .npy files or folders of images "
            f"(ignored: {', '.join(ignored[:5]) or 'nothing'})"
        )
    clips.sort(key=lambda c: _natural(c.name))
    labels_from = "folder names" if any(c.label for c in clips) else None
    if csv_file is not None:
        _read_csv(csv_file, clips)
        labels_from = "labels.csv"
    return clips, ignored, labels_from


def _read_csv(path: Path, clips: list[Clip]) -> None:
    by_name = {c.name: c for c in clips}
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise InvalidInput(f"labels.csv is not readable UTF-8 CSV ({e})") from None
    unknown = []
    for i, row in enumerate(rows):
        if len(row) < 2 or (i == 0 and row[0].strip().lower() in ("clip", "name", "file")):
            continue
        name, label = row[0].strip(), row[1].strip()
        stem = name.rsplit(".", 1)[0] if Path(name).suffix.lower() in CLIP_EXT else name
        clip = by_name.get(name) or by_name.get(stem)
        if clip is None:
            unknown.append(name)
        else:
            clip.label = label
    if unknown:
        raise InvalidInput(
            f"labels.csv names {len(unknown)} clip(s) the archive does not hold, e.g. "
            f"{unknown[0]!r}; clips are named by their path in it: {', '.join(list(by_name)[:3])}"
        )


def open_dataset(
    path: Path,
    folder: Path,
    *,
    limits: Limits,
    archive: ArchiveLimits,
    max_clips: int,
    max_video_frames: int,
    window: int | None = None,
    stride: int | None = None,
) -> DataSet:
    """Check and index the data set at ``path``, unpacking what it must under ``folder``."""
    form = sniff(path)
    if form == "video":
        return _video(path, folder, limits, max_clips, max_video_frames, window, stride)
    if window is not None or stride is not None:
        raise InvalidInput("window= and stride= cut one long video into clips; this is not a video")
    if form == "npy":
        arr = _npy(path, max_clips, "the data set (.npy)")
        return DataSet("npy", [Clip(f"clip {i}", index=i) for i in range(len(arr))], limits, arr)
    files = unpack(path, form, folder / "members", archive)
    names = {u.name: u for u in files}
    if form == "zip" and files and all(n.endswith(".npy") for n in names):
        if "clips.npy" not in names:
            raise InvalidInput(f"the .npz holds {', '.join(sorted(names))}; it needs clips")
        arr = _npy(names["clips.npy"].file, max_clips, "clips (.npz)")
        clips = [Clip(f"clip {i}", index=i) for i in range(len(arr))]
        labels_from = None
        if "labels.npy" in names:
            labels = np.load(names["labels.npy"].file, allow_pickle=False)
            for c, lab in zip(clips, _labels_array(labels, len(arr))):
                c.label = lab
            labels_from = "labels (.npz)"
        return DataSet("npz", clips, limits, arr, labels_from=labels_from)
    clips, ignored, labels_from = _from_members(files, max_clips)
    return DataSet(form, clips, limits, labels_from=labels_from, ignored=ignored)


def _video(
    path: Path,
    folder: Path,
    limits: Limits,
    max_clips: int,
    max_frames: int,
    window: int | None,
    stride: int | None,
) -> DataSet:
    from service.media.video import decode_video

    if window is None:
        raise InvalidInput(
            "the data set is one video: say how to cut it into clips with window=T (frames "
            "per clip) and, optionally, stride=S (frames between clip starts; default T)"
        )
    stride = stride or window
    kind = sniff_video(path.read_bytes()[:64]) or "MP4"
    video_limits = Limits(max_frames, limits.max_frame_pixels, limits.max_total_pixels)
    try:
        frames = decode_video(path.read_bytes(), kind, "the data set", 0, video_limits)
    except InvalidInput as e:  # its frame limit is the job's, not one request's
        message = e.message.replace("FRAMECAST_MAX_FRAMES", "FRAMECAST_JOB_MAX_VIDEO_FRAMES")
        raise type(e)(message) from None
    if len(frames) < window:
        raise InvalidInput(f"the video holds {len(frames)} frames, fewer than window={window}")
    starts = list(range(0, len(frames) - window + 1, stride))
    if len(starts) > max_clips:
        raise PayloadTooLarge(
            f"window={window}, stride={stride} cut the video into {len(starts)} clips; at most "
            f"{max_clips} (FRAMECAST_JOB_MAX_CLIPS): use a larger stride"
        )
    u8 = np.stack([np.rint(f.data * 255.0).astype(np.uint8) for f in frames])
    np.save(folder / "video_frames.npy", u8)
    arr = np.load(folder / "video_frames.npy", mmap_mode="r")
    clips = [Clip(f"frames {s}-{s + window - 1}", index=s) for s in starts]
    return DataSet("video", clips, limits, arr, window=window)
