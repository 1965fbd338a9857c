"""Settings: FRAMECAST_ environment variables, defaults, and bad values named at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models.repository import BUNDLED_DIR
from service.app import create_app
from service.config import Settings, SettingsError, load_settings


def test_defaults(monkeypatch):
    for var in ("MODELS_DIR", "MAX_HORIZON", "LOAD_MODE"):
        monkeypatch.delenv("FRAMECAST_" + var, raising=False)
    s = load_settings()
    assert s.models_dir == BUNDLED_DIR
    assert s.load_mode == "background" and s.warmup is True and s.device == "auto"
    assert s.max_upload_bytes == 64 * 1024 * 1024
    assert s.max_horizon == 30 and s.max_frames == 256 and s.max_queue == 128
    assert s.port == 8000 and s.host == "127.0.0.1"


def test_environment_variables_with_the_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("FRAMECAST_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("FRAMECAST_MAX_HORIZON", "7")
    monkeypatch.setenv("FRAMECAST_LOG_LEVEL", "DEBUG")
    s = load_settings()
    assert s.models_dir == Path(tmp_path) and s.max_horizon == 7 and s.log_level == "debug"
    # explicit overrides (CLI flags) win over the environment; None means "not given"
    assert load_settings(max_horizon=3, port=None).max_horizon == 3


@pytest.mark.parametrize(
    "var,value,fragment",
    [
        ("FRAMECAST_MAX_HORIZON", "lots", "valid integer"),
        ("FRAMECAST_MAX_HORIZON", "0", "greater than or equal to 1"),
        ("FRAMECAST_PORT", "70000", "less than or equal to 65535"),
        ("FRAMECAST_LOAD_MODE", "lazy", "background"),
        ("FRAMECAST_DEVICE", "tpu", "gpu"),
        ("FRAMECAST_INFERENCE_TIMEOUT_S", "-1", "greater than 0"),
        ("FRAMECAST_VERSION_POLICY", "newest", "latest:N, all or specific:1,3"),
    ],
)
def test_a_bad_value_fails_at_start_naming_the_variable(monkeypatch, var, value, fragment):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert f"{var}={value!r}" in str(e.value) and fragment in str(e.value)
    # `uvicorn service.app:create_app --factory` calls create_app() with no arguments
    with pytest.raises(SettingsError, match=var):
        create_app()


def test_create_app_reads_the_environment_and_loads_nothing_at_construction(
    monkeypatch, models_dir
):
    monkeypatch.setenv("FRAMECAST_MODELS_DIR", str(models_dir))
    app = create_app()
    assert app.state.settings.models_dir == models_dir
    assert app.state.runtime.runners == {}  # loading happens in the lifespan
    assert app.state.runtime.status.state == "starting"


def test_settings_are_immutable():
    s = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.max_horizon = 3


def test_defaults_quoted_in_the_docs_match_the_settings():
    """The README and the guides (docs/*.md) quote setting defaults; a changed default must
    change them."""
    import re
    from pathlib import Path

    from service.config import Settings

    root = Path(__file__).resolve().parents[2]
    fields = Settings.model_fields
    checked = 0
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for name, value in re.findall(
            r"`FRAMECAST_([A-Z_]+)`,? \(?(?:default )?(\d[\d,]*(?:\.\d+)?)", page.read_text()
        ):
            key = name.lower()
            value = value.rstrip(",").replace(",", "")  # 50,000
            if key in fields and not name.endswith("_BYTES"):
                assert float(value) == float(fields[key].default), f"{page.name}: {name}"
                checked += 1
    table = (root / "docs" / "reliability.md").read_text()
    for name, value in re.findall(r"^\| `([A-Z_]+)` \| (\d+(?:\.\d+)?) \|", table, re.M):
        key = name.lower()
        if key in fields:
            assert float(value) == float(fields[key].default), f"docs/reliability.md: {name}"
            checked += 1
    assert checked >= 5


def test_the_grpc_port_must_not_be_the_http_port():
    from service.config import SettingsError, load_settings

    with pytest.raises(SettingsError, match="FRAMECAST_GRPC_PORT=8005 is the HTTP port"):
        load_settings(port=8005, grpc_port=8005)
    assert load_settings(port=8005, grpc_port=8006).grpc_port == 8006
    assert load_settings(grpc_port="off").grpc_port is None
