"""LitServe serving a framecast checkpoint, for bench/frontend/frontend.py's side-by-side
(dev-only).

    python3 bench/frontend/litserve_app.py MODEL_FOLDER --port 8200 [--max-batch-size 32]

It takes the same JSON body as framecast (``{"frames": [base64 PNG, ...]}``), decodes the frames
as framecast does, calls the same checkpoint with ``predict_on_batch`` on batches LitServe
forms, and answers the class scores (classifiers) or the next frame as a base64 PNG (next-frame
models; one context call, as framecast's horizon=1). LitServe is not a framecast dependency:
install it in a separate environment (see bench/frontend/frontend.py).
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
import harness  # noqa: F401  (puts the repository root on sys.path)
import litserve as ls  # bench-only: not a framecast dependency
import numpy as np
from PIL import Image


class FramecastCheckpoint(ls.LitAPI):
    """One framecast model folder behind LitServe (module level: LitServe spawns workers)."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def setup(self, device: str) -> None:
        from models.checkpoint import open_folder

        self.manifest, model = open_folder(self.folder)
        m = self.manifest
        self.shape = (m.frames, m.height, m.width, m.channels)
        if m.task == "next_frame" and m.rollout == "carried_state":
            from models.carried import stepper

            self.call = stepper(model).context  # one context pass: horizon=1
        else:
            self.call = model
        for b in (1, 2, 4, 8, 16, 32):  # every batch size LitServe may form, traced up front
            self.call.predict_on_batch(np.zeros((b,) + self.shape, np.float32))

    def decode_request(self, request: dict) -> np.ndarray:
        frames = []
        for item in request["frames"][-self.shape[0] :]:
            img = Image.open(io.BytesIO(base64.b64decode(item))).convert("L")
            frames.append(np.asarray(img, np.float32)[..., None] / 255.0)
        return np.stack(frames)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = self.call.predict_on_batch(x)
        return np.asarray(out[0] if isinstance(out, list) else out)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict:
        if self.manifest.task == "classify":
            return {"scores": [float(s) for s in output]}
        frame = np.asarray(output).reshape(self.shape[1:])
        u8 = np.rint(np.clip(frame, 0, 1) * 255).astype(np.uint8)[..., 0]
        buf = io.BytesIO()
        Image.fromarray(u8, mode="L").save(buf, format="PNG")
        return {"frame": base64.b64encode(buf.getvalue()).decode("ascii")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder", type=Path)
    p.add_argument("--port", type=int, default=8200)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout", type=float, default=0.005)
    args = p.parse_args()
    server = ls.LitServer(
        FramecastCheckpoint(str(args.folder)),
        accelerator="cpu",
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
    )
    server.run(port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
