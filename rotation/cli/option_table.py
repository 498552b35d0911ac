"""Every option of the suite, declared once: its flag, its one help text, its type and default, and which operator
commands take it too. The pytest plugin registers every row (rotation_pytest/options.py, `pytest --help`); the
operator's commands (`rotation db-key`, `provider`, `emergency`) add the rows they take and hand what the operator gave
to the suite's option of the same name (rotation/cli/features.py); `rotation retire` takes its rows too and reads them
itself (rotation/cli/retire.py). Plain data: the library never imports pytest here.

To add an option, add a row (and, if it is new, its group to GROUPS).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from rotation.core.config import CONFIG_ENV

EVERY = "every operator command"  # db-key, provider and emergency: what a live run needs whatever it rotates
DB_KEY, PROVIDER, EMERGENCY = "db-key", "provider", "emergency"
RETIRE = "retire"  # `rotation retire` (and db-key/provider retire): it runs no feature and reads its options itself

# pytest's option groups (`pytest --help`), by name
GROUPS = {
    "rotation": "credential rotation runbook",
    "rotation-app": "the application under rotation (default: the configuration's [app])",
    "rotation-hygiene": "Best Practices checks (runbook: Best Practices)",
    "evidence": "SOC 2 evidence",
    "rotation-emergency": "emergency rotation (runbook: Emergency Rotation Procedure)",
}


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    group: str = "rotation"
    kind: Literal["value", "flag", "repeat"] = "value"   # --x VALUE, --x (on/off), --x VALUE given again and again
    type: Callable[[str], Any] | None = None             # None: text
    default: object = None
    env: str | None = None                               # the environment variable that gives the default
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    commands: tuple[str, ...] = ()                       # the operator commands that take it too (EVERY: all)

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    def default_now(self) -> object:
        """The default as the environment gives it when the options are registered."""
        if self.kind == "flag":
            return False
        return os.environ.get(self.env, self.default) if self.env else self.default

    def taken_by(self, command: str) -> bool:
        return EVERY in self.commands or command in self.commands

    def arguments(self, *, default: object) -> dict[str, Any]:
        """The row as argparse's add_argument arguments (pytest's addoption takes the same)."""
        if self.kind == "flag":
            return {"action": "store_true", "default": False, "help": self.help}
        if self.kind == "repeat":
            return {"action": "append", "default": default, "help": self.help}
        extra = {"type": self.type, "choices": self.choices, "metavar": self.metavar}
        return {"default": default, "help": self.help} | {k: v for k, v in extra.items() if v is not None}


def number(convert: Callable[[str], float], least: float, *, above: bool = False) -> Callable[[str], Any]:
    """The type of a numeric option: `convert` (int or float) of a finite value of at least `least` (`above`: more
    than it). A wrong one is refused by argparse (the operator's command) or pytest (the suite) before anything runs,
    with this message: a negative wait, no workers, a rate of 0 would otherwise fail late or never end."""
    def checked(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            kind = "a whole number" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not math.isfinite(value) or value < least or (above and value == least):
            raise argparse.ArgumentTypeError(f"{text!r}: give a number {'above' if above else 'of at least'} "
                                             f"{least:g}")
        return value
    checked.__name__ = getattr(convert, "__name__", "number")
    return checked


POSITIVE = number(float, 0, above=True)  # a timeout, a rate, a window
WAIT = number(float, 0)                  # a wait that may be 0 (ask once, do not wait)
COUNT = number(int, 1)                   # workers, rows


def _notify(name: str, who: str) -> Option:
    return Option(f"--notify-{name}", f"comma-separated e-mail addresses of {who} (default: the configuration's "
                                      "[stakeholders])", "rotation-emergency", metavar="ADDRESSES",
                  commands=(EMERGENCY,))


OPTIONS: tuple[Option, ...] = (
    Option("--config", f"the deployment configuration (rotation.toml; or {CONFIG_ENV}). Default: the built-in one, "
                       "which matches the CRM", env=CONFIG_ENV, commands=(EVERY, RETIRE)),
    Option("--target", "where the procedures run: 'staging' (throwaway PostgreSQL and local stand-ins, the default) "
                       "or 'live' (real DSN, real .env, real provider APIs; needs --confirm-live)",
           choices=("staging", "live"), default="staging"),
    Option("--dsn", "PostgreSQL DSN (or ROTATION_DSN). Staging: a server on which the suite creates and drops its own "
                    "scratch database. Live: the CRM database itself", env="ROTATION_DSN", commands=(EVERY, RETIRE)),
    Option("--env-file", "the app's .env file (a staging run without it generates one in a temp dir)",
           commands=(EVERY, RETIRE)),
    Option("--operator", "the person who performs the rotation (or retirement), written to rotated_by and the "
                         "evidence (or ROTATION_OPERATOR; default: the OS user). A live run refuses a shared account "
                         "such as root",
           env="ROTATION_OPERATOR", commands=(EVERY, RETIRE)),
    Option("--reason", "the rotation reason for the rotation log (default: 'Scheduled 90-day rotation'; 'emergency' "
                       "for the emergency procedure)", commands=(EVERY,)),
    Option("--abandon-pending", "start over a PENDING rotation whose new credential never reached .env or the data",
           kind="flag", commands=(EVERY,)),
    Option("--take-over-lock", "take over the run lock of a rotation whose lock session is gone (killed, or its "
                               "connection lost) but whose record remains; only once you know that run is over. The "
                               "evidence says so", kind="flag", commands=(EVERY,)),
    Option("--replace-secondary", "Twilio: when Twilio already holds a secondary auth token that this rotation did "
                                  "not create, delete it and create a new one (without this the rotation stops, "
                                  "changing nothing)", kind="flag", commands=(PROVIDER,)),
    Option("--delivery-wait", "how long the check of a test message waits for its final word: Twilio's final "
                              "status, the app's delivery record (default 120; staging 5)",
           type=POSITIVE, metavar="SECONDS", commands=(PROVIDER,)),
    Option("--prove-delivery-from-app", "prove WhatsApp delivery from the app's own records (crm_delivery_logs / "
                                        "crm_communications for the message id) within --delivery-wait; without it "
                                        "the check reads 'accepted by Meta'. Staging always does",
           kind="flag", commands=(PROVIDER,)),
    Option("--revoke-wait", "how long to keep asking the provider whether a revoked credential is refused, after the "
                            "operator was asked to revoke it at the provider (at their terminal, or, without one, in "
                            "the log) or this run revoked it (default 300; staging 2)",
           type=WAIT, metavar="SECONDS", commands=(EVERY,)),
    Option("--max-retry-wait", "the longest a provider call waits in all before its retries (Twilio, Meta): the "
                               "provider's Retry-After is honoured up to this, a longer wait asked for ends the step "
                               "saying so (default 120)", type=WAIT, metavar="SECONDS", commands=(EVERY,)),
    Option("--workers", "parallel re-encryption workers (default: the number of CPUs)", type=COUNT, commands=(EVERY,)),
    Option("--stop-the-world", "DB key, scheduled: re-encrypt every value while the app is stopped instead of staging "
                               "the new values while it runs (the emergency rotation always does)",
           kind="flag", commands=(DB_KEY,)),
    Option("--leave-unreadable", "DB key: values that neither the current nor the new key opens (written under a key "
                                 "nobody has) are left byte for byte as they are and the rotation goes on; the verdict "
                                 "then says INCOMPLETE, naming them. Without it a scheduled rotation refuses them "
                                 "before the app stops (the emergency rotation always leaves them)",
           kind="flag", commands=(EVERY,)),
    Option("--max-rate", "DB key, staged: at most this many rows per second while the app runs (default: no limit)",
           type=POSITIVE, metavar="ROWS_PER_S", commands=(DB_KEY,)),
    Option("--progress", "progress lines of the long steps (rows done of the total, rate, ETA): auto (the default) "
                         "in live runs and at a terminal, lines (always), off (never: a quiet CI log)",
           choices=("auto", "lines", "off"), default="auto", commands=(EVERY,)),
    Option("--rows", "staging only: how many synthetic clients to seed (default 2,000)", type=COUNT, default=2000),
    Option("--confirm-live", "carry out the printed plan on live systems (or set ROTATION_CONFIRM_LIVE=yes); without "
                             "it a live run prints the plan, changes nothing and exits 4", kind="flag",
           commands=(EVERY, RETIRE)),
    Option("--dry-run", "print the plan and stop; change nothing", kind="flag", commands=(EVERY, RETIRE)),
    Option("--allow-staging-endpoints", "a rehearsal of the live path (CI): let a live run use loopback or stand-in "
                                        "endpoints, which its plan says in its first line, and `retire` a "
                                        "--quiet-period shorter than configured", kind="flag",
           commands=(EVERY, RETIRE)),

    Option("--app-start", "command that starts the app", "rotation-app", commands=(EVERY, RETIRE)),
    Option("--app-stop", "command that stops the app", "rotation-app", commands=(EVERY, RETIRE)),
    Option("--app-restart", "command that restarts the app", "rotation-app", commands=(EVERY, RETIRE)),
    Option("--app-reload", "command that reloads the app's configuration without downtime", "rotation-app",
           commands=(EVERY, RETIRE)),
    Option("--health-url", "the app's health endpoint", "rotation-app", commands=(EVERY, RETIRE)),
    Option("--health-timeout", "seconds to wait for the app to become healthy (or stop) before a step fails",
           "rotation-app", type=POSITIVE, commands=(EVERY,)),

    Option("--app-repo", "the app's git repository (live; default: the directory holding --env-file). Staging builds "
                         "a small one around its .env", "rotation-hygiene"),
    Option("--env-owner", "the account that must own .env, user[:group] (live default eventuser:eventuser, the "
                          "runbook's chown; staging: the user running the suite)", "rotation-hygiene"),
    Option("--pg-server-log", "staging with --dsn: the PostgreSQL server's log file, which the suite may read (a "
                              "private staging cluster provides its own)", "rotation-hygiene"),

    Option("--requester", "who requested the change (recorded with approver, operator and change id)", "evidence",
           commands=(EVERY, RETIRE)),
    Option("--approver", "who approved the change (required on the live systems; not the operator unless the "
                         "configuration's [duties] allow_self_approval)", "evidence", commands=(EVERY, RETIRE)),
    Option("--change-id", "the change ticket id (required on the live systems)", "evidence", commands=(EVERY, RETIRE)),
    Option("--signing-key", "Ed25519 private key (unencrypted PEM) that signs the evidence manifest (or env "
                            "ROTATION_SIGNING_KEY); without one a run of the features generates a per-run key and "
                            "keeps only its public key (`retire` requires one)", "evidence", env="ROTATION_SIGNING_KEY",
           commands=(EVERY, RETIRE)),
    Option("--evidence-pdf", "print the report to report.pdf in the run folder, sealed by the manifest: auto when "
                             "Chromium is found, yes (a missing Chromium is a problem of the run), no (the default of "
                             "plain pytest; the rotation commands pass auto)", "evidence",
           choices=("auto", "yes", "no"), default="no", env="ROTATION_EVIDENCE_PDF"),
    Option("--reports-dir", "where run folders are written (default: reports/ in the current directory)",
           "evidence",
           commands=(EVERY, RETIRE)),

    Option("--compromised", "compromised credentials to rotate, comma-separated credential types or provider names, "
                            "or 'all' (staging default: all; live: required)", "rotation-emergency", metavar="LIST",
           commands=(EMERGENCY,)),
    Option("--review-policy", "access review policy: allowed_accessors, allowed_networks, ... (required on live; "
                              "staging: the seeded history's policy)", "rotation-emergency", metavar="YAML",
           commands=(EMERGENCY,)),
    Option("--review-window-hours", "how far back the access review looks (default 24, or the policy file's "
                                    "window_hours)", "rotation-emergency", type=POSITIVE, commands=(EMERGENCY,)),
    _notify("security", "the security team"),
    _notify("sysadmins", "the system administrators"),
    _notify("compliance", "the compliance officer"),
    Option("--notify-from", "sender of the stakeholder notification (default: the configuration's)",
           "rotation-emergency", metavar="ADDRESS", commands=(EMERGENCY,)),
    Option("--incident-start", "start of the incident window for the post-incident audit (with a UTC offset)",
           "rotation-emergency", metavar="ISO-8601", commands=(EMERGENCY,)),
    Option("--incident-end", "end of the incident window", "rotation-emergency", metavar="ISO-8601",
           commands=(EMERGENCY,)),
    Option("--detected-at", "when the compromise was detected (with a UTC offset): time-to-revoke and "
                            "time-to-restore are measured from it against the runbook's one-hour target",
           "rotation-emergency", metavar="ISO-8601", commands=(EMERGENCY,)),
    Option("--root-cause", "root cause, for the incident report", "rotation-emergency", commands=(EMERGENCY,)),
    Option("--preventive-measure", "a preventive measure taken, for the incident report (repeatable)",
           "rotation-emergency", kind="repeat", commands=(EMERGENCY,)),
    Option("--incident-notes", "file with root_cause, preventive_measures and summary for the incident report",
           "rotation-emergency", metavar="YAML", commands=(EMERGENCY,)),
)


def taken_by(command: str) -> Iterator[Option]:
    """The options an operator command takes, in the table's order."""
    return (option for option in OPTIONS if option.taken_by(command))
