"""Synthetic CRM data for staging: N clients whose PII is encrypted by the app's own encrypt_sensitive_data."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from rotation.core.database import connect

# Non-ASCII names on purpose: a rotation must round-trip UTF-8 exactly.
NAMES = ("José Müller", "Zoë Ødegård", "李小龙", "Анна Петрова", "Siobhán Ó Briain", "Trần Ngọc Ánh",
         "Åsa Læstadius", "محمد الفارسي", "Ωmega Ζήτα", "Renée Dupré")

SEED_CLIENTS = """
INSERT INTO crm_client_preferences (client_id, email_encrypted, phone_number_encrypted, full_name_encrypted,
                                    preferred_channels, timezone, language_preference)
SELECT format('client-%%s', lpad(i::text, 8, '0')),
       CASE WHEN i %% 17 = 0 THEN NULL ELSE encrypt_sensitive_data(format('client%%s@example.com', i), %(key)s) END,
       CASE WHEN i %% 11 = 0 THEN NULL
            ELSE encrypt_sensitive_data(format('+1555%%s', lpad(i::text, 7, '0')), %(key)s) END,
       CASE WHEN i %% 23 = 0 THEN NULL
            ELSE encrypt_sensitive_data(
                (%(names)s::text[])[1 + i %% cardinality(%(names)s::text[])] || ' ' || i, %(key)s)
       END,
       '["email", "sms"]'::jsonb, 'Europe/Berlin', 'en'
FROM generate_series(%(first)s::int, %(last)s::int) AS i
"""


def seed_clients(dsn: str, key: str, count: int = 2000, *, workers: int = 2, chunk: int = 2000,
                 first: int = 1) -> int:
    """Insert clients first..first+count-1 (some NULL columns, non-ASCII names) in parallel chunks; returns count."""
    chunks = [(lo, min(lo + chunk - 1, first + count - 1)) for lo in range(first, first + count, chunk)]

    def insert(bounds: tuple[int, int]) -> None:
        with connect(dsn) as conn:
            conn.execute(SEED_CLIENTS, {"key": key, "names": list(NAMES), "first": bounds[0], "last": bounds[1]})

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(insert, chunks))
    return count
