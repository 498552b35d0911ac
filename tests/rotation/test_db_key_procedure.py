"""DbKeyRotation called directly on staging worlds (the app's non-superuser role owns the CRM, the app stand-in runs on
it): what a rotation changes and what it refuses.

- Before and after a rotation: every column but the ciphertext identical in every row (`updated_at` included), one row
  more in the rotation log (the app's credential trigger wrote none), the Fernet values opening with the app's
  derivation of the new key and not the old; the per-value digests gone once the rotation is verified, and a rerun of
  the finished scheduled rotation still checks what can be checked. Done twice: as the table owner (triggers switched
  off inside each write transaction) and with `GRANT SET ON PARAMETER session_replication_role` (replica mode).
- The completeness sweep: an old-key value outside the inventory (a PGP message in a bytea column, a Fernet token in a
  text column) fails verification, naming table, column and count.
- The app must really be stopped: a session of its role still connected is refused before .env or any value changes.
- Values written under the old key during the run are named (table, column, count, row ids), and the next run takes
  them up and proves the whole table.
- --abandon-pending is refused once the pending key is in .env or a value is under it, and nothing changes.
- A role that can neither set session_replication_role nor owns the table is refused before anything is written,
  naming the grant.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rotation.core import envfile, prerequisites, state
from rotation.core.config import default_config
from rotation.core.database import connect, key_ref
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from rotation.core.proof import CheckFailed, NoEvidence
from rotation.core.secret import Secret
from rotation.db_key.fernet import app_fernet, opens
from rotation.db_key.procedure import CREDENTIAL, DbKeyRotation
from rotation.db_key.reencrypt import ReencryptionError
from staging.postgres import StagingServer
from staging.world import staging_world
from tests.rotation import scheduled

EVIDENCE = NoEvidence()
CONFIG = default_config()
ENV = CONFIG.credential(CREDENTIAL).env
CLIENTS = "crm_client_preferences"
ENCRYPTED = {e.table: set(e.columns) for e in CONFIG.encrypted_data}


@pytest.fixture
def world(pg: StagingServer, tmp_path: Path) -> Iterator[Deployment]:
    with staging_world(pg.admin_dsn, tmp_path / "app", CONFIG, rows=20, operator="test") as deployment:
        prerequisites.back_up(deployment, EVIDENCE)
        yield deployment


def rotation(world: Deployment, *, abandon: bool = False, scheduled: bool = False) -> DbKeyRotation:
    return DbKeyRotation(world, reason="test", workers=2, abandon_pending=abandon, scheduled=scheduled)


def rows_but_ciphertext(dsn: str) -> dict[str, list[str]]:
    """Every row of every inventory table, every column but the encrypted ones, as text (timestamps to the µs)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return {table: [str(r[0]) for r in conn.execute(sql.SQL(
            "SELECT (to_jsonb(x) - CAST(%s AS text[]))::text FROM {} x ORDER BY 1").format(sql.Identifier(table)),
            (sorted(columns),))] for table, columns in ENCRYPTED.items()}


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else -1


def fernet_tokens(dsn: str) -> list[bytes]:
    with psycopg.connect(dsn) as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT credential_key_encrypted FROM security_api_credentials "
                                                  "ORDER BY service_name")]


def digests(key: Secret, tokens: list[bytes]) -> list[str]:
    """What the tokens hold, as digests: a plaintext credential is never an operand of an assertion."""
    return [hashlib.sha256(app_fernet(key).decrypt(t)).hexdigest() for t in tokens]


def rotate(world: Deployment, r: DbKeyRotation) -> None:
    """The scheduled scenario's steps, as its feature lists them."""
    scheduled.run(world, r, EVIDENCE)


class Recorded(NoEvidence):
    def __init__(self) -> None:
        self.items: dict[str, object] = {}

    def record(self, name: str, value: object, *, source: str | None = None) -> None:
        self.items[name] = value


@pytest.mark.parametrize("triggers", ["owner", "replica"])
def test_only_ciphertext_changes_and_the_leftovers_go(pg: StagingServer, world: Deployment, triggers: str) -> None:
    if triggers == "replica":
        with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(
                sql.Identifier(str(conninfo_to_dict(world.dsn)["user"]))))
    before, logged_before = rows_but_ciphertext(world.dsn), count(world.dsn, "SELECT count(*) FROM "
                                                                              "security_credential_rotations")
    tokens_before = fernet_tokens(world.dsn)
    r = rotation(world, scheduled=True)
    recorded = Recorded()
    rotate(world, r)
    r.reencrypt(recorded)

    assert rows_but_ciphertext(world.dsn) == before, "a column other than the encrypted ones changed"
    assert count(world.dsn, "SELECT count(*) FROM security_credential_rotations") == logged_before + 1
    tokens = fernet_tokens(world.dsn)
    assert len(tokens) == len(tokens_before) == 3 and tokens != tokens_before
    assert all(opens(r.new_key, t) and not opens(r.old_key, t) for t in tokens)
    assert digests(r.new_key, tokens) == digests(r.old_key, tokens_before)
    job = recorded.items[f"re-encryption of {CLIENTS}"]
    assert isinstance(job, dict) and str(job["triggers"]).split(": ", 1)[1].startswith(
        "SET LOCAL session_replication_role" if triggers == "replica" else "ALTER TABLE")
    assert job["workers"] == 2  # the owner way too: only each page's cheap write waits for the table lock

    assert count(world.dsn, "SELECT count(*) FROM rotation_runbook.row_digest") == 0, "digests left behind"
    assert count(world.dsn, "SELECT count(*) FROM rotation_runbook.reencrypt_job WHERE verified_values > 0 "
                            "AND digests_removed_at IS NOT NULL") == 2
    again = rotation(world, scheduled=True)  # the operator's command run again after the rotation finished
    again.generate_key(recorded)
    assert again.rotation_id == r.rotation_id
    again.reencrypt(recorded)
    again.verify_new_key(recorded)
    recheck = recorded.items[f"population check of {CLIENTS}"]
    assert isinstance(recheck, dict) and "proven when the rotation was verified" in recheck, recheck
    assert re.fullmatch(r"(\S+) of \1 values open with the new key, 0 with the old", str(recheck["now"])), recheck
    assert rows_but_ciphertext(world.dsn) == before


def test_the_sweep_finds_old_key_values_outside_the_inventory(world: Deployment) -> None:
    r = rotation(world)
    rotate(world, r)
    with connect(world.dsn, keys={"old": r.old_key}) as conn:
        conn.execute("CREATE TABLE crm_attachments (attachment_id int PRIMARY KEY, blob bytea, note text)")
        conn.execute(f"INSERT INTO crm_attachments VALUES (1, pgp_sym_encrypt('secret note', {key_ref('old')}), "
                     "NULL), (2, NULL, %s), (3, 'plain'::bytea, 'plain'), (4, %s, NULL)",
                     (app_fernet(r.old_key).encrypt(b"api token").decode(), app_fernet(r.old_key).encrypt(b"key")))
        conn.commit()
    with pytest.raises(CheckFailed) as failed:
        r.verify_old_key_dead(EVIDENCE)
    assert "public.crm_attachments.blob: 1 PGP value open with the old key (attachment_id=1)" in str(failed.value)
    assert "public.crm_attachments.note: 1 Fernet value open with the old key (attachment_id=2)" in str(failed.value)
    assert "public.crm_attachments.blob: 1 Fernet value open with the old key (attachment_id=4)" in str(failed.value)
    assert r.old_key.fingerprint in str(failed.value)


def test_a_connected_app_session_is_refused_before_anything_changes(world: Deployment) -> None:
    r = rotation(world)
    r.generate_key(EVIDENCE)
    env_before = world.env_file.read_bytes()
    prerequisites.stop_app(world, EVIDENCE)
    with psycopg.connect(world.dsn, application_name="event-planning-api worker 2") as straggler:
        pid = straggler.info.backend_pid
        for step in (r.write_env, r.reencrypt):
            with pytest.raises(CheckFailed) as refused:
                step(EVIDENCE)
            assert f"pid {pid}" in str(refused.value)
            assert "application_name 'event-planning-api worker 2'" in str(refused.value)
            assert "client 127.0.0.1" in str(refused.value)
    assert world.env_file.read_bytes() == env_before
    assert count(world.dsn, "SELECT count(*) FROM rotation_runbook.reencrypt_job") == 0


def test_values_written_during_the_run_are_named_and_the_next_run_takes_them_up(world: Deployment) -> None:
    r = rotation(world)
    r.generate_key(EVIDENCE)
    prerequisites.stop_app(world, EVIDENCE)
    r.write_env(EVIDENCE)
    r.reencrypt(EVIDENCE)
    with connect(world.dsn, keys={"old": r.old_key}) as writer:  # a writer nobody stopped, under the old key
        writer.execute(f"INSERT INTO crm_client_preferences (client_id, email_encrypted) VALUES "
                       f"('client-late-1', encrypt_sensitive_data('late1@example.com', {key_ref('old')})), "
                       f"('client-late-2', encrypt_sensitive_data('late2@example.com', {key_ref('old')}))")
        writer.execute(f"UPDATE crm_client_preferences SET phone_number_encrypted = encrypt_sensitive_data("
                       f"'+15550001111', {key_ref('old')}) WHERE client_id = 'client-00000003'")
        writer.commit()
    with pytest.raises(CheckFailed) as named:
        r.verify_new_key(EVIDENCE)
    reason = str(named.value)
    assert f"{CLIENTS}.phone_number_encrypted: 1 value still under the old key (client_id=client-00000003)" in reason
    assert f"{CLIENTS}: 2 rows written after the digest snapshot" in reason
    assert "client_id=client-late-1, client-late-2" in reason

    resumed = rotation(world)  # `rotation db-key resume`
    resumed.generate_key(EVIDENCE)
    recorded = Recorded()
    resumed.reencrypt(recorded)
    taken_up = recorded.items[f"re-encryption of {CLIENTS}"]
    assert isinstance(taken_up, dict)
    assert taken_up["rows written during the rotation, taken up"] == {
        "count": 3, "client_id": ["client-00000003", "client-late-1", "client-late-2"]}
    resumed.verify_new_key(EVIDENCE)
    resumed.verify_old_key_dead(EVIDENCE)
    with connect(world.dsn, keys={"new": resumed.new_key}) as conn:
        late = conn.execute(f"SELECT decrypt_sensitive_data(email_encrypted, {key_ref('new')}) FROM "
                            "crm_client_preferences WHERE client_id LIKE 'client-late-%' ORDER BY 1").fetchall()
    assert [v for (v,) in late] == ["late1@example.com", "late2@example.com"]


def _fingerprint_of_everything(world: Deployment) -> tuple[bytes, ...]:
    files = [world.env_file, state.state_path(world.env_file), state.pending_path(world.env_file, CREDENTIAL)]
    with psycopg.connect(world.dsn) as conn:
        data = conn.execute("SELECT md5(string_agg(t::text, '|' ORDER BY client_id)) FROM crm_client_preferences t"
                            ).fetchone()
        jobs = conn.execute("SELECT md5(coalesce(string_agg(j::text, '|' ORDER BY job_id), '')) FROM "
                            "rotation_runbook.reencrypt_job j").fetchone()
    return (*(hashlib.sha256(f.read_bytes()).digest() if f.exists() else b"-" for f in files),
            str(data).encode(), str(jobs).encode())


def test_abandon_pending_is_refused_once_the_key_is_in_env_and_nothing_changes(world: Deployment) -> None:
    first = rotation(world)
    first.generate_key(EVIDENCE)
    prerequisites.stop_app(world, EVIDENCE)
    first.write_env(EVIDENCE)
    before = _fingerprint_of_everything(world)
    with pytest.raises(CheckFailed, match="already holds the pending key"):
        rotation(world, abandon=True).generate_key(EVIDENCE)
    assert _fingerprint_of_everything(world) == before
    current = state.load(world.env_file, CREDENTIAL)
    assert current is not None and current.rotation_id == first.rotation_id and current.step == "set"


def test_abandon_pending_is_refused_once_a_value_is_under_the_key(world: Deployment) -> None:
    first = rotation(world)
    first.generate_key(EVIDENCE)
    prerequisites.stop_app(world, EVIDENCE)
    first.write_env(EVIDENCE)
    first.reencrypt(EVIDENCE)
    envfile.set_value(world.env_file, ENV, first.old_key)  # someone put the old key back by hand
    before = _fingerprint_of_everything(world)
    with pytest.raises(CheckFailed, match="values are already under the pending key"):
        rotation(world, abandon=True).generate_key(EVIDENCE)
    assert _fingerprint_of_everything(world) == before


def test_env_keeps_the_old_key_while_the_app_runs_and_a_rerun_takes_up_the_pending_key(world: Deployment) -> None:
    r = rotation(world)
    r.generate_key(EVIDENCE)
    with pytest.raises(CheckFailed, match="still answers healthy"):
        r.write_env(EVIDENCE)
    assert envfile.get_secret(world.env_file, ENV) == r.old_key
    again = rotation(world)
    again.generate_key(EVIDENCE)
    assert (again.new_key, again.old_key, again.rotation_id) == (r.new_key, r.old_key, r.rotation_id)
    abandoned = rotation(world, abandon=True)
    abandoned.generate_key(EVIDENCE)  # the pending key reached nothing: starting over is allowed
    assert abandoned.new_key != r.new_key and abandoned.rotation_id != r.rotation_id
    assert abandoned.old_key == r.old_key


def test_a_role_that_cannot_keep_triggers_quiet_is_refused_naming_the_grant(pg: StagingServer,
                                                                            world: Deployment) -> None:
    """An operator role with every table privilege but neither ownership nor the SET grant."""
    params = conninfo_to_dict(world.dsn)
    ops = f"{params['user']}_ops"
    with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ops)))
    try:
        with psycopg.connect(world.dsn, autocommit=True) as owner:
            for statement in ("GRANT ALL ON ALL TABLES IN SCHEMA public, rotation_runbook TO {r}",
                              "GRANT ALL ON ALL SEQUENCES IN SCHEMA rotation_runbook TO {r}",
                              "GRANT USAGE, CREATE ON SCHEMA rotation_runbook, public TO {r}"):
                owner.execute(sql.SQL(statement).format(r=sql.Identifier(ops)))
        r = rotation(world)
        r.generate_key(EVIDENCE)
        prerequisites.stop_app(world, EVIDENCE)
        r.write_env(EVIDENCE)
        before = rows_but_ciphertext(world.dsn)
        as_ops = Deployment(world.target, make_conninfo(**{**params, "user": ops}), world.env_file, world.app,
                            world.config, world.operator)
        with pytest.raises(ReencryptionError) as refused:
            DbKeyRotation(as_ops, reason="test", workers=1).reencrypt(EVIDENCE)
        message = str(refused.value)
        assert f"GRANT SET ON PARAMETER session_replication_role TO {ops}" in message
        assert "update_crm_client_preferences_updated_at" in message and "Nothing was written" in message
        assert rows_but_ciphertext(world.dsn) == before
        with connect(world.dsn, keys={"old": r.old_key}) as conn:
            row = conn.execute(f"SELECT count(*) FILTER (WHERE rotation_runbook.try_decrypt(email_encrypted, "
                               f"{key_ref('old')}) IS NULL AND email_encrypted IS NOT NULL) FROM {CLIENTS}").fetchone()
        assert row is not None and row[0] == 0, "a value was re-encrypted although the run was refused"
    finally:
        with psycopg.connect(make_conninfo(pg.admin_dsn, dbname=params["dbname"]), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {r}").format(r=sql.Identifier(ops)))
            admin.execute(sql.SQL("DROP ROLE {r}").format(r=sql.Identifier(ops)))


def test_a_reencryption_that_fails_before_any_value_moved_puts_env_back(world: Deployment) -> None:
    """No path ends with .env holding a key that opens no value. (The pass decrypts each value once, in the statement
    that re-encrypts it: a value under an unknown key is found by the page holding it, so here every page fails.)"""
    r = rotation(world)
    r.generate_key(EVIDENCE)
    prerequisites.stop_app(world, EVIDENCE)
    r.write_env(EVIDENCE)
    third = generate_key()
    with connect(world.dsn, keys={"third": third}) as conn:
        conn.execute(f"UPDATE {CLIENTS} SET email_encrypted = pgp_sym_encrypt('x', {key_ref('third')}) "
                     f"WHERE client_id > (SELECT min(client_id) FROM {CLIENTS})")  # the first passes the preflight
        conn.commit()
    with pytest.raises(ReencryptionError) as failed:
        r.reencrypt(EVIDENCE)
    message = str(failed.value)
    assert "email_encrypted (under neither key)" in message and "holds the old key" in message
    assert "client_id=client-0000" in message
    assert envfile.get_secret(world.env_file, ENV) == r.old_key
    current = state.load(world.env_file, CREDENTIAL)
    assert current is not None and current.step == "create" and current.rotation_id == r.rotation_id
    assert state.read_pending(world.env_file, CREDENTIAL) == r.new_key
    abandoned = rotation(world, abandon=True)  # nothing reached the pending key: starting over is allowed
    abandoned.generate_key(EVIDENCE)
    assert abandoned.rotation_id != r.rotation_id
