"""Synthetic CRM data for staging, written the way the app writes it: client PII encrypted by the app's own
encrypt_sensitive_data (pgcrypto), provider credentials in security_api_credentials encrypted with Fernet under the
app's derivation of DB_ENCRYPTION_KEY (encrypt_api_credential). The key reaches the server only through the session's
key table (rotation.core.database), never as a parameter."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from rotation.core.database import connect, key_ref
from rotation.core.secret import Secret, secret
from rotation.db_key.fernet import app_fernet

# Non-ASCII names on purpose: a rotation must round-trip UTF-8 exactly.
NAMES = ("José Müller", "Zoë Ødegård", "李小龙", "Анна Петрова", "Siobhán Ó Briain", "Trần Ngọc Ánh",
         "Åsa Læstadius", "محمد الفارسي", "Ωmega Ζήτα", "Renée Dupré")
KEY = key_ref("app")

SEED_CLIENTS = """
INSERT INTO crm_client_preferences (client_id, email_encrypted, phone_number_encrypted, full_name_encrypted,
                                    preferred_channels, timezone, language_preference)
SELECT format('client-%%s', lpad(i::text, 8, '0')),
       CASE WHEN i %% 17 = 0 THEN NULL ELSE encrypt_sensitive_data(format('client%%s@example.com', i), k.key) END,
       CASE WHEN i %% 11 = 0 THEN NULL
            ELSE encrypt_sensitive_data(format('+1555%%s', lpad(i::text, 7, '0')), k.key) END,
       CASE WHEN i %% 23 = 0 THEN NULL
            ELSE encrypt_sensitive_data(
                (%(names)s::text[])[1 + i %% cardinality(%(names)s::text[])] || ' ' || i, k.key)
       END,
       '["email", "sms"]'::jsonb, 'Europe/Berlin', 'en'
FROM generate_series(%(first)s::int, %(last)s::int) AS i, (SELECT """ + KEY + """ AS key) k
"""


def as_rotated(statement: str) -> str:
    """The seeding statement writing each value as a rotation by this suite writes it (pgp_sym_encrypt with the
    rotation's cipher options, %(opts)s) instead of the app's encrypt_sensitive_data (pgcrypto's defaults)."""
    rotated = statement.replace("encrypt_sensitive_data(", "pgp_sym_encrypt(").replace(", k.key)", ", k.key, %(opts)s)")
    if rotated.count("%(opts)s") != statement.count("encrypt_sensitive_data("):
        raise ValueError("every encrypt_sensitive_data(<value>, k.key) of the statement must be rewritten")
    return rotated


def seed_clients(dsn: str, key: str | Secret, count: int = 2000, *, workers: int = 2, chunk: int = 2000,
                 first: int = 1, cipher_options: str | None = None) -> int:
    """Insert clients first..first+count-1 (some NULL columns, non-ASCII names) in parallel chunks; returns count.
    With `cipher_options`, the values are as a rotation by this suite leaves them (see as_rotated), not as the app
    writes them: the steady state, every rotation after the first."""
    chunks = [(lo, min(lo + chunk - 1, first + count - 1)) for lo in range(first, first + count, chunk)]
    statement = SEED_CLIENTS if cipher_options is None else as_rotated(SEED_CLIENTS)

    def insert(bounds: tuple[int, int]) -> None:
        with connect(dsn, keys={"app": secret(key)}) as conn:
            conn.execute(statement, {"names": list(NAMES), "first": bounds[0], "last": bounds[1],
                                     "opts": cipher_options})

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        list(pool.map(insert, chunks))
    finally:  # on Ctrl-C, only the chunks already running finish: the rest are dropped, not seeded first
        pool.shutdown(wait=True, cancel_futures=True)
    return count


SEED_CREDENTIAL = """
INSERT INTO security_api_credentials (service_name, credential_key_encrypted, credential_metadata)
VALUES (%s, %s, %s::jsonb)
"""


def seed_api_credentials(dsn: str, key: Secret, credentials: Mapping[str, Secret]) -> int:
    """One security_api_credentials row per service name, its credential encrypted as the app's
    encrypt_api_credential does: Fernet(urlsafe_b64encode(sha256(DB_ENCRYPTION_KEY))).encrypt(credential)."""
    fernet = app_fernet(key)
    with connect(dsn) as conn:
        for service, credential in credentials.items():
            conn.execute(SEED_CREDENTIAL, (service, fernet.encrypt(credential.reveal().encode()),
                                           '{"seeded_by": "staging"}'))
        conn.commit()
    return len(credentials)
