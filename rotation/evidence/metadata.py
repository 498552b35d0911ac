"""Run metadata an auditor needs to trust and reproduce a run: who, where, what was selected, which code.

Which code: the package version, the SHA-256 of each feature file that ran and, when the code is a tracked file of
a git checkout, its commit. An installed package (a wheel, pipx) has no commit: the version and the digests identify
it, and `code_identity` says so in words rather than leaving the commit blank."""

from __future__ import annotations

import platform
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

import rotation
from rotation.core.duties import People
from rotation.evidence.signing import file_sha256

# The code that ran: the library's own package file (a checkout runs its features from the same tree).
CODE = Path(rotation.__file__).resolve()
_REQUIREMENT = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)[^;]*(?:;.*extra\s*==\s*[\"'](?P<extra>[^\"']+))?")


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
    # the feature files of the selected scenarios, by their path under the suite's features folder: "sha256:<hex>"
    feature_digests: dict[str, str] = field(default_factory=dict)
    code_identity: str = ""  # in words: what identifies the code that ran (filled from git_commit when not given)
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

    def __post_init__(self) -> None:
        if not self.code_identity:
            self.code_identity = code_identity(self.suite_version, self.git_commit, self.git_dirty)

    def who_did_what(self) -> dict[str, str]:
        """The change record and its people, as the summary shows them."""
        return People(self.requester, self.approver, self.operator, self.operator_declared,
                      self.os_user or "not recorded", self.change_id).who_did_what()

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["started"] = self.started.isoformat().replace("+00:00", "Z")
        out["finished"] = self.finished.isoformat().replace("+00:00", "Z") if self.finished else None
        return out


def code_identity(version: str, commit: str | None, dirty: bool | None) -> str:
    if commit:
        changes = " with uncommitted changes to tracked files" if dirty else ""
        return f"git checkout at commit {commit}{changes}; package version {version}"
    return (f"package {rotation.DISTRIBUTION} {version}, not run from a git checkout, so there is no commit: the "
            "package version and the SHA-256 of each feature file that ran identify the code")


def runtime_packages() -> tuple[str, ...]:
    """This distribution and what it installs to run (its dependencies and the `docker` and `server` extras, not the
    `test` extra), read from its own metadata: pyproject.toml is the one list."""
    try:
        required = metadata.requires(rotation.DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        required = []
    names = [m["name"] for r in required if (m := _REQUIREMENT.match(r)) and m["extra"] != "test"]
    return (rotation.DISTRIBUTION, *dict.fromkeys(names))


def package_versions(names: tuple[str, ...] | None = None) -> dict[str, str]:
    versions = {}
    for name in runtime_packages() if names is None else names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def feature_digests(files: Mapping[str, Path]) -> dict[str, str]:
    """Each feature file (name shown in the evidence -> the file that was parsed) with its SHA-256."""
    return {name: f"sha256:{file_sha256(path)}" for name, path in sorted(files.items())}


def git_state(code: Path = CODE) -> tuple[str | None, bool | None]:
    """The commit of the git checkout `code` is a tracked file of, and whether tracked files differ from it;
    (None, None) when it is not one: an installed package, even one in a virtual environment inside a checkout
    (git would otherwise name that checkout's commit for code it never held)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(code.parent), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout

    try:
        git("ls-files", "--error-unmatch", "--", code.name)
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())
