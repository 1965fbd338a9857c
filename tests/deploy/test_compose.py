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
    """Safe YAML plus Compose's merge tags: `!reset` (drop the value) and `!override` (replace)."""


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


def test_gpu_reservation_healthcheck_port_and_settings():
    service = load("docker-compose.yml")["services"]["framecast"]
    assert service["build"]["args"]["VARIANT"] == "gpu"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in devices
    assert "http://127.0.0.1:8000/readyz" in " ".join(service["healthcheck"]["test"])
    assert any(str(p).endswith(":8000") for p in service["ports"])
    assert service["environment"] and all(
        k.startswith("FRAMECAST_") for k in service["environment"]
    )
    # the default serves the bundled models: no models dir, no volume
    assert "FRAMECAST_MODELS_DIR" not in service["environment"]
    assert not service.get("volumes")


def test_cpu_override_builds_the_cpu_image_without_a_gpu():
    service = load("docker-compose.cpu.yml")["services"]["framecast"]
    assert service["build"]["args"]["VARIANT"] == "cpu"
    assert "deploy" in service and service["deploy"] is None  # `!reset` drops the reservation
    assert "!reset" in (ROOT / "docker-compose.cpu.yml").read_text()


def test_models_override_mounts_checkpoints_read_only():
    service = load("docker-compose.models.yml")["services"]["framecast"]
    (volume,) = service["volumes"]
    assert volume["target"] == service["environment"]["FRAMECAST_MODELS_DIR"] == "/models"
    assert volume["read_only"] is True
