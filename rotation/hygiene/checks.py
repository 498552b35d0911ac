"""The runbook's "Best Practices" as checks: .env ignored by git and private, credentials strong, unique and never
committed.

Each check returns what it found (names, paths, commits, fingerprints); none returns or raises with a secret.
Credentials come from the deployment configuration's registry (their .env variables and strength policies).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rotation.core import envfile
from rotation.core.config import Config, Credential
from rotation.core.errors import RotationError
from rotation.core.keys import WeakSecretError, check_strength
from rotation.core.secret import Secret

RUNBOOK_OWNER = "eventuser:eventuser"  # the runbook's `chown eventuser:eventuser .env`


@dataclass(frozen=True)
class AppFiles:
    """The app's source repository and its .env, and the account that must own .env (user[:group])."""

    repo: Path
    env_file: Path
    owner: str


class GitError(RotationError, RuntimeError):
    """A git command failed; carries git's message (git never echoes our secrets: we pass none to it)."""


def git(repo: Path, *args: str, input_bytes: bytes | None = None,
        check: bool = True) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(["git", "-C", str(repo), *args], input=input_bytes, capture_output=True, check=False)
    if check and done.returncode:
        raise GitError(f"git {' '.join(args)} in {repo} exited {done.returncode}: "
                       f"{done.stderr.decode(errors='replace').strip()[-300:]}")
    return done


# --- .gitignore -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IgnoreVerdict:
    path: str              # .env relative to the repository root
    ignored: bool
    tracked: bool
    rule: str | None       # "<source>:<line>:<pattern>" of the deciding rule, when one matched
    source_in_repo: bool   # the rule comes from a .gitignore inside the repository (not a personal exclude file)

    @property
    def ok(self) -> bool:
        return self.ignored and not self.tracked and self.source_in_repo

    def problem(self) -> str | None:
        if self.tracked:
            return f"{self.path} is tracked by git: `git rm --cached {self.path}`, then rotate every credential in it"
        if not self.ignored:
            return f"{self.path} is not ignored by git: add a line `.env` to the repository's .gitignore"
        if not self.source_in_repo:
            return (f"{self.path} is ignored only by {self.rule}, outside the repository's .gitignore: other clones "
                    "would commit it; add `.env` to .gitignore")
        return None


def env_relative_path(repo: Path, env_file: Path) -> str:
    """.env's path inside the repository; a .env kept outside it is checked as `.env` at the root."""
    try:
        return str(env_file.resolve().relative_to(repo.resolve()))
    except ValueError:
        return ".env"


def gitignore_verdict(repo: Path, env_file: Path) -> IgnoreVerdict:
    """What git decides for .env: ignored (and by which rule), and whether it is tracked anyway."""
    rel = env_relative_path(repo, env_file)
    tracked = git(repo, "ls-files", "--error-unmatch", "--", rel, check=False).returncode == 0
    verbose = git(repo, "check-ignore", "--no-index", "-v", "--", rel, check=False)
    ignored = git(repo, "check-ignore", "--no-index", "-q", "--", rel, check=False).returncode == 0
    rule, in_repo = None, False
    if verbose.returncode == 0 and verbose.stdout:
        rule = verbose.stdout.decode(errors="replace").split("\t", 1)[0]
        source = rule.rsplit(":", 2)[0]
        source_path = (repo / source) if not os.path.isabs(source) else Path(source)
        in_repo = source_path.name == ".gitignore" and _inside(source_path, repo)
    return IgnoreVerdict(rel, ignored, tracked, rule, in_repo)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


# --- permissions -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileAccess:
    mode: int
    owner: str
    group: str

    def describe(self) -> str:
        return f"mode {self.mode:04o}, owner {self.owner}:{self.group}"


def file_access(path: Path) -> FileAccess:
    st = path.stat()
    return FileAccess(st.st_mode & 0o7777, _user_name(st.st_uid), _group_name(st.st_gid))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def parse_owner(spec: str) -> tuple[str, str | None]:
    """'user' or 'user:group' (the runbook's `chown eventuser:eventuser .env`)."""
    user, _, group = spec.partition(":")
    if not user:
        raise ValueError(f"not an owner: {spec!r} (expected user or user:group)")
    return user, group or None


def access_problems(access: FileAccess, owner_spec: str, mode: int = 0o600) -> list[str]:
    problems = []
    if access.mode != mode:
        problems.append(f"mode is {access.mode:04o}, not {mode:04o} (runbook: chmod 600 .env)")
    user, group = parse_owner(owner_spec)
    if access.owner != user or (group is not None and access.group != group):
        problems.append(f"owned by {access.owner}:{access.group}, not {owner_spec} (runbook: chown {owner_spec} .env)")
    return problems


# --- strength and uniqueness ---------------------------------------------------------------------------------------

def credential_values(env_file: Path, config: Config) -> dict[Credential, Secret]:
    """Every credential of the registry that .env holds, as a Secret."""
    env = envfile.read_env(env_file)
    return {c: Secret(env[c.env]) for c in config.credentials if env.get(c.env)}


def missing_credentials(env_file: Path, config: Config) -> list[Credential]:
    env = envfile.read_env(env_file)
    return [c for c in config.credentials if not env.get(c.env)]


def strength_problems(values: Mapping[Credential, Secret]) -> list[str]:
    """One line per credential that fails its registry strength policy, naming it, never showing it."""
    problems = []
    for credential, value in values.items():
        try:
            check_strength(value, credential.strength, name=credential.env)
        except WeakSecretError as exc:
            problems.append(str(exc))
    return problems


def shared_values(values: Mapping[Credential, Secret]) -> list[tuple[str, ...]]:
    """Groups of .env variables that hold the same value."""
    by_value: dict[Secret, list[str]] = {}
    for credential, value in values.items():
        by_value.setdefault(value, []).append(credential.env)
    return [tuple(names) for names in by_value.values() if len(names) > 1]


# --- credentials committed to git ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leak:
    credential: str
    fingerprint: str
    where: str

    def line(self) -> str:
        return f"{self.credential} ({self.fingerprint}) in {self.where}"


def leaks_in_tracked_files(repo: Path, values: Mapping[str, Secret]) -> list[Leak]:
    """Every tracked file as it is on disk now (staged or not)."""
    listing = git(repo, "ls-files", "-z").stdout.split(b"\0")
    leaks = []
    for raw in filter(None, listing):
        path = repo / os.fsdecode(raw)
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        leaks += [Leak(name, value.fingerprint, f"tracked file {os.fsdecode(raw)}")
                  for name, value in values.items() if value.reveal().encode() in data]
    return leaks


def leaks_in_history(repo: Path, values: Mapping[str, Secret]) -> list[Leak]:
    """Every object in the repository (all commits, trees, blobs and tags, reachable or not: branches, tags, stashes,
    reflogs, dangling amends), each located by path and commit."""
    needles = {name: value.reveal().encode() for name, value in values.items()}
    leaks = []
    for oid, kind, data in _all_objects(repo):
        for name, needle in needles.items():
            if needle in data:
                leaks.append(Leak(name, values[name].fingerprint, _locate(repo, oid, kind)))
    return leaks


def _all_objects(repo: Path) -> Iterator[tuple[str, str, bytes]]:
    proc = subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch",
                             "--unordered"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.stdout is None:  # cannot happen with stdout=PIPE; narrows the type without an assert
        raise GitError(f"git cat-file in {repo} gave no output stream")
    try:
        while header := proc.stdout.readline():
            oid, kind, size = header.decode().split()
            data = proc.stdout.read(int(size))
            proc.stdout.read(1)  # the newline after each object
            yield oid, kind, data
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise GitError(f"git cat-file --batch-all-objects in {repo} failed: "
                           f"{proc.stderr.read().decode(errors='replace')[-300:] if proc.stderr else ''}")


def _locate(repo: Path, oid: str, kind: str) -> str:
    short = oid[:10]
    if kind == "commit":
        return f"the message or header of commit {short}"
    if kind == "tag":
        return f"annotated tag object {short}"
    if kind == "tree":
        return f"a file name in tree {short}"
    found = git(repo, "log", "--all", "--reflog", "--format=%h", "--name-only", f"--find-object={oid}",
                check=False).stdout.decode(errors="replace").split()
    commits = [w for w in found if _looks_like_hash(w)]
    paths = sorted({w for w in found if not _looks_like_hash(w)})
    if not commits:
        return f"blob {short} (not reachable from any branch, tag or reflog)"
    return f"{', '.join(paths) or 'a file'} (blob {short}, commit {', '.join(commits)})"


def _looks_like_hash(word: str) -> bool:
    return 7 <= len(word) <= 40 and all(c in "0123456789abcdef" for c in word)
