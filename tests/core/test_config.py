"""The deployment configuration: the built-in default matches the CRM, and a bad file is refused with the key named."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from rotation.core.config import ConfigError, default_config, load_config, parse_config


def edited(change: Any) -> dict[str, Any]:
    data = tomllib.loads(resources.files("rotation.core").joinpath("rotation.toml").read_text())
    change(data)
    return data


def test_the_default_matches_the_runbook_schedule_and_the_crm() -> None:
    config = default_config()
    assert all(c.interval.days == 90 and c.warning.days == 7 for c in config.credentials)  # "Rotation Schedule"
    assert sorted(config.emergency_order) == sorted(config.types)
    assert {(e.table, e.kind) for e in config.encrypted_data} == {("crm_client_preferences", "pgcrypto"),
                                                                  ("security_api_credentials", "fernet")}
    assert config.app.health_url == "http://localhost:8000/health"


def test_a_credential_is_found_by_type_label_provider_or_alias() -> None:
    config = default_config()
    for c in config.credentials:
        assert config.credential(c.type) is c
        assert config.credential(c.label.upper()) is c
        assert config.credential(c.provider) is c
        assert all(config.log_type(alias) == c.type for alias in c.log_names)
    with pytest.raises(ConfigError, match="unknown credential 'nope'"):
        config.credential("nope")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["app"].update(stopp="x"), "unknown key app.stopp"),
    (lambda d: d["app"].pop("stop"), "app.stop is missing"),
    (lambda d: d["app"].update(health_timeout_s="soon"), "app.health_timeout_s must be a number"),
    (lambda d: d["emergency"].update(order=d["emergency"]["order"][:-1]), "emergency.order must name every"),
    (lambda d: next(iter(d["credentials"].values())).update(interval_days=0), "must be positive"),
    (lambda d: next(iter(d["credentials"].values())).update(provider="carrier-pigeon"), "must be one of"),
    (lambda d: next(iter(d["credentials"].values()))["strength"].update(pattern="(["), "not a regular expression"),
    (lambda d: d["encrypted_data"][0].update(kind="rot13"), "'pgcrypto' or 'fernet'"),
    (lambda d: [c.update(env="SAME") for c in d["credentials"].values()], "names SAME more than once"),
], ids=["unknown key", "missing key", "wrong type", "order incomplete", "interval", "provider", "pattern", "kind",
        "duplicate env"])
def test_a_bad_configuration_is_refused_naming_the_key(change: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(edited(change), "test.toml")


def test_the_file_comes_from_the_option_then_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(resources.files("rotation.core").joinpath("rotation.toml").read_text()
                    .replace('health_url = "http://localhost:8000/health"', 'health_url = "http://app:9000/health"'))
    assert load_config(path, environ={}).app.health_url == "http://app:9000/health"
    assert load_config(None, environ={"ROTATION_CONFIG": str(path)}).source == str(path)
    assert load_config(None, environ={}).source == "built-in default"
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "missing.toml", environ={})
