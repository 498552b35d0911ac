"""Best Practices on live systems: the read-only scenarios run against a "live" CRM (a scratch database, an .env and
a repository the test builds, reached through the live guard with --confirm-live and --allow-staging-endpoints),
and the scenario that rotates the database key is skipped on live with the @staging_only reason."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.core.config import default_config
from rotation.core.envfile import encode_value
from rotation.core.keys import generate_key
from staging import rotation_history
from staging.app_repo import GIT_ENV, build_app_repo, current_owner
from staging.crm import apply_crm_schema
from staging.postgres import StagingServer, scratch_database
from tests.harness import SuiteRunner

CONFIG = default_config()


@pytest.fixture
def live_crm(pg: StagingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A CRM database whose rotation log has every credential rotated 20 days ago; its .env and app repository."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    with scratch_database(pg.admin_dsn) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_crm_schema(conn)
        for c in CONFIG.credentials:
            rotation_history.rotated(dsn, c, dt.datetime.now(dt.UTC) - dt.timedelta(days=20))
        issued = {"database": generate_key, "smtp": generate_key, "twilio": lambda: secrets.token_hex(16),
                  "whatsapp": lambda: "EAAG" + secrets.token_urlsafe(96)}
        app = tmp_path / "srv-app"
        app.mkdir()
        env = app / ".env"
        env.write_text("".join(f"{c.env}={encode_value(issued[c.provider]())}\n" for c in CONFIG.credentials))
        env.chmod(0o600)
        build_app_repo(app)
        yield dsn, env


def test_the_read_only_practices_run_live(suite: SuiteRunner, live_crm: tuple[str, Path]) -> None:
    dsn, env = live_crm
    run = suite.run("-m", "hygiene", "--target=live", f"--dsn={dsn}", f"--env-file={env}",
                    f"--app-repo={env.parent}", f"--env-owner={current_owner()}", "--confirm-live",
                    "--approver=reviewer", "--change-id=CHG-TEST", "--allow-staging-endpoints")
    statuses = {name: o.status for name, o in run.outcomes.items()}
    assert sorted(statuses.values()) == ["passed"] * 5 + ["skipped"], run.output[-3000:]
    skipped = next(o for o in run.outcomes.values() if o.status == "skipped")
    assert "postgresql_server_log" in skipped.name and "staging only" in skipped.message
    ran = [s for s in run.steps() if "server log" not in s.scenario]
    assert ran and {s.status for s in ran} == {"passed"}, ran
