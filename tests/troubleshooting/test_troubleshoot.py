"""rotation.troubleshoot against real files and a real PostgreSQL: every value counted per key with the ones under
neither key named. (The .env syntax check and the restore: tests/troubleshooting/test_env_syntax.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.core.keys import generate_key
from rotation.troubleshooting import diagnose as troubleshoot
from staging.postgres import StagingServer
from tests.harness import seeded_crm


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


def test_app_config_is_stale(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    mtime = env.stat().st_mtime
    assert troubleshoot.app_config_is_stale(mtime - 10, env)
    assert not troubleshoot.app_config_is_stale(mtime + 1, env)
    assert troubleshoot.app_config_is_stale(None, env)


def test_token_typos_name_the_problem_not_the_token() -> None:
    good = "0123456789abcdef" * 2
    assert troubleshoot.token_typos("TWILIO_AUTH_TOKEN", good) == []
    for bad, why in ((good + " ", "whitespace"), (f'"{good}"', "quotes"), (good[:-1], "32 hexadecimal digits"),
                     (good.upper(), "32 hexadecimal digits"), (good[:16] + "\t" + good[17:], "non-printable")):
        problems = troubleshoot.token_typos("TWILIO_AUTH_TOKEN", bad)
        assert any(why in p for p in problems), (why, problems)
        assert all(bad.strip() not in p for p in problems)
