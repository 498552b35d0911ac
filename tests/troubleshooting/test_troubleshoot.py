"""rotation.troubleshooting.diagnose against real files: .env parse errors by line, the newest backup restored,
token typos, a stale app configuration. (Values per key after a DB key rotation: test_decryption.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rotation.core import envfile
from rotation.troubleshooting import diagnose as troubleshoot


def test_env_syntax_errors_by_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\nDB_ENCRYPTION_KEY="unterminated\nB=2\nthis line is not a setting\n')
    assert troubleshoot.env_syntax_errors(env) == [2, 4]
    env.write_text("# comment\nA=1\nexport B='two words'\n\n")
    assert troubleshoot.env_syntax_errors(env) == []


def test_restore_newest_backup(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("K=old\n")
    first = envfile.backup(env)
    env.write_text("K=middle\n")
    second = envfile.backup(env)
    os.utime(second, (time.time() + 5, time.time() + 5))
    env.write_text('K="broken\n')
    assert troubleshoot.restore_newest_backup(env) == second
    assert envfile.read_env(env) == {"K": "middle"} and envfile.file_mode(env) == 0o600
    assert first != second


def test_restore_without_backup_fails(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("K=1\n")
    with pytest.raises(envfile.EnvFileError, match="no backup"):
        troubleshoot.restore_newest_backup(env)


def test_app_config_is_stale(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    mtime = env.stat().st_mtime
    assert troubleshoot.app_config_is_stale(mtime - 10, env)
    assert not troubleshoot.app_config_is_stale(mtime + 1, env)
    assert troubleshoot.app_config_is_stale(None, env)


def test_token_typos_name_the_problem_not_the_token() -> None:
    good = "0123456789abcdef" * 2
    assert troubleshoot.token_typos("TWILIO_AUTH_TOKEN", good) == []
    for bad, why in ((good + " ", "whitespace"), (f'"{good}"', "quotes"), (good[:-1], "32 hexadecimal digits"),
                     (good.upper(), "32 hexadecimal digits"), (good[:16] + "\t" + good[17:], "non-printable")):
        problems = troubleshoot.token_typos("TWILIO_AUTH_TOKEN", bad)
        assert any(why in p for p in problems), (why, problems)
        assert all(bad.strip() not in p for p in problems)
