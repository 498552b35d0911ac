"""Steps of the runbook's "Best Practices". The checks live in rotation.hygiene; these steps wire them to the world
(staging: a generated app repository beside the world's .env; live: --app-repo and --env-file) and record evidence."""

from __future__ import annotations

import datetime as dt
import grp
import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pytest_bdd import given, then, when

from rotation.core import envfile
from rotation.core.keys import generate_key
from rotation.core.secret import fingerprint
from rotation.db_key import procedure as db_key
from rotation.hygiene import checks as hygiene
from rotation.monitoring import status
from staging.app_repo import build_app_repo
from staging.world import World

RUNBOOK_OWNER = "eventuser:eventuser"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rotation")
    group.addoption("--app-repo", default=None,
                    help="the app's git repository (live; default: the directory holding --env-file). "
                         "Staging builds a small one beside its .env")
    group.addoption("--env-owner", default=None,
                    help=f"the account that must own .env, user[:group] (live default {RUNBOOK_OWNER}, "
                         "the runbook's chown; staging: the user running the suite)")
    group.addoption("--pg-server-log", default=None, type=Path,
                    help="the PostgreSQL server's log file, when the suite may read it (staging's private cluster "
                         "provides its own)")


@dataclass(frozen=True)
class AppFiles:
    repo: Path
    env_file: Path
    owner: str


def current_owner() -> str:
    return f"{pwd.getpwuid(os.geteuid()).pw_name}:{grp.getgrgid(os.getegid()).gr_name}"


def staging_credentials(env_file: Path) -> None:
    """Staging's .env holds every credential type: stand-ins' values where present, generated ones otherwise."""
    env = envfile.read_env(env_file)
    generated = {"WHATSAPP_ACCESS_TOKEN": "EAAG" + secrets.token_urlsafe(96),
                 "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
                 "SMTP_PASSWORD": generate_key()}
    for name, value in generated.items():
        if not env.get(name):
            envfile.set_value(env_file, name, value)


@given("the app's source repository and the .env beside it", target_fixture="app_files")
def app_files(world: World, pytestconfig: pytest.Config, evidence) -> AppFiles:
    if world.target == "staging":
        staging_credentials(world.env_file)
        build_app_repo(world.env_file.parent)
        files = AppFiles(world.env_file.parent, world.env_file, pytestconfig.getoption("env_owner") or current_owner())
    else:
        repo = Path(pytestconfig.getoption("app_repo") or world.env_file.parent)
        files = AppFiles(repo, world.env_file, pytestconfig.getoption("env_owner") or RUNBOOK_OWNER)
    for value in hygiene.credential_values(envfile.read_env(files.env_file)).values():
        evidence.register_secret(value)
    head = hygiene.git(files.repo, "rev-parse", "HEAD").stdout.decode().strip()
    evidence.record("app repository", {"path": str(files.repo), "HEAD": head, ".env": str(files.env_file),
                                       "configured owner": files.owner},
                    source="git rev-parse HEAD")
    return files


@then("git ignores .env by a rule in the repository's own .gitignore")
def env_ignored(app_files: AppFiles, evidence) -> None:
    verdict = hygiene.gitignore_verdict(app_files.repo, app_files.env_file)
    evidence.record(".env and git", verdict.__dict__, source=f"git check-ignore --no-index -v {verdict.path}")
    assert verdict.ignored and verdict.source_in_repo, verdict.problem()


@then(".env is not tracked by git")
def env_untracked(app_files: AppFiles) -> None:
    verdict = hygiene.gitignore_verdict(app_files.repo, app_files.env_file)
    assert not verdict.tracked, verdict.problem()


@then(".env has mode 0600")
def env_mode(app_files: AppFiles, evidence) -> None:
    access = hygiene.file_access(app_files.env_file)
    evidence.record(".env access", access.describe(), source=f"stat {app_files.env_file}")
    assert access.mode == 0o600, f"{app_files.env_file.name} has mode {access.mode:04o}, not 0600 (runbook: chmod 600)"


@then(".env is owned by the configured account")
def env_owner(app_files: AppFiles) -> None:
    access = hygiene.file_access(app_files.env_file)
    problems = [p for p in hygiene.access_problems(access, app_files.owner) if p.startswith("owned")]
    assert not problems, f"{app_files.env_file.name}: {problems[0]}"


@then(".env holds DB_ENCRYPTION_KEY, WHATSAPP_ACCESS_TOKEN, TWILIO_AUTH_TOKEN and SMTP_PASSWORD")
def all_present(app_files: AppFiles, evidence) -> None:
    env = envfile.read_env(app_files.env_file)
    values = hygiene.credential_values(env)
    evidence.record("credentials in .env", {name: fingerprint(v) for name, v in values.items()},
                    source=f"python-dotenv parse of {app_files.env_file.name}")
    missing = hygiene.missing_credentials(env)
    assert not missing, f"{app_files.env_file.name} lacks {', '.join(missing)}"


@then("each credential meets its strength policy")
def strong(app_files: AppFiles, evidence) -> None:
    values = hygiene.credential_values(envfile.read_env(app_files.env_file))
    problems = hygiene.strength_problems(values)
    evidence.record("strength policy", {name: {"min_length": p.min_length, "min_classes": p.min_classes,
                                               "length": len(values.get(name, "")), "why": p.why}
                                        for name, p in hygiene.STRENGTH_POLICY.items()},
                    source="rotation.hygiene.STRENGTH_POLICY; rotation.keys.check_strength")
    assert not problems, "; ".join(problems)


@then("no two credential types share a value")
def unique(app_files: AppFiles) -> None:
    shared = hygiene.shared_values(hygiene.credential_values(envfile.read_env(app_files.env_file)))
    assert not shared, "; ".join(f"{' and '.join(group)} hold the same value" for group in shared)


@then("no credential value appears in any git-tracked file")
def none_tracked(app_files: AppFiles, evidence) -> None:
    values = hygiene.credential_values(envfile.read_env(app_files.env_file))
    leaks = hygiene.leaks_in_tracked_files(app_files.repo, values)
    evidence.record("credentials in tracked files", [leak.line() for leak in leaks],
                    source="git ls-files; every tracked file read from disk and searched for each credential")
    assert not leaks, "; ".join(leak.line() for leak in leaks)


@then("no credential value appears anywhere in the repository's history")
def none_in_history(app_files: AppFiles, evidence) -> None:
    values = hygiene.credential_values(envfile.read_env(app_files.env_file))
    leaks = hygiene.leaks_in_history(app_files.repo, values)
    evidence.record("credentials in git history", [leak.line() for leak in leaks],
                    source="git cat-file --batch-all-objects --batch: every commit, tree, blob and tag searched")
    assert not leaks, ("credential committed to the app repository (rotate it; rewriting history does not un-leak "
                       "it): " + "; ".join(leak.line() for leak in leaks))


@given("the rotation log of the CRM database")
def rotation_log(world: World) -> None:
    if world.target != "staging":
        return
    now = status.utc_now()
    ages = {t: dt.timedelta(days=30) for t in status.CREDENTIAL_TYPES}
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        for credential_type, age in ages.items():
            conn.execute("INSERT INTO security_credential_rotations (credential_type, rotated_at, rotated_by, "
                         "rotation_reason, next_rotation_due) VALUES (%s, %s, %s, %s, %s)",
                         (credential_type, now - age, "staging-seed", "staging history", now - age
                          + dt.timedelta(days=90)))


@then("every credential type has a rotation logged within its interval")
def rotated_in_time(world: World, evidence) -> None:
    with psycopg.connect(world.dsn) as conn:
        statuses = status.rotation_status(conn)
    evidence.record("rotation status", {k: v.to_json() for k, v in statuses.items()},
                    source=status.LATEST_ROTATIONS_SQL.strip())
    late = [s.alert_line() for s in statuses.values() if s.is_expired]
    assert not late, "; ".join(late)


@pytest.fixture
def key_rotation() -> dict[str, db_key.Keys]:
    return {}


@pytest.fixture
def server_log(world: World, pytestconfig: pytest.Config) -> Path | None:
    return world.server_log or pytestconfig.getoption("pg_server_log")


@given("the PostgreSQL server logs every statement of the CRM database")
def log_everything(world: World, server_log: Path | None, evidence) -> None:
    if world.target != "staging" or server_log is None:
        pytest.skip("needs a staging PostgreSQL whose server log the suite can read (private cluster, or "
                    "--pg-server-log)")
    dbname = conninfo_to_dict(world.dsn)["dbname"]
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        for setting, value in (("log_statement", "all"), ("log_min_duration_statement", "0")):
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(dbname), sql.Identifier(setting), sql.Literal(value)))
    evidence.record("server logging", {"log_statement": "all", "log_min_duration_statement": 0},
                    source=f"ALTER DATABASE {dbname} SET ...")


@when("the database encryption key is rotated")
def rotate_db_key(world: World, key_rotation: dict[str, db_key.Keys], operator: str, evidence) -> None:
    backup = envfile.backup(world.env_file)
    keys = key_rotation["keys"] = db_key.begin(world.env_file, backup, reason="hygiene: server log check")
    evidence.register_secret(keys.old)
    evidence.register_secret(keys.new)
    db_key.update_env(world.env_file, keys)
    job_id, _ = db_key.prepare(world.dsn, keys)
    db_key.reencrypt_all(world.dsn, keys)
    check = db_key.verify_population(world.dsn, keys, job_id, world.env_file)
    assert check.ok, check.summary()
    db_key.log(world.dsn, keys, world.env_file, rotated_by=operator, reason="hygiene: server log check")
    evidence.record("db key rotated", {"old": fingerprint(keys.old), "new": fingerprint(keys.new),
                                       "population": check.summary()}, source="rotation.db_key")


@then("the PostgreSQL server log holds neither the old nor the new key")
def log_clean(server_log: Path, key_rotation: dict[str, db_key.Keys], evidence) -> None:
    keys = key_rotation["keys"]
    log = server_log
    leaks = hygiene.secrets_in_file(log, {"old DB_ENCRYPTION_KEY": keys.old, "new DB_ENCRYPTION_KEY": keys.new})
    statements = sum(1 for line in log.read_text(errors="replace").splitlines() if "statement:" in line
                     or "execute" in line)
    evidence.record("server log searched", {"file": log.name, "bytes": log.stat().st_size,
                                            "statement lines": statements, "keys found": [x.line() for x in leaks]},
                    source=f"search of {log} for both keys")
    assert statements > 0, "the server log holds no statements: the check would prove nothing"
    assert not leaks, "key in the PostgreSQL server log: " + "; ".join(x.line() for x in leaks)
