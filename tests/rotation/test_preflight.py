"""Bad input to the re-encryption engine gets a clear, actionable error before a single value is written."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from rotation.core.config import default_config
from rotation.core.database import connect, key_ref
from rotation.core.keys import WeakSecretError, generate_key
from rotation.core.secret import Secret
from rotation.db_key.procedure import CREDENTIAL
from rotation.db_key.reencrypt import ReencryptionError, TableSpec, pgcrypto_specs, reencrypt, start_or_resume_job
from rotation.db_key.verify import snapshot
from staging.postgres import StagingServer
from tests.harness import seeded_crm
from tests.leakcheck import assert_no_fragment

SNAPSHOT = "SELECT md5(string_agg(t::text, ',' ORDER BY client_id)) FROM crm_client_preferences t"
PII = pgcrypto_specs(default_config())[0]
POLICY = default_config().credential(CREDENTIAL).strength


@pytest.fixture
def crm(pg: StagingServer) -> Iterator[tuple[str, Secret]]:
    with seeded_crm(pg.admin_dsn, 50) as (dsn, key):
        yield dsn, Secret(key)


def unchanged(dsn: str, before: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(SNAPSHOT).fetchone()
    return row is not None and row[0] == before


@pytest.mark.parametrize(("spec", "old", "new", "error", "says"), [
    (PII, "wrong", "good", ReencryptionError, f"does not decrypt {PII.table}.{PII.columns[0]}"),
    (PII, "right", "weak", WeakSecretError, "at least 32 are required"),
    (PII, "right", "same", WeakSecretError, "it is the current value, unchanged"),
    (PII, "right", "repetitive", WeakSecretError, "different characters"),
    (TableSpec("crm_clients", PII.pk, PII.columns[:1]), "right", "good", ReencryptionError,
     "table crm_clients does not exist"),
    (TableSpec(PII.table, PII.pk, (PII.columns[0], "ssn_encrypted")), "right", "good", ReencryptionError,
     "has no column ssn_encrypted"),
])
def test_refused_before_anything_is_written(crm: tuple[str, Secret], spec: TableSpec, old: str, new: str,
                                            error: type[Exception], says: str) -> None:
    dsn, key = crm
    old_key = {"wrong": generate_key(), "right": key}[old]
    new_key = {"good": generate_key(), "weak": Secret("short-key"), "same": key,
               "repetitive": Secret("ab" * 24)}[new]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(SNAPSHOT).fetchone()
    assert row is not None
    with pytest.raises(error) as raised:
        reencrypt(dsn, old_key, new_key, spec=spec, policy=POLICY)
    assert says in str(raised.value)
    assert_no_fragment({"the refusal": str(raised.value).encode()}, [old_key.reveal(), new_key.reveal()])
    assert unchanged(dsn, row[0])


def test_a_database_error_during_reencryption_names_table_column_and_row(crm: tuple[str, Secret]) -> None:
    """A constraint that only the new ciphertext of one value breaks (cipher algorithm byte 9, AES-256): the error
    names that very value, and nothing of the batch is written."""
    dsn, key = crm
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE crm_client_preferences ADD CONSTRAINT only_aes128_for_7 CHECK (client_id <> "
                     "'client-00000007' OR get_byte(phone_number_encrypted, 3) <> 9) NOT VALID")
        row = conn.execute(SNAPSHOT).fetchone()
    assert row is not None
    with pytest.raises(ReencryptionError) as raised:
        reencrypt(dsn, key, generate_key(), spec=PII, workers=1, batch_size=100, policy=POLICY)
    message = str(raised.value)
    assert "stopped at crm_client_preferences.phone_number_encrypted client_id=client-00000007: 23514" in message
    assert 'violates check constraint "only_aes128_for_7"' in message
    assert unchanged(dsn, row[0])


def test_a_value_the_old_key_cannot_open_stops_the_snapshot_naming_it(crm: tuple[str, Secret]) -> None:
    dsn, key = crm
    third = generate_key()
    with connect(dsn, keys={"third": third}) as conn:
        conn.execute(f"UPDATE crm_client_preferences SET email_encrypted = pgp_sym_encrypt('x', {key_ref('third')}) "
                     "WHERE client_id IN ('client-00000009', 'client-00000012')")
        conn.commit()
        job_id, _ = start_or_resume_job(conn, PII, key, generate_key(), ranges=2, policy=POLICY)
        with pytest.raises(ReencryptionError) as raised:
            snapshot(conn, PII, job_id, key, generate_key())
    assert ("crm_client_preferences.email_encrypted: 2 values the old key cannot decrypt "
            "(client_id=client-00000009, client-00000012)") in str(raised.value)
