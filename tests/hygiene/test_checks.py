"""rotation.hygiene's checks on real git repositories and files: each finds what it must, and says it without the
secret."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from rotation.core.config import Credential, default_config
from rotation.core.proof import NoEvidence
from rotation.core.secret import Secret, fingerprint
from rotation.hygiene import checks as hygiene
from rotation.hygiene import server_log
from staging.app_repo import GIT_ENV, build_app_repo, commit

CONFIG = default_config()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "app"
    path.mkdir()
    build_app_repo(path)
    env = path / ".env"
    env.write_text("DB_ENCRYPTION_KEY=x\n")
    env.chmod(0o600)
    return path


def test_gitignore_verdict_ok(repo: Path) -> None:
    verdict = hygiene.gitignore_verdict(repo, repo / ".env")
    assert verdict.ok and verdict.rule == ".gitignore:1:.env"


def test_not_ignored(repo: Path) -> None:
    commit(repo, {".gitignore": "*.log\n"}, "drop .env")
    verdict = hygiene.gitignore_verdict(repo, repo / ".env")
    assert not verdict.ok and verdict.problem().startswith(".env is not ignored")


def test_ignored_only_by_a_personal_exclude_file_is_not_enough(repo: Path) -> None:
    commit(repo, {".gitignore": "*.log\n"}, "drop .env")
    (repo / ".git" / "info" / "exclude").write_text(".env\n")
    verdict = hygiene.gitignore_verdict(repo, repo / ".env")
    assert verdict.ignored and not verdict.source_in_repo and not verdict.ok
    assert "outside the repository's .gitignore" in verdict.problem()


def test_tracked_env_is_found_although_ignored(repo: Path) -> None:
    hygiene.git(repo, "add", "-f", ".env")
    verdict = hygiene.gitignore_verdict(repo, repo / ".env")
    assert verdict.tracked and not verdict.ok and "is tracked by git" in verdict.problem()


def test_access_problems(tmp_path: Path) -> None:
    f = tmp_path / ".env"
    f.write_text("")
    f.chmod(0o640)
    access = hygiene.file_access(f)
    problems = hygiene.access_problems(access, "eventuser:eventuser")
    assert any("mode is 0640" in p for p in problems)
    assert any(p.startswith("owned by") and "not eventuser:eventuser" in p for p in problems)
    f.chmod(0o600)
    assert hygiene.access_problems(hygiene.file_access(f), f"{access.owner}:{access.group}") == []


def strong_values() -> dict[Credential, Secret]:
    """A value per credential of the registry, each as its issuer gives it (a Twilio token is 32 hex digits, ...)."""
    issued = {"database": lambda: secrets.token_urlsafe(32) + "A1", "twilio": lambda: secrets.token_hex(16),
              "whatsapp": lambda: "EAAG" + secrets.token_urlsafe(64), "smtp": lambda: "Zq8" + secrets.token_urlsafe(20)}
    return {c: Secret(issued[c.provider]()) for c in CONFIG.credentials}


def test_strength_from_the_registry_policies() -> None:
    strong = strong_values()
    assert hygiene.strength_problems(strong) == []
    for c in CONFIG.credentials:
        weak = {**strong, c: Secret("Summer2026!")}
        problems = hygiene.strength_problems(weak)
        assert len(problems) == 1 and problems[0].startswith(f"{c.env} (sha256:"), problems
        assert "Summer2026!" not in problems[0]


def test_a_format_the_policy_demands_is_checked() -> None:
    twilio = CONFIG.credential("twilio")
    problems = hygiene.strength_problems({twilio: Secret("0123456789ABCDEF" * 2)})  # upper case: not its form
    assert problems and "does not have the expected form" in problems[0]


def test_uniqueness() -> None:
    strong = strong_values()
    first, second = CONFIG.credentials[0], CONFIG.credentials[-1]
    assert hygiene.shared_values(strong) == []
    assert hygiene.shared_values({**strong, second: strong[first]}) == [(first.env, second.env)]


def test_credential_values_and_missing_ones_from_env(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    first, *rest = CONFIG.credentials
    env.write_text(f"{first.env}='{secrets.token_urlsafe(32)}'\nOTHER=1\n")
    assert list(hygiene.credential_values(env, CONFIG)) == [first]
    assert hygiene.missing_credentials(env, CONFIG) == rest


def test_leaks_in_tracked_files_and_history(repo: Path) -> None:
    token = secrets.token_hex(16)
    values = {"TWILIO_AUTH_TOKEN": Secret(token)}
    assert hygiene.leaks_in_tracked_files(repo, values) == [] and hygiene.leaks_in_history(repo, values) == []
    commit(repo, {"app/local.py": f"T = '{token}'\n"}, "oops")
    commit(repo, {}, "remove", remove=("app/local.py",))
    assert hygiene.leaks_in_tracked_files(repo, values) == []
    leaks = hygiene.leaks_in_history(repo, values)
    assert [leak.credential for leak in leaks] == ["TWILIO_AUTH_TOKEN"]
    assert "app/local.py (blob" in leaks[0].where and leaks[0].fingerprint == fingerprint(token)
    assert token not in leaks[0].line()


def test_leak_in_an_amended_away_commit_and_in_a_commit_message(repo: Path) -> None:
    token = secrets.token_hex(16)
    commit(repo, {"app/x.py": f"T = '{token}'\n"}, "add x")
    (repo / "app" / "x.py").write_text("T = os.environ['T']\n")
    hygiene.git(repo, "commit", "-q", "--amend", "-a", "-m", "add x")
    leaks = hygiene.leaks_in_history(repo, {"T": Secret(token)})
    assert leaks, "the amended-away blob is still in the object store (and in the reflog)"
    commit(repo, {"README.md": "x\n"}, f"debug with {token}")
    wheres = [leak.where for leak in hygiene.leaks_in_history(repo, {"T": Secret(token)})]
    assert any(w.startswith("the message or header of commit") for w in wheres), wheres


def test_unstaged_edit_of_a_tracked_file_is_searched(repo: Path) -> None:
    token = secrets.token_hex(16)
    (repo / "README.md").write_text(f"token {token}\n")
    leaks = hygiene.leaks_in_tracked_files(repo, {"T": Secret(token)})
    assert [leak.where for leak in leaks] == ["tracked file README.md"]


def test_secrets_in_file_in_every_encoding(tmp_path: Path) -> None:
    key = Secret(secrets.token_urlsafe(32))
    log = tmp_path / "server.log"
    other = {"other": Secret("not-there-" + "z" * 30)}
    raw = key.reveal().encode()
    for n, form in enumerate((raw.decode(), raw.hex(), base64.b64encode(raw).decode())):
        log.write_text(f"LOG: statement: SELECT 1\nLOG: statement: INSERT INTO t VALUES ('{form}')\n")
        leaks = server_log.secrets_in_file(log, {"DB key": key, **other})
        assert [(x.credential, x.where.split(" (")[0]) for x in leaks] == [("DB key", "server.log line 2")], n
        assert key.reveal() not in leaks[0].line()


def test_statements_since_the_watch_began(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("LOG:  statement: SELECT 1\n")
    watch = server_log.watch(log, NoEvidence())
    assert server_log.statements_since(watch) == 0
    log.write_text(log.read_text() + "LOG:  duration: 0.1 ms  execute <unnamed>: SELECT 2\nLOG:  checkpoint\n")
    assert server_log.statements_since(watch) == 1


def test_env_outside_the_repo_is_checked_as_dot_env(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "etc" / ".env"
    outside.parent.mkdir()
    outside.write_text("")
    assert hygiene.env_relative_path(repo, outside) == ".env"
    assert hygiene.gitignore_verdict(repo, outside).ok
    assert os.path.exists(repo / ".gitignore")
