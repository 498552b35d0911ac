"""Runbook sections 2-4 (WhatsApp access token, Twilio auth token, SMTP password) as one resumable rotation.

The four steps, each recorded in rotation/state.py (fingerprints only) when it is done:

    create  the provider issues the new credential (Twilio secondary token, Graph system-user token, the operator's
            new SMTP password); it is kept, until it reaches .env, in `.rotation-pending.<type>` (mode 0600) beside
            .env, so a run killed right after this step can finish without asking the provider again
    set     the new credential passed a read-only call at the provider, then .env was updated atomically
    test    the app was reloaded (restart as fallback), is healthy on the new credential and a test message
            went out with it
    finish  the old credential was retired at the provider and is proven rejected, and the rotation is logged

A rerun (`resume`) reads the state: the new credential comes from the pending file or .env (checked against the
PENDING fingerprint), the old one from the .env backup whose value matches CURRENT. Every step is idempotent.
At any failure .env, its backup and the provider agree and the app runs on a credential the provider accepts:
before `set` .env holds the old credential (still valid), after it the new one (already proven valid), and the
old one is retired only after the app runs on the new one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rotation.core import app_control, envfile, state
from rotation.core.app_control import AppCommands, Health
from rotation.core.database import connect
from rotation.core.rotation_log import RotationRecord, find_rotation, log_rotation
from rotation.core.secret import Secret, fingerprint, secret
from rotation.providers.base import CheckResult, Delivery, Provider, ProviderError

TEST_MESSAGE = "Credential rotation test ({credential}): if you received this, the new credential works."


class ResumeError(RuntimeError):
    pass


class NothingToResume(ResumeError):
    """The last rotation of this credential finished (or none was started): a rerun has nothing left to do."""


@dataclass(frozen=True)
class Pair:
    old: Secret
    new: Secret


def pending_path(env_file: Path, credential: str) -> Path:
    return env_file.with_name(f".rotation-pending.{credential}")


def _write_pending(env_file: Path, credential: str, value: str) -> None:
    path = pending_path(env_file, credential)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_pending(env_file: Path, credential: str) -> Secret | None:
    path = pending_path(env_file, credential)
    return secret(path.read_text()) if path.exists() else None


def begin(env_file: Path, provider: Provider, *, backup: Path, reason: str, abandon: bool = False) -> Pair:
    """Step create. Refuses over an unfinished rotation of this credential unless told to abandon it, and abandons
    only one whose new credential never reached .env (Twilio's orphan secondary token is deleted)."""
    credential = provider.credential_type
    old = secret(envfile.get_value(env_file, provider.env_name))
    existing = state.load(env_file, credential)
    if existing and existing.in_progress:
        if not abandon:
            raise state.StaleRotationError(
                f"a rotation of {credential} started {existing.started_at} is still PENDING ({existing.pending_fp}, "
                f"last step '{existing.step}'): resume it, or abandon it explicitly (--abandon-pending)")
        if fingerprint(old) == existing.pending_fp:
            raise ResumeError(f"the PENDING {credential} {existing.pending_fp} is already in {env_file.name}: "
                              "resume the rotation instead of abandoning it")
        discard = getattr(provider, "discard_pending", None)
        if callable(discard):
            discard(old)
    new = provider.issue(old)
    _write_pending(env_file, credential, new)
    state.begin(env_file, credential, current_fp=fingerprint(old), pending_fp=fingerprint(new), reason=reason,
                backup=backup, abandon=True)
    return Pair(old, new)


def verify_new(provider: Provider, pair: Pair) -> CheckResult:
    """The runbook's "test before full deployment": a read-only call with the new credential."""
    result = provider.check(pair.new)
    if not result.accepted:
        raise ProviderError(f"{provider.name}: the new credential {result.credential_fp} is refused "
                            f"({result.status} {result.code}: {result.detail})", status=result.status, code=result.code)
    return result


def update_env(env_file: Path, provider: Provider, pair: Pair) -> None:
    """Step set: .env holds the new credential (atomic rewrite, mode 0600, every other line kept)."""
    envfile.set_value(env_file, provider.env_name, pair.new)
    state.advance(env_file, provider.credential_type, "set")


def deploy(app: AppCommands, *, timeout_s: float = 30) -> tuple[str, Health]:
    """The runbook's `systemctl reload` (restart if reload is not supported), then the app's health."""
    how = app_control.reload_or_restart(app)
    return how, app_control.wait_for_health(app.health_url, timeout_s=timeout_s)


def app_credential(health: Health, provider: Provider) -> str | None:
    """The fingerprint of the credential the app reports for this provider in /health."""
    checks = health.body.get("checks")
    check = checks.get(provider.name) if isinstance(checks, dict) else None
    return str(check.get("credential_fingerprint")) if isinstance(check, dict) else None


def send_test(provider: Provider, pair: Pair) -> Delivery:
    return provider.send_test_message(pair.new, TEST_MESSAGE.format(credential=provider.credential_type))


def mark_tested(env_file: Path, provider: Provider) -> None:
    state.advance(env_file, provider.credential_type, "test")


def retire(provider: Provider, pair: Pair) -> CheckResult:
    """Retire the old credential at the provider unless it is already dead, then prove it is rejected."""
    if provider.check(pair.old).accepted:
        provider.retire_old(pair.old, pair.new)
    return provider.expect_rejected(pair.old)


def log(dsn: str, env_file: Path, provider: Provider, pair: Pair, *, rotated_by: str, reason: str) -> RotationRecord:
    """Step finish: the audit row (once, matched on the old credential's hash); PENDING becomes CURRENT."""
    with connect(dsn) as conn:
        record = find_rotation(conn, provider.credential_type, pair.old) or log_rotation(
            conn, provider.credential_type, rotated_by=rotated_by, previous_secret=pair.old, reason=reason)
    state.advance(env_file, provider.credential_type, "finish")
    pending_path(env_file, provider.credential_type).unlink(missing_ok=True)
    return record


def recover(env_file: Path, provider: Provider) -> tuple[state.RotationState, Pair]:
    """For a resumed rotation: where it stopped, the new credential (pending file or .env) and the old one (backup)."""
    credential = provider.credential_type
    current = state.load(env_file, credential)
    if current is None or not current.in_progress:
        raise NothingToResume(f"no unfinished {credential} rotation is recorded beside {env_file.name}"
                              + (f": the last one finished at {current.updated_at}" if current else ""))
    in_env = secret(envfile.get_value(env_file, provider.env_name))
    new = in_env if fingerprint(in_env) == current.pending_fp else _read_pending(env_file, credential)
    if new is None or fingerprint(new) != current.pending_fp:
        raise ResumeError(f"the PENDING {credential} {current.pending_fp} is neither in {env_file.name} nor in "
                          f"{pending_path(env_file, credential).name}: abandon the rotation (--abandon-pending)")
    candidates = ([Path(current.backup)] if current.backup else []) + envfile.backups(env_file)
    for candidate in candidates:
        old = envfile.read_env(candidate).get(provider.env_name, "") if candidate.exists() else ""
        if old and fingerprint(old) == current.current_fp:
            return current, Pair(secret(old), new)
    raise ResumeError(f"no .env backup holds the previous {credential} {current.current_fp}: restore it first")


@dataclass(frozen=True)
class Context:
    """What a whole rotation run needs besides the provider."""

    env_file: Path
    dsn: str
    app: AppCommands
    operator: str
    reason: str = "Scheduled 90-day rotation"


Say = Callable[[str], None]


def run(ctx: Context, provider: Provider, *, resume: bool = False, abandon: bool = False,
        say: Say = lambda _: None, after_step: Callable[[str], None] = lambda _: None) -> RotationRecord:
    """The whole rotation, or the rest of an interrupted one. `after_step` runs once each step is recorded."""
    if resume:
        current, pair = recover(ctx.env_file, provider)
        step = current.step
        say(f"resuming after step '{step}': {fingerprint(pair.old)} -> {fingerprint(pair.new)}")
    else:
        backup = envfile.backup(ctx.env_file)
        say(f"backed up {ctx.env_file.name} to {backup.name}")
        pair = begin(ctx.env_file, provider, backup=backup, reason=ctx.reason, abandon=abandon)
        step = "create"
        say(f"create: new {provider.credential_type} {fingerprint(pair.new)} issued")
        after_step(step)
    if step == "create":
        result = verify_new(provider, pair)
        say(f"the new credential works: {result.detail}")
        update_env(ctx.env_file, provider, pair)
        step = "set"
        say(f"set: {ctx.env_file.name} now holds {fingerprint(pair.new)}")
        after_step(step)
    if step == "set":
        how, health = deploy(ctx.app)
        if not health.healthy or app_credential(health, provider) != fingerprint(pair.new):
            raise ProviderError(f"after {how} the app is not healthy on the new credential: {health.status_code}, "
                                f"it uses {app_credential(health, provider)}")
        delivery = send_test(provider, pair)
        mark_tested(ctx.env_file, provider)
        step = "test"
        say(f"test: app {how}ed and healthy on it; test message {delivery.message_id} to {delivery.recipient}")
        after_step(step)
    rejected = retire(provider, pair)
    say(f"the old credential is rejected: {rejected.status} {rejected.code}")
    record = log(ctx.dsn, ctx.env_file, provider, pair, rotated_by=ctx.operator, reason=ctx.reason)
    say(f"finish: logged rotation {record.rotation_id}, next due {record.next_rotation_due:%Y-%m-%d}")
    after_step("finish")
    return record
