"""Runbook Troubleshooting, "API calls failing after token rotation":

    verify the new token is valid             the provider's read-only call with the token in .env
    test the API connection manually          the same call, recorded with the provider's answer
    check for typos in .env                   .env parses, and the token has the form the registry expects
    ensure the application reloaded           the app's process started after .env last changed (it reads .env
                                              only at start), and its own calls to the provider work

Findings name lines, fingerprints and counts, never a token. The provider adapter is anything with a read-only
`check` (rotation.providers' adapters are), so this module needs no provider code of its own.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Literal, Protocol

from dotenv.parser import parse_stream

from rotation.core import app_control, app_proof, envfile
from rotation.core.app_control import Health
from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.core.keys import strength_problems
from rotation.core.proof import CheckFailed, Evidence, require
from rotation.core.secret import Secret


class CheckOutcome(Protocol):
    @property
    def accepted(self) -> bool: ...

    def as_evidence(self) -> dict[str, object]: ...


class CredentialChecker(Protocol):
    """A provider adapter's read-only call (rotation.providers.base.Provider satisfies it)."""

    @property
    def name(self) -> str: ...

    def check(self, credential: Secret) -> CheckOutcome: ...

    def source(self, operation: Literal["check"]) -> str: ...


def unparsable_lines(path: Path) -> list[int]:
    """Line numbers python-dotenv cannot parse (it drops them with a warning, so the app starts without them)."""
    return [binding.original.line for binding in parse_stream(io.StringIO(path.read_text())) if binding.error]


def typos(credential: Credential, value: Secret) -> list[str]:
    """What looks mistyped in a credential (whitespace, quotes, control characters, not the form its strength policy
    expects), described without the value."""
    text = value.reveal()
    problems = []
    if text != text.strip():
        problems.append(f"{credential.env} has leading or trailing whitespace")
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        problems.append(f"{credential.env} is wrapped in quotes that became part of the value")
    if any(not c.isprintable() for c in text):
        problems.append(f"{credential.env} holds a non-printable character")
    return problems + [f"{credential.env}: {p}" for p in strength_problems(value, credential.strength)]


def loaded_before_last_change(env_loaded_at: object, env_file: Path) -> bool:
    """True when the running app loaded its configuration before .env last changed (it was never reloaded), or does
    not say when it loaded it."""
    if not isinstance(env_loaded_at, int | float):
        return True
    return float(env_loaded_at) < env_file.stat().st_mtime


def modified_at(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat(timespec="seconds")


class ApiCallDiagnosis:
    """The runbook's four checks for one credential, each a step of the troubleshooting feature."""

    def __init__(self, deployment: Deployment, credential: Credential | None, checker: CredentialChecker) -> None:
        if credential is None:
            raise ValueError("the troubleshooting scenario names no credential (no credential tag)")
        self.deployment, self.credential, self.checker = deployment, credential, checker
        self._result: CheckOutcome | None = None

    @property
    def env_file(self) -> Path:
        return self.deployment.env_file

    def _in_env(self) -> Secret:
        return envfile.get_secret(self.env_file, self.credential.env)

    def _health_source(self) -> str:
        return f"GET {self.deployment.app.health_url}"

    def calls_fail(self, evidence: Evidence) -> None:
        """The symptom: the app's own calls to the provider fail (its health check of the provider fails)."""
        health = app_control.wait_for_health(self.deployment.app.health_url, healthy=False,
                                             timeout_s=self.deployment.app.health_timeout_s)
        checks = health.body.get("checks")
        check = checks.get(self.checker.name) if isinstance(checks, dict) else None
        evidence.record(f"the application's calls with its {self.credential.label}",
                        {"health": health.status_code, f"its {self.checker.name} check": check},
                        source=self._health_source())
        require(not health.healthy, f"the application is healthy: its {self.checker.name} calls do not fail")
        require(isinstance(check, dict) and check.get("ok") is False,
                f"the application's {self.checker.name} check does not report failing calls: {check}")

    def check_env_credential(self, evidence: Evidence) -> None:
        """Verify the token in .env and test the API connection: the provider's read-only call with it."""
        value = self._in_env()
        evidence.register_secret(value)
        self._result = self.checker.check(value)
        evidence.record(f"the {self.credential.label} in .env checked with the provider", self._result.as_evidence(),
                        source=f"{self.checker.source('check')}, with {self.credential.env} from "
                               f"{self.env_file.name}")

    def env_credential_accepted(self, evidence: Evidence) -> None:
        if self._result is None:
            raise CheckFailed(f"the {self.credential.label} in .env was not checked with the provider in this run")
        shown = self._result.as_evidence()
        verb = "gives no definitive answer about" if shown.get("answer") == "undecided" else "refuses"
        require(self._result.accepted, f"the provider {verb} the {self.credential.label} in .env: {shown}")

    def no_typo(self, evidence: Evidence) -> None:
        lines, problems = unparsable_lines(self.env_file), typos(self.credential, self._in_env())
        evidence.record(".env typo check", {"unparsable lines": lines, f"{self.credential.env} problems": problems},
                        source=f"python-dotenv parse_stream over {self.env_file.name}; the registry's strength "
                               f"policy for {self.credential.type}")
        require(not lines, f"{self.env_file.name} has lines python-dotenv cannot parse: {lines}")
        require(not problems, "; ".join(problems))

    def app_config_stale(self, evidence: Evidence) -> None:
        """The app never reloaded: its process started before .env last changed (it reads .env only at start), and
        its own calls fail while the provider accepts the token .env holds, so it uses another one."""
        health = app_control.health(self.deployment.app.health_url)
        proof = app_proof.started_after(self.deployment.app, self.env_file)
        check = _app_check(health, self.checker.name)
        in_env_accepted = self._result.accepted if self._result is not None else None
        evidence.record("application configuration against .env", {
            **proof.detail, f"the app's own {self.checker.name} check": check,
            ".env holds": self._in_env().fingerprint,
            f"{self.checker.name} accepts the token in .env": in_env_accepted},
            source=f"{self._health_source()}; {proof.method} "
                   f"({app_control.start_source(self.deployment.app)}) against stat "
                   f"{self.env_file.name}")
        require(proof.method is not app_proof.ProofMethod.NONE, app_proof.NO_PROOF)
        require(not proof.proven, f"the application's process started after {self.env_file.name} last changed: it "
                                  f"runs on the configuration .env holds")
        require(check.get("ok") is False and in_env_accepted is True,
                f"the application's {self.checker.name} calls do not fail with another {self.credential.label} "
                f"than the one in .env (its check: {check}; the provider accepts .env's: {in_env_accepted})")

    def app_uses_env_credential(self, evidence: Evidence) -> None:
        """The app runs on the token in .env: healthy, its own provider check passing, its process started after
        .env last changed."""
        health = app_control.wait_for_health(self.deployment.app.health_url,
                                             timeout_s=self.deployment.app.health_timeout_s)
        proof = app_proof.started_after(self.deployment.app, self.env_file)
        check = _app_check(health, self.checker.name)
        evidence.record(f"the {self.credential.label} the application uses", {
            "health": health.status_code, f"the app's own {self.checker.name} check": check, **proof.detail},
            source=f"{self._health_source()}; {proof.method} against stat {self.env_file.name}")
        require(health.healthy and check.get("ok") is not False,
                f"the application is not healthy on the {self.credential.label} in .env: HTTP "
                f"{health.status_code}")
        require(proof.proven, proof.why)


def _app_check(health: Health, name: str) -> dict[str, object]:
    checks = health.body.get("checks")
    check = checks.get(name) if isinstance(checks, dict) else None
    return check if isinstance(check, dict) else {}
