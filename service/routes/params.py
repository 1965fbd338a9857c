"""The query parameters of the routes that call models, written once.

Each :class:`Param` is both what FastAPI declares (:meth:`Param.query`, used as a route argument's
default) and what the hot path (``service/http/hotpath.py``) reads without the router
(:meth:`Param.read`: the value, or None for anything FastAPI might read otherwise or reject, which
then goes the full app's way). :data:`ROUTES` names each hot route's parameters; the hot path
checks at start-up that the route functions declare exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Query

from service.media.fitting import FITS

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str | None = None
    low: int | None = None  # integers: the bounds (inclusive)
    high: int | None = None
    choices: tuple[str, ...] | None = None  # strings: the values allowed
    example: Any = None
    aliased: bool = False  # the route's argument has another name than the query key

    def query(self) -> Any:
        """The FastAPI declaration (``name: type = PARAM.query()``)."""
        return Query(
            self.default,
            alias=self.name if self.aliased else None,
            ge=self.low,
            le=self.high,
            description=self.description,
            examples=None if self.example is None else [self.example],
        )

    def read(self, raw: str) -> Any:
        """The value of one raw query string as FastAPI reads it, or None when unsure."""
        if isinstance(self.default, bool):
            value = raw.lower()
            return True if value in _TRUE else False if value in _FALSE else None
        if isinstance(self.default, int):
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
                return None
            n = int(raw)
            ok = (self.low is None or n >= self.low) and (self.high is None or n <= self.high)
            return n if ok else None
        if self.choices is not None:
            return raw if raw in self.choices else None
        if self.default is None:  # free text (a version or label): as given
            return raw if 0 < len(raw) <= 64 and raw.isprintable() else None
        return None  # no other kind is read by the hot path


HORIZON = Param(
    "horizon", 1, "frames to predict (≤ FRAMECAST_MAX_HORIZON)", low=1, example=1
)  # fmt: skip
PREDICT_OUTPUT = Param("output", "json", choices=("json", "png", "gif", "npy"), example="json")
RAW = Param("raw", False, "json only: include raw float values")
TOP_K = Param(
    "top_k",
    3,
    "how many best classes the answer lists (in `scores`, best first; capped at the number of "
    "classes)",
    low=1,
    high=1000,
    example=3,
)
RESIZE = Param(
    "resize",
    True,
    "resize frames whose size differs from the model's (false: reject them with 422)",
)
FIT = Param(
    "fit",
    "stretch",
    "how a frame of another size is fitted: stretch (to the model's size, whatever "
    "the aspect ratio), pad (keep the aspect ratio, black bars) or crop (keep the aspect ratio, "
    "cut the overflow); the answer says which was applied in `fit` and `resized_from`",
    choices=FITS,
)

# compare (POST /v1/compare/next_frame, /v1/compare/classify)
COMPARE_HORIZON = Param(
    "horizon",
    None,
    "frames to predict; defaults to the number of truth frames, else 1",
    low=1,
    example=2,
)
HOLDOUT = Param("holdout", 0, "keep the last k uploaded frames back as truth", low=0, example=2)
COMPARE_OUTPUT = Param("output", "json", choices=("json", "png", "gif"), example="json")
CONV2D_LSTM = Param(
    "conv2d_lstm",
    None,
    "which conv2d_lstm model, when several of the task are loaded",
    example="conv2d_lstm_next_frame",
)
CONVLSTM2D = Param(
    "convlstm2d",
    None,
    "which convlstm2d model, when several of the task are loaded",
    example="convlstm2d_next_frame",
)
MODELS = Param(
    "models",
    None,
    "models of the task, comma-separated (any architecture, any input; one model gives its "
    "output and errors alone, with no winner); results are then keyed by model name. "
    "Without it: the Conv2D+LSTM and the ConvLSTM2D model",
    example="conv2d_lstm_next_frame,convlstm2d_next_frame",
)
WITH_FRAMES = Param(
    "frames",
    False,
    "json only: also return each model's predicted frames as base64 PNGs (left out by "
    "default: the answer leads with metrics, winners and timings)",
    aliased=True,
)
INPUTS = Param(
    "inputs",
    False,
    "json only: also return the context (and truth) frames the models saw as base64 PNGs "
    "(`context_png`, `truth_png`), e.g. to show them beside the predictions",
)
COMPARE_TOP_K = Param(
    "top_k",
    3,
    "classes listed per model (best first; capped at the number of classes)",
    low=1,
    high=1000,
    example=3,
)
LABEL = Param("label", None, "the true class, when known", example="NE")
VERSION = Param(
    "version",
    None,
    "the model's numbered version or a label (stable, canary) pointing at one; "
    "none: the highest version served",
    example="1",
)

# the hot routes (POST /v1/models/{name}/ACTION) and their query parameters
ROUTES: dict[str, tuple[Param, ...]] = {
    "classify": (TOP_K, RESIZE, FIT, VERSION),
    "predict": (HORIZON, PREDICT_OUTPUT, RAW, RESIZE, FIT, VERSION),
}
