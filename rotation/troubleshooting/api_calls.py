"""Runbook Troubleshooting, "API calls failing after token rotation":

    verify the new token is valid             the provider's read-only call with the token in .env
    test the API connection manually          the same call, recorded with the provider's answer
    check for typos in .env                   .env parses, and the token has the form the registry expects
    ensure the application reloaded           the app loaded .env after its last change, and uses the token in it

Findings name lines, fingerprints and counts, never a token. The provider adapter is anything with a read-only
`check` (rotation.providers' adapters are), so this module needs no provider code of its own.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Literal, Protocol

from dotenv.parser import parse_stream

from rotation.core import app_control, envfile
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


def reported_credential(health: Health, name: str) -> str | None:
    """The fingerprint of the credential the app says it uses for this provider (the staging app's /health reports
    it under checks.<provider>.credential_fingerprint), or None."""
    checks = health.body.get("checks")
    check = checks.get(name) if isinstance(checks, dict) else None
    reported = check.get("credential_fingerprint") if isinstance(check, dict) else None
    return str(reported) if reported else None


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
        require(self._result.accepted, f"the provider refuses the {self.credential.label} in .env: "
                                       f"{self._result.as_evidence()}")

    def no_typo(self, evidence: Evidence) -> None:
        lines, problems = unparsable_lines(self.env_file), typos(self.credential, self._in_env())
        evidence.record(".env typo check", {"unparsable lines": lines, f"{self.credential.env} problems": problems},
                        source=f"python-dotenv parse_stream over {self.env_file.name}; the registry's strength "
                               f"policy for {self.credential.type}")
        require(not lines, f"{self.env_file.name} has lines python-dotenv cannot parse: {lines}")
        require(not problems, "; ".join(problems))

    def app_config_stale(self, evidence: Evidence) -> None:
        """The app never reloaded: it loaded .env before its last change and uses another credential than .env's."""
        health = app_control.health(self.deployment.app.health_url)
        loaded_at, in_app = health.body.get("env_loaded_at"), reported_credential(health, self.checker.name)
        in_env = self._in_env().fingerprint
        evidence.record("application configuration against .env", {
            "app loaded .env at": loaded_at, ".env modified": modified_at(self.env_file), "app uses": in_app,
            ".env holds": in_env},
            source=f"{self._health_source()} (env_loaded_at, checks.{self.checker.name}.credential_fingerprint); "
                   f"stat {self.env_file.name}")
        require(loaded_before_last_change(loaded_at, self.env_file),
                f"the application loaded {self.env_file.name} after its last change")
        require(in_app != in_env, f"the application already uses the {self.credential.label} in .env ({in_env})")

    def app_uses_env_credential(self, evidence: Evidence) -> None:
        health = app_control.wait_for_health(self.deployment.app.health_url,
                                             timeout_s=self.deployment.app.health_timeout_s)
        in_app, in_env = reported_credential(health, self.checker.name), self._in_env().fingerprint
        evidence.record(f"the {self.credential.label} the application uses", {"app uses": in_app, ".env holds": in_env},
                        source=self._health_source())
        require(in_app == in_env, f"the application uses {in_app}, .env holds {in_env}")
