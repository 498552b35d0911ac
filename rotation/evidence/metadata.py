"""Run metadata an auditor needs to trust and reproduce a run: who, where, what was selected, which code."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

import rotation
from rotation.core.duties import People

PACKAGES = ("rotation-runbook", "pytest", "pytest-bdd", "psycopg", "cryptography", "jinja2", "pyyaml", "twilio",
            "aiosmtpd", "testcontainers", "requests", "python-dotenv", "compliance-trestle")


@dataclass
class RunMetadata:
    run_id: str
    target: str
    operator: str
    approver: str | None
    change_id: str | None
    started: datetime
    finished: datetime | None = None
    host: str = field(default_factory=socket.gethostname)
    suite_version: str = rotation.__version__
    git_commit: str | None = None
    git_dirty: bool | None = None
    python: str = field(default_factory=lambda: sys.version.split()[0])
    platform: str = field(default_factory=platform.platform)
    packages: dict[str, str] = field(default_factory=dict)
    invocation: list[str] = field(default_factory=list)
    mark_expression: str = ""
    keyword_expression: str = ""
    selected: int = 0
    deselected: int = 0
    signing_key: str = ""  # "configured: <path>" or "per-run"
    public_key_fingerprint: str = ""
    requester: str | None = None
    os_user: str = ""  # the account the tool ran under, recorded beside the declared operator, never in its place
    operator_declared: bool = True  # False: `operator` is the OS account, no person was named
    duty_notes: list[str] = field(default_factory=list)  # exceptions in the duties (self-approval allowed, ...)
    staging_server: str = ""  # staging runs: "PostgreSQL <SHOW server_version> (<backend and where it came from>)"
    sealed_late: dict[str, object] | None = None  # the run's own session could not seal it: who sealed it, when, why

    def who_did_what(self) -> dict[str, str]:
        """The change record and its people, as the summary shows them."""
        return People(self.requester, self.approver, self.operator, self.operator_declared,
                      self.os_user or "not recorded", self.change_id).who_did_what()

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["started"] = self.started.isoformat().replace("+00:00", "Z")
        out["finished"] = self.finished.isoformat().replace("+00:00", "Z") if self.finished else None
        return out


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """The commit the suite ran from and whether tracked files differed from it; (None, None) outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())
