"""The suite's own schema upgrades in place: a job interrupted under the release that kept one digest row per value
keeps its proof when the next release (one digest row per table row) takes it up."""

from __future__ import annotations

import psycopg

from rotation.core.database import apply_runbook_schema
from staging.postgres import StagingServer, app_database

OLD_TABLE = """
CREATE TABLE rotation_runbook.plaintext_digest (
    job_id BIGINT NOT NULL REFERENCES rotation_runbook.reencrypt_job (job_id) ON DELETE CASCADE,
    pk TEXT NOT NULL, column_name TEXT NOT NULL, digest BYTEA, PRIMARY KEY (job_id, pk, column_name))
"""


def test_digests_kept_one_row_per_value_move_to_one_row_per_table_row(pg: StagingServer) -> None:
    with app_database(pg.admin_dsn) as dsn, psycopg.connect(dsn) as conn:
        apply_runbook_schema(conn)
        job = conn.execute("INSERT INTO rotation_runbook.reencrypt_job (table_name, pk_column, columns, old_key_fp, "
                           "new_key_fp, cipher_options, total_rows) VALUES ('t', 'id', ARRAY['a', 'b'], 'o', 'n', "
                           "'', 2) RETURNING job_id").fetchone()
        assert job is not None
        conn.execute(OLD_TABLE)
        conn.execute("INSERT INTO rotation_runbook.plaintext_digest VALUES (%(j)s, '1', '', '\\x01'), "
                     "(%(j)s, '1', 'b', '\\x1b'), (%(j)s, '1', 'a', '\\x1a'), (%(j)s, '2', '', '\\x02'), "
                     "(%(j)s, '2', 'a', '\\x2a'), (%(j)s, '2', 'b', NULL)", {"j": job[0]})
        conn.commit()

        apply_runbook_schema(conn)
        conn.commit()

        moved = conn.execute("SELECT pk, other, digests FROM rotation_runbook.row_digest ORDER BY pk").fetchall()
        gone = conn.execute("SELECT to_regclass('rotation_runbook.plaintext_digest') IS NULL").fetchone()
    assert moved == [("1", b"\x01", [b"\x1a", b"\x1b"]), ("2", b"\x02", [b"\x2a", None])]
    assert gone == (True,)
