"""The emergency procedure's plugin: its selection, its record and the fixtures its steps act through.

  - `--compromised` keeps only the emergency scenarios of the chosen credentials (staging default: all; live: none,
    and the live guard refuses an emergency run without it);
  - the incident window options are validated at start-up, before anything is touched; on live without
    `--incident-start` the scenarios tagged @incident_window are skipped with the reason;
  - one incident per session: one deployment (staging: one CRM world with the provider stand-ins and a normal access
    history; live: the configured systems), one incident record (every step's time, kept in the config's stash and
    summed up at the end of the terminal output);
  - the procedure objects the steps call: the emergency rotation of the scenario's credential (its tag), the access
    review, the stakeholder notification, the post-incident actions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from rotation.core import envfile
from rotation.core.clock import utc_now
from rotation.core.config import Config, Credential, Stakeholders
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.lock import LockRefused, RunLock, read_record
from rotation.core.preflight import RunContext
from rotation.core.proof import Evidence
from rotation.db_key.procedure import DbKeyRotation
from rotation.emergency import plan
from rotation.emergency.access_review import (
    DEFAULT_WINDOW,
    AccessReview,
    ReviewPolicy,
    ReviewTables,
    load_policy,
)
from rotation.emergency.incident import (
    IMMEDIATE_TARGET,
    LEDGER_FILE,
    IncidentConflict,
    IncidentRecord,
    hms,
    iso,
    open_incident,
    within_target,
)
from rotation.emergency.notify import MailboxCheck, StakeholderNotification, env_secrets, split_addresses, unfolded
from rotation.emergency.post_incident import (
    IncidentInputError,
    IncidentOptions,
    Narrative,
    PostIncident,
    load_narrative,
    print_record,
)
from rotation.emergency.procedure import REASON, DbKeyEmergency, EmergencyProcedure, ProviderEmergency
from rotation.evidence.incident import EARLIER_FOLDERS, INCIDENT_CLOSING, INCIDENT_ITEM, run_folders
from rotation.providers.factory import provider_for
from rotation.providers.revocation import Wait
from rotation.providers.smtp import OperatorConsole
from rotation_pytest.fixtures import config_of, live_deployment, operator_of, target_of
from staging.postgres import StagingServer
from staging.provider_standins import STAGING_POLICY, STAGING_REVOKE_WAIT, ProviderStandIns, provider_standins
from staging.seed_activity import seed_activity, staging_policy
from staging.world import staging_config, staging_world

INCIDENT = pytest.StashKey[IncidentRecord]()
INCIDENT_WINDOW_TAG = "incident_window"
EMERGENCY_PROCEDURE = "emergency rotation"  # the run lock's procedure name: a rerun of the same incident knows it
INCIDENT_GROUP = "incident"  # under pytest-xdist every emergency scenario runs on one worker, in order
NEXT_STEP_ITEM = "next step if this run ends early"
NEXT_STEP_SOURCE = ("the incident record beside .env (every run of the same change id continues it) and the operator's "
                    "command as given (a DSN password masked)")

# Staging: provider calls to the loopback stand-ins retry in milliseconds, not seconds.
STAGING_NARRATIVE = Narrative(
    root_cause="Staging rehearsal: every credential is treated as compromised (simulated incident).",
    preventive_measures=("Rehearse `pytest -m emergency` in staging every month",
                         "Alert on any access-review finding within one hour"))


# --- selection and start-up checks ------------------------------------------------------------------------------------

def compromised_of(config: pytest.Config) -> tuple[str, ...]:
    return plan.parse_compromised(config.getoption("compromised"), config_of(config),
                                  default_all=target_of(config) != "live")


def stakeholders_of(config: pytest.Config) -> Stakeholders:
    """The configuration's stakeholders (staging: the stand-in's mailbox when it names none), each group replaced
    by its --notify-* option when given."""
    rotation_config = config_of(config)
    base = (rotation_config if target_of(config) == "live" else staging_config(rotation_config)).stakeholders
    chosen = {field: config.getoption(option) for field, option in (
        ("security_team", "notify_security"), ("system_administrators", "notify_sysadmins"),
        ("compliance_officer", "notify_compliance"), ("sender", "notify_from"))}
    given: dict[str, Any] = {f: (v if f == "sender" else split_addresses(v))  # the sender a string, a group a tuple
                             for f, v in chosen.items() if v is not None}
    return dataclasses.replace(base, **given)


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a malformed selection or incident window before anything runs."""
    config.addinivalue_line("markers", f"{INCIDENT_WINDOW_TAG}: needs the incident window (--incident-start, "
                                       "--incident-end) on live")
    try:
        compromised_of(config)
        plan.incident_moments(config.getoption("incident_start"), config.getoption("incident_end"),
                              config.getoption("detected_at"), utc_now())
        # staging: a policy file given is checked here; live: the live guard refuses it with the other settings
        unusable = plan.policy_problem(config.getoption("review_policy")) if target_of(config) != "live" else None
        if unusable:
            raise plan.PlanError(unusable)
    except plan.PlanError as exc:
        raise pytest.UsageError(f"{exc}. Nothing was changed.") from None


def _credential_of(item: pytest.Item, config: pytest.Config) -> str | None:
    return next((c.type for c in config_of(config).credentials if item.get_closest_marker(c.type)), None)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = set(compromised_of(config))
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        credential = _credential_of(item, config)
        not_chosen = item.get_closest_marker("emergency") and credential and credential not in chosen
        (drop if not_chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = in_emergency_order(keep, config)
    if config.pluginmanager.hasplugin("xdist"):
        for item in items:
            if item.get_closest_marker("emergency"):
                item.add_marker(pytest.mark.xdist_group(INCIDENT_GROUP))
    if target_of(config) == "live" and not config.getoption("incident_start"):
        skip = pytest.mark.skip(reason="post-incident audit: pass --incident-start and --incident-end (within 24 hours "
                                       "of the incident) to run it")
        for item in items:
            if item.get_closest_marker(INCIDENT_WINDOW_TAG):
                item.add_marker(skip)


def in_emergency_order(items: list[pytest.Item], config: pytest.Config) -> list[pytest.Item]:
    """The credentials' emergency rotations in the configuration's emergency order, each in a slot one of them held
    (everything else stays where it was)."""
    rank = {t: i for i, t in enumerate(config_of(config).emergency_order)}
    slots = [i for i, item in enumerate(items) if item.get_closest_marker("emergency") and _credential_of(item, config)]
    ranked = sorted((items[i] for i in slots), key=lambda item: rank[str(_credential_of(item, config))])
    ordered = list(items)
    for slot, item in zip(slots, ranked, strict=True):
        ordered[slot] = item
    return ordered


def closing_lines(record: IncidentRecord) -> list[str]:
    """The incident's figures as the run prints them at its end (and as its signed evidence holds them)."""
    lines = [f"{o.credential_type:<18} time-to-revoke {hms(o.time_to_revoke):>8}   "
             f"time-to-restore {hms(o.time_to_restore):>8}   "
             f"old credential: {o.rejection or 'NOT PROVEN REJECTED'}" + ("   (resumed)" if o.resumed else "")
             + f"   {within_target(o)}" for o in record.outcomes.values()]
    origin = (f"--detected-at {iso(record.detected_at)}" if record.detected_at else
              "the start of each rotation (no --detected-at given)")
    lines.append(f"time-to-revoke measured from {origin}; runbook target: within {hms(IMMEDIATE_TARGET)}")
    lines.append(f"incident {record.change_id or '(no change id)'}: {'COMPLETE' if record.complete else 'IN PROGRESS'}"
                 f", run {len(record.runs)} of it; every compromised credential: "
                 + "; ".join(f"{t}: {s}" for t, s in record.statuses().items()))
    lines += ["timeline (UTC, every run of the incident):",
              *(f"  {iso(e.at)}  {e.what}" for e in record.timeline())]
    if record.review:
        lines.append(f"access review: {record.review.summary()}")
    lines.append(f"stakeholder notification accepted by the relay for: {', '.join(record.notification.recipients)}"
                 if record.notification else "stakeholder notification: NOT SENT"
                 + (f" ({record.notification_error})" if record.notification_error else ""))
    if record.report_document is not None:
        lines.append(f"incident report: {record.report_document} in the run folder")
    return lines


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The incident's figures go into the signed evidence, which the terminal then shows (rotation_pytest.evidence)."""
    from rotation_pytest.evidence import (  # here, not above: the evidence plugin is loaded after this
        closing_summary,
        reports_dir,
        run_item,
    )

    record = session.config.stash.get(INCIDENT, None)
    if record is not None:
        say_where_it_stands(session, record)
    elif any(item.get_closest_marker("emergency") for item in session.items):
        say_not_started(session)
    if record is None or not (record.outcomes or record.review or record.notification or record.notification_error):
        return
    closing_summary(session.config, INCIDENT_CLOSING, closing_lines(record),
                    source="the incident record (the clock at each step, UTC); printed at the end of the run")
    try:
        options = incident_options(session.config)
        narrative, declared = options.narrative, options.narrative_source
    except IncidentInputError as exc:
        narrative, declared = None, f"not readable: {exc}"
    earlier = [str(r["run_id"]) for r in record.runs[:-1] if r.get("run_id")]
    folders = {EARLIER_FOLDERS: run_folders(reports_dir(session.config), earlier)}
    change = record.change_id or "(none)"
    run_item(session.config, INCIDENT_ITEM, print_record(record, narrative, declared) | folders,
             source=f"the incident record ({LEDGER_FILE}, every run of change {change}), the operator's declarations "
                    f"({declared}) and the earlier runs' sealed folders; rendered in index.html's incident section")


# --- one incident per session ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def incident_lock(pytestconfig: pytest.Config, incident_deployment: Deployment) -> Iterator[RunLock]:
    """One incident at a time: the run lock (rotation.core.lock) for the whole session, taken before the incident's
    record is opened and before any change. A second shell is refused, naming the holder, and the session ends there
    (nothing changed, no notification). A stale record left by a killed run of the same incident (same change id;
    its lock session is gone, so the server let the advisory lock go) is taken over: that is the rerun the runbook
    asks for, and the timeline says so."""
    change_id = pytestconfig.getoption("change_id")
    lock = _claimed(pytestconfig, incident_deployment, bool(pytestconfig.getoption("take_over_lock")))
    if isinstance(lock, str) and change_id and _stale_of_this_incident(incident_deployment, change_id):
        lock = _claimed(pytestconfig, incident_deployment, True)
    if isinstance(lock, str):
        pytest.exit(lock, returncode=1)
    try:
        yield lock
    finally:
        lock.release()


def _claimed(config: pytest.Config, deployment: Deployment, take_over: bool) -> RunLock | str:
    lock = RunLock(deployment.dsn, operator=operator_of(config), change_id=config.getoption("change_id"),
                   procedure=EMERGENCY_PROCEDURE, take_over=take_over)
    try:
        lock.take()
        lock.claim()
    except LockRefused as exc:
        lock.release()
        return f"emergency refused: {exc}"
    return lock


def _stale_of_this_incident(deployment: Deployment, change_id: str) -> bool:
    with connect(deployment.dsn, autocommit=True) as conn:
        holder = read_record(conn)
    return holder is not None and holder.change_id == change_id and holder.procedure == EMERGENCY_PROCEDURE


@pytest.fixture(scope="session")
def incident(pytestconfig: pytest.Config, incident_deployment: Deployment, incident_lock: RunLock) -> IncidentRecord:
    """The incident this run belongs to: continued from the ledger beside .env when the change id is the same."""
    detected = pytestconfig.getoption("detected_at")
    try:
        record = open_incident(incident_deployment.env_file, change_id=pytestconfig.getoption("change_id"),
                               detected_at=plan.aware_moment(detected, "--detected-at") if detected else None,
                               compromised=compromised_of(pytestconfig))
    except IncidentConflict as exc:
        pytest.exit(f"emergency refused: {exc}", returncode=1)
    from rotation_pytest.evidence import state_of  # here, not above: the evidence plugin is loaded after this

    record.runs[-1]["run_id"] = state_of(pytestconfig).meta.run_id  # its run folder: named by the incident's next runs
    record.save()
    taken_over = incident_lock.claimed.taken_over if incident_lock.claimed else None
    if taken_over is not None:
        record.note(f"run lock taken over from {taken_over.line()} (its session is gone: killed or disconnected)")
    pytestconfig.stash[INCIDENT] = record
    say_how_to_finish(pytestconfig, record)
    return record


def how_to_finish(record: IncidentRecord, command: str, *, failed: int | None = None) -> str:
    """The one line that says where the incident stands and, unless it is complete, the command that finishes it (the
    operator's own command again: every run of the same change id continues the incident). `failed`: None at the
    start of a run (whatever it is about to do can be cut short), else how many of this run's scenarios failed."""
    change = record.change_id or "(no change id)"
    statuses = "; ".join(f"{t}: {s}" for t, s in record.statuses().items())
    if failed is None:
        return (f"incident {change}, run {len(record.runs)} of it ({statuses}): if this run ends before the incident "
                f"is complete (even killed), run the same command again: {command}")
    if record.complete and not failed:
        return f"incident {change} complete ({statuses}): nothing left to do"
    why = f"{failed} scenario(s) failed; " if failed else ""
    return f"incident {change} NOT COMPLETE ({why}{statuses}): run the same command again: {command}"


REHEARSAL_NEXT = "rotation emergency (with the options of this run)"


def say_how_to_finish(config: pytest.Config, record: IncidentRecord) -> None:
    """Before the incident's first change: the next step, shown at once and journaled, so that a run killed at any
    later point has named it (its output, and the folder sealed from its journal); at the end of the run the line is
    said again as the incident then stands. The command is the operator's own: `rotation emergency ...`, or the
    pytest command line of an operator who runs `pytest -m emergency` (rotation_pytest.safe_state.next_command)."""
    from rotation_pytest.evidence import state_of  # here, not above: the evidence plugin is loaded after this
    from rotation_pytest.safe_state import next_command, operator_notice, say_safe_state

    if target_of(config) != "live":
        return  # a rehearsal's incident is torn down with its run: there is nothing to take up again
    line = how_to_finish(record, next_command(config, REHEARSAL_NEXT))
    operator_notice(config)(line)
    state_of(config).recorder.record(NEXT_STEP_ITEM, line, source=NEXT_STEP_SOURCE)
    say_safe_state(config, line, source=NEXT_STEP_SOURCE)


def say_not_started(session: pytest.Session) -> None:
    """The run's last line when it ended before the incident's record was opened (the lock, the database, an input):
    nothing was changed, and the same command, once the cause is fixed, starts the incident."""
    from rotation_pytest.safe_state import next_command, say_safe_state

    if session.testsfailed:
        change = session.config.getoption("change_id") or "(no change id)"
        line = (f"incident {change} NOT STARTED: nothing was changed ({session.testsfailed} scenario(s) failed before "
                f"its first step could act: see above). Next: fix the cause above, then run the same command again: "
                f"{next_command(session.config, REHEARSAL_NEXT)}")
        say_safe_state(session.config, line, source=NEXT_STEP_SOURCE)


def say_where_it_stands(session: pytest.Session, record: IncidentRecord) -> None:
    """The run's last line: the incident as this run leaves it."""
    from rotation_pytest.safe_state import next_command, say_safe_state

    line = how_to_finish(record, next_command(session.config, REHEARSAL_NEXT), failed=session.testsfailed)
    say_safe_state(session.config, line, source=NEXT_STEP_SOURCE)


@pytest.fixture(scope="session")
def incident_standins(target: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderStandIns | None]:
    """Staging: the Twilio, Graph and SMTP stand-ins for the whole incident (the providers and the mail relay).
    Live: none."""
    if target == "live":
        yield None
        return
    with provider_standins(tmp_path_factory.mktemp("providers")) as started:
        yield started


@pytest.fixture(scope="session")
def incident_deployment(pytestconfig: pytest.Config, target: str, rotation_config: Config, operator: str,
                        pg_server: StagingServer | None, incident_standins: ProviderStandIns | None,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Staging: one CRM world for the whole incident, with the provider stand-ins and a normal access and message
    history. Live: the configured systems."""
    from rotation_pytest.evidence import state_of  # here, not above: this plugin is loaded before the evidence plugin

    recorder = state_of(pytestconfig).recorder
    if target == "live":
        live = live_deployment(pytestconfig)
        register_env_secrets(recorder, live)
        yield live
        return
    assert pg_server is not None and incident_standins is not None
    rows = pytestconfig.getoption("rows")
    for value in incident_standins.secrets():  # every credential the stand-ins know is looked for by the leak scan
        recorder.register_secret(value)
    with staging_world(pg_server.admin_dsn, tmp_path_factory.mktemp("incident") / "app", rotation_config, rows=rows,
                       operator=operator, server_log=pg_server.server_log,
                       extra_env=incident_standins.env()) as staged:
        register_env_secrets(recorder, staged)
        seed_activity(staged.dsn, clients=rows)
        yield staged


def register_env_secrets(evidence: Evidence, deployment: Deployment) -> None:
    """Every credential in the app's .env at the start of the incident is looked for by the leak scan."""
    for value in env_secrets(envfile.read_env(deployment.env_file), (c.env for c in deployment.config.credentials)):
        evidence.register_secret(value)


@pytest.fixture(scope="session")
def review_policy(pytestconfig: pytest.Config, target: str) -> tuple[ReviewPolicy, str]:
    """The access review's policy and where it came from."""
    hours = pytestconfig.getoption("review_window_hours")
    window = dt.timedelta(hours=hours) if hours else None
    path = pytestconfig.getoption("review_policy")
    if path:
        return load_policy(Path(path), window=window), f"--review-policy {Path(path).name}"
    if target == "live":
        raise pytest.UsageError("a live access review needs --review-policy FILE (allowed_accessors, "
                                "allowed_networks, ...): without it every row would be flagged")
    return staging_policy(window or DEFAULT_WINDOW), "staging: the policy of the seeded access history"


@pytest.fixture(scope="session")
def stakeholders(pytestconfig: pytest.Config) -> Stakeholders:
    return stakeholders_of(pytestconfig)


# --- the procedure objects the steps call ----------------------------------------------------------------------------

def revoke_wait_of(config: pytest.Config, standins: ProviderStandIns | None) -> Wait:
    """--revoke-wait: how long to ask the provider whether a person's revocation took effect (the provider
    rotation's shape: live every 10 s at most, staging at stand-in speed)."""
    given = config.getoption("revoke_wait")
    if standins is not None:
        return Wait(given, STAGING_REVOKE_WAIT.interval_s) if given is not None else STAGING_REVOKE_WAIT
    return Wait(given, min(10.0, given / 5)) if given is not None else Wait()


def provider_emergency(deployment: Deployment, credential: Credential, incident: IncidentRecord,
                       standins: ProviderStandIns | None, revoke_wait: Wait | None = None) -> ProviderEmergency:
    env = envfile.read_env(deployment.env_file)
    provider = (provider_for(credential.provider, env, smtp_console=OperatorConsole(), credential=credential)
                if standins is None else
                provider_for(credential.provider, env, policy=STAGING_POLICY, smtp_console=standins.smtp_console,
                             credential=credential))
    return ProviderEmergency(deployment, credential, provider, incident, revoke_wait=revoke_wait or Wait())


def db_key_rotation(deployment: Deployment, config: pytest.Config, lock: RunLock) -> DbKeyRotation:
    """The DB-key procedure (runbook section 1) with reason "emergency", under the incident's run lock."""
    from rotation_pytest.evidence import reports_dir  # here, not above: the evidence plugin is loaded after this

    key = config.getoption("signing_key")
    run = RunContext(reports_dir=reports_dir(config), signing_key=Path(key) if key else None,
                     signing_required=target_of(config) == "live", lock=lock)
    return DbKeyRotation(deployment, reason=REASON, workers=config.getoption("workers"),
                         abandon_pending=config.getoption("abandon_pending"), run=run,
                         leave_unreadable=True)  # an emergency moves what it can off the compromised key


@pytest.fixture
def emergency_rotation(pytestconfig: pytest.Config, scenario_credential: Credential | None,
                       incident_deployment: Deployment, incident: IncidentRecord, incident_lock: RunLock,
                       incident_standins: ProviderStandIns | None) -> EmergencyProcedure:
    """The emergency rotation of the scenario's credential (its tag): a provider's, or the database key's."""
    if scenario_credential is None:
        raise pytest.UsageError("an emergency rotation scenario needs a credential tag (@twilio_token, ...)")
    done = incident.finished_earlier(scenario_credential.type)
    if done is not None:  # a rerun finishes what is left; it never rotates a finished credential again
        pytest.skip(f"{scenario_credential.type}: finished by an earlier run of this incident (compromised "
                    f"{done.old_fp} replaced by {done.new_fp}, rotation {done.rotation_id}): not rotated again")
    if scenario_credential.provider == "database":
        return DbKeyEmergency(incident_deployment, scenario_credential,
                              db_key_rotation(incident_deployment, pytestconfig, incident_lock), incident)
    return provider_emergency(incident_deployment, scenario_credential, incident, incident_standins,
                              revoke_wait_of(pytestconfig, incident_standins))


@pytest.fixture
def incident_review(incident_deployment: Deployment, review_policy: tuple[ReviewPolicy, str],
                    incident: IncidentRecord) -> AccessReview:
    policy, source = review_policy
    return AccessReview(incident_deployment.dsn, ReviewTables.from_config(incident_deployment.config.access_review),
                        policy, source, incident)


def relay_mailbox(standins: ProviderStandIns) -> MailboxCheck:
    """Staging: the recipients the SMTP stand-in's mailbox holds for a Message-ID."""
    def recipients(message_id: str) -> tuple[str, ...] | None:
        for message in list(standins.smtp.messages):
            if unfolded(message_from_bytes(message["data"])["Message-ID"]) == message_id:
                return tuple(message["rcpt_tos"])
        return None
    return recipients


def stakeholders_source(config: pytest.Config) -> str:
    given = [f"--notify-{n}" for n in ("security", "sysadmins", "compliance", "from")
             if config.getoption(f"notify_{n}") is not None]
    return f"[stakeholders] of {config_of(config).source}" + (f", replaced by {', '.join(given)}" if given else "") \
        + ("" if target_of(config) == "live" else " (staging: the stand-in's mailbox when it names none)")


@pytest.fixture
def stakeholder_notification(pytestconfig: pytest.Config, incident_deployment: Deployment,
                             stakeholders: Stakeholders, incident: IncidentRecord,
                             incident_standins: ProviderStandIns | None) -> StakeholderNotification:
    return StakeholderNotification(incident_deployment, stakeholders, stakeholders_source(pytestconfig), incident,
                                   pytestconfig.getoption("change_id"), pytestconfig.getoption("approver"),
                                   relay_mailbox(incident_standins) if incident_standins else None)


def incident_options(config: pytest.Config) -> IncidentOptions:
    start, end, notes = (config.getoption(o) for o in ("incident_start", "incident_end", "incident_notes"))
    narrative = load_narrative(Path(notes) if notes else None, root_cause=config.getoption("root_cause"),
                               preventive=config.getoption("preventive_measure"))
    staging_default = target_of(config) != "live" and not (narrative.root_cause or narrative.preventive_measures)
    return IncidentOptions(
        start=plan.aware_moment(start, "--incident-start") if start else None,
        end=plan.aware_moment(end, "--incident-end") if end else None,
        narrative=STAGING_NARRATIVE if staging_default else narrative,
        change_id=config.getoption("change_id"), approver=config.getoption("approver"),
        window_source="--incident-start/--incident-end" if start else "default: 24 hours before the run .. now",
        narrative_source="staging rehearsal's own" if staging_default else
        "--root-cause, --preventive-measure, --incident-notes")


@pytest.fixture
def post_incident_actions(pytestconfig: pytest.Config, incident_deployment: Deployment,
                          incident: IncidentRecord) -> PostIncident:
    tables = ReviewTables.from_config(incident_deployment.config.access_review)
    return PostIncident(incident_deployment, tables.access_log, incident, incident_options(pytestconfig))
