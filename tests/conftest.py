"""Fixtures for the project's own tests: one PostgreSQL server for the session, and a way to run the suite's
scenarios in a subprocess, as an operator would, optionally with a sabotage plugin breaking the world between steps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
