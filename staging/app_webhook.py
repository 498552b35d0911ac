"""The app stand-in's WhatsApp webhook: what the CRM does with the statuses Meta reports for its messages.

    POST /webhooks/whatsapp   Meta's `whatsapp_business_account` change notification, signed with
                              X-Hub-Signature-256 (HMAC-SHA256 of the body keyed by WHATSAPP_APP_SECRET)

For each status (sent, delivered, read, failed) it writes a `crm_delivery_logs` row (`api_response` = Meta's status
object, `success` = not failed, `error_details` = Meta's error code and title) and, for a message that is one of its
communications (`crm_communications.metadata` holds the wamid), updates that row's `status`, `delivered_at` /
`failed_at` and `error_message`. A bad signature gets 403 and writes nothing. Kept apart from staging/app.py, which
only routes the POST here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

import psycopg

PATH = "/webhooks/whatsapp"
# Meta's status -> crm_communications.status (the app's vocabulary: pending, sent, delivered, opened, failed ...)
COMMUNICATION_STATUS = {"sent": "sent", "delivered": "delivered", "read": "opened", "failed": "failed"}
LOG = ("INSERT INTO crm_delivery_logs (communication_id, channel, attempt_number, api_provider, api_response, "
       "status_code, success, error_details) VALUES (%(communication)s, 'whatsapp', 1, 'whatsapp', %(response)s, 200, "
       "%(success)s, %(error)s)")
FIND = "SELECT communication_id FROM crm_communications WHERE strpos(coalesce(metadata::text, ''), %(id)s) > 0"
UPDATE = ("UPDATE crm_communications SET status = %(status)s::varchar, error_message = %(error)s, "
          "delivered_at = CASE WHEN %(status)s::varchar = 'delivered' THEN now() ELSE delivered_at END, "
          "failed_at = CASE WHEN %(status)s::varchar = 'failed' THEN now() ELSE failed_at END, updated_at = now() "
          "WHERE communication_id = %(communication)s")


def signed(body: bytes, signature: str, app_secret: str) -> bool:
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return bool(app_secret) and hmac.compare_digest(signature, expected)


def statuses(notification: object) -> list[dict[str, object]]:
    """The status objects of a change notification."""
    entries = notification.get("entry", []) if isinstance(notification, dict) else []
    changes = [c for e in entries if isinstance(e, dict) for c in e.get("changes", []) if isinstance(c, dict)]
    values = [c.get("value") for c in changes if c.get("field") == "messages"]
    return [s for v in values if isinstance(v, dict) for s in v.get("statuses", []) if isinstance(s, dict)]


def error_of(status: Mapping[str, object]) -> str | None:
    errors = status.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else None
    return f"{first.get('code')} {first.get('title', '')}".strip() if first else None


def record(dsn: str, status: Mapping[str, object]) -> None:
    wamid, error = str(status.get("id", "")), error_of(status)
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        found = conn.execute(FIND, {"id": wamid}).fetchone()
        communication = found[0] if found else None
        conn.execute(LOG, {"communication": communication, "response": json.dumps(status), "error": error,
                           "success": status.get("status") != "failed"})
        if communication is not None and status.get("status") in COMMUNICATION_STATUS:
            conn.execute(UPDATE, {"status": COMMUNICATION_STATUS[str(status["status"])], "error": error,
                                  "communication": communication})


def handle(path: str, body: bytes, signature: str, env: Mapping[str, str]) -> tuple[int, dict[str, object]]:
    """The answer to a POST on the app stand-in: 200 once every status is recorded."""
    if path != PATH:
        return 404, {"error": "not found"}
    if not signed(body, signature, env.get("WHATSAPP_APP_SECRET", "")):
        return 403, {"error": "invalid signature"}
    try:
        found = statuses(json.loads(body))
    except ValueError:
        return 400, {"error": "not JSON"}
    for status in found:
        record(env["DATABASE_URL"], status)
    return 200, {"recorded": len(found)}
