"""`.env` writes round-trip exactly through python-dotenv, which the app uses to read them."""

from __future__ import annotations

import io
import os
import string
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotation.core import envfile
from rotation.core.secret import Secret

OTHERS = "# CRM settings\nDATABASE_URL=postgresql://app@db/crm\nexport SMTP_HOST=smtp.example.net  # relay\n\n" \
         "MULTI='first\nsecond'\nDB_ENCRYPTION_KEY=old-value\nTRAILER=\"x y\"\n"
# Every printable ASCII character, the line break included; a carriage return cannot survive python-dotenv's
# universal-newline read and ${...} is expanded by it: both are refused (tested below), so they are left out here.
PRINTABLE = st.text(alphabet=string.printable.replace("\r", ""), max_size=60).filter(
    lambda v: envfile._INTERPOLATED.search(v) is None)


def env_file(tmp_path: Path, text: str = OTHERS) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    path.chmod(0o600)
    return path


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=PRINTABLE)
def test_any_printable_value_reads_back_identically(tmp_path: Path, value: str) -> None:
    path = env_file(tmp_path)
    envfile.set_value(path, "DB_ENCRYPTION_KEY", Secret(value))
    read = dotenv_values(path)
    assert read.pop("DB_ENCRYPTION_KEY") == value
    expected = dotenv_values(stream=io.StringIO(OTHERS))
    expected.pop("DB_ENCRYPTION_KEY")
    assert read == expected


@pytest.mark.parametrize("value", ["pass #word", "it's", 'say "hi"', "a$b", "back\\slash\\", "a=b=c", " padded ",
                                   "#leading", "'", "\\'", "\\"])
def test_the_runbooks_hard_cases_round_trip(tmp_path: Path, value: str) -> None:
    path = env_file(tmp_path)
    envfile.set_value(path, "SMTP_PASSWORD", Secret(value))
    assert dotenv_values(path)["SMTP_PASSWORD"] == value


def test_every_other_line_is_kept_byte_for_byte(tmp_path: Path) -> None:
    path = env_file(tmp_path)
    envfile.set_value(path, "DB_ENCRYPTION_KEY", Secret("new value"))
    assert path.read_text() == OTHERS.replace("DB_ENCRYPTION_KEY=old-value", "DB_ENCRYPTION_KEY='new value'")
    assert envfile.file_mode(path) == 0o600


@pytest.mark.parametrize("value", ["with\rreturn", "x${HOME}y", "${PATH:-/bin}", "nul\x00"])
def test_a_value_dotenv_cannot_carry_is_refused_before_anything_is_written(tmp_path: Path, value: str) -> None:
    path = env_file(tmp_path)
    with pytest.raises(envfile.EnvFileError, match="cannot be written to .env") as refused:
        envfile.set_value(path, "SMTP_PASSWORD", Secret(value))
    assert value not in str(refused.value)
    assert path.read_text() == OTHERS


# --- .env as operators keep it ----------------------------------------------------------------------------------------
def test_a_symlinked_env_is_written_through_to_its_target_and_stays_a_link(tmp_path: Path) -> None:
    managed = tmp_path / "managed"
    managed.mkdir()
    target = env_file(managed)
    link = tmp_path / ".env"
    link.symlink_to(target)
    done = envfile.set_value(link, "DB_ENCRYPTION_KEY", Secret("new value"))
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert dotenv_values(target)["DB_ENCRYPTION_KEY"] == "new value"
    assert done.symlink and done.written == target.resolve()
    assert sorted(p.name for p in managed.iterdir()) == [".env"]  # no temp file left beside the target
    (tmp_path / "backup").mkdir()
    restored = envfile.restore(env_file(tmp_path / "backup"), link)
    assert link.is_symlink() and restored.symlink and dotenv_values(target)["DB_ENCRYPTION_KEY"] == "old-value"


def test_crlf_endings_are_kept(tmp_path: Path) -> None:
    crlf = OTHERS.replace("\n", "\r\n")
    path = env_file(tmp_path)
    path.write_bytes(crlf.encode())
    envfile.set_value(path, "DB_ENCRYPTION_KEY", Secret("new value"))
    assert path.read_bytes() == crlf.replace("DB_ENCRYPTION_KEY=old-value", "DB_ENCRYPTION_KEY='new value'").encode()
    assert dotenv_values(path)["DB_ENCRYPTION_KEY"] == "new value"


def test_export_prefix_and_inline_comment_are_kept(tmp_path: Path) -> None:
    path = env_file(tmp_path)
    envfile.set_value(path, "SMTP_HOST", Secret("mail.example.org"))
    assert "export SMTP_HOST='mail.example.org'  # relay\n" in path.read_text()
    assert dotenv_values(path)["SMTP_HOST"] == "mail.example.org"


def test_a_comment_sign_inside_quotes_is_part_of_the_value_not_a_comment(tmp_path: Path) -> None:
    path = env_file(tmp_path, "A='x #y' # note\nB=1\n")
    envfile.set_value(path, "A", Secret("z"))
    assert path.read_text() == "A='z' # note\nB=1\n"


def test_every_duplicate_binding_gets_the_new_value(tmp_path: Path) -> None:
    path = env_file(tmp_path, "DB_ENCRYPTION_KEY=first\nOTHER=1\nexport DB_ENCRYPTION_KEY=second # last wins\n")
    envfile.set_value(path, "DB_ENCRYPTION_KEY", Secret("new"))
    assert path.read_text() == "DB_ENCRYPTION_KEY='new'\nOTHER=1\nexport DB_ENCRYPTION_KEY='new' # last wins\n"
    assert "first" not in path.read_text() and "second" not in path.read_text()


def test_a_non_utf8_env_is_refused_clearly_and_left_untouched(tmp_path: Path) -> None:
    path = env_file(tmp_path)
    data = b"A=1\nNAME=caf\xe9\nDB_ENCRYPTION_KEY=old-value\n"
    path.write_bytes(data)
    for action in (lambda: envfile.read_env(path), lambda: envfile.set_value(path, "DB_ENCRYPTION_KEY", "new")):
        with pytest.raises(envfile.EnvFileError, match="is not UTF-8 .*line 2, byte 12 of the file") as refused:
            action()
        assert "caf" not in str(refused.value)
    assert path.read_bytes() == data


def test_an_unreadable_env_is_refused_clearly(tmp_path: Path) -> None:
    path = env_file(tmp_path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user every file is readable to (root)")
        with pytest.raises(envfile.EnvFileError, match="cannot be read .*give this user read access"):
            envfile.read_env(path)
    finally:
        path.chmod(0o600)


def test_a_env_in_a_directory_it_cannot_be_replaced_in_is_refused_clearly(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    path = env_file(locked)
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user every directory is writable to (root)")
        with pytest.raises(envfile.EnvFileError, match="cannot be written .*must be writable"):
            envfile.set_value(path, "DB_ENCRYPTION_KEY", Secret("new"))
        assert path.read_text() == OTHERS
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(("found", "warned"), [(0o600, False), (0o400, False), (0o640, True), (0o644, True)])
def test_a_env_more_open_than_0600_is_reported_with_the_mode_found_and_set(tmp_path: Path, found: int,
                                                                          warned: bool) -> None:
    path = env_file(tmp_path)
    path.chmod(found)
    done = envfile.set_value(path, "DB_ENCRYPTION_KEY", Secret("new"))
    assert (done.mode_found, done.mode_set) == (found, 0o600)
    assert done.as_evidence()["mode found"] == oct(found) and done.as_evidence()["mode set"] == "0o600"
    assert (done.warning() is not None) == warned
    if warned:
        assert oct(found) in str(done.warning())


def test_a_dangling_link_or_a_directory_is_refused_clearly(tmp_path: Path) -> None:
    dangling = tmp_path / ".env"
    dangling.symlink_to(tmp_path / "gone")
    with pytest.raises(envfile.EnvFileError, match="does not exist: pass --env-file"):
        envfile.read_env(dangling)
    folder = tmp_path / "folder.env"
    folder.mkdir()
    with pytest.raises(envfile.EnvFileError, match="is not a regular file"):
        envfile.read_env(folder)
