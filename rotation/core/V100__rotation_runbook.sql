-- rotation-runbook's own bookkeeping, kept apart from the CRM's objects in its own schema. Idempotent.
-- No key is ever stored here: jobs name keys by fingerprint only.
-- A rotation's first run creates it (or upgrades what an older release left) as the app's own role, as an explicit
-- step before anything reads it (rotation.core.runbook_schema): the role needs CREATE on the database for that, or the
-- schema created once by the database owner and granted (see docs/db-key-rotation.md, "Day one").

CREATE SCHEMA IF NOT EXISTS rotation_runbook;

-- One re-encryption of one table's columns from one key to another.
CREATE TABLE IF NOT EXISTS rotation_runbook.reencrypt_job (
    job_id BIGSERIAL PRIMARY KEY,
    table_name TEXT NOT NULL,
    pk_column TEXT NOT NULL,
    columns TEXT[] NOT NULL,
    old_key_fp TEXT NOT NULL,
    new_key_fp TEXT NOT NULL,
    cipher_options TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'abandoned')),
    total_rows BIGINT NOT NULL,
    snapshot_taken BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
-- Added since the first release (idempotent for databases that have the table already):
--   kind            'pgcrypto' (re-encrypted in SQL) or 'fernet' (re-encrypted by the suite, see the inventory)
--   triggers        how the table's own triggers were kept from firing ('none', 'replica', 'owner')
--   verified_values how many values verification proved under the new key, and when (kept after the digests go)
--   digests_removed_at  when the per-value digests of this job were deleted (after the rotation was verified)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'rotation_runbook'
                   AND table_name = 'reencrypt_job' AND column_name = 'digests_removed_at') THEN
        ALTER TABLE rotation_runbook.reencrypt_job ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'pgcrypto',
            ADD COLUMN IF NOT EXISTS triggers TEXT, ADD COLUMN IF NOT EXISTS verified_values BIGINT,
            ADD COLUMN IF NOT EXISTS verified_at TIMESTAMPTZ, ADD COLUMN IF NOT EXISTS digests_removed_at TIMESTAMPTZ;
    END IF;
END $$;
CREATE UNIQUE INDEX IF NOT EXISTS reencrypt_job_one_running
    ON rotation_runbook.reencrypt_job (table_name) WHERE status = 'running';

-- Disjoint primary-key ranges (lo_excl, hi_incl]; `cursor` is the last key re-encrypted, committed with its batch.
CREATE TABLE IF NOT EXISTS rotation_runbook.reencrypt_range (
    job_id BIGINT NOT NULL REFERENCES rotation_runbook.reencrypt_job (job_id) ON DELETE CASCADE,
    range_no INTEGER NOT NULL,
    lo_excl TEXT,
    hi_incl TEXT,
    cursor TEXT,
    rows_done BIGINT NOT NULL DEFAULT 0,
    done BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, range_no)
);

-- Keyed digests (HMAC-SHA-256 under the new key) of every plaintext value before re-encryption, one row per table
-- row: `digests` holds one per column, in the order of the job's `columns` (NULL = the value was NULL), so
-- verification proves each value decrypts to what it was; `other` is the SHA-256 of the row's other columns
-- (everything but the encrypted ones), so verification proves that nothing but ciphertext changed. One row per table
-- row, not one per value: each index entry costs about as much as a value's encryption. Deleted once the rotation is
-- verified (reencrypt_job keeps the counts).
CREATE TABLE IF NOT EXISTS rotation_runbook.row_digest (
    job_id BIGINT NOT NULL REFERENCES rotation_runbook.reencrypt_job (job_id) ON DELETE CASCADE,
    pk TEXT NOT NULL,
    other BYTEA,
    digests BYTEA[] NOT NULL,
    PRIMARY KEY (job_id, pk)
);
-- Before row_digest, digests were kept one row per value (plaintext_digest, column_name '' for the other columns).
-- A job interrupted under that release keeps its proof: its digests move here, then the old table goes.
DO $$
BEGIN
    IF to_regclass('rotation_runbook.plaintext_digest') IS NOT NULL THEN
        INSERT INTO rotation_runbook.row_digest (job_id, pk, other, digests)
        SELECT d.job_id, d.pk,
               (array_agg(d.digest) FILTER (WHERE d.column_name = ''))[1],
               ARRAY(SELECT x.digest FROM unnest(j.columns) WITH ORDINALITY AS c(name, i)
                     LEFT JOIN rotation_runbook.plaintext_digest x
                            ON x.job_id = d.job_id AND x.pk = d.pk AND x.column_name = c.name
                     ORDER BY c.i)
        FROM rotation_runbook.plaintext_digest d JOIN rotation_runbook.reencrypt_job j USING (job_id)
        GROUP BY d.job_id, d.pk, j.columns
        ON CONFLICT DO NOTHING;
        DROP TABLE rotation_runbook.plaintext_digest;
    END IF;
END $$;

-- NULL instead of an error when a key does not open a value: lets verification count values per key.
CREATE OR REPLACE FUNCTION rotation_runbook.try_decrypt(value BYTEA, key TEXT) RETURNS TEXT AS $$
BEGIN
    RETURN pgp_sym_decrypt(value, key);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END;
$$ LANGUAGE plpgsql IMMUTABLE STRICT;

-- The same for any PGP symmetric message (text or binary literal data): what the completeness sweep tries.
CREATE OR REPLACE FUNCTION rotation_runbook.try_decrypt_bytea(value BYTEA, key TEXT) RETURNS BYTEA AS $$
BEGIN
    RETURN pgp_sym_decrypt_bytea(value, key);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END;
$$ LANGUAGE plpgsql IMMUTABLE STRICT;

-- An armored PGP message as bytea, or NULL when the text is not valid armor (the sweep reads any text column).
CREATE OR REPLACE FUNCTION rotation_runbook.try_dearmor(value TEXT) RETURNS BYTEA AS $$
BEGIN
    RETURN dearmor(value);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END;
$$ LANGUAGE plpgsql IMMUTABLE STRICT;

-- One rotation at a time (rotation.core.lock). The lock itself is a session-level advisory lock on the app's database,
-- held on a connection of its own for the whole run; this row names its holder, so that a second operator is told who
-- holds it, and it outlives a holder killed with SIGKILL (the advisory lock does not): a row whose advisory lock is
-- free is a stale lock, taken over only with --take-over-lock.
CREATE TABLE IF NOT EXISTS rotation_runbook.run_lock (
    lock_name TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    procedure TEXT NOT NULL,
    operator TEXT NOT NULL,
    change_id TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    backend_pid INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The staged rotation's jobs (rotation.db_key.staged, which also creates it if missing): here too, so that the first
-- run's schema step creates every table of the suite before anything reads one.
CREATE TABLE IF NOT EXISTS rotation_runbook.staged_job (
    stage_id BIGSERIAL PRIMARY KEY,
    table_name TEXT NOT NULL,
    old_key_fp TEXT NOT NULL,
    new_key_fp TEXT NOT NULL,
    cipher_options TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT 'staging'
        CHECK (phase IN ('staging', 'staged', 'cutover', 'swapped', 'done', 'abandoned')),
    cursor TEXT,
    rows_staged BIGINT NOT NULL DEFAULT 0,
    rows_total BIGINT NOT NULL,
    at_cutover BIGINT NOT NULL DEFAULT 0,
    job_id BIGINT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    staged_at TIMESTAMPTZ,
    swapped_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);

-- Values no key opens, left byte for byte as found by a rotation run with --leave-unreadable (rotation.db_key.unopened):
-- each with the SHA-256 of its bytes, so that a value changed since is no longer taken for one left.
CREATE TABLE IF NOT EXISTS rotation_runbook.unreadable_value (
    new_key_fp TEXT NOT NULL,
    table_name TEXT NOT NULL,
    column_name TEXT NOT NULL,
    pk TEXT NOT NULL,
    value_sha256 BYTEA NOT NULL,
    found_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (new_key_fp, table_name, column_name, pk)
);
