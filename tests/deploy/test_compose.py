"""docker-compose.yml and its overrides, checked against the Compose Specification's JSON schema.

The schema is the official compose-spec.json (Apache-2.0) as vendored, with its licence, by the
`check-jsonschema` PyPI package (check_jsonschema/builtin_schemas/vendor/compose-spec.json), so the
check runs offline with a schema that moves with that package's releases.
"""

from __future__ import annotations

import importlib.resources
import json

import pytest

from tests.deploy.conftest import COMPOSE_FILES, ROOT, missing_tool

try:
    import jsonschema
    import yaml
except ModuleNotFoundError as e:  # skipped on a bare machine, a failure in CI
    missing_tool(e.name, "the jsonschema and pyyaml wheels")


class ComposeLoader(yaml.SafeLoader):
    """Safe YAML plus Compose's merge tags: `!reset` (drop the value) and `!override` (replace),
    so that a file using them still loads here and the test that forbids them says why."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: (
        loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)
    ),
)


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    try:
        vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    except ModuleNotFoundError:
        missing_tool("the Compose Specification schema", "the check-jsonschema wheel")
    return json.loads((vendor / "compose-spec.json").read_text())


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_matches_the_compose_specification(name, compose_schema):
    document = load(name)
    validator_class = jsonschema.validators.validator_for(compose_schema)
    validator_class.check_schema(compose_schema)
    errors = sorted(validator_class(compose_schema).iter_errors(document), key=lambda e: e.path)
    assert not errors, "\n".join(
        f"{name}: {'/'.join(map(str, e.path))}: {e.message}" for e in errors
    )


def test_the_schema_rejects_a_broken_file(compose_schema):
    """Guard against a schema that accepts anything (e.g. a wrong draft or an empty file)."""
    broken = {"services": {"framecast": {"ports": 8000, "deploy": {"resources": {"gpus": 1}}}}}
    validator_class = jsonschema.validators.validator_for(compose_schema)
    assert list(validator_class(compose_schema).iter_errors(broken))


def resolved(name: str) -> dict:
    """The framecast service of ``name`` with its ``extends`` applied (mappings merged, the
    extending file's values winning), as Compose does."""
    service = load(name)["services"]["framecast"]
    base = service.pop("extends", None)
    if base is None:
        return service
    assert (ROOT / base["file"]).parent == ROOT
    parent = resolved(base["file"])

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    return merge(parent, service)


def test_gpu_reservation_healthcheck_port_and_settings():
    service = resolved("docker-compose.yml")
    assert service["build"]["args"]["VARIANT"] == "gpu" and service["image"] == "framecast:gpu"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in devices
    assert "http://127.0.0.1:8000/readyz" in " ".join(service["healthcheck"]["test"])
    assert any(str(p).endswith(":8000") for p in service["ports"])
    assert any(str(p).endswith(":8001") for p in service["ports"])  # gRPC
    assert service["environment"] and all(
        k.startswith("FRAMECAST_") for k in service["environment"]
    )
    assert service["environment"]["FRAMECAST_DEVICE"].endswith(":-auto}")
    # the default serves the bundled models: no models dir, no volume
    assert "FRAMECAST_MODELS_DIR" not in service["environment"]
    assert not service.get("volumes")


def test_the_cpu_file_stands_alone_without_a_gpu():
    service = resolved("docker-compose.cpu.yml")
    assert service["build"]["args"]["VARIANT"] == "cpu" and service["image"] == "framecast:cpu"
    assert "deploy" not in service
    assert "http://127.0.0.1:8000/readyz" in " ".join(service["healthcheck"]["test"])
    assert service["environment"]["FRAMECAST_DEVICE"].endswith(":-cpu}")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_file_reads_in_old_compose_versions(name):
    """Nothing that Debian's docker-compose 1.29 (or Compose before 2.24.4) cannot read: no
    `!reset`/`!override` tag, no top-level `name:`."""
    code = [ln.split("#", 1)[0] for ln in (ROOT / name).read_text().splitlines()]
    assert not [ln for ln in code if "!reset" in ln or "!override" in ln]
    assert "name" not in load(name)


COMBINATIONS = [
    ["docker-compose.yml"],
    ["docker-compose.cpu.yml"],
    ["docker-compose.yml", "docker-compose.models.yml"],
    ["docker-compose.cpu.yml", "docker-compose.models.yml"],
    ["docker-compose.cpu.yml", "docker-compose.redis.yml"],
    ["docker-compose.yml", "docker-compose.redis.yml"],
]


@pytest.mark.parametrize("files", COMBINATIONS, ids=lambda f: "+".join(f))
def test_docker_compose_1_29_resolves_every_documented_combination(files):
    """Debian's docker-compose (1.29, the Python one) reads the files as the README combines
    them (`config` needs no Docker engine)."""
    import shutil
    import subprocess

    exe = shutil.which("docker-compose")
    if exe is None:
        missing_tool("docker-compose", "Debian's docker-compose package (apt)")
    args = [a for f in files for a in ("-f", f)]
    proc = subprocess.run(
        [exe, *args, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)["services"]["framecast"]
    gpu = files[0] == "docker-compose.yml"
    assert config["image"] == ("framecast:gpu" if gpu else "framecast:cpu")
    assert ("deploy" in config) == gpu
    assert ("FRAMECAST_MODELS_DIR" in config["environment"]) == (
        "docker-compose.models.yml" in files
    )
    redis = "docker-compose.redis.yml" in files
    assert (config["environment"].get("FRAMECAST_STREAM_STORE") == "redis://redis:6379/0") == redis
    services = yaml.safe_load(proc.stdout)["services"]
    assert ("redis" in services) == redis


def test_models_override_mounts_checkpoints_read_only():
    service = load("docker-compose.models.yml")["services"]["framecast"]
    (volume,) = service["volumes"]
    assert volume["target"] == service["environment"]["FRAMECAST_MODELS_DIR"] == "/models"
    assert volume["read_only"] is True


def test_the_redis_override_puts_a_redis_beside_framecast():
    doc = load("docker-compose.redis.yml")
    assert doc["services"]["framecast"]["environment"]["FRAMECAST_STREAM_STORE"] == (
        "redis://redis:6379/0"
    )
    assert "redis" in doc["services"]["framecast"]["depends_on"]
    redis = doc["services"]["redis"]
    assert redis["image"].startswith("redis:") and "--appendonly" in redis["command"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
