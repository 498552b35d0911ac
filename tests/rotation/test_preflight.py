"""Bad input to the re-encryption engine gets a clear, actionable error before a single value is written."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from rotation.core.config import default_config
from rotation.core.keys import WeakSecretError, generate_key
from rotation.core.secret import Secret
from rotation.db_key.procedure import CREDENTIAL
from rotation.db_key.reencrypt import ReencryptionError, TableSpec, pgcrypto_specs, reencrypt
from staging.postgres import StagingServer
from tests.harness import seeded_crm

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
    assert old_key.reveal() not in str(raised.value) and new_key.reveal() not in str(raised.value)
    assert unchanged(dsn, row[0])
