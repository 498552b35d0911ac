"""The `rotation` console script: subcommands are wired, and `rehearse` hands pytest's own options through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rotation.cli import COMMANDS
from tests.harness import PROJECT


def rotation(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotation", *args], cwd="/", capture_output=True, text=True,
                          timeout=120, check=False, env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})


def test_every_subcommand_has_help() -> None:
    listed = rotation("--help")
    assert listed.returncode == 0
    for command in COMMANDS:
        assert command in listed.stdout
        assert rotation(command, "--help").returncode == 0


def test_config_shows_the_commented_default_and_checks_a_file(tmp_path: Path) -> None:
    shown = rotation("config", "--show-default")
    assert shown.returncode == 0 and shown.stdout.startswith("# rotation.toml")
    copy = tmp_path / "rotation.toml"
    copy.write_text(shown.stdout)
    assert rotation("config", f"--config={copy}").returncode == 0
    copy.write_text(shown.stdout.replace("interval_days = 90", "interval_days = 90\nintervall_days = 30", 1))
    refused = rotation("config", f"--config={copy}")
    assert refused.returncode == 2 and "unknown key credentials.db_encryption_key.intervall_days" in refused.stderr


def test_rehearse_passes_pytest_options_through_from_any_directory() -> None:
    done = rotation("rehearse", "-m", "emergency", "--collect-only", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected and all("test_emergency.py" in line for line in collected), done.stdout


def test_unknown_arguments_are_refused_outside_rehearse() -> None:
    done = rotation("status", "--no-such-option")
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr


BAD_NUMBERS = [
    ("--revoke-wait=soon", "argument --revoke-wait: 'soon' is not a number"),
    ("--revoke-wait=-1", "argument --revoke-wait: '-1': give a number of at least 0"),
    ("--workers=0", "argument --workers: '0': give a number of at least 1"),
    ("--workers=2.5", "argument --workers: '2.5' is not a whole number"),
    ("--review-window-hours=0", "argument --review-window-hours: '0': give a number above 0"),
    ("--health-timeout=inf", "argument --health-timeout: 'inf': give a number above 0"),
]


@pytest.mark.parametrize(("given", "said"), BAD_NUMBERS)
def test_a_bad_number_is_refused_by_the_command_and_the_suite_before_anything_runs(
        given: str, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    """One type per row of the option table (rotation.cli.option_table.number): the operator's command and plain
    pytest (the same type object, registered by rotation_pytest/options.py) refuse the same value with the same
    words, before any step. The suite's side in a subprocess once (the first row), the command's in-process."""
    from rotation.cli import main
    from rotation.cli.option_table import OPTIONS, taken_by

    flag = given.split("=", 1)[0]
    assert any(o.flag == flag for o in OPTIONS) and any(o.flag == flag for o in taken_by("emergency"))
    with pytest.raises(SystemExit) as refused:
        main(["emergency", given, "--dry-run"])
    assert refused.value.code == 2 and said in capsys.readouterr().err
    if given != BAD_NUMBERS[0][0]:
        return
    suite = subprocess.run([sys.executable, "-m", "pytest", "-p", "rotation_pytest.options", given, "--co", "-q"],
                           cwd="/", capture_output=True, text=True, timeout=120, check=False,
                           env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})
    assert suite.returncode == 4 and said in suite.stderr, suite.stderr


def test_operator_options_are_the_suites_rows_with_one_help_text() -> None:
    """Each option an operator command takes is a row of rotation.cli.option_table, with the row's help, and is
    handed to the suite's option of the same name; the suite registers every row (rotation_pytest/options.py)."""
    import argparse

    from rotation.cli import build_parser
    from rotation.cli.features import forwarded, resume_command
    from rotation.cli.option_table import OPTIONS, taken_by

    rows = {o.flag: o for o in OPTIONS}
    commands = {name: sub for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
                for name, sub in action.choices.items()}
    for command in ("db-key", "provider", "emergency", "retire"):
        helps = {s: a.help for a in commands[command]._actions for s in a.option_strings}
        taken = [o.flag for o in taken_by(command)]
        assert taken and all(helps[flag] == rows[flag].help for flag in taken), command
    args = commands["db-key"].parse_args(["rotate", "--max-rate=5", "--stop-the-world", "--dsn=postgresql://u@h/d"])
    assert forwarded(args) == ["--dsn=postgresql://u@h/d", "--stop-the-world", "--max-rate=5"]
    args = build_parser().parse_args(["emergency", "--revoke-wait=5", "--workers", "3", "--confirm-live"])
    assert resume_command(args) == "rotation emergency --revoke-wait=5 --workers=3 --confirm-live", \
        "the command to run next is not the operator's own words"
    args = build_parser().parse_args(["provider", "rotate", "smtp", "--health-timeout=90", "--confirm-live"])
    assert resume_command(args) == "rotation provider resume smtp --confirm-live --health-timeout=90", \
        "the command to run next lost the provider or an option"
    args = commands["emergency"].parse_args(["--preventive-measure=a", "--preventive-measure=b", "--confirm-live"])
    assert forwarded(args) == ["--confirm-live", "--preventive-measure=a", "--preventive-measure=b"]


def test_the_suite_registers_every_row_with_its_help() -> None:
    from rotation.cli.option_table import OPTIONS

    shown = subprocess.run([sys.executable, "-m", "pytest", "-p", "rotation_pytest.options", "--help"], cwd="/",
                           capture_output=True, text=True, timeout=120, check=False,
                           env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin", "COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    flat = " ".join(shown.stdout.split())
    missing = [o.flag for o in OPTIONS if " ".join(o.help.split()) not in flat]
    assert not missing, f"rows pytest does not show with their help: {missing}"
