"""Options, guardrails and progress lines for `pytest -m emergency` (and the live guard for every live run).

Before any scenario runs (pytest_collection_finish, so no fixture has touched anything yet):
  - `--compromised` keeps only the emergency scenarios of the chosen credentials (staging default: all four;
    live default: none, and a live emergency run without it is refused);
  - the plan is printed: which credentials, which systems, in what order;
  - `--dry-run` stops there (exit 0); `--target live` stops there with exit 4 unless confirmed (`--confirm-live` or
    ROTATION_CONFIRM_LIVE=yes), and is refused (exit 4) without change id and approver or with any staging default.
During the run each step of an emergency scenario prints one line: ok/FAIL, its duration and the step's text.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

from rotation.core.envfile import EnvFileError, read_env
from rotation.emergency.incident import IncidentRecord, hms
from rotation.emergency import plan as emergency

EXIT_REFUSED = 4
STAGING_ENV = {"TWILIO_API_BASE": "(staging stand-in, loopback)", "TWILIO_ACCOUNT_SID": "(generated)",
               "GRAPH_API_BASE": "(staging stand-in, loopback)", "WHATSAPP_PHONE_NUMBER_ID": "(generated)",
               "SMTP_HOST": "(staging stand-in)", "SMTP_PORT": "(free port)", "SMTP_USERNAME": "(stand-in user)"}
STAGING_STAKEHOLDERS = {"notify_security": "security@eventplanning.example.com",
                        "notify_sysadmins": "sysadmins@eventplanning.example.com",
                        "notify_compliance": "compliance@eventplanning.example.com"}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("rotation-emergency", "emergency rotation (runbook: Emergency Rotation Procedure)")
    g.addoption("--compromised", default=None, metavar="LIST",
                help="compromised credentials to rotate: twilio,whatsapp,smtp,db_encryption_key or all "
                     "(staging default: all; live: required)")
    g.addoption("--confirm-live", action="store_true", default=False,
                help=f"carry out the printed plan on live systems (or set {emergency.CONFIRM_ENV}=yes)")
    g.addoption("--dry-run", action="store_true", default=False, help="print the plan and stop; change nothing")
    g.addoption("--review-policy", default=None, metavar="YAML",
                help="access review policy: allowed_accessors, allowed_networks, ... (required on live; staging: "
                     "the seeded history's policy)")
    g.addoption("--review-window-hours", type=float, default=None,
                help="how far back the access review looks (default 24, or the policy file's window_hours)")
    for name, who in (("security", "the security team"), ("sysadmins", "the system administrators"),
                      ("compliance", "the compliance officer")):
        g.addoption(f"--notify-{name}", default=None, metavar="ADDRESSES",
                    help=f"comma-separated e-mail addresses of {who} (required on live)")
    g.addoption("--notify-from", default=None, metavar="ADDRESS", help="sender of the stakeholder notification")
    g.addoption("--incident-start", default=None, metavar="ISO-8601",
                help="start of the incident window for the post-incident audit (with a UTC offset)")
    g.addoption("--incident-end", default=None, metavar="ISO-8601", help="end of the incident window")
    g.addoption("--root-cause", default=None, help="root cause, for the incident report")
    g.addoption("--preventive-measure", action="append", default=None,
                help="a preventive measure taken, for the incident report (repeatable)")
    g.addoption("--incident-notes", default=None, metavar="YAML",
                help="file with root_cause, preventive_measures and summary for the incident report")


def compromised_of(config: pytest.Config) -> tuple[str, ...]:
    return emergency.parse_compromised(config.getoption("compromised"),
                                       default_all=config.getoption("target") != "live")


def stakeholder_option(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(name)
    if value is None and config.getoption("target") != "live":
        return STAGING_STAKEHOLDERS[name]
    return value


def _credential_of(item: pytest.Item) -> str | None:
    for credential in emergency.ORDER:
        if item.get_closest_marker(credential):
            return credential
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a malformed selection or incident window before anything runs."""
    try:
        compromised_of(config)
    except emergency.PlanError as exc:
        raise pytest.UsageError(str(exc)) from None
    for option in ("incident_start", "incident_end"):
        value = config.getoption(option)
        if value is not None:
            try:
                emergency.aware_moment(value, "--" + option.replace("_", "-"))
            except emergency.PlanError as exc:
                raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = set(compromised_of(config))
    keep, drop = [], []
    for item in items:
        credential = _credential_of(item)
        skip = item.get_closest_marker("emergency") and credential and credential not in chosen
        (drop if skip else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def systems_of(config: pytest.Config) -> emergency.Systems:
    live = config.getoption("target") == "live"
    env: dict[str, str] = dict(STAGING_ENV)
    if live:
        env_file = config.getoption("env_file")
        try:
            env = read_env(Path(env_file)) if env_file else {}
        except EnvFileError:
            env = {}
    recipients = tuple(a.strip() for n in STAGING_STAKEHOLDERS
                       for a in (stakeholder_option(config, n) or "").split(",") if a.strip())
    return emergency.Systems(target=config.getoption("target"), env=env,
                             dsn=config.getoption("dsn") if live else "(staging scratch database)",
                             app_restart=config.getoption("app_restart") if live else "(staging app stand-in)",
                             app_stop=config.getoption("app_stop") if live else "",
                             app_start=config.getoption("app_start") if live else "",
                             health_url=config.getoption("health_url") if live else "(stand-in /health)",
                             recipients=recipients)


def say(config: pytest.Config, lines: list[str]) -> None:
    """Lines for the operator, shown at once even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        print("\n".join(lines), file=sys.stderr)
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    live, dry_run = config.getoption("target") == "live", config.getoption("dry_run")
    selected = [i for i in session.items if i.get_closest_marker("emergency")]
    if not (live or dry_run or selected):
        return
    systems = systems_of(config)
    compromised = compromised_of(config)
    change_id, approver = config.getoption("change_id"), config.getoption("approver")
    from conftest import default_operator

    operator = config.getoption("operator") or default_operator()
    if selected:
        lines = emergency.plan_lines(compromised, systems, change_id=change_id, approver=approver, operator=operator,
                                     post_incident=bool(config.getoption("incident_start")) or not live)
    else:
        lines = [f"PLAN  target={systems.target}  change={change_id or '-'}  approver={approver or '-'}  "
                 f"operator={operator}",
                 f"  app: restart `{systems.app_restart}`, health {systems.health_url}; database "
                 f"{emergency.dsn_summary(systems.dsn)}"]
        lines += [f"  {n}. {item.name}" for n, item in enumerate(session.items, start=1)]
    say(config, lines)
    if dry_run:
        pytest.exit("dry run: the plan above was printed; nothing was changed", returncode=0)
    if not live:
        return
    problems = emergency.live_refusals(systems, compromised, change_id=change_id, approver=approver,
                                       emergency_selected=bool(selected),
                                       review_policy=config.getoption("review_policy"))
    if problems:
        say(config, ["LIVE RUN REFUSED; nothing was changed:", *[f"  - {p}" for p in problems]])
        pytest.exit("live run refused: fix the settings listed above", returncode=EXIT_REFUSED)
    if not emergency.confirmed(config.getoption("confirm_live"), os.environ):
        say(config, ["NOT CONFIRMED: nothing was changed. Check the plan above, then re-run with --confirm-live "
                      f"(or {emergency.CONFIRM_ENV}=yes) to carry it out."])
        pytest.exit("live run not confirmed", returncode=EXIT_REFUSED)


# --- the incident's figures at the end of the run -------------------------------------------------------------------

INCIDENT = pytest.StashKey[IncidentRecord]()
INCIDENT_REPORT = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    record = config.stash.get(INCIDENT, None)
    if record is None or not record.outcomes:
        return
    terminalreporter.section("emergency rotation: time to revoke and restore")
    for o in record.outcomes.values():
        terminalreporter.write_line(f"{o.credential_type:<18} time-to-revoke {hms(o.time_to_revoke):>8}   "
                                    f"time-to-restore {hms(o.time_to_restore):>8}   "
                                    f"old credential: {o.rejection or 'NOT PROVEN REJECTED'}")
    if record.review:
        terminalreporter.write_line(f"access review: {record.review.summary()}")
    terminalreporter.write_line("stakeholders notified: " + (", ".join(record.notification.recipients)
                                                             if record.notification else "NO"))
    report = config.stash.get(INCIDENT_REPORT, None)
    if report is not None:
        terminalreporter.write_line(f"incident report: {report} in the run folder (see 'evidence' below)")


# --- one progress line per step --------------------------------------------------------------------------------------

def _is_emergency(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("emergency") is not None


def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature, scenario) -> None:
    if _is_emergency(request):
        say(request.config, [f"EMERGENCY {scenario.name}"])


def pytest_bdd_before_step(request: pytest.FixtureRequest, feature, scenario, step, step_func) -> None:
    request.node.stash[_STEP_START] = time.monotonic()


def _elapsed(request: pytest.FixtureRequest) -> float:
    return time.monotonic() - request.node.stash.get(_STEP_START, time.monotonic())


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature, scenario, step, step_func, step_func_args) -> None:
    if _is_emergency(request):
        say(request.config, [f"  ok   {_elapsed(request):6.2f}s  {step.keyword} {step.name}"])


def pytest_bdd_step_error(request: pytest.FixtureRequest, feature, scenario, step, step_func, step_func_args,
                          exception: Exception) -> None:
    if _is_emergency(request):
        first = (str(exception).strip().splitlines() or [""])[0][:200]
        say(request.config, [f"  FAIL {_elapsed(request):6.2f}s  {step.keyword} {step.name}",
                              f"       {type(exception).__name__}: {first}"])


_STEP_START = pytest.StashKey[float]()
