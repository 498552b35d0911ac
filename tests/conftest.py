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


# --- spreading the tests over xdist's workers (`-n auto` in .ci/run) ------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    """`-n` alone hands out test by test (`--dist load`): a module-scoped fixture (a whole rehearsal, an emergency
    run, a rotation, a private cluster) then runs again on every worker that gets one of its module's tests. With
    `loadgroup` the tests marked below stay on one worker; every other test is still handed out one by one."""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"


# The modules whose tests take longest (--durations, 2 workers), longest first: they start first, so that the run
# does not end with one worker still on a two-minute test while the other idles. Only the order changes.
SLOWEST_FIRST = (
    "tests/test_install.py", "tests/emergency/test_incident_drill.py",
    "tests/rotation/test_db_key_faults.py", "tests/providers/test_provider_command.py", "tests/test_static.py",
    "tests/test_cli.py", "tests/providers/test_rotation_controls.py", "tests/rotation/test_db_key_staged.py",
    "tests/troubleshooting/test_api_calls.py", "tests/troubleshooting/test_app_wont_start_controls.py",
    "tests/rotation/test_db_key_crash.py", "tests/rotation/test_db_key_command.py", "tests/rotation/test_retire.py",
    "tests/rotation/test_day_one_faults.py", "tests/rotation/test_db_key_unopened.py",
    "tests/providers/test_http_provider_failures.py", "tests/providers/test_no_credential_in_output.py",
    "tests/troubleshooting/test_decryption_controls.py", "tests/rotation/test_db_key_controls.py",
    "tests/providers/test_smtp_rotation.py",
)


def _rank(item: pytest.Item) -> int:
    module = item.nodeid.split("::", 1)[0]
    return SLOWEST_FIRST.index(module) if module in SLOWEST_FIRST else len(SLOWEST_FIRST)


@pytest.hookimpl(tryfirst=True)  # before the xdist worker reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a module-scoped fixture joins its module's xdist group (see pytest_configure); the slowest
    modules' tests come first (a stable sort: within a module, and among the rest, the order stays as collected)."""
    items.sort(key=_rank)
    for item in items:
        definitions = getattr(item, "_fixtureinfo", None)
        shared = definitions is not None and any(
            defs and defs[-1].scope == "module" for defs in definitions.name2fixturedefs.values())
        if shared and not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0].removeprefix("tests/")))


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


@pytest.fixture(scope="session", autouse=True)
def no_print_unless_asked() -> Iterator[None]:
    """The operator's commands print report.pdf with Chromium when it is found (`--evidence-pdf=auto`): seconds of CPU
    per run, for a file only the print tests read. Every run a test starts (a subprocess inherits the environment)
    prints only where its test asks with --evidence-pdf (tests/evidence/test_print.py, test_report.py,
    tests/emergency/test_incident_print.py), unless $ROTATION_EVIDENCE_PDF is set already (e.g. auto: print in every
    run)."""
    if os.environ.get("ROTATION_EVIDENCE_PDF"):
        yield
        return
    os.environ["ROTATION_EVIDENCE_PDF"] = "no"
    yield
    os.environ.pop("ROTATION_EVIDENCE_PDF", None)
