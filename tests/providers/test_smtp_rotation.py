"""Issue 22 for the SMTP password, through the operator's `rotation provider rotate smtp` (live against the stand-ins)
and the procedure itself: only a definitive answer proves the old password dead; the revocation only a person can do
is asked for at their terminal (a pseudo-terminal here) or waited for, and recorded as it happened; a rerun takes the
operator's corrected password; a missing setting is refused before anything changes; a lost answer to DATA is looked
up, never resent blindly. A 429 with Retry-After has no SMTP equivalent (a busy relay answers 421 or 4xx, retried
with backoff: test_smtp.py), so there is no such test here."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pexpect
import pytest

from rotation.core import app_control, envfile, state
from rotation.core.keys import generate_key
from rotation.core.proof import CheckFailed, NoEvidence
from rotation.core.secret import Secret
from rotation.providers.base import CredentialCheck
from rotation.providers.procedure import ProviderRotation
from staging.smtp_standin import SmtpStandIn
from tests.harness import PROJECT, SuiteRun, newest_run_folder, read_evidence
from tests.providers.conftest import ProviderWorld, credential_of, leaked, run_all_steps

LABEL = "SMTP password"
REVOKE_STEP = "the old SMTP password is revoked at the email provider"
TEST_STEP = "the new SMTP password is tested before full deployment"
FIRST_STEP = "the application is running with the current SMTP password"


def evidence_item(run: SuiteRun, name: str) -> dict[str, object]:
    assert run.run_folder is not None, run.output[-3000:]
    found = [e["value"] for e in read_evidence(run.run_folder) if e["type"] == "evidence" and e.get("name") == name]
    assert found, f"no evidence item {name!r}"
    value = found[-1]
    assert isinstance(value, dict)
    return value


def log_rows(pw: ProviderWorld) -> int:
    from rotation.core.database import connect

    with connect(pw.deployment.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM security_credential_rotations WHERE credential_type = %s",
                           (credential_of("smtp").type,)).fetchone()
    return int(row[0]) if row else 0


def new_password(pw: ProviderWorld) -> Secret:
    """A password the operator created at the provider's console."""
    password = Secret(generate_key().reveal())
    pw.standins.smtp.add_password(password)
    return password


@contextmanager
def operator_revokes_when_mail_arrives(relay: SmtpStandIn, old: Secret) -> Iterator[None]:
    """The operator at the console, told in the log (no terminal): revokes the old password once the test e-mail is
    in the mailbox, i.e. while the run is already waiting for the provider to refuse it."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not relay.messages:
            time.sleep(0.05)
        if not done.is_set():
            time.sleep(0.5)
            relay.revoke(old)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def test_the_old_password_still_valid_after_the_revoke_step_fails_the_run_and_claims_no_revocation(
        provider_world: ProviderWorld) -> None:
    """Nobody revokes the old password (no terminal, the instruction only in the log): the run asks the relay up to
    --revoke-wait, fails at the revoke step saying it is still accepted, logs nothing, and its evidence claims no
    revocation. Once the operator revokes it, the same command finishes and says who revoked it and how it knows."""
    old, new = provider_world.in_env("smtp"), new_password(provider_world)
    handed_over = {"SMTP_NEW_PASSWORD": new.reveal()}
    first = provider_world.cli("rotate", "smtp", "--revoke-wait=1", environ=handed_over)
    assert first.returncode == 1, first.output[-3000:]
    failed = first.failed_step()
    assert failed.text == REVOKE_STEP, failed
    assert "not revoked: still accepted" in (failed.error or ""), failed.error
    retired = evidence_item(first, f"old {LABEL} retired")
    assert retired["revoked"] is False and retired["retired"] is None, retired
    assert str(retired["revocation"]).startswith("not revoked: still accepted"), retired
    assert retired["asked"]["said"] == "nobody confirmed doing it", retired  # type: ignore[index]
    assert log_rows(provider_world) == 0
    recorded = state.load(provider_world.env_file, credential_of("smtp").type)
    assert recorded is not None and recorded.step == "test", recorded
    assert provider_world.rotation("smtp").provider.check(old).answer is CredentialCheck.ACCEPTED

    provider_world.standins.smtp.revoke(old)  # the operator, at the console, afterwards
    second = provider_world.cli("rotate", "smtp", "--revoke-wait=1", environ=handed_over)
    assert second.returncode == 0, second.output[-3000:]
    retired = evidence_item(second, f"old {LABEL} retired")
    assert retired["revoked"] is True and str(retired["revocation"]).startswith(
        "revoked by someone before this run (an earlier run or the operator); refused at "), retired
    assert str(retired["revocation"]).endswith("with 535 5.7.8"), retired
    assert log_rows(provider_world) == 1
    assert not leaked(first.output + second.output, old, new)


def test_without_a_terminal_the_run_waits_for_the_operator_to_revoke_and_records_how_it_knows(
        provider_world: ProviderWorld) -> None:
    old, new = provider_world.in_env("smtp"), new_password(provider_world)
    with operator_revokes_when_mail_arrives(provider_world.standins.smtp, old):
        run = provider_world.cli("rotate", "smtp", "--revoke-wait=60", environ={"SMTP_NEW_PASSWORD": new.reveal()})
    assert run.returncode == 0, run.output[-3000:]
    retired = evidence_item(run, f"old {LABEL} retired")
    assert retired["revoked"] is True, retired
    assert str(retired["revocation"]).startswith("revoked by the operator; refused at "), retired
    assert str(retired["revocation"]).endswith("with 535 5.7.8"), retired
    assert str(retired["asked"]["how"]).startswith("no terminal"), retired  # type: ignore[index]
    assert retired["checks"] != 1, retired  # it asked the relay more than once before it was refused


@pytest.mark.parametrize("answer", ["revoked", "skip"])
def test_the_revoke_prompt_is_shown_at_the_operators_terminal(provider_world: ProviderWorld, answer: str) -> None:
    """`rotation provider rotate smtp` at a real terminal (a pseudo-terminal): the question appears there although
    pytest captures stdin and stdout. The operator revokes at the console and presses Enter: the evidence says the
    operator revoked it at T and the relay refused it at T2 with 535 5.7.8. Negative control: the operator types
    'skip': nothing is revoked, the run fails at the revoke step and its evidence says so. The new password is typed
    at the getpass prompt in the first case (it is never echoed: the terminal's output does not hold it)."""
    old, new = provider_world.in_env("smtp"), new_password(provider_world)
    command = provider_world.command("rotate", "smtp", "--revoke-wait=2")
    typed = answer == "revoked"  # the new password typed at the prompt (not echoed); the control hands it over
    env = provider_world.command_env({} if typed else {"SMTP_NEW_PASSWORD": new.reveal()})
    if typed:
        env.pop("SMTP_NEW_PASSWORD", None)  # not inherited from the tests' own environment
    before = set(provider_world.reports.glob("*"))
    child = pexpect.spawn(command[0], command[1:], cwd=str(PROJECT), env=env, encoding="utf-8", timeout=150)
    child.logfile_read = screen = io.StringIO()  # everything the terminal showed
    try:
        if typed:
            child.expect("New SMTP password")
            child.sendline(new.reveal())
        child.expect(f"Revoke the SMTP password {old.fingerprint} at the email provider's console now")
        child.expect("Press Enter once it is revoked")
        if answer == "revoked":
            provider_world.standins.smtp.revoke(old)
            child.sendline("")
        else:
            child.sendline("skip")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = screen.getvalue()
    assert set(provider_world.reports.glob("*")) - before, shown[-3000:]
    run = SuiteRun(child.exitstatus if child.exitstatus is not None else -1, shown,
                   run_folder=newest_run_folder(provider_world.reports))
    retired = evidence_item(run, f"old {LABEL} retired")
    if answer == "revoked":
        assert run.returncode == 0, shown[-3000:]
        assert retired["asked"]["how"] == "asked at the operator's terminal", retired  # type: ignore[index]
        assert str(retired["revocation"]).startswith("revoked by the operator at "), retired
        assert "; refused at " in str(retired["revocation"]) and str(retired["revocation"]).endswith(
            "with 535 5.7.8"), retired
    else:
        assert run.returncode == 1, shown[-3000:]
        assert run.failed_step().text == REVOKE_STEP
        assert retired["revoked"] is False and retired["asked"]["said"] == (  # type: ignore[index]
            "the operator said it was not done"), retired
        assert provider_world.rotation("smtp").provider.check(old).answer is CredentialCheck.ACCEPTED
    assert not leaked(shown, old, new)


def test_a_rerun_with_a_corrected_password_after_a_refusal_uses_it(provider_world: ProviderWorld) -> None:
    """The operator mistypes the new password: the relay refuses it (535 5.7.8) before .env changes, the step says
    what to do next, and the refused value is nowhere on disk. The rerun with the corrected password uses it, and the
    evidence records the replacement."""
    old, typo, right = provider_world.in_env("smtp"), Secret(generate_key().reveal()), new_password(provider_world)
    env_before = provider_world.env_file.read_bytes()
    first = provider_world.cli("rotate", "smtp", environ={"SMTP_NEW_PASSWORD": typo.reveal()})
    assert first.returncode == 1, first.output[-3000:]
    failed = first.failed_step()
    assert failed.text == TEST_STEP, failed
    assert "is refused by the provider (535 5.7.8" in (failed.error or "") and "give the rerun the correct one" in (
        failed.error or ""), failed.error
    assert provider_world.env_file.read_bytes() == env_before
    assert not state.pending_path(provider_world.env_file, credential_of("smtp").type).exists()
    assert not [p for p in provider_world.env_file.parent.rglob("*") if p.is_file() and typo.reveal().encode()
                in p.read_bytes()], "the refused password was kept on disk"
    with operator_revokes_when_mail_arrives(provider_world.standins.smtp, old):
        second = provider_world.cli("rotate", "smtp", "--revoke-wait=60",
                                    environ={"SMTP_NEW_PASSWORD": right.reveal()})
    assert second.returncode == 0, second.output[-3000:]
    replaced = evidence_item(second, f"pending {LABEL} replaced by the operator's")
    assert (replaced["replaced"], replaced["new"]) == (typo.fingerprint, right.fingerprint), replaced
    assert provider_world.in_env("smtp") == right
    assert log_rows(provider_world) == 1
    assert not leaked(first.output + second.output, old, typo, right)


@pytest.mark.parametrize("setting", ["ADMIN_EMAIL", "SMTP_FROM_EMAIL"])
def test_a_missing_setting_is_refused_before_any_change(provider_world: ProviderWorld, setting: str) -> None:
    """ADMIN_EMAIL (the test e-mail's recipient) and SMTP_FROM_EMAIL (its sender) are read only by later steps:
    a missing one is named with its fix by the first step; .env, the app and the provider are untouched."""
    env_file = provider_world.env_file
    text = "".join(line for line in env_file.read_text().splitlines(keepends=True)
                   if not line.startswith(f"{setting}="))
    env_file.write_text(text)
    env_before, pid_before = env_file.read_bytes(), app_control.health(provider_world.deployment.app.health_url)
    passwords_before = set(provider_world.standins.smtp.passwords)
    run = provider_world.cli("rotate", "smtp", environ={"SMTP_NEW_PASSWORD": new_password(provider_world).reveal()})
    assert run.returncode == 1, run.output[-3000:]
    failed = run.failed_step()
    assert failed.text == FIRST_STEP, failed
    assert f"{setting}: add {setting}=" in (failed.error or "") and "nothing was changed" in (failed.error or "")
    assert env_file.read_bytes() == env_before
    assert state.load(env_file, credential_of("smtp").type) is None
    assert provider_world.standins.smtp.passwords >= passwords_before
    assert pid_before.healthy and app_control.health(provider_world.deployment.app.health_url).healthy
    assert envfile.read_env(env_file).get(setting) is None


def test_a_temporary_auth_failure_at_the_revoke_step_is_never_counted_as_revoked(
        provider_world: ProviderWorld) -> None:
    """The issue's case: the old password still valid, the relay answering 454 4.7.0. The step fails undecided, no
    evidence says revoked, nothing is logged; once the relay's auth backend is back, the old password still works
    (so a "revoked" would have been false)."""
    rotation = provider_world.rotation("smtp")
    relay, old = provider_world.standins.smtp, provider_world.in_env("smtp")
    recorded: list[tuple[str, object]] = []
    evidence = Recording(recorded)
    steps_before_retire(rotation, evidence)
    relay.faults.auth_unavailable_next(10**6)
    with pytest.raises(CheckFailed) as caught:
        rotation.retire_old(evidence)
    relay.faults.clear()
    assert "not revoked: no definitive answer (undecided)" in str(caught.value) and "454" in str(caught.value)
    [(_, retired)] = [(n, v) for n, v in recorded if n == f"old {LABEL} retired"]
    assert isinstance(retired, dict) and retired["revoked"] is False and retired["retired"] is None
    assert rotation.provider.check(old).answer is CredentialCheck.ACCEPTED
    with pytest.raises(CheckFailed):
        rotation.log(evidence)  # nothing is logged as complete
    assert log_rows(provider_world) == 0


@pytest.mark.parametrize("witness", ["mailbox", "none"])
def test_a_lost_answer_to_the_test_email_is_looked_up_before_sending_again(provider_world: ProviderWorld,
                                                                          witness: str) -> None:
    """The relay queues the message and the connection drops before its 250. With a witness that can look (staging's
    mailbox) the message is found by its Message-ID and not sent again: one message. Without one (a live relay lists
    no messages) the step stops and names the Message-ID to look for: still one message, never two."""
    rotation = provider_world.rotation("smtp")
    if witness == "none":
        rotation.witness = None  # live: no relay lists its messages
    relay = provider_world.standins.smtp
    recorded: list[tuple[str, object]] = []
    evidence = Recording(recorded)
    steps_before_send(rotation, evidence)
    relay.faults.lose_data_answer_next(1)
    if witness == "mailbox":
        rotation.send_test_message(evidence)
        rotation.check_test_message(evidence)
    else:
        with pytest.raises(CheckFailed, match="was lost after the provider may have queued it; nothing was sent"):
            rotation.send_test_message(evidence)
    assert len(relay.delivered_to("admin@eventplanning.example.com")) == 1
    [(_, lost)] = [(n, v) for n, v in recorded if n == "test message's answer lost"]
    assert isinstance(lost, dict)
    assert lost["next"] == ("not sent again: it arrived" if witness == "mailbox" else "stopped: it may have been sent")


class Recording(NoEvidence):
    """Evidence kept in a list, for the in-process procedure tests."""

    def __init__(self, into: list[tuple[str, object]]) -> None:
        self.into = into

    def record(self, name: str, value: object, *, source: str | None = None) -> None:
        self.into.append((name, value))


def steps_before_send(rotation: ProviderRotation, evidence: Recording) -> None:
    from rotation.core.prerequisites import back_up
    from rotation.providers.procedure import reload_application

    rotation.running_with_current(rotation.label, evidence)
    back_up(rotation.deployment, evidence)
    for step in (rotation.create, rotation.test_before_deployment, rotation.update_configuration,
                 rotation.check_configuration):
        step(evidence)
    reload_application(rotation.deployment, evidence)
    rotation.check_app_uses_new(evidence)


def steps_before_retire(rotation: ProviderRotation, evidence: Recording) -> None:
    steps_before_send(rotation, evidence)
    rotation.send_test_message(evidence)
    rotation.check_test_message(evidence)


def test_the_whole_procedure_still_runs_in_process(provider_world: ProviderWorld) -> None:
    """The staging console revokes at once: the in-process procedure finishes (the fault tests' baseline)."""
    run_all_steps(provider_world.rotation("smtp"))
    assert log_rows(provider_world) == 1


def test_abandoning_claims_no_discard_nobody_did(provider_world: ProviderWorld) -> None:
    """--abandon-pending on an SMTP rotation: this tool never held the pending password on disk and cannot revoke it,
    so the evidence says nothing was done at the provider (and the relay indeed still accepts it), instead of the old
    "discarded at the provider: true"."""
    first = provider_world.rotation("smtp")
    evidence = Recording([])
    first.running_with_current(first.label, evidence)
    from rotation.core.prerequisites import back_up

    back_up(first.deployment, evidence)
    first.create(evidence)  # the run ends here (a crash, or the operator gives up)
    pending = first.new
    recorded: list[tuple[str, object]] = []
    again = provider_world.rotation("smtp", abandon_pending=True)
    again.create(Recording(recorded))
    [(_, abandoned)] = [(n, v) for n, v in recorded if n == f"pending {LABEL} rotation abandoned"]
    assert isinstance(abandoned, dict)
    assert str(abandoned["at the provider"]).startswith("nothing was done at the provider"), abandoned
    assert "discarded at the provider" not in abandoned
    assert again.provider.check(pending).answer is CredentialCheck.ACCEPTED  # what the record says: not revoked
