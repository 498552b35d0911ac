"""Staging only: a normal history of data access and sent messages, so the emergency access review has a baseline
to judge against and finds nothing in a clean world.

Every day of the history has the same shape (with a little jitter): staff and the app's services read and write client
records from the office and data-centre networks; exports and deletes happen only before the review window; every
message is written by the communication engine, with its origin marker and one of its templates.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass

from rotation.core.database import connect
from rotation.emergency.access_review import APP_ORIGIN_KEY, APP_ORIGIN_MARKER, ReviewPolicy

ACCESSORS = ("crm-communication-engine", "support.agent1@eventplanning.example.com",
             "support.agent2@eventplanning.example.com", "analytics-batch")
NETWORKS = ("10.20.0.0/16", "192.168.50.0/24")
TEMPLATES = ("event_confirmation", "event_reminder", "payment_receipt", "schedule_change")
CHANNELS = ("email", "sms", "whatsapp")
PURPOSES = ("support ticket", "send scheduled reminder", "nightly analytics", "update contact preferences")


@dataclass(frozen=True)
class ActivityShape:
    days: int = 8
    accesses_per_day: int = 120
    messages_per_day: int = 60
    seed: int = 20261125


def staging_policy(window: dt.timedelta = dt.timedelta(hours=24)) -> ReviewPolicy:
    """The review policy that describes the seeded history as normal."""
    return ReviewPolicy(allowed_accessors=ACCESSORS, allowed_networks=NETWORKS, window=window,
                        app_templates=TEMPLATES)


def _ip(rng: random.Random) -> str:
    return f"10.20.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}" if rng.random() < 0.7 \
        else f"192.168.50.{rng.randrange(1, 255)}"


def _access_rows(shape: ActivityShape, now: dt.datetime, clients: int, rng: random.Random) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for day in range(shape.days):
        count = int(shape.accesses_per_day * rng.uniform(0.85, 1.15))
        for _ in range(count):
            at = now - dt.timedelta(days=day, seconds=rng.uniform(60, 86_340))
            in_window = day == 0
            kind = rng.choices(("read", "write", "export", "delete"), (80, 17, 2, 1))[0]
            if in_window and kind in ("export", "delete"):
                kind = "read"
            who = rng.choice(ACCESSORS)
            rows.append((f"client-{rng.randrange(1, clients + 1):08d}", kind, who, at, _ip(rng),
                         "staging-seed/1.0", json.dumps(["email_encrypted"]), rng.choice(PURPOSES)))
    return rows


def _message_rows(shape: ActivityShape, now: dt.datetime, clients: int,
                  rng: random.Random) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for day in range(shape.days):
        count = int(shape.messages_per_day * rng.uniform(0.85, 1.15))
        for _ in range(count):
            at = now - dt.timedelta(days=day, seconds=rng.uniform(60, 86_340))
            template = rng.choice(TEMPLATES)
            rows.append((f"client-{rng.randrange(1, clients + 1):08d}", template, rng.choice(CHANNELS),
                         rng.choice(("sent", "delivered", "opened")), f"Your {template.replace('_', ' ')}",
                         f"[{template}] rendered message", template,
                         json.dumps({APP_ORIGIN_KEY: APP_ORIGIN_MARKER, "engine_version": "2.4.1"}), at, at))
    return rows


def seed_activity(dsn: str, *, clients: int, shape: ActivityShape = ActivityShape(),
                  now: dt.datetime | None = None) -> dict[str, int]:
    """Insert the history ending at `now` (default: the database's now()); returns the row counts written."""
    rng = random.Random(shape.seed)  # noqa: S311  (synthetic data, not a secret)
    with connect(dsn) as conn:
        server_now = None if now else conn.execute("SELECT now()").fetchone()
        end = now or (server_now[0] if server_now else dt.datetime.now(dt.UTC))
        accesses = _access_rows(shape, end, max(clients, 1), rng)
        messages = _message_rows(shape, end, max(clients, 1), rng)
        with conn.cursor() as cur:
            with cur.copy("COPY crm_data_access_log (client_id, access_type, accessed_by, access_timestamp, "
                          "ip_address, user_agent, data_fields, purpose) FROM STDIN") as copy:
                for row in accesses:
                    copy.write_row(row)
            with cur.copy("COPY crm_communications (client_id, message_type, channel, status, subject, body, "
                          "template_name, metadata, created_at, sent_at) FROM STDIN") as copy:
                for row in messages:
                    copy.write_row(row)
        conn.commit()
    return {"crm_data_access_log": len(accesses), "crm_communications": len(messages)}
