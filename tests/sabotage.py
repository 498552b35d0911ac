"""A pytest plugin for negative controls: after a named step, break the world the way a faulty rotation would.

Selected with ROTATION_SABOTAGE=<name>. It acts only through real systems (SQL, files, processes), never by
patching the suite's code, so a scenario that still passes would pass in the same broken world in production.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from rotation.core import app_control, envfile
from rotation.core.database import connect, key_ref
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from tests.provider_sabotage import provider_sabotages
from tests.sabotage_practices import SABOTAGES as PRACTICES_SABOTAGES

Sabotage = tuple[str, Callable[[pytest.FixtureRequest], None]]


def _world(request: pytest.FixtureRequest) -> Deployment:
    return request.getfixturevalue("deployment")


def _keys(request: pytest.FixtureRequest) -> dict[str, str]:
    """The rotation's old and new key, from the DB key procedure object the scenario's steps use."""
    rotation = request.getfixturevalue("db_key_rotation")
    return {"old": rotation.old_key.reveal(), "new": rotation.new_key.reveal()}


def leave_one_value_under_old_key(request: pytest.FixtureRequest) -> None:
    with psycopg.connect(_world(request).dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET email_encrypted = "
                     "pgp_sym_encrypt(pgp_sym_decrypt(email_encrypted, %(new)s), %(old)s) "
                     "WHERE client_id = (SELECT min(client_id) FROM crm_client_preferences "
                     "WHERE email_encrypted IS NOT NULL)", _keys(request))


def change_one_plaintext(request: pytest.FixtureRequest) -> None:
    with psycopg.connect(_world(request).dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET full_name_encrypted = pgp_sym_encrypt('Mallory', %(new)s) "
                     "WHERE client_id = (SELECT max(client_id) FROM crm_client_preferences "
                     "WHERE full_name_encrypted IS NOT NULL)", _keys(request))


def one_value_under_another_key(request: pytest.FixtureRequest) -> None:
    """A refused attempt that wrote after all: one value is now under a key nobody holds."""
    with psycopg.connect(_world(request).dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET phone_number_encrypted = pgp_sym_encrypt('+15550000000', "
                     "%(k)s) WHERE client_id = (SELECT min(client_id) FROM crm_client_preferences "
                     "WHERE phone_number_encrypted IS NOT NULL)", {"k": generate_key().reveal()})


def touch_a_row(request: pytest.FixtureRequest) -> None:
    """Something else than ciphertext changed: one client's row is updated (the app's triggers set updated_at)."""
    with psycopg.connect(_world(request).dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET timezone = timezone "
                     "WHERE client_id = (SELECT min(client_id) FROM crm_client_preferences)")


def old_key_value_outside_the_inventory(request: pytest.FixtureRequest) -> None:
    """A table the inventory does not list holds a value under the old key (a PGP message in a bytea column)."""
    with connect(_world(request).dsn, keys={"old": request.getfixturevalue("db_key_rotation").old_key}) as conn:
        conn.execute("CREATE TABLE crm_attachments (attachment_id int PRIMARY KEY, blob bytea)")
        conn.execute(f"INSERT INTO crm_attachments VALUES (1, pgp_sym_encrypt('a note', {key_ref('old')}))")
        conn.commit()


def delete_rotation_log(request: pytest.FixtureRequest) -> None:
    with psycopg.connect(_world(request).dsn) as conn:
        conn.execute("DELETE FROM security_credential_rotations")


def env_world_readable(request: pytest.FixtureRequest) -> None:
    os.chmod(_world(request).env_file, 0o644)


def app_keeps_old_key(request: pytest.FixtureRequest) -> None:
    """The app was never really restarted: it still runs on the configuration it had, with the old key."""
    world = _world(request)
    app_control.run(world.app.stop)
    stale = world.env_file.with_name(".env.stale")
    shutil.copyfile(envfile.backups(world.env_file)[-1], stale)
    app_control.run(world.app.start.replace(str(world.env_file), str(stale)))


def app_not_reloaded(request: pytest.FixtureRequest) -> None:
    """.env changed after the app's process loaded it (the app reads .env only at start): the running app does not
    run on what .env holds now."""
    env_file = _world(request).env_file
    later = time.time() + 2  # clearly after the process start, whatever the clock resolution
    os.utime(env_file, (later, later))


def _incident_dsn(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("incident_deployment").dsn


def intruder_access(request: pytest.FixtureRequest) -> None:
    """An access by someone outside the allowlist, from outside the allowed networks, inside the review window."""
    with psycopg.connect(_incident_dsn(request)) as conn:
        conn.execute("INSERT INTO crm_data_access_log (client_id, access_type, accessed_by, access_timestamp, "
                     "ip_address, purpose) VALUES ('client-00000007', 'read', 'mallory@intruder.example', "
                     "now() - interval '10 minutes', '203.0.113.66', 'none given')")


def _standins(request: pytest.FixtureRequest):
    return request.getfixturevalue("incident_standins")


def provider_keeps_revoked_credentials_valid(request: pytest.FixtureRequest) -> None:
    """The provider's revocation does not take: the compromised credential still authenticates (Twilio, Graph: the
    provider ignores it; SMTP: the console said "revoked" but the server still takes the password)."""
    standins = _standins(request)
    standins.twilio.keep_old_tokens_valid = True
    standins.graph.keep_revoked_tokens_valid = True
    standins.smtp.add_password(request.getfixturevalue("emergency_rotation").old.reveal())


def mail_relay_refuses_everything(request: pytest.FixtureRequest) -> None:
    """The mail relay answers 421 to every connection: the notification cannot be delivered."""
    _standins(request).smtp.faults.refuse_forever()


def compromised_key_still_opens_a_value(request: pytest.FixtureRequest) -> None:
    """One value of the first pgcrypto column of the inventory is put back under the compromised key."""
    emergency = request.getfixturevalue("emergency_rotation")
    deployment = request.getfixturevalue("incident_deployment")
    place = next(e for e in deployment.config.encrypted_data if e.kind == "pgcrypto")
    table, key, column = (sql.Identifier(n) for n in (place.table, place.key, place.columns[0]))
    with connect(deployment.dsn, keys={"new": emergency.rotation.new_key, "old": emergency.rotation.old_key}) as conn:
        conn.execute(sql.SQL("UPDATE {t} SET {c} = pgp_sym_encrypt(pgp_sym_decrypt({c}, " + key_ref("new") + "), "
                             + key_ref("old") + ") WHERE {k} = (SELECT min({k}) FROM {t} WHERE {c} IS NOT NULL)"
                             ).format(t=table, c=column, k=key))
        conn.commit()


def staged_row_unverified(request: pytest.FixtureRequest) -> None:
    """Between staging and cutover, the side table marks one staged row as not verified: the cutover must not swap it
    in, and its proof must then name the row that does not hold a verified staged ciphertext."""
    with psycopg.connect(_world(request).dsn) as conn:
        row = conn.execute("SELECT max(stage_id) FROM rotation_runbook.staged_job").fetchone()
        assert row and row[0], "nothing was staged"
        conn.execute(sql.SQL("UPDATE {} SET verified = false WHERE pk = 'client-00000001'").format(
            sql.Identifier("rotation_runbook", f"staged_{row[0]}")))


SABOTAGES: dict[str, Sabotage] = {
    "db-key:staged-row-unverified": ("all sensitive data is prepared under the new key while the application still "
                                     "runs", staged_row_unverified),
    "db-key:value-left-under-old-key": ("all sensitive data is re-encrypted under the new key",
                                        leave_one_value_under_old_key),
    "db-key:plaintext-changed": ("all sensitive data is re-encrypted under the new key", change_one_plaintext),
    "db-key:rotation-log-missing": ("the rotation is logged", delete_rotation_log),
    "db-key:other-column-changed": ("all sensitive data is re-encrypted under the new key", touch_a_row),
    "db-key:old-key-value-outside-the-inventory": ("all sensitive data is re-encrypted under the new key",
                                                   old_key_value_outside_the_inventory),
    "db-key:env-0644": ("the .env file is updated with the new key", env_world_readable),
    "db-key:app-keeps-old-key": ("the application services are started", app_keeps_old_key),
    "db-key:refused-attempt-wrote": ("the re-encryption is started with an old key that does not open the data",
                                     one_value_under_another_key),
    "emergency:db-key-old-key-opens": ("every encrypted value decrypts with the replacement key to its original "
                                       "plaintext", compromised_key_still_opens_a_value),
    "emergency:revoked-token-still-valid": ("the compromised credential is revoked at the provider and a replacement "
                                            "issued", provider_keeps_revoked_credentials_valid),
    "emergency:notification-not-delivered": ("the security team, the system administrators and the compliance officer "
                                             "have e-mail addresses", mail_relay_refuses_everything),
    "emergency:intruder-access": ("the review policy names the allowed accessors, networks and the app's message "
                                  "markers", intruder_access),
}

SABOTAGES |= PRACTICES_SABOTAGES  # Best Practices and Troubleshooting: tests/sabotage_practices.py
# Twilio, WhatsApp and SMTP rotations: tests/provider_sabotage.py
SABOTAGES |= provider_sabotages(app_not_reloaded, delete_rotation_log, env_world_readable)


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature, scenario, step, step_func, step_func_args) -> None:
    for chosen in filter(None, os.environ.get("ROTATION_SABOTAGE", "").split(",")):  # one, or several: a,b,c
        if chosen not in SABOTAGES:
            raise pytest.UsageError(f"unknown sabotage {chosen!r}; known: {', '.join(SABOTAGES)}")
        after_step, action = SABOTAGES[chosen]
        if step.name == after_step:
            action(request)
