"""pytest plugin: the `evidence` fixture, the recorder fed by pytest-bdd's hooks, the control-tag rule at
collection, and the run folder written at the end of a session that ran at least one scenario.

Load it from the root conftest (`pytest_plugins = ["rotation_pytest.evidence", ...]`). One Recorder per session,
kept with the rest of the run's state in `config.stash`; nothing lives in module globals. It brings two helpers of its
own: evidence_selection (the scenarios planned, left out and never run) and evidence_xdist (under pytest-xdist the
workers ship their records and the controller writes one run folder)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rotation.core import preflight
from rotation.core.clock import utc_now
from rotation.core.duties import People, is_account, os_user
from rotation.core.errors import RotationError
from rotation.core.proof import NotApplicable
from rotation.evidence.controls import Catalog, load_catalog
from rotation.evidence.journal import (
    Journal,
    JournalingRecorder,
    journal_path,
    record_seal_failure,
    seal_dead_journals,
)
from rotation.evidence.metadata import RunMetadata, feature_digests, git_state, package_versions
from rotation.evidence.recorder import (
    CLOSING_PREFIX,
    Recorder,
    ScenarioRecord,
    StepRecord,
    strip_url_passwords,
)
from rotation.evidence.report import CUCUMBER, JUNIT, RunOutput, reports_folder, write_run
from rotation.evidence.signing import SigningKeyError, load_private_key
from rotation_pytest import terminal
from rotation_pytest.bdd import scenario_template, unregister_cucumber_writer, unregister_junit_writer
from rotation_pytest.fixtures import STAGING_SERVER, config_of, operator_of, target_of

# pytest's own marks are not Gherkin tags; everything else on a scenario item came from a tag.
pytest_plugins = ["rotation_pytest.evidence_selection", "rotation_pytest.evidence_xdist"]

BUILTIN_MARKS = frozenset({"parametrize", "usefixtures", "filterwarnings", "skip", "skipif", "xfail"})
MAX_REASON_CHARS = 4000


@dataclass
class RunState:
    recorder: JournalingRecorder
    catalog: Catalog
    meta: RunMetadata
    scratch: Path  # where pytest's junit/cucumber files go when the operator did not ask for them
    signing_key_path: Path | None
    own_outputs: tuple[str, ...] = ()  # which of junit/cucumber this plugin pointed at scratch
    output: RunOutput | None = None
    error: str | None = None
    deselected: int = 0
    sealed: tuple[RunOutput, ...] = ()  # run folders written from the journals of sessions that died
    sealing_error: str | None = None
    collected: list[pytest.Item] = field(default_factory=list)  # every scenario item, before any deselection
    planned: list[ScenarioRecord] = field(default_factory=list)  # the selected scenarios, in order
    left_out: list[ScenarioRecord] = field(default_factory=list)  # deselected although the selection keeps them


STATE = pytest.StashKey[RunState]()


def people_of(config: pytest.Config) -> People:
    """Who requested, approved and performs this run, and the OS account it runs under."""
    return People(requester=config.getoption("requester"), approver=config.getoption("approver"),
                  operator=operator_of(config), operator_declared=bool(config.getoption("operator")),
                  os_user=os_user(), change_id=config.getoption("change_id"))


def live_refusals(target: str, *, approver: str | None, change_id: str | None, operator: str,
                  signing_key: str | None) -> list[str]:
    """Why a live run's evidence could not be relied on, as sentences; empty when it can (or on staging)."""
    if target != "live":
        return []
    missing = [name for name, value in (("--approver", approver), ("--change-id", change_id)) if not value]
    problems = []
    if missing:
        problems.append(f"--target live needs {' and '.join(missing)}: a live rotation is a change and its evidence "
                        "must name who approved it under which change id (SOC 2 CC8.1)")
    if is_account(operator):
        problems.append(f"--target live needs --operator naming the person who performs the change (or "
                        f"ROTATION_OPERATOR): '{operator}' is an account, not a person")
    if not signing_key:
        problems.append("--target live needs --signing-key (or ROTATION_SIGNING_KEY): a per-run key proves the folder "
                        "is unchanged since signing, not who signed it, so an auditor cannot pin it")
    return problems


@pytest.hookimpl(tryfirst=True)  # before junitxml and pytest-bdd read their output paths
def pytest_configure(config: pytest.Config) -> None:
    target = target_of(config)
    approver, change_id = config.getoption("approver"), config.getoption("change_id")
    key_option = config.getoption("signing_key")
    people, rules = people_of(config), config_of(config)
    refusals = live_refusals(target, approver=approver, change_id=change_id, operator=operator_of(config),
                             signing_key=key_option)
    if target == "live":
        refusals += people.refusals(rules.duties, rules.source)  # before anything: pytest_configure runs first
    if refusals:
        raise pytest.UsageError("\n".join(refusals))
    _require_writable_reports(config)
    scratch = Path(tempfile.mkdtemp(prefix="rotation-evidence-"))
    commit, dirty = git_state()  # the library's checkout, if it runs from one (not the rootdir: a project's)
    meta = RunMetadata(run_id=str(uuid.uuid4()), target=target, operator=operator_of(config), approver=approver,
                       change_id=change_id, started=utc_now(), git_commit=commit, git_dirty=dirty,
                       packages=package_versions(),
                       invocation=[strip_url_passwords(a) for a in config.invocation_params.args],
                       mark_expression=config.option.markexpr or "",
                       keyword_expression=config.option.keyword or "",
                       signing_key=f"configured: {Path(key_option).name}" if key_option else "",
                       requester=people.requester, os_user=people.os_user, operator_declared=people.operator_declared,
                       duty_notes=people.notes(rules.duties, rules.source, live=target == "live"))
    journal = Journal(journal_path(reports_dir(config), meta.run_id), meta)  # every event on disk as it happens
    config.stash[STATE] = RunState(recorder=JournalingRecorder(journal), catalog=load_catalog(), meta=meta,
                                   scratch=scratch,
                                   signing_key_path=Path(key_option) if key_option else None)
    state = config.stash[STATE]
    terminal.register_run_secrets(config, state.recorder.register_secret, credential_settings(config))
    if not hasattr(config, "workerinput"):
        own: list[str] = []
        if not getattr(config.option, "xmlpath", None):
            config.option.xmlpath, own = str(scratch / JUNIT), [*own, JUNIT]
        if not getattr(config.option, "cucumber_json_path", None):
            config.option.cucumber_json_path, own = str(scratch / CUCUMBER), [*own, CUCUMBER]
        state.own_outputs = tuple(own)


def credential_settings(config: pytest.Config) -> list[str]:
    """The .env settings the configuration rotates (a broken configuration is reported by the fixtures)."""
    try:
        return [c.env for c in config_of(config).credentials]
    except pytest.UsageError:
        return []


def _require_writable_reports(config: pytest.Config) -> None:
    """Every event is journaled under the reports folder from the first one on: a folder that cannot be written is
    refused here, before anything runs, with what to fix (not an INTERNALERROR at the first event). Its room is
    checked by each procedure's preflight, which can still write the folder that says so."""
    if hasattr(config, "workerinput"):
        return
    found = preflight.reports_writable(reports_dir(config))
    if not found.ok:
        raise pytest.UsageError(f"refused before anything ran (nothing was changed): {found.line()}")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Seal the journal of every session that died before writing its run folder (a kill -9 leaves only that)."""
    state = session.config.stash.get(STATE, None)
    if state is None or hasattr(session.config, "workerinput"):
        return
    terminal.guard(session, lambda: state.recorder.secrets)  # the terminal output is scanned too
    try:
        key = load_private_key(state.signing_key_path) if state.signing_key_path else None
        state.sealed = tuple(seal_dead_journals(reports_dir(session.config), state.catalog,
                                                sealed_by=state.meta.run_id, signing_key=key))
    except (OSError, SigningKeyError, ValueError) as exc:  # never stops this session; the journals stay for the next
        state.sealing_error = f"{type(exc).__name__}: {exc}"


def pytest_unconfigure(config: pytest.Config) -> None:
    terminal.report(config)
    state = config.stash.get(STATE, None)
    if state is not None:
        shutil.rmtree(state.scratch, ignore_errors=True)


def state_of(config: pytest.Config) -> RunState:
    return config.stash[STATE]


@pytest.fixture
def evidence(pytestconfig: pytest.Config) -> Recorder:
    """The run's recorder: `evidence.record(name, value, source=...)`, `evidence.population(label, verified, total)`,
    `evidence.register_secret(secret)`. Items attach to the step that is running."""
    return state_of(pytestconfig).recorder


# --- collection: every scenario names at least one known control ----------------------------------------------------
def item_tags(item: pytest.Item) -> list[str]:
    return sorted({m.name for m in item.iter_markers()} - BUILTIN_MARKS)


@pytest.hookimpl(tryfirst=True)  # before -m/-k deselect: a badly tagged scenario is an error even when not selected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    catalog = state_of(config).catalog
    problems: dict[str, list[str]] = {}
    for item in items:
        template = scenario_template(item)
        if template is None:
            continue
        where = f"{template.feature.rel_filename}:{template.line_number}"
        for problem in catalog.problems(item_tags(item)):
            problems.setdefault(f"Scenario '{template.name}' ({where})", []).append(problem)
    if problems:
        lines = [f"{name}: {', '.join(sorted(set(found)))}" for name, found in problems.items()]
        raise pytest.UsageError(
            "every scenario needs at least one control tag from rotation/evidence/controls.yaml ("
            + ", ".join(f"@{c}" for c in catalog.controls) + "):\n  " + "\n  ".join(lines))


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        state_of(items[0].config).deselected += len(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(scenario_template(item) is not None for item in session.items):
        terminal.quiet_tracebacks(session.config)  # no frame's arguments (a DSN, the .env) in any report
    state = state_of(session.config)
    state.meta.selected, state.meta.deselected = len(session.items), state.deselected
    state.meta.feature_digests = selected_feature_digests(session.items)


def selected_feature_digests(items: list[pytest.Item]) -> dict[str, str]:
    """The SHA-256 of each feature file a selected scenario comes from, read as pytest-bdd parsed it: with the
    package version it identifies the procedures that ran where there is no git commit (an installed package)."""
    files: dict[str, Path] = {}
    for item in items:
        template = scenario_template(item)
        if template is not None:
            feature = template.feature
            files[feature.rel_filename] = Path(feature.filename)
    return feature_digests(files)


# --- the recorder, driven by pytest and pytest-bdd ------------------------------------------------------------------
def plain_nodeid(item: pytest.Item) -> str:
    """The item's node id as a serial run has it: xdist's loadgroup mode appends `@<group>` on its workers."""
    groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                     for m in item.iter_markers("xdist_group")})
    suffix = "@" + "_".join(groups)
    return item.nodeid.removesuffix(suffix) if groups else item.nodeid


def scenario_record(item: pytest.Item, template: object) -> ScenarioRecord:
    example = getattr(getattr(item, "callspec", None), "params", {}).get("_pytest_bdd_example", {})
    scenario = template.render(example)  # type: ignore[attr-defined]
    feature = scenario.feature
    record = ScenarioRecord(nodeid=plain_nodeid(item), name=scenario.name, feature=feature.name,
                            feature_file=feature.rel_filename, line=scenario.line_number, tags=item_tags(item),
                            description=scenario.description or "", feature_description=feature.description or "",
                            keyword=scenario.keyword or "Scenario")
    background = {s.line_number for s in template.all_background_steps}  # type: ignore[attr-defined]
    record.example = {str(k): str(v) for k, v in example.items()}
    record.steps = [StepRecord(keyword=s.keyword.strip(), text=s.name, line=s.line_number,
                               background=s.line_number in background, argument=step_argument(s))
                    for s in scenario.steps]
    return record


def step_argument(step: object) -> str | None:
    """A step's data table or doc string as Gherkin text, so the report shows exactly what ran."""
    table = getattr(step, "datatable", None)
    if table is not None:
        rows = table.raw()
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))] if rows else []
        return "\n".join("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + " |"
                         for row in rows)
    docstring = getattr(step, "docstring", None)
    return f'"""\n{docstring}\n"""' if docstring is not None else None


@pytest.hookimpl(tryfirst=True)  # before fixtures set up, so what they record lands in this scenario
def pytest_runtest_setup(item: pytest.Item) -> None:
    template = scenario_template(item)
    if template is not None:
        state_of(item.config).recorder.begin_scenario(scenario_record(item, template))


def pytest_bdd_before_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                           step_func: object) -> None:
    state_of(request.config).recorder.begin_step(step.keyword.strip(), step.name, step.line_number,  # type: ignore[attr-defined]
                                                 background=step.background is not None)  # type: ignore[attr-defined]


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object]) -> None:
    state_of(request.config).recorder.end_step("passed")


def pytest_bdd_step_error(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object], exception: BaseException) -> None:
    if isinstance(exception, NotApplicable):
        state_of(request.config).recorder.end_step("skipped", f"not applicable: {exception}")
    else:
        state_of(request.config).recorder.end_step("failed", _exception_text(exception))


def pytest_bdd_step_func_lookup_error(request: pytest.FixtureRequest, feature: object, scenario: object,
                                      step: object, exception: BaseException) -> None:
    recorder = state_of(request.config).recorder
    recorder.begin_step(step.keyword.strip(), step.name, step.line_number,  # type: ignore[attr-defined]
                        background=step.background is not None)  # type: ignore[attr-defined]
    recorder.end_step("undefined", f"no step definition matches this step: {exception}")


def _exception_text(exception: BaseException) -> str:
    text = f"{type(exception).__name__}: {exception}"
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + " …"


def _reason(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + " …"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                               call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call" and call.excinfo is not None and call.excinfo.errisinstance(NotApplicable):
        # A check that does not apply here: skipped with its reason, so the verdict counts it as not run.
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"not applicable: {call.excinfo.value}")
    elif report.failed and call.excinfo is not None and call.excinfo.errisinstance(RotationError) \
            and scenario_template(item) is not None:
        # The library's errors say what did not hold and the fix (a refusal, a check): the operator reads that
        # message, not a traceback through the library. Any other exception is a defect and keeps its traceback.
        report.longrepr = call.excinfo.getrepr(style="value")
    state = state_of(item.config)
    scenario = state.recorder.current_scenario
    if scenario is None or scenario.nodeid != plain_nodeid(item):
        return report
    _apply_report(state.recorder, scenario, report)
    if report.when == "teardown":
        state.recorder.end_scenario()
    return report


def _apply_report(recorder: Recorder, scenario: ScenarioRecord, report: pytest.TestReport) -> None:
    if report.failed:
        status = "failed" if report.when == "call" else "error"
        if scenario.status not in ("failed", "error"):
            scenario.status = status
            reason = _reason(report)
            scenario.reason = recorder.redact_text(reason if report.when == "call" else f"{report.when}: {reason}")
    elif report.skipped and scenario.status in ("not run", "running"):
        scenario.status, scenario.reason = "skipped", recorder.redact_text(_reason(report))
    elif report.when == "call" and report.passed and scenario.status in ("not run", "running"):
        scenario.status = "passed"


# --- the end of the session: write the run folder --------------------------------------------------------------------
def reports_dir(config: pytest.Config) -> Path:
    """--reports-dir, else reports/ in the current directory (not the rootdir: `rotation` pins it to the installed
    suite's folder)."""
    return reports_folder(config.getoption("reports_dir"))


@pytest.hookimpl(trylast=True)  # after junitxml and cucumberjson have written their files
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None:
        return
    _close_interrupted(state.recorder, exitstatus)
    state.meta.staging_server = config.stash.get(STAGING_SERVER, state.meta.staging_server)
    if hasattr(config, "workerinput"):
        from rotation_pytest.evidence_xdist import ship  # here: that module imports this one

        ship(config, state)
        return
    _quiet_scratch_writers(config, state)
    if not state.recorder.scenarios:
        return  # no scenario started (unit tests, a dry run, a refusal): nothing to evidence
    state.recorder.scenarios[:] = add_unrun(state.recorder.scenarios, state.planned, state.left_out, exitstatus)
    order = {s.nodeid: n for n, s in enumerate(state.recorder.scenarios)}  # xdist: workers' figures in run order
    state.recorder.populations.sort(key=lambda p: order.get(p.scenario or "", -1))
    state.meta.finished = utc_now()
    try:
        key = _configured_key(state)
        state.output = write_run(reports_dir(config), state.meta, state.recorder, state.catalog, signing_key=key,
                                 copies={JUNIT: _path(config.option.xmlpath),
                                         CUCUMBER: _path(getattr(config.option, "cucumber_json_path", None))},
                                 extra_scan=_extra_scan(config), pdf=config.getoption("evidence_pdf"))
    except (OSError, SigningKeyError, ValueError) as exc:
        state.error = state.recorder.redact_text(f"{type(exc).__name__}: {exc}")
        try:
            record_seal_failure(state.recorder.journal, state.error)
        except OSError:
            pass  # the journal up to here is still on disk; the sealed folder will not know the error's wording
    state.recorder.journal.close(remove=state.error is None)  # kept when the folder failed: sealed later
    if state.error or (state.output and (state.output.leaks or state.output.verdict == "FAILED")):
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _configured_key(state: RunState) -> Ed25519PrivateKey | None:
    """The configured signing key. One that cannot sign (RSA, encrypted, unreadable) gives None: a per-run key signs
    the folder and its metadata says why, so that a run refused for that very reason (the preflight tries the key
    before any change) still leaves the folder that says so. A pinned verification of that folder fails, as it must."""
    if state.signing_key_path is None:
        return None
    try:
        return load_private_key(state.signing_key_path)
    except SigningKeyError as exc:
        state.meta.signing_key = f"per-run (the configured key cannot sign: {exc})"
        return None


def add_unrun(recorder_scenarios: list[ScenarioRecord], planned: list[ScenarioRecord],
              left_out: list[ScenarioRecord], exitstatus: int) -> list[ScenarioRecord]:
    """The scenarios in the order they were planned, each planned one that never started as "not run", then every
    left-out one."""
    started = {s.nodeid: s for s in recorder_scenarios}
    order = {s.nodeid: n for n, s in enumerate(planned)}
    out = list(recorder_scenarios)
    for record in planned:
        if record.nodeid not in started:
            record.reason = f"the session ended (exit status {int(exitstatus)}) before this scenario ran"
            out.append(record)
    out.sort(key=lambda s: order.get(s.nodeid, len(order)))
    return out + [s for s in left_out if s.nodeid not in started]


def closing_summary(config: pytest.Config, title: str, lines: list[str], *, source: str) -> None:
    """What a plugin prints at the end of the run goes through here: into the signed evidence (and the report) first,
    and the terminal shows it from there, so the two cannot differ. Call it from pytest_sessionfinish."""
    state = config.stash.get(STATE, None)
    if state is not None:
        state.recorder.closing(title, lines, source=source)


def run_item(config: pytest.Config, name: str, value: object, *, source: str) -> None:
    """A structured item of the whole run (outside any scenario), e.g. the incident record the print renders. Call it
    from pytest_sessionfinish, before the run folder is written."""
    state = config.stash.get(STATE, None)
    if state is not None and state.recorder.current_scenario is None:
        state.recorder.record(name, value, source=source)


def _quiet_scratch_writers(config: pytest.Config, state: RunState) -> None:
    """JUnit and cucumber files this plugin asked for are written by now and copied into the run folder later;
    unregister their writers so the terminal does not point operators at a temp file about to be deleted."""
    if JUNIT in state.own_outputs:
        unregister_junit_writer(config)
    if CUCUMBER in state.own_outputs:
        unregister_cucumber_writer(config)


def _close_interrupted(recorder: Recorder, exitstatus: int) -> None:
    """A scenario still open at session end was cut short (Ctrl-C, pytest -x, a crash): say so in the evidence
    rather than leave it looking merely 'not run'."""
    scenario = recorder.current_scenario
    if scenario is None:
        return
    running = next((s for s in scenario.steps if s.status == "running"), None)
    if running is not None:
        running.status, running.end = "interrupted", utc_now()
    where = f" during step '{running.keyword} {running.text}'" if running else ""
    scenario.status = "error"
    scenario.reason = f"the session ended (exit status {int(exitstatus)}) before this scenario finished{where}"
    recorder.end_scenario()


def _path(value: object) -> Path | None:
    return Path(str(value)) if value else None


def _extra_scan(config: pytest.Config) -> list[Path]:
    """Files outside the run folder the run wrote: the operator's own --junitxml/--cucumberjson and log file."""
    paths = [config.option.xmlpath, getattr(config.option, "cucumber_json_path", None),
             getattr(config.option, "log_file", None)]
    scratch = state_of(config).scratch
    written = [Path(p) for p in paths if p and scratch not in Path(p).parents]
    return written + list(state_of(config).recorder.artifacts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    tr = terminalreporter
    for sealed in state.sealed if state else ():
        tr.write_line(f"sealed the journal of a session that died: {sealed.folder} ({sealed.verdict})")
    if state and state.sealing_error:
        tr.write_line(f"the journal of a session that died could not be sealed: {state.sealing_error}", red=True)
    if state is None or (state.output is None and state.error is None):
        return
    for item in state.recorder.closing_items():  # exactly what the signed evidence holds
        tr.section(item.name.removeprefix(CLOSING_PREFIX))
        for line in item.value if isinstance(item.value, list) else [str(item.value)]:
            tr.write_line(str(line))
    tr.section("evidence", sep="=")
    if state.error:
        tr.write_line(f"evidence could not be written: {state.error}; its journal is kept: once fixed, seal it with "
                      f"`rotation evidence seal --reports-dir={reports_dir(config)}` (or the next run seals it)",
                      red=True)
        return
    out = state.output
    assert out is not None
    tr.write_line(f"run folder: {out.folder}")
    tr.write_line(f"verdict: {out.verdict}", green=out.verdict == "PASSED", red=out.verdict != "PASSED")
    tr.write_line("who: " + "; ".join(f"{k} {v}" for k, v in state.meta.who_did_what().items()))
    if state.meta.staging_server:
        tr.write_line(f"staging database: {state.meta.staging_server}")
    for note in state.meta.duty_notes:
        tr.write_line(f"  duties: {note}")
    for reason in out.reasons:
        tr.write_line(f"  {reason}", red=True)
    for leak in out.leaks:
        tr.write_line(f"SECRET LEAK: {leak.message()}; the run fails", red=True)
    tr.write_line(f"signed by: {out.public_key_fingerprint} ({state.meta.signing_key})")
    if state.signing_key_path is None:
        tr.write_line("  a per-run key: keep this fingerprint (CI log, change ticket) to pin it; it proves the folder "
                      "unchanged since signing, not who signed")
    tr.write_line(f"verify with: rotation verify-evidence {out.folder} --fingerprint {out.public_key_fingerprint}")
