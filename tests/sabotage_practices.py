"""Sabotages for the Automated Rotation Monitoring, Best Practices and Troubleshooting ("Application Won't Start")
scenarios (merged into tests.sabotage.SABOTAGES).

Each breaks the world through real systems (git, files, SQL, the stand-ins) right after the named step, the way a
careless operator or a faulty rotation would; the scenario's check must then fail, and say why."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from rotation.core import app_control, envfile
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from rotation.core.secret import Secret
from rotation.db_key.decryption import keys_for_repair
from rotation.hygiene.checks import AppFiles
from staging import rotation_history
from staging.app_repo import GITIGNORE, commit
from staging.smtp_standin import make_certificate

Sabotage = tuple[str, Callable[[pytest.FixtureRequest], None]]
REPO_READY = "the app's source repository and the .env beside it"
ALERT_ACCOUNT = "the alert mail account accepts logins only over a verified encrypted connection"
BROKEN_ENV = "a rotation of the database encryption key left its line in .env unparsable"


def _files(request: pytest.FixtureRequest) -> AppFiles:
    files: AppFiles = request.getfixturevalue("app_files")
    return files


def _deployment(request: pytest.FixtureRequest) -> Deployment:
    deployment: Deployment = request.getfixturevalue("deployment")
    return deployment


def _env(request: pytest.FixtureRequest, kind: str) -> str:
    """The .env variable of the registry's credential issued by `kind` ('database', 'twilio', 'smtp', ...)."""
    return next(c.env for c in _deployment(request).config.credentials if c.provider == kind)


# --- Best Practices ------------------------------------------------------------------------------------------------

def env_not_ignored(request: pytest.FixtureRequest) -> None:
    files = _files(request)
    commit(files.repo, {".gitignore": "\n".join(r for r in GITIGNORE if r != ".env") + "\n"}, "Tidy .gitignore")


def env_world_readable(request: pytest.FixtureRequest) -> None:
    _files(request).env_file.chmod(0o644)


def weak_smtp_password(request: pytest.FixtureRequest) -> None:
    envfile.set_value(_files(request).env_file, _env(request, "smtp"), "Summer2026!")


def shared_credential(request: pytest.FixtureRequest) -> None:
    """The SMTP password set to the database key (which also meets the SMTP password's policy)."""
    env_file = _files(request).env_file
    envfile.set_value(env_file, _env(request, "smtp"), envfile.get_secret(env_file, _env(request, "database")))


def token_in_tracked_file(request: pytest.FixtureRequest) -> None:
    files = _files(request)
    token = envfile.get_value(files.env_file, _env(request, "twilio"))
    commit(files.repo, {"app/twilio_debug.py": f'AUTH = "{token}"  # TODO remove\n'}, "Twilio debugging")


def token_in_history(request: pytest.FixtureRequest) -> None:
    """Committed, then deleted in the next commit: gone from the tree, still in history."""
    files = _files(request)
    token = envfile.get_value(files.env_file, _env(request, "twilio"))
    commit(files.repo, {"app/local_settings.py": f'AUTH_TOKEN = "{token}"\n'}, "Local settings for debugging")
    commit(files.repo, {}, "Remove local settings", remove=("app/local_settings.py",))


def overdue_twilio_rotation(request: pytest.FixtureRequest) -> None:
    """The Twilio auth token's last rotation was 95 days ago (its interval is 90)."""
    deployment = _deployment(request)
    twilio = deployment.config.credential("twilio")
    rotation_history.forget(deployment.dsn, twilio)
    rotation_history.rotated(deployment.dsn, twilio, dt.datetime.now(dt.UTC) - dt.timedelta(days=95))


def runbook_literal_sql(request: pytest.FixtureRequest) -> None:
    """The runbook's own Step 2: both keys as literals in a temp table, so they land in the server log."""
    rotation = request.getfixturevalue("db_key_rotation")
    with connect(_deployment(request).dsn) as conn:
        conn.execute("CREATE TEMP TABLE temp_encryption_keys (old_key TEXT, new_key TEXT)")
        conn.execute(sql.SQL("INSERT INTO temp_encryption_keys VALUES ({}, {})").format(
            sql.Literal(rotation.old_key.reveal()), sql.Literal(rotation.new_key.reveal())))
        conn.commit()


# --- Automated Rotation Monitoring -----------------------------------------------------------------------------------

def newer_twilio_rotation(request: pytest.FixtureRequest) -> None:
    """A rotation of the Twilio auth token two days before the scenario's clock, which the check must see."""
    deployment, clock = _deployment(request), request.getfixturevalue("clock")
    rotation_history.rotated(deployment.dsn, deployment.config.credential("twilio"), clock - dt.timedelta(days=2))


def untrusted_mail_certificate(request: pytest.FixtureRequest) -> None:
    """.env names another CA than the one that signed the mail server's certificate: verification must refuse it."""
    deployment = _deployment(request)
    other = make_certificate(Path(deployment.env_file.parent) / "other-ca")
    envfile.set_value(deployment.env_file, "SMTP_CA_FILE", str(other.ca_file))


def database_key_never_rotated(request: pytest.FixtureRequest) -> None:
    deployment = _deployment(request)
    rotation_history.forget(deployment.dsn, deployment.config.credential("database"))


# --- Troubleshooting: the application won't start --------------------------------------------------------------------

def bad_newest_backup(request: pytest.FixtureRequest) -> None:
    """A newer backup than the good one, holding a key that opens nothing: restoring it cannot make the app healthy."""
    env_file = _deployment(request).env_file
    newest = envfile.backups(env_file)[0]
    bad = newest.with_name(newest.name + ".sabotage")
    bad.write_text(newest.read_text())
    bad.chmod(0o600)
    envfile.set_value(bad, _env(request, "database"), generate_key())
    later = newest.stat().st_mtime_ns + 1_000_000_000
    os.utime(bad, ns=(later, later))


def second_unparsable_line(request: pytest.FixtureRequest) -> None:
    """Another line python-dotenv cannot parse, which the check must name too."""
    env_file = _deployment(request).env_file
    env_file.write_text(env_file.read_text() + "this line is not a setting\n")


# --- Troubleshooting: decryption fails, API calls fail (the DB-key and provider areas own these two) -----------------

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
    world = request.getfixturevalue("deployment")
    app_control.run(world.app.stop)
    stale = world.env_file.with_name(".env.stale")
    shutil.copyfile(envfile.backups(world.env_file)[0], stale)
    app_control.run(world.app.start.replace(str(world.env_file), str(stale)))


def token_typo(request: pytest.FixtureRequest) -> None:
    """Someone "fixed" .env by hand: the token now carries the quotes it was pasted with."""
    env_file = request.getfixturevalue("deployment").env_file
    token = envfile.get_secret(env_file, "TWILIO_AUTH_TOKEN")
    envfile.set_value(env_file, "TWILIO_AUTH_TOKEN", Secret(f'"{token.reveal()}"'))


def _on(step: str, action: Callable[[pytest.FixtureRequest], None]) -> Sabotage:
    return step, action


SABOTAGES: dict[str, Sabotage] = {
    "hygiene:env-not-ignored": _on(REPO_READY, env_not_ignored),
    "hygiene:env-0644": _on(REPO_READY, env_world_readable),
    "hygiene:weak-credential": _on(REPO_READY, weak_smtp_password),
    "hygiene:shared-credential": _on(REPO_READY, shared_credential),
    "hygiene:credential-in-tracked-file": _on(REPO_READY, token_in_tracked_file),
    "hygiene:credential-in-history": _on(REPO_READY, token_in_history),
    "hygiene:overdue-rotation": _on("the latest rotations in the rotation log", overdue_twilio_rotation),
    "hygiene:key-in-server-log": _on("the database encryption key is rotated", runbook_literal_sql),
    "monitoring:newer-rotation": _on("the Twilio auth token was last rotated 84 days ago", newer_twilio_rotation),
    "monitoring:untrusted-certificate": _on(ALERT_ACCOUNT, untrusted_mail_certificate),
    "monitoring:key-never-rotated": _on("every credential was rotated 30 days ago", database_key_never_rotated),
    "troubleshooting:bad-backup": _on("the current configuration is backed up", bad_newest_backup),
    "troubleshooting:second-bad-line": _on(BROKEN_ENV, second_unparsable_line),
    "troubleshooting:value-back-under-old-key": ("the interrupted re-encryption is finished with the old key from "
                                                 "the newest backup", value_back_under_old_key),
    "troubleshooting:unreadable-value-fixed": ("the count names that value by its row and column as under neither "
                                               "key", unreadable_value_fixed_behind_the_scenes),
    "troubleshooting:reload-lost": ("the application is reloaded", reload_lost),
    "troubleshooting:token-typo": ("the Twilio auth token in .env is checked with Twilio", token_typo),
}
