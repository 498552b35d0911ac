"""rotation.troubleshooting.env_syntax against real files: .env parse errors by line (never by content), the newest
backup restored atomically at mode 0600."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rotation.core import envfile
from rotation.core.proof import CheckFailed, NoEvidence
from rotation.troubleshooting import env_syntax


def test_env_syntax_errors_by_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\nKEY="unterminated-secret-value\nB=2\nthis line is not a setting\n')
    assert env_syntax.env_syntax_errors(env) == [2, 4]
    report = env_syntax.check_syntax(env)
    assert (report.lines, report.unparsable, report.ok) == (4, (2, 4), False)
    assert "unterminated-secret-value" not in report.describe()
    env.write_text("# comment\nA=1\nexport B='two words'\n\n")
    assert env_syntax.env_syntax_errors(env) == []


def test_the_checks_name_the_lines(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\nKEY="unterminated\n')
    report = env_syntax.verify_syntax(env, NoEvidence())
    env_syntax.require_names_line(report, 2)
    with pytest.raises(CheckFailed, match=r"line\(s\) 2 of 2 do not parse; expected exactly line 1"):
        env_syntax.require_names_line(report, 1)
    with pytest.raises(CheckFailed, match=r"line\(s\) 2 of 2 do not parse"):
        env_syntax.require_parses(env, NoEvidence())
    env.write_text("A=1\n")
    env_syntax.require_parses(env, NoEvidence())


def test_restore_newest_backup(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("K=old\n")
    first = envfile.backup(env)
    env.write_text("K=middle\n")
    second = envfile.backup(env)
    os.utime(second, (time.time() + 5, time.time() + 5))
    env.write_text('K="broken\n')
    env.chmod(0o644)
    assert env_syntax.restore_newest_backup(env) == second
    assert envfile.read_env(env) == {"K": "middle"} and envfile.file_mode(env) == 0o600
    assert first != second


def test_restore_without_backup_fails(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("K=1\n")
    with pytest.raises(envfile.EnvFileError, match="no backup"):
        env_syntax.restore_newest_backup(env)
