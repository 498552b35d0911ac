"""No key in pytest's output or the evidence, not even part of one: pytest's truncated repr of a failed assertion shows
40 of a 43-character key. The leak scan finds any fragment of 12 or more characters, in every encoding it knows; the
terminal output is filtered before it is shown; run folders are private (0700 / 0600).

The project run here is a one-scenario pytest-bdd project with the suite's evidence plugin: its step registers a key
and then fails an assertion whose operand holds 41 characters of it (exactly what the rule "no secret is ever an
operand of an assertion" forbids). Without the plugin the fragment reaches the terminal (the control); with it,
neither the terminal, the JUnit file nor the run folder holds it, and the run fails saying so. A static check keeps
secrets out of assertions in this project's DB-key code and tests."""

from __future__ import annotations

import ast
import base64
import io
import os
from pathlib import Path

import pytest

from rotation.core.keys import generate_key
from rotation.evidence.leaks import MIN_FRAGMENT, redact_text, scan_bytes
from rotation_pytest.terminal import RedactingStream
from tests.harness import PROJECT
from tests.leakcheck import assert_no_fragment

KEY = generate_key().reveal()  # 43 characters, like DB_ENCRYPTION_KEY

CONFTEST = 'pytest_plugins = ["rotation_pytest.options", "rotation_pytest.evidence"]\n'
CONTROL_CONFTEST = """
import pytest
from rotation.core.proof import NoEvidence


@pytest.fixture
def evidence():
    return NoEvidence()
"""
STEPS = '''
import os
from pytest_bdd import given, scenarios, then

scenarios(".")


@given("a key")
def a_key(evidence):
    evidence.register_secret(os.environ["TEST_KEY"])


@then("a careless assertion fails")
def careless():
    assert os.environ["TEST_KEY"][:41] == "the key I expected"
'''
FEATURE = """@rotation @PCI-3.6.1
Feature: Careless
  Scenario: A careless assertion
    Given a key
    Then a careless assertion fails
"""


def test_a_fragment_is_found_in_every_encoding_and_redacted() -> None:
    truncated = f"E   AssertionError: assert '{KEY[:40]}...' == 'x'".encode()
    assert [(leak.form, leak.fragment) for leak in scan_bytes(truncated, [KEY], label="f")] == [("raw", True)]
    for blob, form in ((base64.b64encode(b"xy" + KEY[3:40].encode() + b"z"), "base64"),
                       (KEY[5:30].encode().hex().encode(), "hex"), (KEY.encode(), "raw")):
        assert [leak.form for leak in scan_bytes(b"..." + blob + b"...", [KEY], label="f")] == [form]
    assert scan_bytes(KEY[:MIN_FRAGMENT - 1].encode(), [KEY], label="f") == []  # too short to tell from chance
    assert scan_bytes(redact_text(truncated.decode(), [KEY]).encode(), [KEY], label="f") == []


def test_the_terminal_filter_redacts_fragments_even_split_over_writes() -> None:
    out = io.StringIO()
    stream = RedactingStream(out, lambda: (KEY,))
    stream.write("E   AssertionError: assert '" + KEY[:20])
    stream.write(KEY[20:40] + "...' == 'x'\nnext line\n")
    stream.write("a partial line with " + KEY[10:30])
    stream.flush()
    assert scan_bytes(out.getvalue().encode(), [KEY], label="terminal") == []
    assert "next line" in out.getvalue()
    assert len(stream.leaks) == 2


def _careless_run(pytester: pytest.Pytester, *plugin: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST if plugin else CONTROL_CONFTEST)
    pytester.makepyfile(test_careless=STEPS)
    (pytester.path / "features").mkdir(exist_ok=True)
    (pytester.path / "features" / "careless.feature").write_text(FEATURE)
    pytester.makeini("[pytest]\nbdd_features_base_dir = features/\n")
    os.environ["TEST_KEY"] = KEY
    try:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *plugin)
    finally:
        del os.environ["TEST_KEY"]


def test_a_failing_run_shows_no_fragment_anywhere(pytester: pytest.Pytester) -> None:
    control = _careless_run(pytester)
    assert scan_bytes(str(control.stdout).encode(), [KEY], label="control"), \
        "without the plugin the truncated repr reaches the terminal: the check below could not fail otherwise"

    reports, junit = pytester.path / "reports", pytester.path / "junit.xml"
    result = _careless_run(pytester, f"--reports-dir={reports}", f"--junitxml={junit}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = str(result.stdout) + str(result.stderr)
    assert "SECRET LEAK: the terminal output contains a registered secret (raw form, a fragment" in output
    [folder] = [p for p in reports.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in folder.iterdir() if p.is_file())
    places = {"terminal output": output.encode(), "junit": junit.read_bytes()}
    places |= {str(p): p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert_no_fragment(places, [KEY])


# --- no secret is an operand of an assertion --------------------------------------------------------------------------
CHECKED = [*PROJECT.glob("rotation/db_key/*.py"), *PROJECT.glob("rotation/core/*.py"), *PROJECT.glob("staging/*.py"),
           *PROJECT.glob("tests/rotation/*.py"), *PROJECT.glob("tests/staging/*.py"),
           *PROJECT.glob("tests/troubleshooting/test_decryption*.py"), *PROJECT.glob("rotation_suite/steps/db_key.py")]


def revealing_asserts(path: Path) -> list[int]:
    """Lines of `assert` statements whose test or message calls .reveal() (pytest would print the secret)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)
            and any(isinstance(n, ast.Attribute) and n.attr == "reveal" for n in ast.walk(node))]


def test_no_secret_is_an_operand_of_an_assertion(tmp_path: Path) -> None:
    found = {str(p.relative_to(PROJECT)): lines for p in CHECKED if (lines := revealing_asserts(p))}
    assert not found, f"assertions with a revealed secret as operand (use tests.leakcheck): {found}"
    careless = tmp_path / "careless.py"
    careless.write_text("def t(key):\n    assert key.reveal() not in 'x'\n")
    assert revealing_asserts(careless) == [2]  # the check can fail
