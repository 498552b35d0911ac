"""Fixtures for the project's own tests: one PostgreSQL server for the session, and a way to run the suite's
scenarios in a subprocess, as an operator would, optionally with a sabotage plugin breaking the world between steps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from staging.postgres import StagingServer, staging_server
from tests.harness import SuiteRunner

# pytester runs small throwaway projects in-process: the evidence plugin's tests use it (tests/evidence/).
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def pg(pytestconfig: pytest.Config) -> Iterator[StagingServer]:
    with staging_server(pytestconfig.getoption("dsn")) as server:
        yield server


@pytest.fixture
def suite(pg: StagingServer, tmp_path: Path) -> SuiteRunner:
    return SuiteRunner(admin_dsn=pg.admin_dsn, workdir=tmp_path)


@pytest.fixture(scope="session", autouse=True)
def evidence_signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Live runs need a configured signing key and a named operator: every suite run a test starts (a subprocess
    inherits the environment) signs with this session's key as `test-operator`, unless the test says otherwise."""
    path = tmp_path_factory.mktemp("evidence-signer") / "signing-key.pem"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)
    saved = {name: os.environ.get(name) for name in ("ROTATION_SIGNING_KEY", "ROTATION_OPERATOR")}
    os.environ["ROTATION_SIGNING_KEY"] = str(path)
    os.environ.setdefault("ROTATION_OPERATOR", "test-operator")
    yield path
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
