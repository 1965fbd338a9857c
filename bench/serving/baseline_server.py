"""The baseline for bench/serving/serve_bench.py: a next-frame server written the common way.

FastAPI, the model loaded once at start-up, a plain ``def`` route (so FastAPI runs it in its thread
pool, as its docs advise for blocking code), the uploaded PNG frames decoded with Pillow, and
``model.predict`` called once per request; the predicted frame goes back as a base64 PNG in JSON.
No batching, no warm-up of other shapes, no queue bound. It answers the same route and upload as
framecast (``POST /v1/models/{name}/predict`` with multipart files), so one load generator drives
both.

    python3 bench/serving/baseline_server.py --model-dir models/convlstm2d_next_frame --port 8101

Under the JAX backend ``model.predict`` is not thread-safe (see docs/GPU.md), so there the calls
are serialised with a lock; under TensorFlow they run concurrently, as most such servers do.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import threading
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, UploadFile
from PIL import Image


def create_baseline_app(model_dir: str | Path) -> FastAPI:
    import keras

    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    model = keras.saving.load_model(
        model_dir / manifest.get("checkpoint", "model.keras"), compile=False
    )
    name = manifest["name"]
    lock = threading.Lock() if keras.backend.backend() == "jax" else contextlib.nullcontext()
    app = FastAPI(title="baseline")

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.post("/v1/models/{model_name}/predict")
    def predict(model_name: str, files: list[UploadFile] = File(...)):
        frames = []
        for f in files:
            img = Image.open(io.BytesIO(f.file.read())).convert("L")
            frames.append(np.asarray(img, dtype=np.float32) / 255.0)
        x = np.stack(frames)[-manifest["frames"] :, :, :, None][None]  # (1, T, H, W, 1)
        with lock:
            y = model.predict(x, verbose=0)  # (1, T, H, W, 1)
        frame = np.clip(y[0, -1, :, :, 0], 0.0, 1.0)
        buf = io.BytesIO()
        Image.fromarray((frame * 255.0 + 0.5).astype(np.uint8)).save(buf, format="PNG")
        return {"model": name, "frames": [base64.b64encode(buf.getvalue()).decode("ascii")]}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, help="one model folder (model.keras + manifest)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8101)
    args = p.parse_args()
    import uvicorn

    uvicorn.run(
        create_baseline_app(args.model_dir),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
