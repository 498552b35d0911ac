"""`rotation emergency --confirm-live` against the stand-ins, as an operator runs it (a real subprocess, the live path
with --allow-staging-endpoints): it leaves a signed run folder whose evidence lists the steps of the emergency feature
in order; killed right after the revocation or right after the .env update, the same command finishes the rotation
without a second revocation (counted at the Twilio stand-in) and without losing the replacement credential."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rotation.core import envfile, state
from rotation.core.config import Credential, default_config
from rotation.core.deployment import Deployment
from rotation.core.secret import Secret
from staging.postgres import StagingServer
from staging.provider_standins import ProviderStandIns, provider_standins
from staging.seed_activity import seed_activity, staging_policy
from staging.world import staging_world
from tests.harness import PROJECT, newest_run_folder, read_evidence, step_results

CONFIG = default_config()
TWILIO = CONFIG.credential("twilio")
FEATURE = PROJECT / "rotation_suite" / "features" / "emergency" / "compromised_credential.feature"
REVOKE_STEP = "the compromised credential is revoked at the provider and a replacement issued"
ENV_STEP = "the .env file is updated with the new credential"


def outline_steps(feature: Path, credential: Credential) -> list[tuple[str, str]]:
    """The Scenario Outline's steps as the feature file writes them, with the Examples row tagged for `credential`
    filled in: (keyword, text)."""
    lines = [line.strip() for line in feature.read_text().splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("Scenario Outline:"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(("@", "Examples:")))
    tag = next(i for i in range(end, len(lines)) if f"@{credential.type}" in lines[i].split())
    header, row = ([c.strip() for c in lines[i].strip("|").split("|")] for i in (tag + 2, tag + 3))
    steps = []
    for line in filter(None, lines[start + 1:end]):
        keyword, _, text = line.partition(" ")
        for name, value in zip(header, row, strict=True):
            text = text.replace(f"<{name}>", value)
        steps.append((keyword, text))
    return steps


@dataclass(frozen=True)
class StandInLive:
    """A world of stand-ins that the operator's command treats as live."""

    standins: ProviderStandIns
    deployment: Deployment
    reports: Path
    public_key: Path
    options: tuple[str, ...]

    def command(self, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})}
        return subprocess.run([sys.executable, "-m", "rotation", "emergency", *self.options], cwd=self.reports,
                              env=environ, capture_output=True, text=True, timeout=300, check=False)

    def promotions(self) -> int:
        """How often Twilio promoted a secondary token (each promotion kills the primary)."""
        return sum(1 for request in self.standins.twilio.requests
                   if request == ("POST", "/v1/AuthTokens/Promote", 200))

    def in_env(self) -> Secret:
        return envfile.get_secret(self.deployment.env_file, TWILIO.env)

    def emergency_rows(self) -> int:
        with psycopg.connect(self.deployment.dsn) as conn:
            return int(conn.execute("SELECT count(*) FROM security_credential_rotations WHERE credential_type = %s "
                                    "AND rotation_reason = 'emergency'", (TWILIO.type,)).fetchone()[0])

    def verify(self, folder: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rotation", "verify-evidence", str(folder), "--public-key",
                               str(self.public_key)], env={**os.environ, "PYTHONPATH": str(PROJECT)},
                              capture_output=True, text=True, timeout=60, check=False)


def _signing_key(directory: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = directory / "signing-key.pem", directory / "signing-key.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _review_policy(path: Path) -> Path:
    policy = staging_policy()
    path.write_text(yaml.safe_dump({"allowed_accessors": list(policy.allowed_accessors),
                                    "allowed_networks": list(policy.allowed_networks),
                                    "app_templates": list(policy.app_templates)}))
    return path


@pytest.fixture
def stand_in_live(pg: StagingServer, tmp_path: Path) -> Iterator[StandInLive]:
    with provider_standins(tmp_path / "providers") as standins, \
            staging_world(pg.admin_dsn, tmp_path / "app", CONFIG, rows=50, operator="ops",
                          server_log=pg.server_log, extra_env=standins.env()) as world:
        seed_activity(world.dsn, clients=50)
        reports = tmp_path / "reports"
        reports.mkdir()
        private, public = _signing_key(tmp_path)
        now = dt.datetime.now(dt.UTC)
        app = world.app
        options = (
            "--compromised=twilio", f"--dsn={world.dsn}", f"--env-file={world.env_file}",
            f"--app-start={app.start}", f"--app-stop={app.stop}", f"--app-restart={app.restart}",
            f"--app-reload={app.reload}", f"--health-url={app.health_url}", "--allow-staging-endpoints",
            "--change-id=CHG-911", "--approver=ciso@eventplanning.example.com", "--operator=ops",
            f"--review-policy={_review_policy(tmp_path / 'policy.yaml')}",
            "--notify-security=security@eventplanning.example.com",
            "--notify-sysadmins=sysadmins@eventplanning.example.com",
            "--notify-compliance=compliance@eventplanning.example.com",
            f"--incident-start={(now - dt.timedelta(hours=2)).isoformat()}", f"--incident-end={now.isoformat()}",
            "--root-cause=token pasted into a public gist", "--preventive-measure=secret scanning on every push",
            f"--reports-dir={reports}", f"--signing-key={private}", "--confirm-live")
        yield StandInLive(standins, world, reports, public, options)


def test_the_feature_file_names_the_steps_the_crash_tests_kill_after() -> None:
    texts = [text for _, text in outline_steps(FEATURE, TWILIO)]
    assert REVOKE_STEP in texts and ENV_STEP in texts and texts.index(REVOKE_STEP) < texts.index(ENV_STEP)


def test_rotation_emergency_leaves_a_signed_run_folder_listing_the_features_steps(stand_in_live: StandInLive) -> None:
    compromised = stand_in_live.in_env()
    done = stand_in_live.command()
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert "EMERGENCY ROTATION PLAN  target=live  change=CHG-911" in out
    assert "STAGING ENDPOINTS ALLOWED (--allow-staging-endpoints)" in out
    folder = newest_run_folder(stand_in_live.reports)
    assert folder is not None and folder.name.endswith("-live"), out[-3000:]
    verified = stand_in_live.verify(folder)
    assert verified.returncode == 0, verified.stdout[-3000:]
    ran = [(s.keyword, s.text, s.status) for s in step_results(folder)
           if s.scenario == f"Compromised {TWILIO.label}"]
    assert ran == [(keyword, text, "passed") for keyword, text in outline_steps(FEATURE, TWILIO)]
    run = next(e for e in read_evidence(folder) if e["type"] == "run")
    assert (run["target"], run["change_id"], run["operator"]) == ("live", "CHG-911", "ops")
    assert stand_in_live.promotions() == 1
    assert stand_in_live.in_env().reveal() == stand_in_live.standins.twilio.primary != compromised.reveal()
    assert stand_in_live.emergency_rows() == 1
    assert (folder / "incident-report.md").exists()
    assert "secret scanning on every push" in (folder / "incident-report.md").read_text()


@pytest.mark.parametrize("kill_after", [REVOKE_STEP, ENV_STEP], ids=["after-revocation", "after-env-update"])
def test_a_killed_rotation_emergency_resumes_without_a_second_revocation(stand_in_live: StandInLive,
                                                                         kill_after: str) -> None:
    compromised = stand_in_live.in_env()
    killed = stand_in_live.command({"PYTEST_ADDOPTS": "-p tests.faults", "ROTATION_TEST_KILL_AFTER": kill_after})
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    env_file = stand_in_live.deployment.env_file
    interrupted = state.load(env_file, TWILIO.type)
    assert interrupted is not None and interrupted.in_progress and interrupted.revoked_at is not None
    replacement = state.read_pending(env_file, TWILIO.type)
    assert replacement is not None and replacement.fingerprint == interrupted.pending_fp
    assert replacement.reveal() == stand_in_live.standins.twilio.primary, "the provider holds another credential"
    assert stand_in_live.promotions() == 1
    assert newest_run_folder(stand_in_live.reports) is None, "a killed run cannot have written its run folder"

    resumed = stand_in_live.command()
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-5000:]
    assert stand_in_live.promotions() == 1, "the compromised credential was revoked a second time"
    assert stand_in_live.in_env() == replacement != compromised, "the replacement credential was lost"
    assert stand_in_live.in_env().reveal() == stand_in_live.standins.twilio.primary
    finished = state.load(env_file, TWILIO.type)
    assert finished is not None and finished.step == "finish" and finished.rotation_id == interrupted.rotation_id
    assert state.read_pending(env_file, TWILIO.type) is None
    assert stand_in_live.emergency_rows() == 1
    folder = newest_run_folder(stand_in_live.reports)
    assert folder is not None and stand_in_live.verify(folder).returncode == 0
    records = [e for e in read_evidence(folder)
               if e["type"] == "evidence" and e["name"] == "provider actions, in order"]
    assert len(records) == 1 and records[0]["value"]["rotation"] == interrupted.rotation_id
    assert "not revoked again" in str(records[0]["value"]["actions"])
