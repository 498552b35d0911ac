"""Separation of duties on a change (SOC 2 CC8.1): who requested it, who approved it, who performed it, under which
change record; and the one rule the tool enforces before anything changes: the approver is not the operator, unless
the configuration allows self-approval ([duties] allow_self_approval), in which case the evidence says so.

The operator is the person declared with --operator (or ROTATION_OPERATOR); the OS account the tool ran under is
recorded beside it, never in its place, so a rehearsal run as `root` says "root (OS account; no operator declared)"
rather than passing `root` off as a person.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from rotation.core.config import Duties

# Accounts, not people: a live change's evidence must name who performed it.
SHARED_ACCOUNTS = frozenset({"root", "toor", "admin", "administrator", "system", "nobody", "ubuntu", "debian",
                             "ec2-user", "postgres", "eventuser", "runner", "ci", "jenkins", "gitlab-runner"})


def is_account(name: str) -> bool:
    """A shared or system account rather than a person (or no name at all)."""
    return name.strip().lower() in SHARED_ACCOUNTS or name.startswith("uid-") or not name.strip()


def os_user() -> str:
    """The account this process runs as."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def same_person(a: str | None, b: str | None) -> bool:
    """Two names for one person: equal ignoring case and spaces, or one is the other's e-mail local part
    ('alice' and 'Alice@example.org')."""
    if not a or not b:
        return False
    x, y = a.strip().lower(), b.strip().lower()
    return x == y or x.partition("@")[0] == y.partition("@")[0]


@dataclass(frozen=True)
class People:
    """Who did what in one run."""

    requester: str | None
    approver: str | None
    operator: str  # the declared operator, else the OS account
    operator_declared: bool
    os_user: str
    change_id: str | None

    @property
    def self_approved(self) -> bool:
        return same_person(self.approver, self.operator)

    def refusals(self, duties: Duties, source: str) -> list[str]:
        """Why a live change must not start on these duties (empty when it may)."""
        if self.self_approved and not duties.allow_self_approval:
            return [f"the approver ({self.approver}) is the operator ({self.operator}): a change needs an approver "
                    f"other than the person who performs it (SOC 2 CC8.1). Name the approver with --approver, or "
                    f"allow self-approval with [duties] allow_self_approval = true in {source} (the evidence then "
                    "says so)"]
        return []

    def notes(self, duties: Duties, source: str, *, live: bool = True) -> list[str]:
        """What the evidence must say about these duties: exceptions an auditor would otherwise have to find."""
        out = []
        if self.self_approved and duties.allow_self_approval:
            out.append(f"self-approved: the approver ({self.approver}) is the operator; allowed by [duties] "
                       f"allow_self_approval = true in {source}")
        if not self.operator_declared:
            out.append(f"no operator declared (--operator / ROTATION_OPERATOR): '{self.operator}' is the OS account "
                       "the tool ran under, not necessarily a person")
        if live and not self.requester:
            out.append("no requester named (--requester)")
        return out

    def who_did_what(self) -> dict[str, str]:
        """The change record and its people, as the summary shows them."""
        operator = self.operator if self.operator_declared else f"{self.operator} (OS account; no operator declared)"
        return {"change record": self.change_id or "not named", "requested by": self.requester or "not named",
                "approved by": self.approver or "not named", "performed by": operator,
                "OS account": self.os_user}
