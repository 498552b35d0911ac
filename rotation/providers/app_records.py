"""Delivery proven from the application's own records, where the deployment is configured for it.

The Cloud API reports what became of a WhatsApp message (sent, delivered, read, failed) only to the app's webhook.
The CRM's webhook writes what Meta reports into its own tables: a row in `crm_delivery_logs` whose `api_response`
holds Meta's status object for the message id (the wamid), and, for a message that is one of its communications,
`crm_communications.status`. `AppDeliveryRecords` reads both, read-only, for the test message's id, until a final
word or the end of a bounded wait:

    delivered / read (log) or delivered / opened / clicked (communication)   delivered
    failed (log, or success = false) or failed / bounced (communication)      failed, with Meta's error
    nothing final within the wait                                             failed: the proof was asked for

It is a proof only where the app's webhook records statuses of messages it did not send itself (the rotation's test
message): configure it (`--prove-delivery-from-app`) only for such an app. Without it the check says "accepted by
Meta", never "delivered".
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from rotation.core import progress
from rotation.core.database import connect
from rotation.providers.base import Delivery, DeliveryReport, DeliveryWait

LOOKBACK = dt.timedelta(minutes=10)  # clock differences between this host and the database server
LOG_QUERY = ("SELECT coalesce(api_response->>'status', ''), success, coalesce(error_details, '') "
             "FROM crm_delivery_logs WHERE created_at >= %(since)s AND strpos(api_response::text, %(id)s) > 0 "
             "ORDER BY created_at")
COMMUNICATION_QUERY = ("SELECT status, coalesce(error_message, '') FROM crm_communications "
                       "WHERE created_at >= %(since)s AND strpos(coalesce(metadata::text, ''), %(id)s) > 0 "
                       "ORDER BY created_at")
DELIVERED = frozenset({"delivered", "read", "opened", "clicked"})
FAILED = frozenset({"failed", "bounced"})


@dataclass(frozen=True)
class Seen:
    """One status the app recorded for the message."""

    status: str
    failed: bool
    error: str


def read_records(dsn: str, message_id: str, since: dt.datetime) -> list[Seen]:
    """Every status the app recorded for this message id, oldest first (read-only)."""
    params = {"since": since, "id": message_id}
    with connect(dsn) as conn:
        logs = conn.execute(LOG_QUERY, params).fetchall()
        communications = conn.execute(COMMUNICATION_QUERY, params).fetchall()
    seen = [Seen(str(status), status in FAILED or success is False, str(error)) for status, success, error in logs]
    return seen + [Seen(str(status), status in FAILED, str(error)) for status, error in communications]


@dataclass(frozen=True)
class AppDeliveryRecords:
    """A `DeliveryWitness`: the app's own delivery records for the test message, within a bounded wait."""

    dsn: str
    wait: DeliveryWait = field(default_factory=DeliveryWait)
    source: str = f"the app's delivery records, read-only: {LOG_QUERY}; {COMMUNICATION_QUERY}"

    def report(self, delivery: Delivery) -> DeliveryReport:
        since = dt.datetime.fromtimestamp(delivery.sent_at or time.time(), dt.UTC) - LOOKBACK
        started = time.monotonic()
        history: list[dict[str, object]] = []
        polls = progress.Polls(progress.task("waiting for the app's record of the test message's delivery", "polls"),
                               self.wait.timeout_s, self.wait.interval_s)
        while True:
            seen = read_records(self.dsn, delivery.message_id, since)
            elapsed = time.monotonic() - started
            for record in seen[len(history):]:
                history.append({"status": record.status, "error": record.error or None, "after s": round(elapsed, 2)})
            verdict = self._verdict(delivery, seen, tuple(history))
            polls.asked(elapsed, last=verdict is not None or elapsed >= self.wait.timeout_s)
            if verdict is not None:
                return verdict
            if elapsed >= self.wait.timeout_s:
                last = seen[-1].status if seen else "nothing"
                return DeliveryReport("failed", last, None, f"the app recorded no delivery of message "
                                      f"{delivery.message_id} within the {self.wait.timeout_s:g} s wait (last "
                                      f"recorded: {last})", self.source, accepted_by="Meta", history=tuple(history))
            time.sleep(max(0.0, min(self.wait.interval_s, self.wait.timeout_s - elapsed)))

    def _verdict(self, delivery: Delivery, seen: list[Seen],
                 history: tuple[dict[str, object], ...]) -> DeliveryReport | None:
        failed = next((s for s in seen if s.failed), None)
        if failed is not None:
            return DeliveryReport("failed", failed.status, failed.error or None, f"the app recorded message "
                                  f"{delivery.message_id} {failed.status}: {failed.error or 'no error given'}",
                                  self.source, accepted_by="Meta", history=history)
        done = next((s for s in seen if s.status in DELIVERED), None)
        if done is not None:
            return DeliveryReport("delivered", done.status, None, f"the app recorded message {delivery.message_id} "
                                  f"{done.status}", self.source, accepted_by="Meta", history=history)
        return None
