"""No key in the PostgreSQL server log, under every logging setting that can write statements or their parameters,
with the rotation run as the app's own non-superuser owner role.

One private cluster, reconfigured (ALTER SYSTEM + reload) for each setting in turn. Under each, one staging world
(the app role owns the CRM, the app stand-in runs on it) goes through every path that touches a key: seeding, the
engine (a value under a third key makes its digest snapshot fail first, then the rotation runs in full), verification,
the completeness sweep, the app's own decrypt (the probe), the troubleshooting key census. The server log written
meanwhile must hold no fragment of 12 or more characters of any key or credential the session used (raw, hex, base64,
...), while it demonstrably logged what the setting logs. A control per setting shows the same search finds a key sent
the way the runbook (SQL text) or a plain bound parameter sends it.

The second test runs every credential's @scheduled rotation through pytest and looks in the pytest output and every
file the run wrote as well."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.core import envfile
from rotation.core.config import default_config
from rotation.core.database import connect, key_ref
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from rotation.core.proof import NoEvidence
from rotation.core.secret import Secret
from rotation.db_key.decryption import key_census
from rotation.db_key.fernet import app_fernet
from rotation.db_key.procedure import CREDENTIAL, DbKeyRotation
from rotation.db_key.reencrypt import ReencryptionError, pgcrypto_specs
from rotation.evidence.leaks import scan_bytes
from staging.postgres import StagingServer, reconfigure, staging_server
from staging.seed import seed_clients
from staging.world import staging_world
from tests.harness import SuiteRunner
from tests.leakcheck import assert_no_fragment, assert_no_secret, credentials_in, places_under
from tests.rotation import scheduled

CONFIG = default_config()
ENV = CONFIG.credential(CREDENTIAL).env
PII = pgcrypto_specs(CONFIG)[0]
EVIDENCE = NoEvidence()

# setting name -> (server settings, what the log shows when the setting is in force)
SETTINGS: dict[str, tuple[dict[str, str], bytes]] = {
    "log_statement=all": ({"log_statement": "all"}, b"statement: "),
    "log_min_duration_statement=0": ({"log_min_duration_statement": "0"}, b"duration: "),
    "log_min_duration_sample": ({"log_min_duration_sample": "0", "log_statement_sample_rate": "1"}, b"duration: "),
    "auto_explain": ({"session_preload_libraries": "auto_explain", "auto_explain.log_min_duration": "0",
                      "auto_explain.log_analyze": "on", "auto_explain.log_nested_statements": "on"},
                     b"Query Text: "),
    "log_min_error_statement": ({"log_min_error_statement": "error"}, b"STATEMENT: "),
    "log_parameter_max_length_on_error": ({"log_parameter_max_length_on_error": "-1",
                                           "log_min_error_statement": "error"}, b"STATEMENT: "),
}
# Where PostgreSQL 15 writes a bound parameter's value under the setting (auto_explain has no parameter logging
# before 16; log_min_error_statement alone logs the statement text, not its parameters).
LOGS_PARAMETERS = {"log_statement=all", "log_min_duration_statement=0", "log_min_duration_sample",
                   "log_parameter_max_length_on_error"}


@pytest.fixture(scope="module")
def logging_pg() -> Iterator[StagingServer]:
    with staging_server() as server:
        assert server.server_log is not None, "this test needs the private-cluster backend to read the server log"
        yield server
        reconfigure(server.admin_dsn, {})


def _log_since(server: StagingServer, offset: int) -> bytes:
    assert server.server_log is not None
    with server.server_log.open("rb") as f:
        f.seek(offset)
        return f.read()


def _plant_third_key(dsn: str, old: Secret, third: Secret) -> None:
    """One value under a key the rotation does not know: its digest snapshot fails on it (a statement that fails)."""
    with connect(dsn, keys={"old": old, "third": third}) as conn:
        conn.execute(f"UPDATE crm_client_preferences SET email_encrypted = pgp_sym_encrypt(pgp_sym_decrypt("
                     f"email_encrypted, {key_ref('old')}), {key_ref('third')}) WHERE client_id = 'client-00000002'")
        conn.commit()


def _put_back(dsn: str, old: Secret, third: Secret) -> None:
    with connect(dsn, keys={"old": old, "third": third}) as conn:
        conn.execute(f"UPDATE crm_client_preferences SET email_encrypted = pgp_sym_encrypt(pgp_sym_decrypt("
                     f"email_encrypted, {key_ref('third')}), {key_ref('old')}) WHERE client_id = 'client-00000002'")
        conn.commit()


REENCRYPT_STEP = "all sensitive data is re-encrypted under the new key"


def _every_key_path(world: Deployment, first_seed: int) -> list[Secret]:
    """Seeding, the engine (with a failing statement), verification, the sweep, the probe, the census. Returns every
    key and credential used."""
    old = envfile.get_secret(world.env_file, ENV)
    third = generate_key()
    seed_clients(world.dsn, old, 5, first=first_seed)
    rotation = DbKeyRotation(world, reason="log matrix", workers=2)
    before, rest = scheduled.split_at(REENCRYPT_STEP)
    scheduled.run(world, rotation, EVIDENCE, before)  # the scheduled scenario's steps up to the re-encryption
    _plant_third_key(world.dsn, old, third)
    with pytest.raises(ReencryptionError, match="client_id=client-00000002"):
        rotation.reencrypt(EVIDENCE)
    _put_back(world.dsn, old, third)
    rotation.write_env(EVIDENCE)  # the failure put the old key back into .env (no value had moved)
    scheduled.run(world, rotation, EVIDENCE, rest)  # the re-encryption and every step after it
    with connect(world.dsn) as conn:
        census = key_census(conn, rotation.new_key, old, PII)
    assert census.complete, census.summary()
    return [old, rotation.new_key, third]


def _stored_credentials(world: Deployment) -> list[str]:
    """The provider credentials the app keeps Fernet-encrypted in the database (credentials the session used too)."""
    key = envfile.get_secret(world.env_file, ENV)
    with psycopg.connect(world.dsn) as conn:
        tokens = [bytes(r[0]) for r in conn.execute("SELECT credential_key_encrypted FROM security_api_credentials")]
    assert tokens, "staging seeds the app's Fernet-encrypted credentials"
    return [app_fernet(key).decrypt(t).decode() for t in tokens]


def _control(dsn: str) -> tuple[str, str]:
    """A key sent the runbook's way (in SQL text) and as a plain bound parameter, once in a statement that succeeds
    and once in one that fails: what the search must find under a setting that logs either."""
    literal, bound = generate_key().reveal(), generate_key().reveal()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SELECT length(%s::text), '{literal}'", (bound,))
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute(f"SELECT 1 / 0, %s::text, '{literal}'", (bound,))
    return literal, bound


def test_no_key_in_the_server_log_under_any_logging_setting(logging_pg: StagingServer, tmp_path: Path) -> None:
    with staging_world(logging_pg.admin_dsn, tmp_path / "app", CONFIG, rows=20, operator="log-matrix") as world:
        with psycopg.connect(world.dsn) as conn:
            row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row is not None and row[0] is False, "the rotation must run as the app's non-superuser role"
        stored = _stored_credentials(world)
        problems: list[str] = []
        for n, (name, (settings, marker)) in enumerate(SETTINGS.items()):
            reconfigure(logging_pg.admin_dsn, settings)
            offset = logging_pg.server_log.stat().st_size  # type: ignore[union-attr]
            used = _every_key_path(world, 1000 + 10 * n)
            log = _log_since(logging_pg, offset)
            secrets = [s.reveal() for s in used] + stored + [v for k, v in envfile.read_env(world.env_file).items()
                                                             if k in {c.env for c in CONFIG.credentials} and v]
            leaks = [leak.message() for leak in scan_bytes(log, secrets, label=f"server log under {name}")]
            problems += leaks
            if marker not in log:
                problems.append(f"{name}: the server logged nothing this setting logs ({marker!r}): the search "
                                "would prove nothing")
            offset = logging_pg.server_log.stat().st_size  # type: ignore[union-attr]
            literal, bound = _control(world.dsn)
            control = _log_since(logging_pg, offset)
            if not scan_bytes(control, [literal], label="control"):
                problems.append(f"{name}: the control's key in SQL text is not in the log: the check cannot fail")
            if name in LOGS_PARAMETERS and not scan_bytes(control, [bound], label="control"):
                problems.append(f"{name}: the control's bound key is not in the log: the check cannot fail")
        reconfigure(logging_pg.admin_dsn, {})
    assert not problems, "\n".join(problems)


def test_rotations_leave_no_secret_in_server_log_output_or_files(logging_pg: StagingServer, tmp_path: Path) -> None:
    reconfigure(logging_pg.admin_dsn, {"log_statement": "all"})
    runner = SuiteRunner(admin_dsn=logging_pg.admin_dsn, workdir=tmp_path / "run")
    runner.workdir.mkdir()
    basetemp = tmp_path / "basetemp"
    offset = logging_pg.server_log.stat().st_size  # type: ignore[union-attr]
    run = runner.run("rotation_suite/steps/test_rotation.py", "-m", "scheduled", "--basetemp", str(basetemp), "-s",
                     "-v")
    reconfigure(logging_pg.admin_dsn, {})
    credentials = len(CONFIG.credentials)
    assert len(run.outcomes) == credentials, f"expected one scheduled rotation per credential: {list(run.outcomes)}"
    assert all(o.status == "passed" for o in run.outcomes.values()), run.output[-3000:]

    secrets = credentials_in(basetemp)
    assert len(secrets) >= 2 * credentials, "expected an old and a new value of every credential"
    server_log = _log_since(logging_pg, offset)
    assert b"pgp_sym_encrypt" in server_log, "the server did not log the rotation's statements: the test proves nothing"
    places = {"server log": server_log, "pytest output": run.output.encode()} | places_under(tmp_path)
    assert_no_secret(places, secrets)
    assert_no_fragment(places, secrets)
