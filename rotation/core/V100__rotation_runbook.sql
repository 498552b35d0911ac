-- rotation-runbook's own bookkeeping, kept apart from the CRM's objects in its own schema. Idempotent.
-- No key is ever stored here: jobs name keys by fingerprint only.

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

-- Keyed digests (HMAC-SHA-256 under the new key) of every plaintext value before re-encryption, per row and column,
-- so verification proves each value decrypts to what it was. NULL digest = the value was NULL.
CREATE TABLE IF NOT EXISTS rotation_runbook.plaintext_digest (
    job_id BIGINT NOT NULL REFERENCES rotation_runbook.reencrypt_job (job_id) ON DELETE CASCADE,
    pk TEXT NOT NULL,
    column_name TEXT NOT NULL,
    digest BYTEA,
    PRIMARY KEY (job_id, pk, column_name)
);

-- NULL instead of an error when a key does not open a value: lets verification count values per key.
CREATE OR REPLACE FUNCTION rotation_runbook.try_decrypt(value BYTEA, key TEXT) RETURNS TEXT AS $$
BEGIN
    RETURN pgp_sym_decrypt(value, key);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END;
$$ LANGUAGE plpgsql IMMUTABLE STRICT;
