"""rotation.db_key.decryption against a real PostgreSQL: every value counted per key with the ones under
neither key named; the keys for a repair found in the backups, through the rotation state when there is one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.core import envfile, state
from rotation.core.config import default_config
from rotation.core.database import connect
from rotation.core.keys import generate_key
from rotation.core.proof import CheckFailed
from rotation.core.secret import Secret
from rotation.db_key.decryption import key_census, keys_for_repair
from rotation.db_key.procedure import CREDENTIAL
from rotation.db_key.reencrypt import pgcrypto_specs
from staging.postgres import StagingServer
from staging.world import write_env
from tests.harness import seeded_crm
from tests.leakcheck import assert_no_fragment

PII = pgcrypto_specs(default_config())[0]
KEY = default_config().credential(CREDENTIAL)


@pytest.fixture
def crm(pg: StagingServer) -> Iterator[tuple[str, Secret]]:
    with seeded_crm(pg.admin_dsn, 60) as (dsn, key):
        yield dsn, Secret(key)


def test_key_census_names_every_value_under_neither_key(crm: tuple[str, Secret]) -> None:
    dsn, old = crm
    new = generate_key()
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET email_encrypted = pgp_sym_encrypt("
                     "pgp_sym_decrypt(email_encrypted, %(old)s), %(new)s) WHERE client_id <= 'client-00000030'",
                     {"old": old.reveal(), "new": new.reveal()})
        for client in ("client-00000005", "client-00000050"):
            conn.execute("UPDATE crm_client_preferences SET full_name_encrypted = pgp_sym_encrypt('x', %s) "
                         "WHERE client_id = %s", (generate_key().reveal(), client))
    with connect(dsn) as conn:
        census = key_census(conn, new, old, PII)
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE email_encrypted IS NULL) + count(*) FILTER (WHERE phone_number_encrypted "
            "IS NULL) + count(*) FILTER (WHERE full_name_encrypted IS NULL) FROM crm_client_preferences").fetchone()
    assert row is not None
    assert census.neither == (("client-00000005", "full_name_encrypted"), ("client-00000050", "full_name_encrypted"))
    assert census.counts["email_encrypted"]["new"] == 30 - 1  # client 17 has a NULL email
    assert census.total("neither") == 2 and census.total("null") == row[0]
    assert census.non_null + census.total("null") == 60 * 3
    assert not census.complete
    assert_no_fragment({"summary": census.summary().encode()}, [new.reveal(), old.reveal()])
    assert census.neither_lines() == ["crm_client_preferences client_id=client-00000005 full_name_encrypted",
                                      "crm_client_preferences client_id=client-00000050 full_name_encrypted"]


def _env_with(path: Path, key: Secret) -> None:
    write_env(path, {"DATABASE_URL": "postgresql://unused", KEY.env: key})


def test_keys_for_repair_by_hand_take_the_newest_other_key(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    old, new = generate_key(), generate_key()
    _env_with(env, old)
    envfile.backup(env)
    envfile.set_value(env, KEY.env, new)
    assert keys_for_repair(env, KEY) == (old, new)


def test_keys_for_repair_follow_the_rotation_state(tmp_path: Path) -> None:
    """A newer backup holding another key must not win over the one the rotation state names."""
    env = tmp_path / ".env"
    old, new, decoy = generate_key(), generate_key(), generate_key()
    _env_with(env, old)
    state.begin(env, KEY.type, current_fp=old.fingerprint, pending_fp=new.fingerprint, reason="test",
                backup=envfile.backup(env))
    envfile.set_value(env, KEY.env, decoy)
    envfile.backup(env, today=dt.date(2099, 1, 1))
    envfile.set_value(env, KEY.env, new)
    assert keys_for_repair(env, KEY) == (old, new)


def test_keys_for_repair_without_a_backup_fail_naming_no_key(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    key = generate_key()
    _env_with(env, key)
    with pytest.raises(CheckFailed, match="no backup of .env holds") as raised:
        keys_for_repair(env, KEY)
    assert_no_fragment({"the refusal": str(raised.value).encode()}, [key.reveal()])
