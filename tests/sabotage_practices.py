"""Sabotages for the Best Practices and Troubleshooting scenarios (merged into tests.sabotage.SABOTAGES).

Each breaks the world through real systems (git, files, SQL) right after the named step, the way a careless
operator or a faulty rotation would; the scenario's check must then fail."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from rotation.core import app_control, envfile
from rotation.core.database import connect
from rotation.core.keys import generate_key
from rotation.core.secret import Secret
from rotation.troubleshooting.decryption import keys_for_repair
from staging.app_repo import GITIGNORE, commit

Sabotage = tuple[str, Callable[[pytest.FixtureRequest], None]]
REPO_READY = "the app's source repository and the .env beside it"


def _files(request: pytest.FixtureRequest):
    return request.getfixturevalue("app_files")


def env_not_ignored(request: pytest.FixtureRequest) -> None:
    files = _files(request)
    commit(files.repo, {".gitignore": "\n".join(r for r in GITIGNORE if r != ".env") + "\n"}, "Tidy .gitignore")


def env_world_readable(request: pytest.FixtureRequest) -> None:
    _files(request).env_file.chmod(0o644)


def weak_smtp_password(request: pytest.FixtureRequest) -> None:
    envfile.set_value(_files(request).env_file, "SMTP_PASSWORD", "Summer2026!")


def shared_credential(request: pytest.FixtureRequest) -> None:
    env_file = _files(request).env_file
    envfile.set_value(env_file, "WHATSAPP_ACCESS_TOKEN", envfile.get_value(env_file, "DB_ENCRYPTION_KEY"))


def token_in_tracked_file(request: pytest.FixtureRequest) -> None:
    files = _files(request)
    token = envfile.get_value(files.env_file, "TWILIO_AUTH_TOKEN")
    commit(files.repo, {"app/twilio_debug.py": f'AUTH = "{token}"  # TODO remove\n'}, "Twilio debugging")


def token_in_history(request: pytest.FixtureRequest) -> None:
    """Committed, then deleted in the next commit: gone from the tree, still in history."""
    files = _files(request)
    token = envfile.get_value(files.env_file, "TWILIO_AUTH_TOKEN")
    commit(files.repo, {"app/local_settings.py": f'TWILIO_AUTH_TOKEN = "{token}"\n'}, "Local settings for debugging")
    commit(files.repo, {}, "Remove local settings", remove=("app/local_settings.py",))


def overdue_twilio_rotation(request: pytest.FixtureRequest) -> None:
    world = request.getfixturevalue("world")
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=95)
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM security_credential_rotations WHERE credential_type = 'twilio_token'")
        conn.execute("INSERT INTO security_credential_rotations (credential_type, rotated_at, rotated_by, "
                     "next_rotation_due) VALUES ('twilio_token', %s, 'sabotage', %s)", (at, at + dt.timedelta(days=90)))


def runbook_literal_sql(request: pytest.FixtureRequest) -> None:
    """The runbook's own Step 2: both keys as literals in a temp table, so they land in the server log."""
    world, keys = request.getfixturevalue("world"), request.getfixturevalue("key_rotation")["keys"]
    with connect(world.dsn) as conn:
        conn.execute("CREATE TEMP TABLE temp_encryption_keys (old_key TEXT, new_key TEXT)")
        conn.execute(sql.SQL("INSERT INTO temp_encryption_keys VALUES ({}, {})").format(
            sql.Literal(keys.old), sql.Literal(keys.new)))
        conn.commit()


def bad_newest_backup(request: pytest.FixtureRequest) -> None:
    """A newer backup than the good one, holding a key that opens nothing: restoring it cannot make the app healthy."""
    world = request.getfixturevalue("world")
    newest = envfile.backups(world.env_file)[0]
    bad = newest.with_name(newest.name + ".sabotage")
    bad.write_text(newest.read_text())
    bad.chmod(0o600)
    envfile.set_value(bad, "DB_ENCRYPTION_KEY", generate_key())
    later = newest.stat().st_mtime_ns + 1_000_000_000
    os.utime(bad, ns=(later, later))


def value_back_under_old_key(request: pytest.FixtureRequest) -> None:
    """After the repair, one value is written under the old key again (a second app instance still on the old key)."""
    deployment = request.getfixturevalue("deployment")
    old, new = keys_for_repair(deployment.env_file, deployment.config.credential("db_encryption_key"))
    with psycopg.connect(deployment.dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET phone_number_encrypted = "
                     "pgp_sym_encrypt(pgp_sym_decrypt(phone_number_encrypted, %(new)s), %(old)s) "
                     "WHERE client_id = (SELECT min(client_id) FROM crm_client_preferences "
                     "WHERE phone_number_encrypted IS NOT NULL)", {"new": new.reveal(), "old": old.reveal()})


def unreadable_value_fixed_behind_the_scenes(request: pytest.FixtureRequest) -> None:
    """Before the repair, someone re-encrypts the value no key opened under the old key: the repair then has nothing
    to stop at, and its check that it named the value must fail."""
    deployment = request.getfixturevalue("deployment")
    old, _ = keys_for_repair(deployment.env_file, deployment.config.credential("db_encryption_key"))
    victim = request.getfixturevalue("interrupted_rotation").victim
    with psycopg.connect(deployment.dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET email_encrypted = pgp_sym_encrypt('fixed@example.com', %s) "
                     "WHERE client_id = %s", (old.reveal(), victim))


def reload_lost(request: pytest.FixtureRequest) -> None:
    """The reload reached an app instance that still reads a stale copy of .env (the newest backup)."""
    world = request.getfixturevalue("world")
    app_control.run(world.app.stop)
    stale = world.env_file.with_name(".env.stale")
    shutil.copyfile(envfile.backups(world.env_file)[0], stale)
    app_control.run(world.app.start.replace(str(world.env_file), str(stale)))


def token_typo(request: pytest.FixtureRequest) -> None:
    """Someone "fixed" .env by hand: the token now carries the quotes it was pasted with."""
    env_file = request.getfixturevalue("deployment").env_file
    token = envfile.get_secret(env_file, "TWILIO_AUTH_TOKEN")
    envfile.set_value(env_file, "TWILIO_AUTH_TOKEN", Secret(f'"{token.reveal()}"'))


SABOTAGES: dict[str, Sabotage] = {
    "hygiene:env-not-ignored": (REPO_READY, env_not_ignored),
    "hygiene:env-0644": (REPO_READY, env_world_readable),
    "hygiene:weak-credential": (REPO_READY, weak_smtp_password),
    "hygiene:shared-credential": (REPO_READY, shared_credential),
    "hygiene:credential-in-tracked-file": (REPO_READY, token_in_tracked_file),
    "hygiene:credential-in-history": (REPO_READY, token_in_history),
    "hygiene:overdue-rotation": ("the rotation log of the CRM database", overdue_twilio_rotation),
    "hygiene:key-in-server-log": ("the database encryption key is rotated", runbook_literal_sql),
    "troubleshooting:bad-backup": ("the current configuration is backed up", bad_newest_backup),
    "troubleshooting:value-back-under-old-key": ("the interrupted re-encryption is finished with the old key from "
                                                 "the newest backup", value_back_under_old_key),
    "troubleshooting:unreadable-value-fixed": ("the count names that value by its row and column as under neither "
                                               "key", unreadable_value_fixed_behind_the_scenes),
    "troubleshooting:reload-lost": ("the application is reloaded", reload_lost),
    "troubleshooting:token-typo": ("the Twilio auth token in .env is checked with Twilio", token_typo),
}
