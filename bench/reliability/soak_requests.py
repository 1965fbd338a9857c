"""bench/reliability/soak.py's requests: the clips, the reference answers, the mix of valid,
overload and malformed requests (:class:`Load`), and the check of every answer (:func:`check`)."""

from __future__ import annotations

import base64
import io
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def png_bytes(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Spec:
    kind: str  # what it is, for the figures
    method: str
    path: str
    malformed: bool = False
    content: bytes | None = None
    files: list | None = None
    headers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    check: tuple | None = None  # how to check a 200: ("npy"|"scores"|"v2"|"json-shape", key)
    phase: str = "steady"


class Load:
    """The clips, the reference answers and the request mix for one set of models."""

    def __init__(self, models: list[dict], seed: int, overload_horizon: int):
        self.rng = random.Random(seed)
        self.models = {m["name"]: m for m in models}
        self.next_frame = [m for m in models if m["task"] == "next_frame"]
        self.classify = [m for m in models if m["task"] == "classify"]
        if not self.next_frame:
            raise SystemExit("soak: the models folder holds no next-frame model")
        self.overload_model = self.next_frame[0]["name"]
        self.overload_horizon = overload_horizon
        self.clips: dict[str, list[np.ndarray]] = {}
        rs = np.random.default_rng(seed)
        for m in models:
            i = m["input"]
            shape = (i["frames"], i["height"], i["width"]) + (
                (i["channels"],) if i["channels"] > 1 else ()
            )
            self.clips[m["name"]] = [(rs.random(shape) * 255).astype(np.uint8) for _ in range(4)]
        self.refs: dict[tuple, np.ndarray] = {}
        pair = {m["architecture"]: m for m in self.next_frame}
        self.can_compare = (
            {"conv2d_lstm", "convlstm2d"} <= set(pair)
            and len(
                {
                    (
                        m["input"]["frames"],
                        m["input"]["height"],
                        m["input"]["width"],
                        m["input"]["channels"],
                    )
                    for m in pair.values()
                }
            )
            == 1
            and len(self.next_frame) == 2
        )

    # -- reference answers, one request at a time
    def reference_specs(self) -> list[tuple[tuple, Spec]]:
        out = []
        for m in self.next_frame:
            for c in range(4):
                for h in sorted({1, 2, 3, self.overload_horizon}):
                    if m["name"] != self.overload_model and h == self.overload_horizon:
                        continue
                    out.append(((m["name"], c, h), self._predict_npy(m["name"], c, h, None)))
        for m in self.classify:
            for c in range(4):
                out.append(((m["name"], c, "scores"), self._classify(m["name"], c, None)))
        return out

    def _predict_npy(self, name, c, horizon, check=("npy",)) -> Spec:
        return Spec(
            "predict-npy",
            "POST",
            f"/v1/models/{name}/predict",
            content=npy_bytes(self.clips[name][c]),
            headers={"content-type": "application/x-npy"},
            params={"horizon": horizon, "output": "npy"},
            check=None if check is None else ("npy", (name, c, horizon)),
        )

    def _classify(self, name, c, check=("scores",)) -> Spec:
        return Spec(
            "classify",
            "POST",
            f"/v1/models/{name}/classify",
            content=npy_bytes(self.clips[name][c]),
            headers={"content-type": "application/x-npy"},
            params={"top_k": 2},
            check=None if check is None else ("scores", (name, c, "scores")),
        )

    # -- the mix
    def valid(self) -> Spec:
        r = self.rng.random()
        m = self.rng.choice(self.next_frame)["name"]
        c = self.rng.randrange(4)
        h = self.rng.choice((1, 2, 3))
        if r < 0.30:
            return self._predict_npy(m, c, h)
        if r < 0.45:
            frames = self.clips[m][c]
            return Spec(
                "predict-png",
                "POST",
                f"/v1/models/{m}/predict",
                files=[
                    ("files", (f"f{i}.png", png_bytes(f), "image/png"))
                    for i, f in enumerate(frames)
                ],
                params={"horizon": h},
                check=("json-shape", (m, c, h)),
            )
        if r < 0.55:
            body = {"frames": [base64.b64encode(png_bytes(f)).decode() for f in self.clips[m][c]]}
            return Spec(
                "predict-json",
                "POST",
                f"/v1/models/{m}/predict",
                content=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
                params={"horizon": h},
                check=("json-shape", (m, c, h)),
            )
        if r < 0.70 and self.classify:
            k = self.rng.choice(self.classify)["name"]
            return self._classify(k, self.rng.randrange(4))
        if r < 0.82:
            clip = self.clips[m][c].astype(np.float32) / 255.0
            i = self.models[m]["input"]
            shape = [1, i["frames"], i["height"], i["width"], i["channels"]]
            body = {
                "inputs": [
                    {
                        "name": "frames",
                        "shape": shape,
                        "datatype": "FP32",
                        "data": clip.reshape(-1).tolist(),
                    }
                ],
                "parameters": {"horizon": h},
                "outputs": [{"name": "rollout"}],
            }
            return Spec(
                "v2-infer",
                "POST",
                f"/v2/models/{m}/infer",
                content=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
                check=("v2", (m, c, h)),
            )
        if r < 0.88 and self.can_compare:
            frames = self.clips[self.next_frame[0]["name"]][c]
            return Spec(
                "compare",
                "POST",
                "/v1/compare/next-frame",
                content=npy_bytes(frames),
                headers={"content-type": "application/x-npy"},
                params={"horizon": 1},
                check=("compare", None),
            )
        path = self.rng.choice(
            (
                "/v1/models",
                "/healthz",
                "/readyz",
                "/metrics",
                f"/v1/models/{m}",
                f"/v2/models/{m}/ready",
            )
        )
        return Spec("get", "GET", path, check=("ok", None))

    def overload(self) -> Spec:
        s = self._predict_npy(self.overload_model, self.rng.randrange(4), self.overload_horizon)
        s.kind, s.phase = "overload-rollout", "overload"
        return s

    def malformed(self) -> Spec:
        m = self.rng.choice(self.next_frame)["name"]
        frames = self.clips[m][0]
        good = png_bytes(frames[0])
        nan = np.full(frames.shape, np.nan, np.float32)
        kind, content, ctype, params = self.rng.choice(
            [
                ("truncated-png", good[: len(good) // 2], "image/png", {}),
                ("nan-npy", npy_bytes(nan), "application/x-npy", {}),
                ("garbage", os.urandom(512), "application/octet-stream", {}),
                ("bad-json", b'{"frames": [', "application/json", {}),
                (
                    "base64-garbage",
                    json.dumps({"frames": ["%%%"] * 4}).encode(),
                    "application/json",
                    {},
                ),
                ("huge-horizon", npy_bytes(frames), "application/x-npy", {"horizon": 10**9}),
                ("wrong-type", b"hello", "text/plain", {}),
                (
                    "nested-json",
                    b'{"frames":' + b"[" * 5000 + b"]" * 5000 + b"}",
                    "application/json",
                    {},
                ),
            ]
        )
        return Spec(
            "malformed-" + kind,
            "POST",
            f"/v1/models/{m}/predict",
            malformed=True,
            content=content,
            headers={"content-type": ctype},
            params=params,
        )


# --------------------------------------------------------------------------- checking


def check(spec: Spec, r, refs: dict, atol: float) -> str | None:
    """None when the answer is right; else what is wrong."""
    if spec.malformed:
        if r.status_code == 503:  # a full queue is refused before the body is read, by design
            return None if "retry-after" in r.headers else "503 without Retry-After"
        return None if 400 <= r.status_code < 500 else f"malformed got {r.status_code}"
    if r.status_code == 503:
        return None if "retry-after" in r.headers else "503 without Retry-After"
    if r.status_code != 200:
        return f"{r.status_code}: {r.text[:200]}"
    how, key = spec.check
    try:
        if how == "npy":
            got = np.load(io.BytesIO(r.content))
            return None if np.allclose(got, refs[key], atol=atol) else "npy differs from reference"
        if how == "scores":
            scores = {s["class_name"]: s["score"] for s in r.json()["scores"]}
            want = refs[key]
            ok = all(abs(scores[n] - float(v)) <= atol for n, v in want.items())
            return None if ok else "scores differ from reference"
        if how == "json-shape":
            name, c, h = key
            body = r.json()
            ref = refs[(name, c, h)]
            return (
                None
                if body["shape"] == list(ref.shape) and len(body["frames"]) == h
                else f"shape {body['shape']} != {list(ref.shape)}"
            )
        if how == "v2":
            name, c, h = key
            out = r.json()["outputs"][0]
            got = np.asarray(out["data"], np.float32).reshape(out["shape"])[0]
            return None if np.allclose(got, refs[(name, c, h)], atol=atol) else "v2 differs"
        if how == "compare":
            body = r.json()
            return None if set(body["results"]) == {"conv2d_lstm", "convlstm2d"} else "compare"
        return None
    except Exception as e:  # noqa: BLE001 - a malformed answer is a failure, not a crash
        return f"unreadable answer: {type(e).__name__}: {e}"


# ------------------------------------------------- the models served and the reference answers


def make_tiny(root: Path) -> Path:
    from tests.service.conftest import save_tiny

    for arch in ("conv2d_lstm", "convlstm2d"):
        for task in ("next_frame", "classify"):
            save_tiny(root, f"{arch}_{task}", arch, task)
    return root


async def send(client, spec: Spec):
    return await client.request(
        spec.method,
        spec.path,
        content=spec.content,
        files=spec.files,
        headers=spec.headers,
        params=spec.params,
    )


def models_dir_for(args, tmp: Path) -> Path:
    """The folder to serve: tiny fixture models built in ``tmp`` (``--tiny``), ``--models-dir``,
    or the bundled models."""
    if args.tiny:
        return make_tiny(tmp / "models")
    from models.repository import BUNDLED_DIR

    return Path(args.models_dir) if args.models_dir else BUNDLED_DIR


async def take_references(client, load: Load) -> None:
    """The reference answers, one request at a time (unbatched), into ``load.refs``."""
    for key, spec in load.reference_specs():
        r = await send(client, spec)
        r.raise_for_status()
        load.refs[key] = (
            np.load(io.BytesIO(r.content))
            if key[2] != "scores"
            else {s["class_name"]: s["score"] for s in r.json()["scores"]}
        )
