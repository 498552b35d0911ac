"""A tiny pytest-bdd project for the evidence plugin's tests, written into a pytester directory: one feature with a
background, an outline and steps that record evidence, population figures and (when asked) plant a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

SECRET_ENV = "EVIDENCE_TEST_SECRET"  # noqa: S105  (a variable name) the secret reaches the steps by environment, never as a source literal

CONFTEST = '''
# The suite's options (--target, --operator, --approver, --reports-dir, ...) and the evidence plugin alone.
pytest_plugins = ["rotation_pytest.options", "rotation_pytest.evidence"]
'''

STEPS = '''
import base64
import logging
import os
from urllib.parse import quote

from pytest_bdd import given, parsers, scenarios, then, when

from rotation.core.proof import NotApplicable
from rotation.core.secret import fingerprint

scenarios("features")


@given("a key ring holding client values")
def ring(evidence):
    secret = os.environ["EVIDENCE_TEST_SECRET"]
    evidence.register_secret(secret)
    evidence.record("current key", {"fingerprint": fingerprint(secret)}, source="python-dotenv read DB_ENCRYPTION_KEY")


@when(parsers.parse("{count:d} values are re-encrypted"))
def reencrypt(evidence, count):
    evidence.record("re-encryption", {"rows": count}, source="UPDATE ring SET v = enc(dec(v, $old), $new)")


@then(parsers.parse("{verified:d} of {total:d} values verify under the new key"))
def verify(evidence, verified, total):
    evidence.population("values verified under the new key", verified, total,
                        source="SELECT count(*) FILTER (WHERE dec(v, $new) IS NOT NULL), count(*) FROM ring")
    assert verified == total, f"only {verified} of {total} values verify under the new key"


@then(parsers.parse("the step records the key {form}"))
def plant(evidence, form):
    raw = os.environ["EVIDENCE_TEST_SECRET"]
    encoded = {"raw": raw, "base64": base64.b64encode(b"k=" + raw.encode()).decode(), "hex": raw.encode().hex(),
               "URL-encoded": quote("k=" + raw + "&x=1", safe="")}[form]
    evidence.record("careless value", {"blob": encoded}, source="a step that should have fingerprinted it")


@then("the step writes the key to a state file it registers")
def state_file(evidence):
    with open("state.json", "w") as handle:
        handle.write('{"key": "' + os.environ["EVIDENCE_TEST_SECRET"] + '"}')
    evidence.register_artifact("state.json")


@when("the operator presses Ctrl-C")
def interrupt():
    raise KeyboardInterrupt


@then("the check does not apply here")
def not_applicable():
    raise NotApplicable("no git repository at the app's path: there is nothing to check")


@then("the step logs the key")
def log_it():
    logging.getLogger("careless").warning("key is %s", os.environ["EVIDENCE_TEST_SECRET"])
'''

FEATURE = '''@rotation @db_encryption_key
Feature: Key ring rotation
  A stand-in for the database key rotation, small enough for the plugin's tests.

  Background:
    Given a key ring holding client values

  @SOC2-CC6.1 @PCI-3.7.5
  Scenario: Every value is verified under the new key
    When 3 values are re-encrypted
    Then 3 of 3 values verify under the new key

  @GDPR-32
  Scenario Outline: Populations of several sizes
    When <n> values are re-encrypted
    Then <n> of <n> values verify under the new key

    Examples:
      | n  |
      | 1  |
      | 20 |
'''

FAILING = '''@rotation @db_encryption_key @SOC2-CC6.1 @PCI-3.7.5
Feature: Key ring rotation that goes wrong

  Scenario: One value does not verify
    Given a key ring holding client values
    When 3 values are re-encrypted
    Then 2 of 3 values verify under the new key

  Scenario: A step nobody wrote
    Given a key ring holding client values
    When the moon is full
'''


INTERRUPTED = '''@rotation @SOC2-CC6.1
Feature: Interrupted rotation

  Scenario: The operator stops the run
    Given a key ring holding client values
    When the operator presses Ctrl-C
    Then 3 of 3 values verify under the new key
'''


NOT_APPLICABLE = '''@rotation @SOC2-CC8.1 @PCI-3.7.5
Feature: Checks that may not apply

  Scenario: A check that applies
    Given a key ring holding client values
    Then 2 of 2 values verify under the new key

  Scenario: A check that does not apply here
    Given a key ring holding client values
    Then the check does not apply here
'''


def leak_feature(step: str) -> str:
    return f'''@rotation @SOC2-CC6.1
Feature: Careless steps

  Scenario: A step leaks the key
    Given a key ring holding client values
    Then {step}
'''


def tagged_feature(tags: str) -> str:
    return f'''@rotation
Feature: Tags

  {tags}
  Scenario: Checked for control tags
    Given a key ring holding client values
'''


def make_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, secret: str,
                 features: dict[str, str]) -> Path:
    monkeypatch.setenv(SECRET_ENV, secret)
    monkeypatch.delenv("ROTATION_SIGNING_KEY", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_keyring=STEPS)
    folder = pytester.path / "features"
    folder.mkdir()
    for name, text in features.items():
        (folder / name).write_text(text, encoding="utf-8")
    return pytester.path


def run_folder(root: Path) -> Path:
    latest = root / "reports" / "latest"
    assert latest.is_symlink(), f"no reports/latest under {root}: {list((root / 'reports').glob('*'))}"
    return latest.resolve()


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the throwaway project in-process. Plugins that import heavily at session end (hypothesis, benchmark)
    are switched off: pytester unloads what a run imported, so they would be imported again on every run."""
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark", *args)
