"""Steps of runbook section 1, Database Encryption Key Rotation. Each calls rotation.db_key and records evidence."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then, when

from rotation.core import app_control, envfile
from rotation.core.keys import MIN_KEY_LENGTH, WeakSecretError, generate_key
from rotation.core.secret import fingerprint
from rotation.db_key import procedure as db_key
from rotation.db_key.reencrypt import ReencryptionError
from rotation.db_key.verify import PopulationCheck
from staging.world import World

REASON = "Scheduled 90-day rotation"


@dataclass
class DbKeyRotation:
    keys: db_key.Keys | None = None
    env_before: dict[str, str] = field(default_factory=dict)
    job_id: int | None = None
    check: PopulationCheck | None = None
    refusal: Exception | None = None


@pytest.fixture
def db_rotation() -> DbKeyRotation:
    return DbKeyRotation()


def _progress(p) -> None:
    print(f"\r  {p.line()}", end="", file=sys.__stderr__, flush=True)


@given("the CRM database holds client PII encrypted under the current database encryption key")
def crm_has_pii(world: World, evidence) -> None:
    key = envfile.get_value(world.env_file, db_key.ENV_NAME)
    evidence.register_secret(key)
    evidence.record("current key", {"fingerprint": fingerprint(key), "length": len(key)},
                    source=f"{world.env_file.name}: DB_ENCRYPTION_KEY")


@when("a new database encryption key is generated")
def new_key(world: World, db_rotation: DbKeyRotation, backup_file: dict[str, Path], evidence) -> None:
    db_rotation.env_before = envfile.read_env(world.env_file)
    db_rotation.keys = db_key.begin(world.env_file, backup_file["path"], reason=REASON)
    evidence.register_secret(db_rotation.keys.new)
    evidence.record("new key", {"fingerprint": fingerprint(db_rotation.keys.new), "length": len(db_rotation.keys.new),
                                "source": "secrets.token_urlsafe(32) (OS CSPRNG, url-safe)"},
                    source="rotation.keys.generate_key()")


@when("the .env file is updated with the new key")
def env_updated(world: World, db_rotation: DbKeyRotation, evidence) -> None:
    db_key.update_env(world.env_file, db_rotation.keys)
    evidence.record(".env updated", {"DB_ENCRYPTION_KEY": fingerprint(db_rotation.keys.new)},
                    source=f"atomic rewrite of {world.env_file.name} (temp file + rename)")


@then("the .env file keeps mode 0600 and every other setting")
def env_intact(world: World, db_rotation: DbKeyRotation, evidence) -> None:
    after = envfile.read_env(world.env_file)
    mode = envfile.file_mode(world.env_file)
    changed = sorted(k for k in db_rotation.env_before.keys() | after.keys()
                     if k != db_key.ENV_NAME and db_rotation.env_before.get(k) != after.get(k))
    evidence.record(".env after update", {"mode": oct(mode), "other settings changed": changed,
                                          "DB_ENCRYPTION_KEY": fingerprint(after.get(db_key.ENV_NAME, ""))},
                    source=f"stat {world.env_file.name}; python-dotenv parse")
    assert mode == 0o600, f"{world.env_file.name} has mode {oct(mode)}, not 0600"
    assert not changed, f"the update changed other settings: {changed}"
    assert after.get(db_key.ENV_NAME) == db_rotation.keys.new, "DB_ENCRYPTION_KEY in .env is not the new key"


@when("all sensitive data is re-encrypted under the new key")
def reencrypted(world: World, db_rotation: DbKeyRotation, evidence) -> None:
    db_rotation.job_id, digests = db_key.prepare(world.dsn, db_rotation.keys)
    evidence.record("plaintext digests before re-encryption", {"job": db_rotation.job_id, "values": digests},
                    source="INSERT INTO rotation_runbook.plaintext_digest SELECT pk, column, "
                           "hmac(pgp_sym_decrypt(col, $old), $new, 'sha256') ...")
    result = db_key.reencrypt_all(world.dsn, db_rotation.keys, on_progress=_progress)
    evidence.record("re-encryption", {"job": result.job_id, "rows": result.rows_total, "rows re-encrypted":
                                      result.rows_done, "seconds": round(result.seconds, 3),
                                      "cipher options": "cipher-algo=aes256, s2k-mode=1"},
                    source="UPDATE crm_client_preferences SET col = pgp_sym_encrypt(pgp_sym_decrypt(col, $old), $new, "
                           "$opts) ... (keyset batches, checkpoint committed with each batch)")


@then("every encrypted value decrypts with the new key to its original plaintext")
def all_verified(world: World, db_rotation: DbKeyRotation, evidence) -> None:
    check = db_rotation.check = db_key.verify_population(world.dsn, db_rotation.keys, db_rotation.job_id,
                                                         world.env_file)
    evidence.record("population check", {"summary": check.summary(), "columns": [c.__dict__ for c in check.columns],
                                         "failures": check.failure_lines()},
                    source="rotation.verify.CHECK_COLUMN per column: hmac(try_decrypt(col, $new), $new) = digest")
    evidence.population("values verified under the new key", check.values_verified, check.values_total,
                        source="rotation_runbook.plaintext_digest joined to crm_client_preferences, per column: "
                               "hmac(try_decrypt(col, $new), $new, 'sha256') = digest before re-encryption")
    assert check.values_verified == check.values_total, check.summary() + "; " + "; ".join(check.failure_lines())
    assert check.rows_before == check.rows_after, check.summary()
    assert all(c.nulls_kept == c.nulls_before for c in check.columns), check.summary()


@then("no encrypted value decrypts with the old key")
def none_old(db_rotation: DbKeyRotation, evidence) -> None:
    check = db_rotation.check
    evidence.record("values readable with the old key", check.readable_old,
                    source="count(*) WHERE rotation_runbook.try_decrypt(col, $old) IS NOT NULL")
    assert check.readable_old == 0, f"{check.readable_old} values still decrypt with the old key"
    assert check.ok, "; ".join(check.failure_lines())


@when("the rotation is logged")
def logged(world: World, db_rotation: DbKeyRotation, operator: str, evidence) -> None:
    record = db_key.log(world.dsn, db_rotation.keys, world.env_file, rotated_by=operator, reason=REASON)
    evidence.record("rotation log row written", {k: str(v) for k, v in record.__dict__.items()},
                    source="INSERT INTO security_credential_rotations (credential_type, rotated_by, previous_key_hash, "
                           "rotation_reason, next_rotation_due) VALUES ('db_encryption_key', ...)")


@then("security_credential_rotations records it with the previous key hash and the next rotation due in 90 days")
def log_row_present(world: World, db_rotation: DbKeyRotation, operator: str, evidence) -> None:
    found = db_key.find_logged(world.dsn, db_rotation.keys)
    evidence.record("rotation log row read back", {k: str(v) for k, v in found.__dict__.items()} if found else None,
                    source="SELECT ... FROM security_credential_rotations WHERE credential_type = 'db_encryption_key' "
                           "AND previous_key_hash = sha256(old key)")
    assert found is not None, "no security_credential_rotations row records this rotation"
    assert found.rotated_by == operator and found.rotation_reason == REASON
    assert (found.next_rotation_due - found.rotated_at).days == 90, "next_rotation_due is not 90 days out"


@then("the encryption key loaded by the application is the new key, at least 32 characters long")
def new_key_loaded(world: World, db_rotation: DbKeyRotation, evidence) -> None:
    result = app_control.health(world.app.health_url)
    database = result.body.get("checks", {}).get("database", {})
    evidence.record("key loaded by the app", database, source=f"GET {world.app.health_url}")
    assert database.get("key_fingerprint") == fingerprint(db_rotation.keys.new), "the app does not hold the new key"
    assert int(database.get("key_length", 0)) >= MIN_KEY_LENGTH


@when("the re-encryption is started with a wrong old key")
def wrong_old_key(world: World, db_rotation: DbKeyRotation, evidence) -> None:
    wrong = db_key.Keys(generate_key(), generate_key())
    evidence.register_secret(wrong.old)
    evidence.register_secret(wrong.new)
    db_rotation.refusal = _refusal(lambda: db_key.prepare(world.dsn, wrong))


@when(parsers.parse("the re-encryption is started with a new key of {length:d} characters"))
def weak_new_key(world: World, db_rotation: DbKeyRotation, length: int, evidence) -> None:
    keys = db_key.Keys(envfile.get_value(world.env_file, db_key.ENV_NAME), generate_key()[:length])
    evidence.register_secret(keys.new)
    db_rotation.refusal = _refusal(lambda: db_key.prepare(world.dsn, keys))


def _refusal(action) -> Exception | None:
    try:
        action()
    except (ReencryptionError, WeakSecretError) as exc:
        return exc
    return None


@then("the rotation is refused naming the column the old key cannot decrypt")
def refused_wrong_key(db_rotation: DbKeyRotation, evidence) -> None:
    evidence.record("refusal", str(db_rotation.refusal), source="rotation.reencrypt.preflight")
    assert isinstance(db_rotation.refusal, ReencryptionError), "the wrong old key was not refused"
    assert "crm_client_preferences.email_encrypted" in str(db_rotation.refusal)


@then("the rotation is refused because the new key is too short")
def refused_weak_key(db_rotation: DbKeyRotation, evidence) -> None:
    evidence.record("refusal", str(db_rotation.refusal), source="rotation.keys.check_strength")
    assert isinstance(db_rotation.refusal, WeakSecretError), "the weak new key was not refused"


@then("every encrypted value still decrypts with the current key")
def still_current(world: World, evidence) -> None:
    counts = db_key.count_readable(world.dsn, envfile.get_value(world.env_file, db_key.ENV_NAME))
    evidence.record("values readable with the current key", counts, source=db_key.COUNT_READABLE)
    assert counts["readable"] == counts["non_null"], f"{counts} values are no longer readable with the current key"
