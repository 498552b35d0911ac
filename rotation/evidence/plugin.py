"""pytest plugin: the `evidence` fixture, the recorder fed by pytest-bdd's hooks, and the report written at the end.

Load it from the root conftest (`pytest_plugins = ["rotation.evidence.plugin", ...]`). One Recorder per session,
kept in `config.stash`; nothing lives in module globals."""

from __future__ import annotations

import pytest

from rotation.evidence.recorder import Recorder, ScenarioRecord

RECORDER = pytest.StashKey[Recorder]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("evidence", "SOC 2 evidence")
    group.addoption("--approver", default=None, help="who approved the change (required with --target live)")
    group.addoption("--change-id", default=None, help="the change ticket id (required with --target live)")
    group.addoption("--signing-key", default=None,
                    help="Ed25519 private key (PEM) that signs the evidence manifest (or env ROTATION_SIGNING_KEY); "
                         "without one a per-run key is generated and its public key written beside the report")
    group.addoption("--reports-dir", default=None,
                    help="where run folders are written (default: reports/ under rootdir)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RECORDER] = Recorder()


def recorder_of(config: pytest.Config) -> Recorder:
    return config.stash[RECORDER]


@pytest.fixture
def evidence(pytestconfig: pytest.Config) -> Recorder:
    """The run's recorder: `evidence.record(name, value, source=...)`, `evidence.population(label, verified, total)`,
    `evidence.register_secret(secret)`. Items attach to the step that is running."""
    return recorder_of(pytestconfig)


@pytest.hookimpl(tryfirst=True)
def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: object, scenario: object) -> None:
    recorder = recorder_of(request.config)
    record = ScenarioRecord(nodeid=request.node.nodeid, name=scenario.name, feature=feature.name,  # type: ignore[attr-defined]
                            feature_file=feature.rel_filename, line=scenario.line_number,  # type: ignore[attr-defined]
                            tags=sorted(m.name for m in request.node.iter_markers()))
    recorder.begin_scenario(record)


@pytest.hookimpl(trylast=True)
def pytest_bdd_after_scenario(request: pytest.FixtureRequest, feature: object, scenario: object) -> None:
    recorder_of(request.config).end_scenario()


def pytest_bdd_before_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                           step_func: object) -> None:
    recorder_of(request.config).begin_step(step.keyword, step.name, step.line_number,  # type: ignore[attr-defined]
                                           background=step.background is not None)  # type: ignore[attr-defined]


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object]) -> None:
    recorder_of(request.config).end_step("passed")


def pytest_bdd_step_error(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object], exception: BaseException) -> None:
    recorder_of(request.config).end_step("failed", f"{type(exception).__name__}: {exception}")
