"""The staging world meets what the production app has (shared notes crm-schema.md, "What the production app does"),
so that every rehearsal meets it too:

- the app's role is an ordinary role (not a superuser) that owns its database and tables; the world's DSN is it;
- both BEFORE UPDATE triggers set updated_at on every UPDATE; the credential trigger logs a change of
  credential_key_encrypted under the row's service_name, as current_user, with the SHA-256 of the old ciphertext;
- security_api_credentials holds Fernet tokens under the app's derivation of DB_ENCRYPTION_KEY;
- the app stand-in answers the real health endpoints and nothing that names a key; it reads .env only at start (a
  reload changes nothing, a restart does); its probe reads one encrypted value with the key it loaded;
- nothing holding a key outlives the world.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from rotation.core import app_control, app_proof, envfile
from rotation.core.config import default_config
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from rotation.db_key.fernet import app_fernet
from rotation.db_key.procedure import CREDENTIAL
from staging.crm import migrations
from staging.postgres import StagingServer
from staging.world import staging_world
from tests.harness import PROJECT
from tests.leakcheck import assert_no_fragment

CONFIG = default_config()
ENV = CONFIG.credential(CREDENTIAL).env
PROVIDERS = sorted(c.provider for c in CONFIG.credentials if c.provider != "database")


@pytest.fixture
def world(pg: StagingServer, tmp_path: Path) -> Iterator[Deployment]:
    with staging_world(pg.admin_dsn, tmp_path / "app", CONFIG, rows=10, operator="test") as deployment:
        yield deployment


def test_the_staging_crm_meets_the_production_facts(world: Deployment) -> None:
    key = envfile.get_secret(world.env_file, ENV)
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        role = conn.execute("SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                            "WHERE rolname = current_user").fetchone()
        owners = {r[0] for r in conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
        before = conn.execute("SELECT updated_at FROM crm_client_preferences WHERE client_id = 'client-00000001'"
                              ).fetchone()
        conn.execute("UPDATE crm_client_preferences SET timezone = timezone WHERE client_id = 'client-00000001'")
        after = conn.execute("SELECT updated_at FROM crm_client_preferences WHERE client_id = 'client-00000001'"
                             ).fetchone()
        services = conn.execute("SELECT service_name, credential_key_encrypted FROM security_api_credentials "
                                "ORDER BY 1").fetchall()
        old_token = bytes(services[0][1])
        conn.execute("UPDATE security_api_credentials SET credential_key_encrypted = %s WHERE service_name = %s",
                     (app_fernet(key).encrypt(b"a new credential"), services[0][0]))
        logged = conn.execute("SELECT credential_type, rotated_by, previous_key_hash, rotation_reason, "
                              "next_rotation_due - rotated_at FROM security_credential_rotations").fetchall()
    assert role is not None and role[1:] == (False, False, False)
    assert owners == {role[0]}
    assert {"update_crm_client_preferences_updated_at", "trigger_update_crm_client_preferences_timestamp",
            "trigger_track_credential_rotation"} <= triggers
    assert before is not None and after is not None and after[0] > before[0]
    assert [s for s, _ in services] == PROVIDERS
    assert all(app_fernet(key).decrypt(bytes(token)) for _, token in services)
    assert [(t, by, h, why) for t, by, h, why, _ in logged] == [
        (services[0][0], role[0], hashlib.sha256(old_token).hexdigest(), "Credential updated")]
    assert logged[0][4].days == 90
    assert CONFIG.log_type(logged[0][0]) == CONFIG.credential(services[0][0]).type  # monitoring reads it via aliases


def test_every_migration_is_applied_in_version_order() -> None:
    names = sorted(p.name for p in (PROJECT / "staging" / "crm").glob("V*.sql"))
    assert names[0] == "V001__crm_schema.sql"
    assert migrations() == [(PROJECT / "staging" / "crm" / name).read_text() for name in names]


def test_the_app_stand_in_reads_env_once_and_answers_the_real_health_body(world: Deployment) -> None:
    app = world.app
    old_key = envfile.get_secret(world.env_file, ENV)
    answers = {path: requests.get(app.health_url.replace("/health", path), timeout=10)
               for path in ("/health", "/healthz", "/health/live", "/health/ready")}
    body = answers["/health"].json()
    assert answers["/health"].status_code == 200 and body["overall_status"] == "healthy", body
    assert set(body) == {"overall_status", "timestamp", "checks"}
    assert answers["/healthz"].status_code == 200 and answers["/healthz"].json()["overall_status"] == "healthy"
    assert answers["/health/live"].json() == {"status": "alive"}
    assert answers["/health/ready"].json() == {"status": "ready", "overall_status": "healthy"}
    text = json.dumps([a.json() for a in answers.values()])
    assert "fingerprint" not in text and "sha256" not in text
    assert_no_fragment({"health": text.encode()}, [old_key.reveal()])
    assert app_proof.probe_key(app, CONFIG, world.dsn, old_key).proven

    new_key = generate_key()
    envfile.set_value(world.env_file, ENV, new_key)
    app_control.run(str(app.reload))  # SIGHUP: the app reads .env only at start
    assert app_proof.probe_key(app, CONFIG, world.dsn, old_key).proven, "a reload made the app read .env"
    stale = app_proof.started_after(app, world.env_file)
    assert not stale.proven and "it was not reloaded after the change" in stale.why

    assert app_control.reload_or_restart(app) == "restart"  # the reload left the old process: restarted
    assert app_proof.started_after(app, world.env_file).proven
    probe = app_proof.probe_key(app, CONFIG, world.dsn, old_key)
    assert not probe.proven and "could not read" in probe.why  # the app now runs on the new key, which opens nothing

    envfile.set_value(world.env_file, ENV, "too-short")
    app_control.run(app.restart)
    unhealthy = requests.get(app.health_url, timeout=10)
    assert unhealthy.status_code == 503 and unhealthy.json()["overall_status"] == "unhealthy"


def test_nothing_holding_a_key_outlives_the_world(pg: StagingServer, tmp_path: Path) -> None:
    workdir = tmp_path / "app"
    with staging_world(pg.admin_dsn, workdir, CONFIG, rows=2, operator="test") as world:
        envfile.backup(world.env_file)
        (workdir / ".env.stale").write_text(world.env_file.read_text())
        (workdir / f".rotation-pending.{CREDENTIAL}").write_text("x")
    assert not [p.name for p in workdir.rglob("*") if p.name.startswith((".env", ".rotation-pending."))]
