"""What a checkpoint is, read from the checkpoint itself: any Keras video model, not only ours.

:func:`open_folder` is the one way a model folder becomes ``(manifest, model)``: it finds the
checkpoint (``model.keras``, else ``model.h5``), checks its sha256 when a manifest pins one, loads
it in safe mode and reads from the loaded model what a manifest would say (:func:`infer`):

- the input ``(T or None, H, W, C)``, C = 1 or 3;
- the task from the output: scores ``(K,)`` → classify (K = 1 with a sigmoid: the positive
  class's probability; K ≥ 2: K scores); a frame ``(H, W, C)`` → next frame (many-to-one);
  frames ``(T', H, W, C)`` → one frame per input frame, the last being the next;
- the architecture from the layers: ConvLSTM2D cells → ``convlstm2d``; a recurrent layer over
  time-distributed 2-D convolutions → ``conv2d_lstm``; anything else → ``other``.

A manifest beside the checkpoint overrides or completes that (class names, the context of a free
time axis, a display name, a description); framecast's own complete manifests must agree with it.
Every refusal is one :class:`CheckpointError` line that says what and why. What serving builds
over a loaded model (a copy per clip length, a uint8 entry) is in ``models/interop/adapters.py``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
from keras import layers

from models.repository import (
    CHECKPOINTS,
    MANIFEST,
    Manifest,
    ManifestError,
    find_checkpoint,
    read_manifest,
    read_manifest_fields,
    sha256_file,
)

RECURRENT = (layers.LSTM, layers.GRU, layers.SimpleRNN, layers.RNN)
CONV_LSTM = (layers.ConvLSTM1D, layers.ConvLSTM2D, layers.ConvLSTM3D)
BINARY_LABELS = ["negative", "positive"]


class CheckpointError(ValueError):
    """A checkpoint cannot be served; the message names the file and says why (one line)."""


def load(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` or ``.h5`` file in safe mode (no Lambda code runs), uncompiled."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise CheckpointError(f"{path}: not a .keras or .h5 file")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: cannot load in safe mode: not a .keras archive (a .keras file is a zip; "
            f"this one starts {head!r}: corrupt, truncated or another format)"
        )
    if path.suffix == ".keras":
        version = _keras_zip_version(path)
        if version.startswith("2."):
            raise CheckpointError(
                f"{path}: saved by Keras {version} (TensorFlow 2.x's tf.keras) in the .keras "
                "format, which Keras 3 cannot read; with that TensorFlow, save it as HDF5 "
                "(model.save('model.h5')) and serve the .h5"
            )
    if path.suffix != ".keras" and head != b"\x89HDF\r\n\x1a\n":
        raise CheckpointError(
            f"{path}: cannot load in safe mode: not an HDF5 file (it starts {head!r}: corrupt, "
            "truncated or another format)"
        )
    try:
        legacy = _legacy_layers(_saved_by_keras2(path)) if path.suffix != ".keras" else {}
        with keras.saving.custom_object_scope(legacy):
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001 - any load failure is reported with the file name
        reason = " ".join(str(e).split())[:400]
        if "lambda" in reason.lower() and "safe" in reason.lower():
            reason = f"it holds a Lambda layer, whose code safe mode does not run ({reason})"
        raise CheckpointError(
            f"{path}: cannot load in safe mode: {type(e).__name__}: {reason}"
        ) from None
    if not isinstance(model, keras.Model):
        raise CheckpointError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    return model


# Keyword arguments that Keras 2 (TF 2.x) wrote into HDF5 layer configs and Keras 3 refuses.
LEGACY_KWARGS = ("time_major",)


def _keras2_hard_sigmoid(x: Any) -> Any:
    """Keras 2's ``hard_sigmoid`` (clip(0.2 x + 0.5, 0, 1)); Keras 3's has slope 1/6 instead,
    so a TF 2.x ConvLSTM2D (whose default recurrent activation it is) computes with this one."""
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def _keras_zip_version(path: Path) -> str:
    """The Keras version a .keras archive's metadata.json names ("" when it names none)."""
    import json

    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
        return str(meta.get("keras_version", ""))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return ""


def _saved_by_keras2(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version", b"")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return not version.startswith("3.")


def _legacy_layers(keras2: bool) -> dict[str, type]:
    """Layer classes, by name, that read a legacy HDF5 config as it was written: Keras 2's
    obsolete keyword arguments dropped and (``keras2``) its ``hard_sigmoid`` kept."""

    def tolerant(base: type[Any]) -> type:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
            for key in LEGACY_KWARGS:
                kwargs.pop(key, None)
            for key in ("activation", "recurrent_activation"):
                if keras2 and kwargs.get(key) == "hard_sigmoid":
                    kwargs[key] = _keras2_hard_sigmoid
            base.__init__(self, *args, **kwargs)

        return type(base.__name__, (base,), {"__init__": __init__})

    rnns = (layers.LSTM, layers.GRU, layers.SimpleRNN, layers.ConvLSTM1D, layers.ConvLSTM2D)
    others = (layers.ConvLSTM3D, layers.Dense, layers.Conv2D, layers.Conv3D, layers.Activation)
    return {c.__name__: tolerant(c) for c in rnns + others}


def walk(layer: Any) -> Iterator[Any]:
    """Every layer inside ``layer`` (nested models, wrapped layers), ``layer`` first."""
    yield layer
    if isinstance(layer, keras.Model) or hasattr(layer, "layers"):
        for inner in getattr(layer, "layers", []):
            yield from walk(inner)
    if isinstance(layer, layers.Bidirectional):
        yield from walk(layer.forward_layer)
    elif isinstance(layer, layers.Wrapper):
        yield from walk(layer.layer)


def architecture(model: keras.Model) -> str:
    """``convlstm2d``, ``conv2d_lstm`` or ``other``, from the layers."""
    every = list(walk(model))[1:]
    if any(isinstance(x, layers.ConvLSTM2D) for x in every):
        return "convlstm2d"
    recurrent = any(isinstance(x, RECURRENT) and not isinstance(x, CONV_LSTM) for x in every)
    per_frame_conv = any(
        isinstance(x, layers.TimeDistributed)
        and any(isinstance(y, layers.Conv2D) for y in walk(x.layer))
        for x in every
    )
    return "conv2d_lstm" if recurrent and per_frame_conv else "other"


def _output_layer(model: keras.Model) -> Any:
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0] if history else model.layers[-1]


def _activation_name(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    if act is None:
        return ""
    name = getattr(act, "__name__", "") or str(act)
    return name.lower()


def _dims(shape: Any) -> tuple:
    return tuple(None if d is None else int(d) for d in shape)


def infer(model: keras.Model, where: str = "the checkpoint") -> dict:
    """What a manifest would say, read from ``model`` (CheckpointError when it cannot serve)."""
    if len(model.inputs) != 1:
        raise CheckpointError(
            f"{where}: the model has {len(model.inputs)} inputs; framecast serves models with "
            "one input, a clip (batch, frames, height, width, channels)"
        )
    if len(model.outputs) != 1:
        raise CheckpointError(
            f"{where}: the model has {len(model.outputs)} outputs; framecast serves models with "
            "one output (scores, a frame, or one frame per input frame)"
        )
    shape = _dims(model.inputs[0].shape)
    if len(shape) != 5:
        raise CheckpointError(
            f"{where}: input shape {shape} has rank {len(shape)}; a video model takes "
            "(batch, frames, height, width, channels)"
        )
    _, t, h, w, c = shape
    if h is None or w is None or c is None:
        raise CheckpointError(
            f"{where}: input shape {shape} leaves height, width or channels free; framecast "
            "needs them fixed to fit uploads to the model"
        )
    if c not in (1, 3):
        raise CheckpointError(
            f"{where}: input has {c} channels; framecast serves grey (1) or RGB (3) models"
        )
    out = _dims(model.outputs[0].shape)
    spec: dict[str, Any] = {"frames": t, "height": h, "width": w, "channels": c}
    if len(out) == 2 and out[1] is not None:
        k = out[1]
        spec.update(task="classify", output="scores")
        if k == 1:
            act = _activation_name(_output_layer(model))
            spec["binary"] = "sigmoid" if "sigmoid" in act else "score"
            spec["class_names"] = BINARY_LABELS if spec["binary"] == "sigmoid" else ["score"]
        else:
            spec["class_names"] = [f"class_{i}" for i in range(k)]
    elif len(out) in (4, 5) and out[-3:] == (h, w, c):
        spec.update(task="next_frame", output="frame" if len(out) == 4 else "sequence")
    elif len(out) in (4, 5):
        raise CheckpointError(
            f"{where}: output shape {out} is frames of {out[-3:]} (height, width, channels) but "
            f"the input's are {(h, w, c)}; a next-frame model's output must have the input's "
            "frame shape, to be fed back for rollouts"
        )
    else:
        raise CheckpointError(
            f"{where}: output shape {out} is neither scores (batch, K), a frame "
            "(batch, H, W, C) nor frames (batch, T, H, W, C)"
        )
    spec["architecture"] = architecture(model)
    spec["params"] = int(model.count_params())
    return spec


def manifest_for(folder: Path, model: keras.Model, fields: dict | None, path: Path) -> Manifest:
    """The manifest of a folder: what the model says, completed and overridden by ``fields``
    (a user's partial manifest, or None)."""
    spec = infer(model, str(path))
    fields = fields or {}
    names = fields.get("class_names")
    if names is not None:
        if spec["task"] != "classify":
            raise CheckpointError(f"{folder / MANIFEST}: class_names given for a next-frame model")
        want = 2 if spec.get("binary") == "sigmoid" else len(spec["class_names"])
        if len(names) != want:
            raise CheckpointError(
                f"{folder / MANIFEST}: {len(names)} class_names for a model with "
                f"{want} scores ({', '.join(spec['class_names'])})"
            )
        spec["class_names"] = list(names)
    context = fields.get("context")
    if context is not None and spec["frames"] is not None and context != spec["frames"]:
        raise CheckpointError(
            f"{folder / MANIFEST}: context={context}, but the model's time axis is fixed at "
            f"{spec['frames']} frames"
        )
    m = Manifest(
        name=folder.name,
        architecture=spec["architecture"],
        task=spec["task"],
        frames=spec["frames"],
        height=spec["height"],
        width=spec["width"],
        channels=spec["channels"],
        class_names=spec.get("class_names"),
        checkpoint=path.name,
        sha256=fields.get("sha256") or "",
        params=spec["params"],
        output=spec["output"],
        binary=spec.get("binary", ""),
        context=context if spec["frames"] is None else None,
        display_name=fields.get("display_name") or "",
        description=fields.get("description") or "",
        rollout=fields.get("rollout") or "sliding_window",
        source="checkpoint",
    )
    try:
        m.validate(str(folder / MANIFEST))
    except ManifestError as e:
        raise CheckpointError(str(e)) from None
    return m


def _agree(folder: Path, manifest: Manifest, model: keras.Model, path: Path) -> None:
    """A complete manifest (framecast's own) must describe the checkpoint beside it."""
    spec = infer(model, str(path))
    for key in ("frames", "height", "width", "channels", "task"):
        if spec[key] != getattr(manifest, key):
            raise CheckpointError(
                f"{path}: the model's {key} is {spec[key]!r} but its manifest "
                f"({folder / MANIFEST}) says {getattr(manifest, key)!r}"
            )
    if manifest.task == "classify":
        k = 2 if spec.get("binary") == "sigmoid" else len(spec["class_names"])
        if len(manifest.class_names or []) != k:
            raise CheckpointError(
                f"{path}: the model gives {k} scores but its manifest names "
                f"{len(manifest.class_names or [])} classes"
            )
        manifest.binary = manifest.binary or spec.get("binary", "")
    manifest.output = spec["output"]


def open_folder(folder: str | os.PathLike, name: str | None = None) -> tuple[Manifest, keras.Model]:
    """``(manifest, model)`` of one model folder (``name``: the model's name when it is not the
    folder's, as for a numbered version folder); CheckpointError or ManifestError say why not."""
    folder = Path(folder)
    manifest, model = _open(folder)
    if name:
        manifest.name = name
    return manifest, model


def _open(folder: Path) -> tuple[Manifest, keras.Model]:
    fields = read_manifest_fields(folder)
    complete = fields is not None and {"architecture", "task", "frames"} <= set(fields)
    manifest = read_manifest(folder) if complete else None
    named = manifest.checkpoint if manifest else (fields or {}).get("checkpoint")
    if named and (os.sep in named or named.startswith("..")):
        raise CheckpointError(f"{folder / MANIFEST}: checkpoint must be a file name in the folder")
    path = find_checkpoint(folder, named)
    if path is None:
        want = named or " or ".join(CHECKPOINTS)
        raise CheckpointError(f"{folder}: no checkpoint ({want}) in the folder")
    pinned = manifest.sha256 if manifest else (fields or {}).get("sha256")
    if complete and not pinned:
        raise CheckpointError(f"{folder / MANIFEST} has no sha256 for {path.name}")
    if pinned:
        digest = sha256_file(path)
        if digest != pinned:
            raise CheckpointError(
                f"{path} has sha256 {digest}, but its manifest says {pinned}: "
                "the file was changed or corrupted"
            )
    model = load(path)
    if manifest is not None:
        _agree(folder, manifest, model, path)
        return manifest, model
    manifest = manifest_for(folder, model, fields, path)
    manifest.sha256 = pinned or sha256_file(path)
    return manifest, model


__all__ = [
    "CheckpointError",
    "architecture",
    "infer",
    "load",
    "manifest_for",
    "open_folder",
]
