"""Fault tests of issue 21 (items 4 and 5), each through the operator's `rotation db-key rotate` against a scratch CRM
and the app stand-in: values under a key nobody has, in both modes, and a writer under a role the tool does not know.

Each test asserts the state the run left (values per key, .env bytes, app running or not, what the run folder says,
the one-line next step), then runs that next step and asserts the rotation completes: every value on the new key but
the ones deliberately left (byte for byte as they were), nothing stranded under the old key.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from rotation.core import app_control
from rotation.core.config import default_config
from rotation.core.database import connect, key_ref
from rotation.core.keys import generate_key
from rotation.core.secret import Secret
from rotation.db_key.fernet import app_fernet, fernet_specs
from rotation.evidence.verify import verify_folder
from staging.postgres import StagingServer
from tests.foreign_writer import APPLICATION, cron_plaintext, write
from tests.leakcheck import assert_no_fragment
from tests.rotation.live_crm import SPEC, LiveCrm, RunFolder, live_crm, plaintexts

ROWS = 40
FIND_STEP = ("Then the values no key opens and the other writers of the encrypted data are found before the "
             "application stops")
VERIFY_STEP = "Then every encrypted value decrypts with the new key to its original plaintext"
REENCRYPT_STEP = "all sensitive data is re-encrypted under the new key"
MODES = {"staged": (), "stop-the-world": ("--stop-the-world",)}


@pytest.fixture(params=list(MODES))
def crm(request: pytest.FixtureRequest, pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        world.extra = MODES[request.param]
        yield world


# --- reading the state a run left ------------------------------------------------------------------------------------

def keys_of_values(dsn: str, keys: dict[str, Secret]) -> Counter[str]:
    """How many non-NULL values each named key opens (a value no key opens counts as 'none')."""
    found: Counter[str] = Counter()
    rows = {name: plaintexts(dsn, key) for name, key in keys.items()}
    first = next(iter(rows.values()))
    for i, row in enumerate(first):
        for c in range(1, len(row)):
            opening = [name for name in keys if rows[name][i][c] is not None]
            if opening or _raw_not_null(dsn, str(row[0]), SPEC.columns[c - 1]):
                found[opening[0] if opening else "none"] += 1
    return found


def _raw_not_null(dsn: str, row_id: str, column: str) -> bool:
    with connect(dsn) as conn:
        got = conn.execute(sql.SQL("SELECT {} IS NOT NULL FROM {} WHERE {} = %s").format(
            sql.Identifier(column), sql.Identifier(SPEC.table), sql.Identifier(SPEC.pk)), (row_id,)).fetchone()
    return bool(got and got[0])


def raw(dsn: str, column: str, ids: list[str]) -> dict[str, bytes]:
    with connect(dsn) as conn:
        return {str(k): bytes(v) for k, v in conn.execute(sql.SQL("SELECT {}, {} FROM {} WHERE {} = ANY(%s)").format(
            sql.Identifier(SPEC.pk), sql.Identifier(column), sql.Identifier(SPEC.table), sql.Identifier(SPEC.pk)),
            (ids,))}


def app_running(crm: LiveCrm) -> bool:
    return app_control.health(crm.app.health_url).healthy


def verdict(run: RunFolder) -> dict[str, object]:
    [found] = [e for e in run.entries() if e["type"] == "verdict"]
    return found


def failed_step(run: RunFolder) -> tuple[str, str]:
    [failed] = [s for s in run.steps() if s.status == "failed"]
    return failed.step, str(failed.error)


def under_unknown_key(crm: LiveCrm) -> tuple[Secret, list[str]]:
    """Every other client's e-mail, the first included (the Background's sample must not refuse the right key for a
    stray under another), moved under a key nobody has, as a restored old backup or a misconfigured writer leaves
    it."""
    unknown = Secret(generate_key())
    with connect(crm.dsn, keys={"old": crm.old_key, "x": unknown}) as conn:
        query = sql.SQL("SELECT {pk} FROM {t} WHERE {c} IS NOT NULL ORDER BY {pk}").format(
            pk=sql.Identifier(SPEC.pk), t=sql.Identifier(SPEC.table), c=sql.Identifier(SPEC.columns[0]))
        ids = [str(r[0]) for r in conn.execute(query)][0::2]
        conn.execute(sql.SQL("UPDATE {t} SET {c} = pgp_sym_encrypt(pgp_sym_decrypt({c}, " + key_ref("old") + "), "
                             + key_ref("x") + ") WHERE {pk} = ANY(%s)").format(
            t=sql.Identifier(SPEC.table), c=sql.Identifier(SPEC.columns[0]), pk=sql.Identifier(SPEC.pk)), (ids,))
        conn.commit()
    return unknown, ids


FERNET = fernet_specs(default_config())[0]


def fernet_under_unknown_key(crm: LiveCrm, unknown: Secret) -> tuple[str, bytes]:
    """Two provider credentials the app encrypts itself (Fernet): the first (by id, as the Background tries it) under
    the current key, the other under the unknown key. (the second's row id, its token)"""
    rows = (("00000000-0000-4000-8000-000000000001", "twilio", crm.old_key),
            ("ffffffff-ffff-4fff-8fff-ffffffffffff", "smtp", unknown))
    with connect(crm.dsn) as conn:
        for row_id, service, key in rows:
            conn.execute(sql.SQL("INSERT INTO {t} ({pk}, service_name, {c}) VALUES (%s, %s, %s)").format(
                t=sql.Identifier(FERNET.table), c=sql.Identifier(FERNET.columns[0]), pk=sql.Identifier(FERNET.pk)),
                (row_id, service, app_fernet(key).encrypt(f"{service} credential".encode())))
        conn.commit()
    return rows[1][0], fernet_value(crm, rows[1][0])


def fernet_value(crm: LiveCrm, row_id: str) -> bytes:
    with connect(crm.dsn) as conn:
        got = conn.execute(sql.SQL("SELECT {c} FROM {t} WHERE {pk}::text = %s").format(
            t=sql.Identifier(FERNET.table), c=sql.Identifier(FERNET.columns[0]), pk=sql.Identifier(FERNET.pk)),
            (row_id,)).fetchone()
    assert got is not None
    return bytes(got[0])


def pgcrypto_errors_since(pg: StagingServer, offset: int) -> list[bytes]:
    """pgcrypto's errors in the server log since `offset` (a wrong key raises "Wrong key or corrupt data")."""
    assert pg.server_log is not None
    with pg.server_log.open("rb") as f:
        f.seek(offset)
        return [line for line in f.read().splitlines() if b"Wrong key" in line or b"Corrupt data" in line]


def test_values_no_key_opens_are_refused_before_the_app_stops_then_left_as_found(crm: LiveCrm,
                                                                                 pg: StagingServer) -> None:
    offset = pg.server_log.stat().st_size if pg.server_log else 0
    unknown, ids = under_unknown_key(crm)
    fernet_id, token = fernet_under_unknown_key(crm, unknown)
    column = SPEC.columns[0]
    before_bytes, env_before = raw(crm.dsn, column, ids), crm.env_file.read_bytes()
    total = sum(1 for row in crm.before for v in row[1:] if v is not None)

    refused = crm.rotate()
    assert refused.returncode != 0, refused.stdout[-3000:]
    [run] = crm.folders()
    step, error = failed_step(run)
    assert step == FIND_STEP, (step, error)
    assert f"{SPEC.table}.{column}: {len(ids)} values no key opens" in error, error
    assert all(i in error for i in ids[:20]), error
    assert f"{FERNET.table}.{FERNET.columns[0]}: 1 value no key opens ({FERNET.pk}={fernet_id})" in error, error
    assert "rotation db-key resume --leave-unreadable" in error, error
    # the state left: nothing changed, the app runs on the current key
    assert app_running(crm), "the app was stopped by a refused run"
    assert crm.env_file.read_bytes() == env_before
    assert raw(crm.dsn, column, ids) == before_bytes
    assert keys_of_values(crm.dsn, {"old": crm.old_key}) == Counter({"old": total - len(ids), "none": len(ids)})
    assert verdict(run)["verdict"] == "FAILED"

    # the next step the refusal names
    crm.extra = (*crm.extra, "--leave-unreadable")
    done = crm.rotate("resume")
    assert done.returncode == 0, failed_step(crm.folders()[-1])
    new_key = crm.key_in_env()
    assert new_key != crm.old_key
    assert raw(crm.dsn, column, ids) == before_bytes, "values no key opens were not left byte for byte"
    assert fernet_value(crm, fernet_id) == token, "the Fernet value no key opens was not left as it was"
    assert keys_of_values(crm.dsn, {"new": new_key, "old": crm.old_key, "unknown": unknown}) == Counter(
        {"new": total - len(ids), "unknown": len(ids)})
    expected = [tuple(None if (str(row[0]) in ids and c == 1) else v for c, v in enumerate(row)) for row in crm.before]
    assert plaintexts(crm.dsn, new_key) == expected
    assert app_running(crm)
    first, second = crm.folders()
    assert verify_folder(second.path).passed
    assert all(s.status == "passed" for s in second.steps())
    found = verdict(second)
    assert found["verdict"] == "INCOMPLETE", found
    reasons = " ".join(str(r) for r in found["reasons"])  # type: ignore[attr-defined]
    assert f"{SPEC.table}.{column}: {len(ids)} values no key opens" in reasons and ids[0] in reasons, reasons
    checks = [e["value"] for e in second.entries() if e["type"] == "evidence"
              and str(e["name"]) == f"population check of {SPEC.table}"]
    assert checks and f"{len(ids)} values no key opens left as found (not verified)" in str(checks[-1]), checks
    assert_no_fragment({"output": (done.stdout + done.stderr).encode()},
                       [crm.old_key.reveal(), new_key.reveal(), unknown.reveal()])
    if pg.server_log is not None:  # the private cluster (a server given by --dsn keeps its log to itself)
        assert not pgcrypto_errors_since(pg, offset), "finding and leaving the values wrote pgcrypto errors to the log"


# --- a writer the tool does not know -------------------------------------------------------------------------------

@contextlib.contextmanager
def cron_role(admin_dsn: str) -> Iterator[tuple[str, str]]:
    """A role of its own (a cron job's), LOGIN, no superuser: (name, password); dropped afterwards."""
    role, password = f"cron_job_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    try:
        yield role, password
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def writer(pg: StagingServer, tmp_path: Path) -> Iterator[tuple[LiveCrm, str, str]]:
    """(the world, the cron role, its DSN): the role may SELECT, INSERT and UPDATE the clients' table."""
    with cron_role(pg.admin_dsn) as (role, password), live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        with psycopg.connect(world.dsn, autocommit=True) as owner:  # the app's role owns the table: it grants
            for grant in ("GRANT USAGE ON SCHEMA public TO {r}", "GRANT SELECT, INSERT, UPDATE ON {t} TO {r}"):
                owner.execute(sql.SQL(grant).format(r=sql.Identifier(role), t=sql.Identifier(SPEC.table)))
        yield world, role, make_conninfo(world.dsn, user=role, password=password)
        with psycopg.connect(world.dsn, autocommit=True) as conn:  # the app's role owns the grants it has to drop
            conn.execute(sql.SQL("REVOKE ALL ON {t} FROM {r}").format(r=sql.Identifier(role),
                                                                      t=sql.Identifier(SPEC.table)))


def _cron_ids(crm: LiveCrm) -> list[str]:
    return [str(row[0]) for row in crm.before][2:5]


def test_a_writer_of_another_role_connected_before_the_stop_is_named_and_nothing_changes(
        writer: tuple[LiveCrm, str, str]) -> None:
    crm, role, dsn = writer
    env_before = crm.env_file.read_bytes()
    session = write(dsn, crm.old_key, [])  # connected, idle: a cron job between two writes
    try:
        refused = crm.rotate()
    finally:
        session.close()
    assert refused.returncode != 0
    [run] = crm.folders()
    step, error = failed_step(run)
    assert step == FIND_STEP, (step, error)
    assert f"role {role}" in error and APPLICATION in error and f"may write {SPEC.table}" in error, error
    assert "rotation db-key resume" in error, error
    assert app_running(crm) and crm.env_file.read_bytes() == env_before
    assert plaintexts(crm.dsn, crm.old_key) == crm.before

    done = crm.rotate("resume")  # the writer is gone: the next step named
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    crm.assert_rotated()


@pytest.mark.parametrize("mode", list(MODES))
def test_a_writer_of_another_role_through_the_cutover_is_caught_named_and_the_rerun_finishes(
        writer: tuple[LiveCrm, str, str], mode: str) -> None:
    """The cron job writes under the old key right after the re-encryption (the app stopped, .env on the new key):
    its rows then hold the e-mail under the old key and phone and name under the new one. The proof catches it and
    names the session; the rerun takes those rows up column by column and finishes."""
    crm, role, dsn = writer
    crm.extra = MODES[mode]
    ids = _cron_ids(crm)
    first = crm.rotate(addopts="-p tests.foreign_writer", environ={
        "ROTATION_TEST_WRITE_AFTER": REENCRYPT_STEP, "ROTATION_TEST_WRITER_DSN": dsn,
        "ROTATION_TEST_WRITER_KEY": crm.old_key.reveal(), "ROTATION_TEST_WRITER_ROWS": ",".join(ids)})
    assert first.returncode != 0, first.stdout[-3000:]
    [run] = crm.folders()
    step, error = failed_step(run)
    assert step == VERIFY_STEP, (step, error)
    assert "still under the old key" in error and all(i in error for i in ids), error
    assert f"role {role}" in error and APPLICATION in error, error
    new_key = crm.key_in_env()
    assert new_key != crm.old_key, "data moved: .env must hold the new key"
    # the mixed rows: e-mail under the old key, phone and name under the new one
    old_rows = {str(r[0]): r for r in plaintexts(crm.dsn, crm.old_key)}
    new_rows = {str(r[0]): r for r in plaintexts(crm.dsn, new_key)}
    for i in ids:
        assert old_rows[i][1] == cron_plaintext(i) and new_rows[i][1] is None
        assert new_rows[i][2:] == next(r for r in crm.before if str(r[0]) == i)[2:]

    # --abandon-pending is refused (values are under the new key), and says what to run instead
    crm.extra = (*MODES[mode], "--abandon-pending")
    abandon = crm.rotate()
    crm.extra = MODES[mode]
    assert abandon.returncode != 0
    step, error = failed_step(crm.folders()[-1])
    assert step == "When a new database encryption key is generated" and "resume" in error, (step, error)
    assert crm.key_in_env() == new_key

    done = crm.rotate("resume")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    expected = [tuple(cron_plaintext(row[0]) if (str(row[0]) in ids and c == 1) else v for c, v in enumerate(row))
                for row in crm.before]
    assert plaintexts(crm.dsn, new_key) == expected
    assert all(v is None for row in plaintexts(crm.dsn, crm.old_key) for v in row[1:]), "values stranded"
    total = sum(1 for row in crm.before for v in row[1:] if v is not None)
    assert keys_of_values(crm.dsn, {"new": new_key, "old": crm.old_key}) == Counter({"new": total})
    last = crm.folders()[-1]
    assert verify_folder(last.path).passed and verdict(last)["verdict"] == "PASSED", verdict(last)
