"""The operator's commands run the very features an auditor reads: `rotation db-key rotate` is the scheduled
scenario of features/rotation/db_encryption_key.feature run with `--target live`, through the same steps, the same
live guard (plan, --confirm-live, change id, approver, --dry-run) and the same evidence recorder, and it leaves the
same signed run folder under reports/.

The features and steps ship in the package `rotation_suite`, so an installed `rotation` runs them from any directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from rotation.evidence.recorder import strip_url_passwords

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# argparse dest -> the suite's pytest option; every operator command accepts these.
LIVE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    # (flag, pytest option, help)
    ("--config", "--config", "the deployment configuration (rotation.toml; default: $ROTATION_CONFIG, else built-in)"),
    ("--dsn", "--dsn", "the CRM database (default: $ROTATION_DSN)"),
    ("--env-file", "--env-file", "the app's .env"),
    ("--operator", "--operator", "who performs the rotation (rotated_by; default: the OS user)"),
    ("--requester", "--requester", "who requested the change (recorded in the evidence)"),
    ("--approver", "--approver", "who approved the change (required; not the operator unless the configuration's "
                                 "[duties] allow_self_approval)"),
    ("--change-id", "--change-id", "the approved change record (required)"),
    ("--reason", "--reason", "the rotation reason written to the rotation log"),
    ("--workers", "--workers", "parallel re-encryption workers (default: CPU count)"),
    ("--revoke-wait", "--revoke-wait", "seconds to keep asking the provider whether a revoked credential is refused "
                                       "(default 300): the operator revokes at the provider when asked at the terminal "
                                       "or, without one, in the log"),
    ("--max-retry-wait", "--max-retry-wait", "seconds a provider call may wait in all before its retries, honouring "
                                             "the provider's Retry-After (default 120); a longer wait asked for ends "
                                             "the step, saying so"),
    ("--reports-dir", "--reports-dir", "where the run folder is written (default: reports/ in the current directory)"),
    ("--signing-key", "--signing-key", "Ed25519 private key (PEM) that signs the evidence (or $ROTATION_SIGNING_KEY)"),
    ("--app-start", "--app-start", "command that starts the app (default: the configuration's [app])"),
    ("--app-stop", "--app-stop", "command that stops the app"),
    ("--app-restart", "--app-restart", "command that restarts the app"),
    ("--app-reload", "--app-reload", "command that reloads the app"),
    ("--health-url", "--health-url", "the app's health endpoint"),
    ("--progress", "--progress", "progress lines of long steps (rows done, rate, ETA): auto (default: shown), lines, "
                                 "off (a quiet CI log)"),
)
LIVE_FLAGS: tuple[tuple[str, str], ...] = (
    ("--confirm-live", "carry out the printed plan (without it: print the plan, change nothing, exit 4)"),
    ("--dry-run", "print the plan and stop"),
    ("--abandon-pending", "start over a PENDING rotation whose new credential never reached .env or the data"),
    ("--leave-unreadable", "DB key: leave values no key opens byte for byte as they are and go on (the verdict says "
                           "INCOMPLETE, naming them); without it they are refused before the app stops"),
    ("--allow-staging-endpoints", "allow loopback / stand-in endpoints (rehearsing the live path in CI)"),
    ("--take-over-lock", "take over the run lock a rotation left when its process died (only once that run is over; "
                         "the evidence says so)"),
)


def add_live_options(parser: argparse.ArgumentParser) -> None:
    for flag, _, text in LIVE_OPTIONS:
        parser.add_argument(flag, default=None, help=text)
    for flag, text in LIVE_FLAGS:
        parser.add_argument(flag, action="store_true", help=text)


def forwarded(args: argparse.Namespace) -> list[str]:
    """The operator's options as the suite's pytest options (`--name=value`, so pytest never mistakes a path for a
    rootdir hint)."""
    out = [f"{option}={value}" for flag, option, _ in LIVE_OPTIONS
           if (value := getattr(args, flag[2:].replace("-", "_"))) is not None]
    return out + [flag for flag, _ in LIVE_FLAGS if getattr(args, flag[2:].replace("-", "_"))]


def run_features(*pytest_args: str, plugins: tuple[object, ...] = ()) -> int:
    """Run the suite's features (rotation_suite, shipped in the package) through pytest with the suite's own
    configuration and rootdir, from any directory."""
    import pytest  # the commands that run features are the only part of the library that needs it

    suite = _suite()
    if suite is None:
        print("rotation: the runbook's features (package rotation_suite) are not installed beside the library: "
              "reinstall rotation-runbook (`pipx install rotation-runbook` or `pip install <wheel>`)")
        return 2
    chosen = any(a.startswith("--evidence-pdf") for a in pytest_args) or os.environ.get("ROTATION_EVIDENCE_PDF")
    pdf = [] if chosen else ["--evidence-pdf=auto"]  # $ROTATION_EVIDENCE_PDF: the option's default, honoured here
    return int(pytest.main(["-c", str(suite / "suite.ini"), "--rootdir", str(suite), "-p", "rotation_suite.plugins",
                            *pdf, *pytest_args, str(suite / "steps")], plugins=list(plugins)))


def _suite() -> Path | None:
    """Where the suite's package is, found without importing it (the library never imports the steps)."""
    spec = importlib.util.find_spec("rotation_suite")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / "features").is_dir() and (folder / "steps").is_dir() else None


class NextStep:
    """Handed to the run by the operator's command: the run says here, in one line, where the rotation stands and
    which command to run next (the same line its evidence records), and the command prints it last."""

    def __init__(self, command: str) -> None:
        self.command = command      # the command that takes the rotation up, as the operator typed this one
        self.line: str | None = None
        self.warnings: tuple[str, ...] = ()

    def said(self, line: str, warnings: Sequence[str] = ()) -> None:
        self.line, self.warnings = line, tuple(warnings)


_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def resume_command(args: argparse.Namespace, *extra: str) -> str:
    """This command with `resume` for its action, its options as given (a DSN's password masked: the operator
    supplies it again as before, e.g. from $ROTATION_DSN or ~/.pgpass)."""
    words = ["rotation", str(getattr(args, "command", "db-key"))] + (["resume"] if hasattr(args, "action") else [])
    for flag, _, _ in LIVE_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            text = strip_url_passwords(_DSN_PASSWORD.sub(r"\1***", str(value))) if flag == "--dsn" else str(value)
            words.append(f"{flag}={text}")
    words += [flag for flag, _ in LIVE_FLAGS if getattr(args, flag[2:].replace("-", "_"))]
    return shlex.join([*words, *extra])


def run_live(selection: str, args: argparse.Namespace, *extra: str) -> int:
    """The scenarios `selection` (a -m expression) on the live systems, with the operator's options. The run's last
    line says where the rotation stands and the command to run next (see NextStep)."""
    next_step = NextStep(resume_command(args, *extra))
    code = run_features("--target=live", "-m", selection, *forwarded(args), *extra,
                        *getattr(args, "unknown_args", []), plugins=(next_step,))
    for warning in next_step.warnings:
        print(warning, flush=True)
    if next_step.line:
        print(next_step.line, flush=True)
    return code
