"""Issue 23 item 1: a live rehearsal of the DB key rotation (the operator's command against a scratch CRM and the app
stand-in), then `rotation db-key retire`: refused inside the quiet period and when shortened without the explicit
flag, each time destroying nothing; with the quiet period shortened it leaves no file holding the old key (the env
folder and the reports scanned for the key and every 12-character fragment) and a signed retirement record naming
each destroyed file with its SHA-256 before. With escrow configured, the sealed key opens with the recovery private
key and with nothing else."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from rotation.core import escrow
from rotation.evidence.signing import load_private_key, public_fingerprint
from rotation.evidence.verify import verify_folder
from staging.postgres import StagingServer
from staging.world import probe_config
from tests.harness import PROJECT
from tests.leakcheck import assert_no_fragment
from tests.rotation.live_crm import LiveCrm, RunFolder, live_crm

ROWS = 20


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        world.config = probe_config(tmp_path / "rotation.toml", world.app)
        yield world


def retire(crm: LiveCrm, *extra: str, approver: str = "test-approver") -> subprocess.CompletedProcess[str]:
    """`rotation db-key retire` with the options the rotation used (its command, with `retire` for `rotate`)."""
    command = [a for a in crm.command("retire") if not a.startswith(("--approver=", "--workers="))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_TEST_", "PYTEST_ADDOPTS"))}
    env["PYTHONPATH"] = str(PROJECT)
    return subprocess.run([*command, f"--approver={approver}", *extra], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def everything_under(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def rotated(crm: LiveCrm) -> dict[Path, str]:
    """Rotate; the .env backups that hold the old key, with their SHA-256."""
    done = crm.rotate()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    crm.assert_rotated()
    backups = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in crm.env_file.parent.glob(".env.backup.*")}
    holding = [p for p in backups if crm.old_key.reveal().encode() in p.read_bytes()]
    assert holding, "the rotation made no backup holding the old key"
    return backups


def record_of(run: RunFolder) -> dict[str, object]:
    [record] = [e["value"] for e in run.entries() if e["type"] == "evidence" and e["name"] == "retirement record"]
    assert isinstance(record, dict)
    return record


def test_retire_after_a_live_rotation_leaves_no_copy_of_the_old_key_and_a_signed_record(crm: LiveCrm) -> None:
    backups = rotated(crm)
    old = crm.old_key.reveal()

    early = retire(crm)  # the configured 24 h have not passed
    assert early.returncode == 1, early.stdout[-3000:]
    [refused] = crm.folders()[1:]
    failed = [s for s in refused.steps() if s.status == "failed"]
    assert [s.text for s in failed] == ["the quiet period has passed since the new key went into service"], failed
    assert "has not passed" in str(failed[0].error)
    assert all(p.exists() for p in backups), "a failed retirement destroyed a file"

    shortened = subprocess.run(
        [a for a in retire_command(crm) if a != "--allow-staging-endpoints"] + ["--quiet-period=0s"],
        cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)}, capture_output=True, text=True, timeout=120,
        check=False)
    assert shortened.returncode == 4 and "allowed only with --allow-staging-endpoints" in shortened.stdout
    assert all(p.exists() for p in backups) and len(crm.folders()) == 2

    done = retire(crm, "--quiet-period=0s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    run = crm.folders()[-1]
    signer = public_fingerprint(load_private_key(Path(os.environ["ROTATION_SIGNING_KEY"])).public_key())
    verified = verify_folder(run.path, fingerprint=signer)  # pinned to the configured signing key
    assert verified.passed and verified.signer_verified, verified.problems
    assert all(s.status == "passed" for s in run.steps()), run.steps()
    record = record_of(run)
    destroyed = {Path(str(f["file"])): f["sha256 before"] for f in record["files destroyed"]}  # type: ignore[index,union-attr]
    assert destroyed == backups, (destroyed, backups)
    assert record["by"] == "test-operator" and record["retired value"] == crm.old_key.fingerprint
    [sweep] = [e["value"] for e in run.entries() if e["type"] == "evidence"
               and e["name"] == "completeness sweep, run again before retirement"]
    assert sweep["found"] == [] and sweep["encrypted-looking values"] > 0  # type: ignore[index,operator]
    assert not any(p.exists() for p in backups)
    places = everything_under(crm.env_file.parent, crm.reports)
    places["terminal"] = (done.stdout + done.stderr).encode()
    assert len(places) > 10, sorted(places)
    assert_no_fragment(places, [old])
    assert crm.key_in_env() != crm.old_key  # the new key stays, untouched

    again = retire(crm, "--quiet-period=0s")
    assert again.returncode == 0 and "nothing to retire" in again.stdout, again.stdout[-2000:]


def retire_command(crm: LiveCrm) -> list[str]:
    return [a for a in crm.command("retire") if not a.startswith("--workers=")]


def test_an_approver_equal_to_the_operator_is_refused_and_nothing_is_destroyed(crm: LiveCrm) -> None:
    backups = rotated(crm)
    done = retire(crm, "--quiet-period=0s", approver="test-operator")
    assert done.returncode == 4, done.stdout[-2000:]
    assert "the approver (test-operator) is the operator (test-operator)" in done.stdout
    assert all(p.exists() for p in backups) and len(crm.folders()) == 1


def write_private(path: Path, key: X25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.write_bytes(pem)
    return pem


def test_with_escrow_the_old_key_opens_with_the_recovery_key_and_nothing_else(crm: LiveCrm, tmp_path: Path) -> None:
    recovery = X25519PrivateKey.generate()
    public = tmp_path / "recovery.pub.pem"
    public.write_bytes(recovery.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    assert crm.config is not None
    text = crm.config.read_text()
    crm.config.write_text(text.replace("escrow = []",
                                       f'escrow = ["db_encryption_key"]\nescrow_public_key = "{public}"'))
    rotated(crm)
    done = retire(crm, "--quiet-period=0s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    [sealed] = escrow.all_in(crm.env_file.with_name(".rotation-escrow"))
    assert sealed.fingerprint == crm.old_key.fingerprint and (sealed.path.stat().st_mode & 0o777) == 0o600
    assert record_of(crm.folders()[-1])["escrow"]["file"] == str(sealed.path)  # type: ignore[index]

    opened = escrow.open_escrow(sealed.path, write_private(tmp_path / "recovery.pem", recovery))
    assert opened == crm.old_key
    for other in (X25519PrivateKey.generate(), rsa.generate_private_key(public_exponent=65537, key_size=2048)):
        with pytest.raises(escrow.EscrowError):
            escrow.open_escrow(sealed.path, write_private(tmp_path / "other.pem", other))
    tampered = tmp_path / "tampered.escrow.json"
    tampered.write_text(sealed.path.read_text().replace(sealed.destroy_after.strftime("%Y-%m-%d"), "2099-01-01"))
    with pytest.raises(escrow.EscrowError):  # the header is authenticated: a later destruction date breaks it
        escrow.open_escrow(tampered, (tmp_path / "recovery.pem").read_bytes())
    places = everything_under(crm.env_file.parent, crm.reports)
    assert str(sealed.path) in places  # the escrow is there, and holds no part of the key in clear
    assert_no_fragment(places, [crm.old_key.reveal()])


def test_status_and_audit_trail_show_keys_awaiting_retirement_and_escrows_due(crm: LiveCrm, tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]
                                                                               ) -> None:
    import datetime as dt
    import json

    from rotation.cli import main as rotation_main
    from rotation.core.config import load_config
    from rotation.core.database import connect
    from rotation.evidence.audit_trail import audit, read_folder, retirement_status

    recovery = X25519PrivateKey.generate()
    public = tmp_path / "recovery.pub.pem"
    public.write_bytes(recovery.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    assert crm.config is not None
    crm.config.write_text(crm.config.read_text().replace("quiet_period_hours = 24", "quiet_period_hours = 0").replace(
        "escrow = []", f'escrow = ["db_encryption_key"]\nescrow_public_key = "{public}"'))
    config = load_config(crm.config)
    rotated(crm)
    today = dt.datetime.now(dt.UTC)

    def status(as_of: dt.datetime) -> list[str]:
        capsys.readouterr()
        rotation_main(["status", f"--dsn={crm.dsn}", f"--env-file={crm.env_file}", f"--config={crm.config}",
                       "--json", f"--as-of={as_of.isoformat()}"])
        return list(json.loads(capsys.readouterr().out)["retirement"])

    def trail() -> list[str]:
        with connect(crm.dsn) as conn:
            found = audit(conn, config, [crm.reports], today - dt.timedelta(days=1), today + dt.timedelta(days=1))
        return found.awaiting_retirement

    [line] = status(today + dt.timedelta(hours=1))
    assert line.startswith(f"WARNING: db_encryption_key: old value {crm.old_key.fingerprint}") and "awaits" in line
    [line] = trail()
    assert "has no retirement record" in line and crm.old_key.fingerprint.removeprefix("sha256:") in line

    done = retire(crm)
    assert done.returncode == 0, done.stdout[-3000:]
    assert trail() == []
    [kept] = status(today + dt.timedelta(hours=1))
    assert kept.startswith("INFO: db_encryption_key: escrow of") and "kept until" in kept
    [due] = status(today + dt.timedelta(days=40))
    assert due.startswith("WARNING: db_encryption_key: escrow of") and "`rotation retire db_encryption_key`" in due
    folders = [read_folder(f.path, public_key=None, fingerprint=None) for f in crm.folders()]
    with connect(crm.dsn) as conn:
        rotations = audit(conn, config, [crm.reports], today - dt.timedelta(days=1),
                          today + dt.timedelta(days=1)).rotations
    assert retirement_status(config, rotations, folders, today + dt.timedelta(hours=1))[1] == []
    [escrow_due] = retirement_status(config, rotations, folders, today + dt.timedelta(days=40))[1]
    assert "was to be destroyed after" in escrow_due


def test_provider_retire_destroys_the_backups_holding_the_old_token(crm: LiveCrm) -> None:
    """A provider rotation (its state and .env as the provider procedure leaves them, written with the same library
    calls) and then `rotation provider retire twilio`: the backup holding the old token is destroyed, the record says
    the provider was not asked again."""
    from rotation.core import envfile, state
    from rotation.core.config import default_config
    from rotation.core.keys import generate_key
    from rotation.core.secret import Secret

    twilio = default_config().credential("twilio")
    old, new = Secret(generate_key()), Secret(generate_key())
    envfile.set_value(crm.env_file, twilio.env, old)
    backup = envfile.backup(crm.env_file)
    state.begin(crm.env_file, twilio.type, current_fp=old.fingerprint, pending_fp=new.fingerprint, reason="test",
                backup=backup)
    envfile.set_value(crm.env_file, twilio.env, new)
    for step in ("set", "test", "finish"):
        state.advance(crm.env_file, twilio.type, step)  # type: ignore[arg-type]
    command = [a.replace("db-key", "provider") for a in retire_command(crm)]
    command.insert(command.index("retire") + 1, "twilio")
    done = subprocess.run([*command, "--quiet-period=0s"], cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)}, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert not backup.exists()
    run = crm.folders()[-1]
    assert verify_folder(run.path).passed
    assert [s.text for s in run.steps()][3] == "the rotation proved the provider refuses the old value"
    record = record_of(run)
    assert record["retired value"] == old.fingerprint and record["credential"] == twilio.type
    assert_no_fragment(everything_under(crm.env_file.parent, crm.reports), [old.reveal()])
    assert envfile.get_secret(crm.env_file, twilio.env) == new and crm.key_in_env() == crm.old_key


def failed_steps(crm: LiveCrm) -> list[tuple[str, str]]:
    return [(s.text, str(s.error)) for s in crm.folders()[-1].steps() if s.status == "failed"]


def test_each_check_before_destruction_can_fail_and_then_nothing_is_destroyed(crm: LiveCrm) -> None:
    """The app down, a backup an unfinished rotation of another credential still needs, a value the old key still
    opens: each stops the retirement at its own step, naming why, with every backup kept."""
    from rotation.core import app_control, envfile, state
    from rotation.core.config import default_config
    from rotation.core.database import connect, key_ref
    from rotation.core.keys import generate_key
    from rotation.core.secret import Secret
    from tests.rotation.live_crm import SPEC

    backups = rotated(crm)
    app_control.run(crm.app.stop)
    app_control.wait_for_health(crm.app.health_url, healthy=False, timeout_s=15)
    assert retire(crm, "--quiet-period=0s").returncode == 1
    [(step, why)] = failed_steps(crm)
    assert step == "the application is healthy on the new key" and "is not healthy" in why
    assert all(p.exists() for p in backups)
    app_control.run(crm.app.start)
    app_control.wait_for_health(crm.app.health_url, timeout_s=15)

    twilio = default_config().credential("twilio")
    [backup] = backups
    state.begin(crm.env_file, twilio.type, current_fp=Secret(generate_key()).fingerprint,
                pending_fp=Secret(generate_key()).fingerprint, reason="test", backup=backup)
    assert retire(crm, "--quiet-period=0s").returncode == 1
    [(step, why)] = failed_steps(crm)
    assert step == "every copy of the old key the suite made is destroyed"
    assert f"a rotation in progress still needs {backup.name}" in why and twilio.type in why
    assert all(p.exists() for p in backups)
    for step_name in ("set", "test", "finish"):
        state.advance(crm.env_file, twilio.type, step_name)  # type: ignore[arg-type]

    # a value written under the old key after the rotation (not the one the app's probe reads: that proof would fail
    # first, as it should)
    column = next(c for c in SPEC.columns if not str(crm.app.probe_column).endswith(f".{c}"))
    with connect(crm.dsn, keys={"old": crm.old_key}) as conn:
        conn.execute(f"UPDATE {SPEC.table} SET {column} = pgp_sym_encrypt('late', {key_ref('old')}) "
                     f"WHERE {SPEC.pk} = (SELECT max({SPEC.pk}) FROM {SPEC.table})")
        conn.commit()
    assert retire(crm, "--quiet-period=0s").returncode == 1
    [(step, why)] = failed_steps(crm)
    assert step == "the completeness sweep, run again now, finds no value that opens with the old key"
    assert f"{SPEC.table}.{column}: 1 PGP value open with the old key" in why, why
    assert all(p.exists() for p in backups) and envfile.get_secret(crm.env_file, "DB_ENCRYPTION_KEY") != crm.old_key
