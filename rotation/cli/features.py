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
from collections.abc import Callable, Sequence
from pathlib import Path

from rotation.cli.option_table import OPTIONS, taken_by
from rotation.evidence.recorder import strip_url_passwords

PROJECT_ROOT = Path(__file__).resolve().parents[2]

def add_command_options(parser: argparse.ArgumentParser, command: str) -> None:
    """The suite's options this operator command takes (rotation.cli.option_table), with the same help text. Unset,
    an option is not handed on, so the suite's own default (and its environment variable) applies."""
    for option in taken_by(command):
        arguments = option.arguments(default=None)
        if option.type is not None:
            arguments["type"] = _checked_as_given(option.type)
        parser.add_argument(option.flag, **arguments)


def _checked_as_given(convert: Callable[[str], object]) -> Callable[[str], str]:
    """The option's type checks the value here (argparse's own error for a bad one), but the command keeps the words
    the operator typed: they are handed on to the suite and printed back in the command to run next, which must be
    the operator's own (`--revoke-wait=5`, not `5.0`)."""
    def check(text: str) -> str:
        convert(text)
        return text
    check.__name__ = getattr(convert, "__name__", "value")  # argparse's error names it: "invalid float value"
    return check


def given(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """The table's options the operator gave, as (flag, value); a flag switched on has no value."""
    out: list[tuple[str, str | None]] = []
    for option in OPTIONS:
        value = getattr(args, option.dest, None)
        if option.kind == "flag":
            out += [(option.flag, None)] if value else []
        elif option.kind == "repeat":
            out += [(option.flag, str(v)) for v in value or ()]
        elif value is not None:
            out.append((option.flag, str(value)))
    return out


def forwarded(args: argparse.Namespace) -> list[str]:
    """The operator's options as the suite's pytest options (`--name=value`, so pytest never mistakes a path for a
    rootdir hint)."""
    return [flag if value is None else f"{flag}={value}" for flag, value in given(args)]


def run_features(*pytest_args: str, plugins: tuple[object, ...] = ()) -> int:
    """Run the suite's features (rotation_suite, shipped in the package) through pytest with the suite's own
    configuration and rootdir, from any directory."""
    import pytest  # the commands that run features are the only part of the library that needs it

    suite = suite_folder()
    if suite is None:
        print("rotation: the runbook's features (package rotation_suite) are not installed beside the library: "
              "reinstall rotation-runbook (`pipx install rotation-runbook` or `pip install <wheel>`)")
        return 2
    chosen = any(a.startswith("--evidence-pdf") for a in pytest_args) or os.environ.get("ROTATION_EVIDENCE_PDF")
    pdf = [] if chosen else ["--evidence-pdf=auto"]  # $ROTATION_EVIDENCE_PDF: the option's default, honoured here
    return int(pytest.main(["-c", str(suite / "suite.ini"), "--rootdir", str(suite), "-p", "rotation_suite.plugins",
                            *pdf, *pytest_args, str(suite / "steps")], plugins=list(plugins)))


def suite_folder() -> Path | None:
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
    words += [str(args.provider)] if getattr(args, "provider", None) else []  # `rotation provider resume smtp`
    for flag, value in given(args):
        text = value if value is None or flag != "--dsn" else strip_url_passwords(_DSN_PASSWORD.sub(r"\1***", value))
        words.append(flag if text is None else f"{flag}={text}")
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
