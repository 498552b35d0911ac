"""The plan of a live run and its guardrails, as pure functions the live guard (rotation_pytest/live_guard.py) calls
before anything is touched.

The emergency order comes from the configuration (`[emergency] order`): the provider tokens first (each is dead within
seconds, so the exposure window closes fastest), then the SMTP password, then the database encryption key (its
re-encryption takes longest and stops the app); then the access review, the stakeholder notification, and the
post-incident audit.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict

from rotation.core.config import Config, ConfigError, Credential
from rotation.core.errors import RotationError
from rotation.emergency.access_review import PolicyError, load_policy

CONFIRM_ENV = "ROTATION_CONFIRM_LIVE"
STAGING_DOMAINS = ("example.com", "example.org", "example.net")
STAGING_DSN_PREFIX = "rotation_scratch_"


class PlanError(RotationError, ValueError):
    """The operator's selection cannot be planned. The message says how to fix it."""


def parse_compromised(text: str | None, config: Config, *, default_all: bool) -> tuple[str, ...]:
    """`twilio,whatsapp,smtp,db_encryption_key` (types, provider names or log aliases) -> credential types in the
    configuration's emergency order."""
    if not text:
        return config.emergency_order if default_all else ()
    chosen: set[str] = set()
    for name in (n.strip().lower() for n in text.split(",")):
        if name == "all":
            chosen |= set(config.types)
        elif name:
            try:
                chosen.add(config.credential(name).type)
            except ConfigError:
                raise PlanError(f"--compromised: unknown credential {name!r}; choose from "
                                f"{', '.join(config.types)} (comma-separated) or all") from None
    return config.in_emergency_order(chosen)


def aware_moment(text: str, option: str) -> dt.datetime:
    """An ISO-8601 instant with a UTC offset (an incident window must not depend on the machine's time zone)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise PlanError(f"{option}: not an ISO-8601 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise PlanError(f"{option}: give a UTC offset, e.g. 2026-11-25T06:00:00+00:00") from None
    return moment


CLOCK_SKEW = dt.timedelta(minutes=5)  # an operator's time may come from another machine's clock


def incident_moments(start: str | None, end: str | None, detected: str | None, now: dt.datetime) -> None:
    """The incident's times as the operator gave them, checked before anything runs: each an ISO-8601 instant with a
    UTC offset, the window's start not after its end, and no start or detection later than now (a detection time in
    the future would make every time to revoke negative and every one-hour target "met")."""
    moments = {option: aware_moment(text, option) for option, text in (
        ("--incident-start", start), ("--incident-end", end), ("--detected-at", detected)) if text is not None}
    first, last = moments.get("--incident-start"), moments.get("--incident-end")
    if first is not None and last is not None and first > last:
        raise PlanError(f"--incident-start ({first.isoformat()}) is after --incident-end ({last.isoformat()})")
    for option in ("--incident-start", "--detected-at"):
        moment = moments.get(option)
        if moment is not None and moment > now + CLOCK_SKEW:
            raise PlanError(f"{option}: {moment.isoformat()} is in the future (now "
                            f"{now.isoformat(timespec='seconds')}): give when it happened")


def confirmed(option: bool, environ: Mapping[str, str]) -> bool:
    return bool(option) or environ.get(CONFIRM_ENV, "").strip().lower() == "yes"


def _host(url: str | None) -> str:
    return urlsplit(url or "").hostname or ""


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dsn_summary(dsn: str | None) -> str:
    """host:port/dbname as user, never the password."""
    if not dsn:
        return "(no DSN)"
    if dsn.startswith("("):
        return dsn
    try:
        p = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001  (a malformed DSN is reported, never echoed: it may hold a password)
        return "(unparseable DSN)"
    where = f"{p.get('host') or 'local socket'}:{p.get('port') or 5432}/{p.get('dbname') or '?'}"
    return f"{where} as {p.get('user') or '?'}"


@dataclass(frozen=True)
class Systems:
    """What the run will act on, as the operator configured it. No secret is kept here."""

    target: str
    env: Mapping[str, str]
    dsn: str | None
    app_restart: str
    app_stop: str
    app_start: str
    health_url: str
    recipients: tuple[str, ...]


def system_of(credential: Credential, s: Systems, config: Config) -> str:
    e = s.env
    if credential.provider == "twilio":
        base = e.get("TWILIO_API_BASE") or "https://accounts.twilio.com + https://api.twilio.com"
        return f"Twilio {base}, account {e.get('TWILIO_ACCOUNT_SID', '?')}"
    if credential.provider == "whatsapp":
        base = e.get("GRAPH_API_BASE") or "https://graph.facebook.com"
        return f"Meta Graph API {base}, phone number id {e.get('WHATSAPP_PHONE_NUMBER_ID', '?')}"
    if credential.provider == "smtp":
        return f"SMTP {e.get('SMTP_HOST', '?')}:{e.get('SMTP_PORT', '?')} as {e.get('SMTP_USERNAME', '?')}"
    tables = ", ".join(sorted({c.table for c in config.encrypted_data}))
    return f"PostgreSQL {dsn_summary(s.dsn)} ({tables})"


ACTIONS = {
    "twilio": "create a new auth token and promote it at once (the compromised token dies at promotion); "
              "write {env}; restart; prove the old token is refused",
    "whatsapp": "issue a new system-user token and revoke the compromised one at once; write {env}; restart; prove "
                "the old token is refused",
    "smtp": "take the new password created at the provider ($SMTP_NEW_PASSWORD or a prompt on live), then revoke the "
            "compromised one there; write {env}; restart; prove the old password is refused",
    "database": "stop the app; write a new {env}; re-encrypt every encrypted value; prove no value opens with the old "
                "key; start the app",
}


def plan_lines(compromised: Iterable[str], s: Systems, config: Config, *, change_id: str | None,
               approver: str | None, operator: str, post_incident: bool) -> list[str]:
    """The plan an operator reads before confirming: which credentials, which systems, in what order."""
    lines = [f"EMERGENCY ROTATION PLAN  target={s.target}  change={change_id or '-'}  approver={approver or '-'}  "
             f"operator={operator}",
             f"  app: restart `{s.app_restart}`, health {s.health_url}; .env and database {dsn_summary(s.dsn)}"]
    step = 0
    for step, credential in enumerate((config.credential(c) for c in compromised), start=1):
        lines.append(f"  {step}. {credential.type} @ {system_of(credential, s, config)}")
        lines.append(f"     {ACTIONS[credential.provider].format(env=credential.env)}; log reason 'emergency'")
    if step == 0:
        lines.append("  (no credential selected for rotation: pass --compromised)")
    tables = " and ".join(t.get("table", "?") for t in config.access_review.values()) or "(none configured)"
    lines.append(f"  {step + 1}. access review of {tables}")
    lines.append(f"  {step + 2}. notify {', '.join(s.recipients) or '(no recipients configured)'} over SMTP (STARTTLS)")
    if post_incident:
        lines.append(f"  {step + 3}. post-incident audit over the incident window and incident report")
    return lines


def staging_defaults_in_use(s: Systems) -> list[str]:
    """Settings that only make sense against staging stand-ins; a live run refuses every one of them."""
    found = []
    for name in ("TWILIO_API_BASE", "GRAPH_API_BASE"):
        if s.env.get(name):
            found.append(f"{name}={s.env[name]} in .env points the provider API away from the provider "
                         "(a staging stand-in setting)")
    if _is_loopback(s.env.get("SMTP_HOST", "")):
        found.append(f"SMTP_HOST={s.env['SMTP_HOST']} is loopback (the staging SMTP stand-in)")
    if s.env.get("SMTP_CA_FILE"):
        found.append("SMTP_CA_FILE is set: live SMTP must verify against the system trust store")
    if s.dsn and STAGING_DSN_PREFIX in s.dsn:
        found.append(f"the DSN names a staging scratch database ({STAGING_DSN_PREFIX}*)")
    if "staging.app" in s.app_restart or "staging.app" in s.app_start:
        found.append("the app commands drive the staging app stand-in (staging.app)")
    staging_mail = [a for a in s.recipients if a.rpartition("@")[2].lower().endswith(STAGING_DOMAINS)]
    if staging_mail:
        found.append(f"notification recipients at example domains: {', '.join(staging_mail)}")
    return found


def live_refusals(s: Systems, compromised: tuple[str, ...], *, change_id: str | None, approver: str | None,
                  emergency_selected: bool, review_policy: str | None = "given",
                  allow_staging_endpoints: bool = False) -> list[str]:
    """Why a live run must not start. Staging endpoints are refused unless the operator allowed them explicitly
    (rehearsing the live path against stand-ins); the plan then says so."""
    problems = []
    if emergency_selected and not s.recipients:
        problems.append("no notification recipients: set [stakeholders] in the configuration or pass "
                        "--notify-security, --notify-sysadmins, --notify-compliance")
    if emergency_selected and not review_policy:
        problems.append("a live access review needs --review-policy FILE (allowed_accessors, allowed_networks, ...): "
                        "without it every access would be flagged")
    elif emergency_selected and (unusable := policy_problem(review_policy)):
        problems.append(unusable)
    if not change_id:
        problems.append("a live run needs --change-id (the approved change record)")
    if not approver:
        problems.append("a live run needs --approver (who approved the change)")
    if emergency_selected and not compromised:
        problems.append("a live emergency run needs --compromised naming the compromised credentials "
                        "(e.g. --compromised twilio,smtp); nothing is rotated by default on live")
    return problems + ([] if allow_staging_endpoints else staging_defaults_in_use(s))


def policy_problem(path: str | None) -> str | None:
    """Why the access review's policy file cannot be used (unreadable, not YAML, not a valid policy), found before
    the first change rather than after the credentials were rotated; None when it can."""
    if not path:
        return None
    try:
        load_policy(Path(path))
    except PolicyError as exc:
        return f"--review-policy: {exc}"
    return None
