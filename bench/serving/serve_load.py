"""bench/serving/serve_bench.py's load generator: prebuilt HTTP requests (multipart uploads of PNG
frames) sent by a closed loop of keep-alive connections, bounded in requests and seconds."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import time

import numpy as np


def multipart(frames: np.ndarray) -> tuple[bytes, str]:
    from PIL import Image

    boundary = "framecastbench" + os.urandom(6).hex()
    out = io.BytesIO()
    for i, f in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="PNG")
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="f{i}.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        )
        out.write(buf.getvalue())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def http_requests(model: str, port: int, clips: np.ndarray) -> list[bytes]:
    reqs = []
    for c in clips:
        body, ctype = multipart(c)
        head = (
            f"POST /v1/models/{model}/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: keep-alive\r\n\r\n"
        ).encode()
        reqs.append(head + body)
    return reqs


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.read()
    return status, headers, body


async def drive(
    port: int,
    reqs: list[bytes],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    timeout: float = 60.0,
) -> dict:
    """Closed loop: ``concurrency`` keep-alive connections, bounded in requests and time."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    phases: dict[str, list[float]] = {}
    batches: list[int] = []
    counter = itertools.count()
    deadline = time.perf_counter() + max_seconds

    async def worker():
        reader = writer = None
        while True:
            i = next(counter)
            if i >= max_requests or time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(reqs[i % len(reqs)])
                await writer.drain()
                status, headers, _ = await asyncio.wait_for(_read_response(reader), timeout)
            except Exception as e:  # noqa: BLE001 - counted as an error
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            dt = time.perf_counter() - t0
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 200:
                latencies.append(dt)
                for part in headers.get("server-timing", "").split(","):
                    if ";dur=" in part:
                        k, v = part.strip().split(";dur=")
                        phases.setdefault(k, []).append(float(v))
                if "x-batch-size" in headers:
                    batches.append(int(headers["x-batch-size"]))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ok = len(latencies)
    lat = np.array(latencies) * 1000.0 if latencies else np.array([float("nan")])
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "ok": ok,
        "errors": sum(v for k, v in statuses.items() if k != "200"),
        "statuses": statuses,
        "wall_s": wall,
        "rps": ok / wall if wall else 0.0,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()),
        "phases_ms": {k: float(np.mean(v)) for k, v in phases.items()},
        "mean_batch": float(np.mean(batches)) if batches else None,
    }
