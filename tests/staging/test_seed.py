"""The benchmark's steady-state seeding writes values as a rotation by this suite leaves them, not as the app does."""

from __future__ import annotations

import psycopg

from rotation.core.database import apply_runbook_schema
from rotation.core.keys import generate_key
from rotation.db_key.reencrypt import DEFAULT_CIPHER_OPTIONS
from staging.crm import apply_crm_schema
from staging.postgres import StagingServer, app_database
from staging.seed import seed_clients

# A symmetric-key session key packet (RFC 4880 5.3) as pgcrypto writes it: tag 3 with a one-byte length, version 4,
# cipher, then the S2K specifier's type (3.7.1): 1 salted, 3 iterated and salted. Bytes 3 to 5 (1-based).
S2K = "SELECT substring(email_encrypted FROM 3 FOR 3) FROM crm_client_preferences WHERE email_encrypted IS NOT NULL"


def test_seeding_with_the_rotations_options_writes_salted_aes256_values(pg: StagingServer) -> None:
    with app_database(pg.admin_dsn) as dsn:
        with psycopg.connect(dsn) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
        seed_clients(dsn, generate_key(), 5, first=1)
        seed_clients(dsn, generate_key(), 5, first=6, cipher_options=DEFAULT_CIPHER_OPTIONS)
        with psycopg.connect(dsn) as conn:
            specifiers = [bytes(r[0]) for r in conn.execute(S2K + " ORDER BY client_id")]
    assert specifiers[:5] == [b"\x04\x07\x03"] * 5, "the app's encrypt_sensitive_data: AES-128, iterated S2K"
    assert specifiers[5:] == [b"\x04\x09\x01"] * 5, "the rotation's options: AES-256, salted S2K"
