"""The shared request checks (service/checks.py): each raises the caller's error class."""

from __future__ import annotations

import numpy as np
import pytest

from service.checks import require_horizon, require_task, require_unit_range
from service.errors import FramecastError, FrameDecodeError, InvalidInput, WrongTask


class Other(FramecastError):
    status, kind = 400, "bad_request"


def test_require_task():
    require_task("m", "classify", "classify")
    with pytest.raises(
        WrongTask,
        match=r"model 'm' is a classify model; use POST /v1/models/m/"
        r"classify",
    ):
        require_task("m", "classify", "next_frame")
    with pytest.raises(WrongTask, match="use POST /v1/models/m/predict"):
        require_task("m", "next_frame", "classify")


@pytest.mark.parametrize("k", [0, -1, 6, True, 2.0, "3", None])
def test_require_horizon_refuses(k):
    with pytest.raises(InvalidInput, match=r"from 1 to 5 \(FRAMECAST_MAX_HORIZON\)"):
        require_horizon(k, 5)
    with pytest.raises(Other, match=r"^parameter horizon="):
        require_horizon(k, 5, label="parameter horizon", error=Other)


def test_require_horizon_passes():
    assert [require_horizon(k, 5) for k in (1, 5)] == [1, 5]


@pytest.mark.parametrize(
    "x,says",
    [
        (np.array([0.0, np.nan]), "NaN or infinite"),
        (np.array([np.inf]), "NaN or infinite"),
        (np.array([0.0, 1.5]), "found 0..1.5"),
        (np.array([-0.5, 1.0]), "found -0.5..1"),
    ],
)
def test_require_unit_range_refuses(x, says):
    with pytest.raises(FrameDecodeError, match=says):
        require_unit_range(x, "frame 0", kind="float", hint="send uint8")
    with pytest.raises(Other, match=says):
        require_unit_range(x, "input", kind="FP32", hint="send UINT8", error=Other)


def test_require_unit_range_passes_within_rounding():
    require_unit_range(np.array([-1e-7, 1 + 1e-7], np.float32), "x", kind="float", hint="")
    require_unit_range(np.zeros((0, 3), np.float32), "x", kind="float", hint="")
