"""Fixtures for the provider tests: each stand-in on a free loopback port with an adapter pointed at it (a fast retry
policy, the same shape as live, in milliseconds), and a staging world wired to all three stand-ins on which the
operator's `rotation provider rotate` runs, live, as it would in production."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotation.core import envfile
from rotation.core.config import Credential, default_config
from rotation.core.deployment import Deployment
from rotation.core.prerequisites import back_up
from rotation.core.proof import NoEvidence
from rotation.core.secret import Secret
from rotation.providers.base import Provider, RetryPolicy
from rotation.providers.factory import ProviderOptions, rotation_for
from rotation.providers.procedure import ProviderRotation, reload_application
from rotation.providers.smtp import SmtpProvider, SmtpSettings
from rotation.providers.twilio import TwilioProvider, TwilioSettings
from rotation.providers.whatsapp import GraphSettings, WhatsAppProvider
from staging.graph_standin import GraphStandIn, graph_standin
from staging.postgres import StagingServer
from staging.provider_standins import (
    FAST,
    STAGING_DELIVERY_WAIT,
    STAGING_POLICY,
    ProviderStandIns,
    provider_standins,
)
from staging.smtp_standin import SmtpStandIn, StandInConsole, smtp_standin
from staging.twilio_standin import TwilioStandIn, twilio_standin
from staging.world import staging_world
from tests.faults import KILL_AFTER, KILL_BEFORE
from tests.harness import PROJECT, SuiteRun, newest_run_folder

ADMIN_NUMBER = "+15550100001"
FROM_NUMBER = "+15550100002"
ADMIN_EMAIL = "admin@eventplanning.example.com"
CONFIG = default_config()


def credential_of(provider: str) -> Credential:
    return CONFIG.credential(provider)


@pytest.fixture
def twilio_api() -> Iterator[TwilioStandIn]:
    with twilio_standin() as standin:
        yield standin


@pytest.fixture
def twilio(twilio_api: TwilioStandIn) -> TwilioProvider:
    return TwilioProvider(TwilioSettings(twilio_api.account_sid, FROM_NUMBER, ADMIN_NUMBER, twilio_api.base_url, FAST,
                                         STAGING_DELIVERY_WAIT))


@pytest.fixture
def graph_api() -> Iterator[GraphStandIn]:
    with graph_standin() as standin:
        yield standin


@pytest.fixture
def whatsapp(graph_api: GraphStandIn) -> WhatsAppProvider:
    return WhatsAppProvider(GraphSettings(graph_api.phone_number_id, graph_api.app_id, Secret(graph_api.app_secret),
                                          graph_api.system_user_id, ADMIN_NUMBER, graph_api.base_url,
                                          graph_api.version, FAST))


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpStandIn]:
    with smtp_standin(tmp_path / "smtp-tls") as standin:
        yield standin


@pytest.fixture
def smtp_settings(smtp_server: SmtpStandIn) -> SmtpSettings:
    return SmtpSettings("127.0.0.1", smtp_server.port, smtp_server.username, smtp_server.username, ADMIN_EMAIL,
                        str(smtp_server.ca_file), FAST)


@pytest.fixture
def smtp(smtp_server: SmtpStandIn, smtp_settings: SmtpSettings) -> SmtpProvider:
    return SmtpProvider(smtp_settings, StandInConsole(smtp_server.console_url))


@dataclass(frozen=True)
class ProviderWorld:
    """A staging CRM world (scratch database, .env, running app stand-in) wired to the three provider stand-ins."""

    deployment: Deployment
    standins: ProviderStandIns
    originals: dict[str, Secret]  # the credential each provider started with
    reports: Path
    scratch: Path  # TMPDIR of the operator's commands

    @property
    def env_file(self) -> Path:
        return self.deployment.env_file

    def options(self, policy: RetryPolicy = STAGING_POLICY, **chosen: object) -> ProviderOptions:
        """The options as the scenario's steps build them on staging (the stand-ins' console and mailbox, the app's
        records proving WhatsApp delivery, the staging delivery wait)."""
        defaults: dict[str, object] = {"delivery_wait": STAGING_DELIVERY_WAIT, "prove_from_app": True}
        return ProviderOptions(policy, self.standins.smtp_console, self.standins.witnesses(),
                               **(defaults | chosen))  # type: ignore[arg-type]

    def provider(self, name: str, policy: RetryPolicy = STAGING_POLICY) -> Provider:
        return self.options(policy).provider(credential_of(name), envfile.read_env(self.env_file))

    def rotation(self, name: str, policy: RetryPolicy = STAGING_POLICY, **chosen: object) -> ProviderRotation:
        """The procedure as the scenario's steps build it on staging."""
        return rotation_for(self.deployment, credential_of(name), self.options(policy, **chosen))

    def in_env(self, name: str) -> Secret:
        return envfile.get_secret(self.env_file, credential_of(name).env)

    def command(self, action: str, name: str, *extra: str, app_stop: str | None = None,
                app_start: str | None = None) -> list[str]:
        """The operator's `rotation provider <action> <name>` with this world's settings, live against the stand-ins
        (with another stop or start command where given: a wrapper around the app's own)."""
        app = self.deployment.app
        return [sys.executable, "-m", "rotation", "provider", action, name, f"--dsn={self.deployment.dsn}",
                f"--env-file={self.env_file}", f"--app-start={app_start or app.start}",
                f"--app-stop={app_stop or app.stop}",
                f"--app-restart={app.restart}", f"--app-reload={app.reload}", f"--health-url={app.health_url}",
                "--operator=crash-test", "--approver=change-board", "--change-id=CHG-0042",
                f"--reports-dir={self.reports}", "--allow-staging-endpoints", "--confirm-live", *extra]

    def command_env(self, environ: dict[str, str] | None = None, kill_after: str | None = None,
                    kill_before: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in (KILL_AFTER, KILL_BEFORE)}
        # A killed run leaves its scratch files in this world's own directory, not loose in /tmp. Its path is short:
        # Chromium (report.pdf) puts a socket in its profile under TMPDIR and exits when that path is too long for a
        # unix socket (108 bytes), which pytest's tmp_path easily is.
        env |= {"PYTHONPATH": str(PROJECT), "PYTEST_ADDOPTS": "-p tests.faults", "TMPDIR": str(self.scratch),
                **(environ or {})}
        env |= {KILL_AFTER: kill_after} if kill_after else {}
        env |= {KILL_BEFORE: kill_before} if kill_before else {}
        return env

    def cli(self, action: str, name: str, *extra: str, kill_after: str | None = None, kill_before: str | None = None,
            environ: dict[str, str] | None = None, app_stop: str | None = None,
            app_start: str | None = None) -> SuiteRun:
        """The operator's `rotation provider <action> <name>`, live against the stand-ins (a subprocess in a session
        of its own: no controlling terminal, as under cron or CI, so nothing can prompt at the terminal that runs
        the tests). The crash plugin (tests/faults.py) is loaded and armed with the step to die after (or before)."""
        before = set(self.reports.glob("*"))
        done = subprocess.run(self.command(action, name, *extra, app_stop=app_stop, app_start=app_start), cwd=PROJECT,
                              env=self.command_env(environ, kill_after, kill_before), capture_output=True, text=True,
                              timeout=180, check=False, start_new_session=True)
        new_folders = set(self.reports.glob("*")) - before
        return SuiteRun(done.returncode, done.stdout + done.stderr,
                        run_folder=newest_run_folder(self.reports) if new_folders else None)


@pytest.fixture
def provider_world(pg: StagingServer, tmp_path: Path) -> Iterator[ProviderWorld]:
    with provider_standins(tmp_path / "providers") as standins, \
            staging_world(pg.admin_dsn, tmp_path / "app", CONFIG, rows=20, operator="crash-test",
                          extra_env=standins.env()) as deployment:
        standins.connect_webhook(deployment)
        originals = {"twilio": Secret(standins.twilio.primary), "whatsapp": Secret(standins.meta_token),
                     "smtp": Secret(standins.relay_password)}
        scratch = Path(tempfile.mkdtemp(prefix="rot-"))
        try:
            yield ProviderWorld(deployment, standins, originals, tmp_path / "reports", scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def run_all_steps(rotation: ProviderRotation) -> None:
    """The scheduled scenario's procedure calls, in the feature's order, without pytest (the fault tests)."""
    evidence = NoEvidence()
    rotation.running_with_current(rotation.label, evidence)
    back_up(rotation.deployment, evidence)
    for step in (rotation.create, rotation.test_before_deployment, rotation.update_configuration,
                 rotation.check_configuration):
        step(evidence)
    reload_application(rotation.deployment, evidence)
    for step in (rotation.check_app_uses_new, rotation.send_test_message, rotation.check_test_message,
                 rotation.retire_old, rotation.check_old_rejected, rotation.check_new_still_works, rotation.log):
        step(evidence)
    rotation.check_logged(rotation.credential.interval.days, evidence)


def leaked(text: str, *secrets: Secret | str) -> list[int]:
    """Which of the secrets appear in the text, by position: an assertion on this names no secret when it fails."""
    return [i for i, s in enumerate(secrets) if (s.reveal() if isinstance(s, Secret) else s) in text]
