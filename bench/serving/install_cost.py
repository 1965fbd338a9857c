"""What each install costs: download, disk and time, measured (``docs/bench/install_cost.json``).

    python3 bench/serving/install_cost.py     # ~3-5 minutes; writes docs/bench/install_cost.json

- ``cpu``: a fresh venv, ``pip install --no-cache-dir -e '.[cpu]'`` timed (wall clock), the venv's
  size on disk afterwards (``du``), and the bytes downloaded: the sum of the ``Content-Length``
  of every file in pip's ``--report`` (what pip fetched from the index).
- ``gpu``: ``pip install --dry-run --ignore-installed --report`` of ``.[gpu]`` in the same venv
  (this machine has no GPU, but the resolution is the same on any Linux x86_64 host with this
  Python), then the ``Content-Length`` of every wheel it would download. Disk and time are not
  measured (installing the CUDA wheels without a GPU would prove nothing about the GPU host).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _size(url: str) -> int:
    if url.startswith("file:"):  # a wheel from a local folder (pip's find-links here)
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path)).stat().st_size
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=60) as r:
        return int(r.headers.get("Content-Length", 0))


def _downloads(report: Path) -> dict:
    """Bytes of every distribution pip installs (not the editable framecast itself): from the
    index (HEAD's Content-Length) or from a local wheel folder (its size; on a machine without
    that folder it is downloaded too)."""
    items = json.loads(report.read_text())["install"]
    files = [
        (i["metadata"]["name"], i["download_info"]["url"])
        for i in items
        if not i["download_info"].get("dir_info")  # the editable framecast checkout
    ]
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda f: _size(f[1]), files))
    per = sorted(
        ((name, url.rsplit("/", 1)[-1], n) for (name, url), n in zip(files, sizes)),
        key=lambda x: -x[2],
    )
    local = sum(n for (_, url), n in zip(files, sizes) if url.startswith("file:"))
    return {
        "packages": len(items),
        "download_bytes": sum(sizes),
        "of_which_from_local_wheel_folder": local,
        "largest": [{"name": n, "file": f, "bytes": b} for n, f, b in per[:12]],
    }


def _du(path: Path) -> int:
    return int(
        subprocess.run(
            ["du", "-sb", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs/bench/install_cost.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="framecast-install-"))
    venv, pip = tmp / "v", [str(tmp / "v/bin/python"), "-m", "pip"]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True, env=env)
        empty = _du(venv)
        t0 = time.monotonic()
        subprocess.run(
            [
                *pip,
                "install",
                "-q",
                "--no-cache-dir",
                "--report",
                str(tmp / "cpu.json"),
                "-e",
                f"{ROOT}[cpu]",
            ],
            check=True,
            env=env,
        )
        seconds = time.monotonic() - t0
        tf = subprocess.run(
            [
                str(venv / "bin/python"),
                "-c",
                "import importlib.metadata as m; print(m.version('tensorflow-cpu'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        cpu = {
            "command": "pip install --no-cache-dir -e '.[cpu]' (fresh venv)",
            "seconds": round(seconds, 1),
            "venv_bytes": _du(venv),
            "venv_bytes_before": empty,
            "tensorflow": f"tensorflow-cpu {tf}",
            **_downloads(tmp / "cpu.json"),
        }
        subprocess.run(
            [
                *pip,
                "install",
                "-q",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(tmp / "gpu.json"),
                f"{ROOT}[gpu]",
            ],
            check=True,
            env=env,
        )
        gpu = {
            "command": "pip install --dry-run --ignore-installed --report R '.[gpu]'",
            "seconds": None,
            "venv_bytes": None,
            **_downloads(tmp / "gpu.json"),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        "cpu": cpu,
        "gpu": gpu,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for k in ("cpu", "gpu"):
        r = result[k]
        print(
            f"{k}: {r['packages']} packages, {r['download_bytes'] / 1e6:.0f} MB download, "
            f"disk {r['venv_bytes'] and r['venv_bytes'] / 1e9}, {r['seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
