"""The revocation mechanism on its own (rotation/providers/revocation.py): only a definitive refusal proves a
revocation, whatever the operator said; the wait is bounded and asks again meanwhile; an operator who says 'skip' gets
one check and no wait; without a controlling terminal nobody is prompted. The provider's answers here are scripted
CheckResults (the mechanism's input); the SMTP adapter's own answers are shown over the wire in test_smtp.py and the
whole procedure in test_smtp_rotation.py."""

from __future__ import annotations

import os
import subprocess
import sys

from rotation.providers.base import CheckResult, CredentialCheck
from rotation.providers.revocation import (
    Clock,
    Revocation,
    RevocationAct,
    Wait,
    ask_operator,
    confirm_refused,
    now,
    operator_terminal,
)

REFUSED = CheckResult("smtp", False, 535, "5.7.8", "Error: authentication failed", "fp", CredentialCheck.REFUSED)
ACCEPTED = CheckResult("smtp", True, 235, "2.7.0", "accepted", "fp", CredentialCheck.ACCEPTED)
UNDECIDED = CheckResult("smtp", False, 454, "4.7.0", "Temporary authentication failure", "fp",
                        CredentialCheck.UNDECIDED)


class FakeClock:
    def __init__(self) -> None:
        self.t, self.slept = 0.0, list[float]()

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s

    def monotonic(self) -> float:
        return self.t


def run(results: list[CheckResult], act: RevocationAct, wait: Wait) -> tuple[Revocation, FakeClock, int]:
    clock, asked = FakeClock(), []

    def check() -> CheckResult:
        asked.append(1)
        return results[min(len(asked), len(results)) - 1]

    revocation = confirm_refused(check, act, wait, Clock(clock.sleep, clock.monotonic))
    return revocation, clock, len(asked)


OPERATOR = RevocationAct("the operator", "asked at the operator's terminal", now(), now())


def test_a_refusal_after_some_waiting_proves_it_and_says_who_and_how() -> None:
    revocation, clock, asked = run([ACCEPTED, UNDECIDED, REFUSED], OPERATOR, Wait(60, 10))
    assert revocation.proven and asked == 3 and clock.slept == [10, 10]
    sentence = revocation.sentence()
    assert sentence.startswith(f"revoked by the operator at {OPERATOR.done_at}; refused at ")
    assert sentence.endswith("with 535 5.7.8")


def test_still_accepted_at_the_end_of_the_wait_is_not_revoked() -> None:
    """Negative control: the operator said it was done, the provider disagrees: not proven."""
    revocation, clock, asked = run([ACCEPTED], OPERATOR, Wait(30, 10))
    assert not revocation.proven and asked == 4 and sum(clock.slept) == 30  # t = 0, 10, 20, 30
    assert revocation.sentence().startswith("not revoked: still accepted at ")
    assert revocation.as_evidence()["revoked"] is False


def test_a_temporary_failure_is_never_a_revocation() -> None:
    revocation, _, _ = run([UNDECIDED], OPERATOR, Wait(20, 10))
    assert not revocation.proven
    assert "no definitive answer (undecided)" in revocation.sentence()
    assert "454 4.7.0" in revocation.sentence()


def test_an_operator_who_says_skip_gets_one_check_and_no_wait() -> None:
    asked_at = now()
    typed: list[str] = []

    class Terminal:
        def ask(self, text: str) -> str:
            typed.append(text)
            return "skip\n"

    act = ask_operator("Revoke the SMTP password fp at the email provider's console now.", Terminal())
    assert act.declined and act.done_at is None and act.asked_at >= asked_at
    assert "Press Enter once it is revoked" in typed[0]
    revocation, clock, asked = run([ACCEPTED], act, Wait(300, 10))
    assert asked == 1 and clock.slept == [] and not revocation.proven
    assert act.as_evidence()["said"] == "the operator said it was not done"


def test_enter_at_the_terminal_is_the_operators_word_not_a_proof() -> None:
    class Terminal:
        def ask(self, text: str) -> str:
            return "\n"

    act = ask_operator("Revoke it.", Terminal())
    assert not act.declined and act.done_at is not None and act.how == "asked at the operator's terminal"
    revocation, _, _ = run([ACCEPTED], act, Wait(0, 10))
    assert not revocation.proven


def test_without_a_terminal_nobody_is_prompted() -> None:
    act = ask_operator("Revoke it.", None)
    assert act.done_at is None and act.how.startswith("no terminal")
    assert act.as_evidence()["said"] == "nobody confirmed doing it"


def test_a_process_without_a_controlling_terminal_has_no_operator_terminal() -> None:
    code = "from rotation.providers.revocation import operator_terminal; print(operator_terminal() is None)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          start_new_session=True, env={**os.environ})
    assert done.stdout.strip() == "True"
    assert operator_terminal("/nonexistent/tty") is None
