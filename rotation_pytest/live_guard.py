"""Nothing touches a live system without an explicit opt-in, and the operator sees the plan first.

Before any scenario runs (pytest_collection_finish, so no fixture has touched anything yet):
  - the plan is printed: which credentials and scenarios, which systems, in what order;
  - `--dry-run` stops there (exit 0);
  - `--target live` stops there with exit 4 unless confirmed (`--confirm-live` or ROTATION_CONFIRM_LIVE=yes), and is
    refused (exit 4) without change id and approver, or with any staging setting unless --allow-staging-endpoints.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rotation.core.envfile import EnvFileError, read_env
from rotation.emergency import plan
from rotation_pytest.emergency import compromised_of, stakeholders_of
from rotation_pytest.fixtures import config_of, live_app, operator_of, target_of
from rotation_pytest.progress import say

EXIT_REFUSED = 4
STAGING_ENV = {"TWILIO_API_BASE": "(staging stand-in, loopback)", "TWILIO_ACCOUNT_SID": "(generated)",
               "GRAPH_API_BASE": "(staging stand-in, loopback)", "WHATSAPP_PHONE_NUMBER_ID": "(generated)",
               "SMTP_HOST": "(staging stand-in)", "SMTP_PORT": "(free port)", "SMTP_USERNAME": "(stand-in user)"}


def systems_of(config: pytest.Config) -> plan.Systems:
    """What the run will act on, as the operator configured it (no secret is kept)."""
    if target_of(config) != "live":
        return plan.Systems(target="staging", env=STAGING_ENV, dsn="(staging scratch database)",
                            app_restart="(staging app stand-in)", app_stop="", app_start="",
                            health_url="(stand-in /health)", recipients=stakeholders_of(config).all())
    env_file = config.getoption("env_file")
    try:
        env = read_env(Path(env_file)) if env_file else {}
    except EnvFileError:
        env = {}
    app = live_app(config, config_of(config))
    return plan.Systems(target="live", env=env, dsn=config.getoption("dsn"), app_restart=app.restart,
                        app_stop=app.stop, app_start=app.start, health_url=app.health_url,
                        recipients=stakeholders_of(config).all())


def plan_of(session: pytest.Session, systems: plan.Systems, emergency_selected: bool) -> list[str]:
    config = session.config
    change_id, approver = config.getoption("change_id"), config.getoption("approver")
    if emergency_selected:
        return plan.plan_lines(compromised_of(config), systems, config_of(config), change_id=change_id,
                               approver=approver, operator=operator_of(config),
                               post_incident=bool(config.getoption("incident_start")) or systems.target != "live")
    lines = [f"PLAN  target={systems.target}  change={change_id or '-'}  requester="
             f"{config.getoption('requester') or '-'}  approver={approver or '-'}  operator={operator_of(config)}",
             f"  app: stop `{systems.app_stop}`, start `{systems.app_start}`, health {systems.health_url}; database "
             f"{plan.dsn_summary(systems.dsn)}"]
    return lines + [f"  {n}. {item.name}" for n, item in enumerate(session.items, start=1)]


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    live, dry_run = target_of(config) == "live", config.getoption("dry_run")
    emergency_selected = any(i.get_closest_marker("emergency") for i in session.items)
    if not (live or dry_run or emergency_selected):
        return
    systems = systems_of(config)
    allowed = bool(config.getoption("allow_staging_endpoints"))
    warnings = plan.staging_defaults_in_use(systems) if live and allowed else []
    say(config, [*(f"STAGING ENDPOINTS ALLOWED (--allow-staging-endpoints): {w}" for w in warnings),
                 *plan_of(session, systems, emergency_selected)])
    problems = plan.live_refusals(systems, compromised_of(config), change_id=config.getoption("change_id"),
                                  approver=config.getoption("approver"), emergency_selected=emergency_selected,
                                  review_policy=config.getoption("review_policy"),
                                  allow_staging_endpoints=allowed) if live else []
    if dry_run and problems:  # the operator rehearsing the command learns now what the real run would refuse
        say(config, ["THE LIVE RUN WOULD BE REFUSED; nothing was changed:", *[f"  - {p}" for p in problems]])
        pytest.exit("dry run: the plan above was printed; the live run would be refused: fix the settings listed "
                    "above", returncode=EXIT_REFUSED)
    if dry_run:
        pytest.exit("dry run: the plan above was printed; nothing was changed", returncode=0)
    if not live:
        return
    if problems:
        say(config, ["LIVE RUN REFUSED; nothing was changed:", *[f"  - {p}" for p in problems]])
        pytest.exit("live run refused: fix the settings listed above", returncode=EXIT_REFUSED)
    if not plan.confirmed(config.getoption("confirm_live"), os.environ):
        say(config, ["NOT CONFIRMED: nothing was changed. Check the plan above, then re-run with --confirm-live "
                     f"(or {plan.CONFIRM_ENV}=yes) to carry it out."])
        pytest.exit("live run not confirmed", returncode=EXIT_REFUSED)
