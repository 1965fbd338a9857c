"""The plumbing every bench script shares: the repository on ``sys.path``, free ports, a server
child process with its readiness wait and its stop, CPU seconds and RSS from ``/proc``, pausing a
process, and ``wrk`` runs with their output parsed.

The scripts are grouped by what they measure, one folder each: ``serving/`` (the request path,
the runtime, what a horizon or an install costs), ``frontend/`` (the HTTP layers against a bare
process and LitServe), ``streams/`` (live streams, their stores and their scale),
``reliability/`` (soak, faults, slow clients), ``ecosystem/`` (Triton's perf_analyzer, Ray),
``evaluation/`` (evaluation jobs), ``training/`` (training recipes) and ``page/`` (the page's
samples and screenshot). Only this module and ``readme_tables.py`` (the docs' tables from the
committed JSONs) stand beside them, and a script imports nothing from another folder.

A script run as ``python3 bench/GROUP/X.py`` has its folder on ``sys.path`` (its siblings import
as plain modules); its one line before its bench imports puts ``bench/`` there too, so it imports
this module as ``harness``, and importing this puts the repository root first on ``sys.path``
(once, here), so that the script's ``models`` and ``service`` imports find this checkout.
Standard library only: ``bench/frontend/litserve_app.py`` imports it under another Python.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the one place: `python3 bench/G/X.py` finds models/, service/

HOST = "127.0.0.1"  # every bench server listens on loopback only


def child_env() -> dict:
    """This environment for a child Python of this checkout: the repository root first on its
    ``PYTHONPATH``, TensorFlow's C++ log at warnings unless set."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- processes


def signal_group(pid: int, sig: int) -> None:
    """``sig`` to the process group led by ``pid``; quiet when the group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


@contextlib.contextmanager
def paused(pid: int | None) -> Iterator[None]:
    """SIGSTOP ``pid`` (a background job sharing the cores) for the block, SIGCONT after, always;
    nothing when ``pid`` is None."""
    if pid:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def paused_all(pids: list[int] | None) -> Iterator[None]:
    """:func:`paused` for every pid in ``pids`` (``--pause-pid`` given several times)."""
    with contextlib.ExitStack() as stack:
        for pid in pids or []:
            stack.enter_context(paused(pid))
        yield


class Server:
    """A server as a child process, its output in a log (a temporary file, or ``log``), ready
    when ``GET http://127.0.0.1:{port}{ready_path}`` answers 200. With ``group`` it leads its own
    process group (a new session), so pausing and stopping reach its children too."""

    def __init__(
        self,
        cmd: list[str],
        port: int,
        ready_path: str = "/readyz",
        *,
        env: dict | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
        group: bool = False,
        name: str = "server",
    ):
        self.port, self.ready_path, self.name, self.group = port, ready_path, name, group
        self.url = f"http://{HOST}:{port}"
        self.log = open(log, "w+b") if log else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=group,
        )

    def log_tail(self, chars: int = 3000) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    def wait_ready(
        self, timeout: float = 600.0, interval: float = 0.5, probe_timeout: float = 2.0
    ) -> float:
        """Seconds until the ready path answered 200. RuntimeError (with the log's tail) when
        the process exits first, TimeoutError after ``timeout`` seconds."""
        t0 = time.monotonic()
        url = self.url + self.ready_path
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=probe_timeout) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except (OSError, http.client.HTTPException):  # not up yet: refused, a 503, ...
                pass
            time.sleep(interval)
        raise TimeoutError(f"{url} not ready within {timeout:.0f} s")

    def _signal(self, sig: int) -> None:  # quiet when it is gone
        if self.group:
            signal_group(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)  # a no-op once it has been reaped

    def pause(self, on: bool) -> None:
        """SIGSTOP (or SIGCONT) the server, its process group with ``group``; ProcessLookupError
        when it is gone (a server that died mid-run is not measured quietly)."""
        sig = signal.SIGSTOP if on else signal.SIGCONT
        if self.group:
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Continue it if paused, send ``sig``, wait up to ``timeout`` s, then SIGKILL; its exit
        code. Quiet when it is already gone."""
        self._signal(signal.SIGCONT)
        self._signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            code = self.proc.wait()
        self.log.close()
        return code


# --------------------------------------------------------------------------- /proc


def _stat_fields(path: str) -> list[str]:
    """The fields of a /proc stat file after the command name (which may hold spaces)."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def _cpu_s(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(f"/proc/{entry}/stat")
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields[1]), []).append(p)
        stats[p] = _cpu_s(fields)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0.0)
        todo += children.get(p, [])
    return total


def thread_cpu_s(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of one thread of ``pid`` (default its main thread: a uvicorn
    server's event loop)."""
    return _cpu_s(_stat_fields(f"/proc/{pid}/task/{tid or pid}/stat"))


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MB (VmRSS), None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- wrk


def wrk_post(
    url: str,
    body: bytes,
    content_type: str,
    connections: int,
    seconds: float,
    threads: int = 2,
    headers: dict[str, str] | None = None,
) -> str:
    """``wrk -t{threads} -c{connections} -d{seconds}s --latency``, every request POSTing
    ``body`` (with ``headers`` besides its Content-Type); wrk's output (an error when wrk
    fails)."""
    with tempfile.TemporaryDirectory(prefix="framecast-wrk-") as tmp:
        data, script = Path(tmp) / "body.bin", Path(tmp) / "post.lua"
        data.write_bytes(body)
        more = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
        script.write_text(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n{more}'
            f'local f = io.open("{data}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        )
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        cmd += ["--latency", "-s", str(script), url]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _ms(value: str, unit: str) -> float:
    v = float(value)
    return v / 1000.0 if unit == "us" else v * {"ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict:
    """wrk's figures: requests, req/s, the latency distribution's percentiles in ms
    (``latency_ms``: {50: ..., 75: ..., 90: ..., 99: ...}), non-2xx answers, socket errors."""
    latency = {
        int(q): _ms(v, unit)
        for q, v, unit in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    }
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "latency_ms": latency,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }
