"""rotation.troubleshoot against real files and a real PostgreSQL: .env parse errors by line, the newest backup
restored, every value counted per key with the ones under neither key named."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.core import envfile
from rotation.core.keys import generate_key
from rotation.troubleshooting import diagnose as troubleshoot
from staging.postgres import StagingServer
from tests.harness import seeded_crm


def test_env_syntax_errors_by_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\nDB_ENCRYPTION_KEY="unterminated\nB=2\nthis line is not a setting\n')
    assert troubleshoot.env_syntax_errors(env) == [2, 4]
    env.write_text("# comment\nA=1\nexport B='two words'\n\n")
    assert troubleshoot.env_syntax_errors(env) == []


def test_restore_newest_backup(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("K=old\n")
    first = envfile.backup(env)
    env.write_text("K=middle\n")
    second = envfile.backup(env)
    os.utime(second, (time.time() + 5, time.time() + 5))
    env.write_text('K="broken\n')
    assert troubleshoot.restore_newest_backup(env) == second
    assert envfile.read_env(env) == {"K": "middle"} and envfile.file_mode(env) == 0o600
    assert first != second


def test_restore_without_backup_fails(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("K=1\n")
    with pytest.raises(envfile.EnvFileError, match="no backup"):
        troubleshoot.restore_newest_backup(env)


@pytest.fixture
def crm(pg: StagingServer) -> Iterator[tuple[str, str]]:
    with seeded_crm(pg.admin_dsn, 60) as crm_db:
        yield crm_db


def test_key_census_names_every_value_under_neither_key(crm: tuple[str, str]) -> None:
    dsn, old = crm
    new = generate_key()
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET email_encrypted = pgp_sym_encrypt("
                     "pgp_sym_decrypt(email_encrypted, %(old)s), %(new)s) WHERE client_id <= 'client-00000030'",
                     {"old": old, "new": new})
        for client in ("client-00000005", "client-00000050"):
            conn.execute("UPDATE crm_client_preferences SET full_name_encrypted = pgp_sym_encrypt('x', %s) "
                         "WHERE client_id = %s", (generate_key(), client))
        conn.commit()
        census = troubleshoot.key_census(conn, new, old)
        expected_nulls = conn.execute(
            "SELECT count(*) FILTER (WHERE email_encrypted IS NULL) + count(*) FILTER (WHERE phone_number_encrypted "
            "IS NULL) + count(*) FILTER (WHERE full_name_encrypted IS NULL) FROM crm_client_preferences").fetchone()[0]
    assert census.neither == (("client-00000005", "full_name_encrypted"), ("client-00000050", "full_name_encrypted"))
    assert census.counts["email_encrypted"]["new"] == 30 - 1  # client 17 has a NULL email
    assert census.total("neither") == 2 and census.total("null") == expected_nulls
    assert census.non_null + census.total("null") == 60 * 3
    assert not census.complete
    assert new not in census.summary() and old not in census.summary()
    assert census.neither_lines() == ["client_id=client-00000005 full_name_encrypted",
                                      "client_id=client-00000050 full_name_encrypted"]
