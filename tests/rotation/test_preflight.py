"""Bad input to the re-encryption engine gets a clear, actionable error before a single value is written."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from rotation.core.keys import WeakSecretError, generate_key
from rotation.db_key.reencrypt import CRM_PII, ReencryptionError, TableSpec, reencrypt
from staging.postgres import StagingServer
from tests.harness import seeded_crm

SNAPSHOT = "SELECT md5(string_agg(t::text, ',' ORDER BY client_id)) FROM crm_client_preferences t"


@pytest.fixture
def crm(pg: StagingServer) -> Iterator[tuple[str, str]]:
    with seeded_crm(pg.admin_dsn, 50) as crm_db:
        yield crm_db


def unchanged(dsn: str, before: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute(SNAPSHOT).fetchone()[0] == before


@pytest.mark.parametrize(("spec", "old", "new", "error", "says"), [
    (CRM_PII, "wrong", "good", ReencryptionError, "does not decrypt crm_client_preferences.email_encrypted"),
    (CRM_PII, "right", "weak", WeakSecretError, "at least 32 are required"),
    (CRM_PII, "right", "same", ReencryptionError, "equals the old key"),
    (TableSpec("crm_clients", "client_id", ("email_encrypted",)), "right", "good", ReencryptionError,
     "table crm_clients does not exist"),
    (TableSpec("crm_client_preferences", "client_id", ("email_encrypted", "ssn_encrypted")), "right", "good",
     ReencryptionError, "has no column ssn_encrypted"),
])
def test_refused_before_anything_is_written(crm: tuple[str, str], spec: TableSpec, old: str, new: str,
                                            error: type[Exception], says: str) -> None:
    dsn, key = crm
    old_key = {"wrong": generate_key(), "right": key}[old]
    new_key = {"good": generate_key(), "weak": "short-key", "same": key}[new]
    with psycopg.connect(dsn) as conn:
        before = conn.execute(SNAPSHOT).fetchone()[0]
    with pytest.raises(error) as raised:
        reencrypt(dsn, old_key, new_key, spec=spec)
    assert says in str(raised.value)
    assert old_key not in str(raised.value) and new_key not in str(raised.value)
    assert unchanged(dsn, before)
