"""`.env` writes round-trip exactly through python-dotenv, which the app uses to read them."""

from __future__ import annotations

import io
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


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
