"""Every shell example in the README and the guides runs as written, against a live server.

Each ```` ```bash ```` block of README.md and docs/*.md is one example, run with ``bash -eo
pipefail`` in a scratch folder that sees the repository's files (samples, examples, models) by
their usual relative paths and keeps what the example writes. Port 8000 is a live ``framecast
serve`` of the bundled models on a free port (FRAMECAST_URL points at it too); any other port
``80NN`` an example names is mapped to a free port of its own; a ``framecast serve`` line in an
example starts in the background and the example goes on once that server is ready, as it would
in a second terminal; whatever an example leaves running is stopped after it. A block that cannot
run on this machine says why in an HTML comment just above it, ``<!-- example: skip: REASON -->``
(a GPU, a Docker engine, a Ray cluster, hours of training); there are few, and each names its
reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:<!--\s*example:\s*(?P<directive>[^>]*?)\s*-->\s*\n)?```bash\n(?P<body>.*?)```", re.S
)
SHARED = ("service", "models", "examples", "bench", "docs", "pyproject.toml", "README.md")
PORT = re.compile(r"\b80\d\d\b")  # a port of an example (8000 is the live server), mapped


def blocks() -> list:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(pytest.param(m["directive"] or "", m["body"], id=f"{doc.name}:{line}"))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PRELUDE = r"""
_pids=()
trap 'for p in "${_pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT
framecast() {
  if [ "$1" = serve ]; then
    local port=8000 prev=""
    for a in "$@"; do [ "$prev" = --port ] && port="$a"; prev="$a"; done
    command $_FRAMECAST "$@" > "serve-$port.log" 2>&1 &
    _pids+=($!)
    for _ in $(seq 1 600); do
      curl -fs "http://127.0.0.1:$port/readyz" > /dev/null && return 0
      kill -0 "${_pids[-1]}" 2>/dev/null || { cat "serve-$port.log"; return 1; }
      sleep 0.5
    done
    return 1
  fi
  command $_FRAMECAST "$@"
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("example-server") / "serve.log"
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
    env = {**os.environ, "FRAMECAST_LOAD_MODE": "blocking", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    try:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the example server did not become ready"
            time.sleep(0.5)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("directive,body", blocks())
def test_shell_example_runs(directive, body, server, tmp_path):
    if directive.startswith("skip:"):
        reason = directive.removeprefix("skip:").strip()
        assert reason, "a skipped example says why"
        pytest.skip(reason)
    assert not directive, f"unknown example directive {directive!r}"
    for name in SHARED:
        (tmp_path / name).symlink_to(ROOT / name)
    ports = {"8000": str(server)}

    def port(m: re.Match) -> str:  # one free port per port an example names, 8000 the live one
        p = m.group(0)
        if p not in ports:
            ports[p] = str(_free_port())
        return ports[p]

    script = PORT.sub(port, body)
    exe = shutil.which("framecast") or f"{sys.executable} -m service.cli"
    env = {
        **os.environ,
        "_FRAMECAST": exe,
        "FRAMECAST_URL": f"http://127.0.0.1:{server}",
        "FRAMECAST_LOAD_MODE": "blocking",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    (tmp_path / "example.sh").write_text(PRELUDE + script)
    out_path, err_path = tmp_path / "example.out", tmp_path / "example.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            ["bash", "-eo", "pipefail", "example.sh"],
            cwd=tmp_path,
            env=env,
            stdout=out,  # files, not pipes: what the example leaves running may hold them
            stderr=err,
            start_new_session=True,  # what the example starts in the background goes with it
        )
        try:
            code = proc.wait(timeout=600)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    done = subprocess.CompletedProcess(proc.args, code, out_path.read_text(), err_path.read_text())
    assert done.returncode == 0, (
        f"exit {done.returncode}\n--- script\n{script}\n--- stdout\n{done.stdout[-3000:]}"
        f"\n--- stderr\n{done.stderr[-3000:]}"
    )
