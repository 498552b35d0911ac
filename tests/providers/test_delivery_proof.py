"""WhatsApp delivery proven from the app's own records: Meta reports statuses only to the app's webhook, which writes
them into crm_delivery_logs (and crm_communications for its own messages); AppDeliveryRecords reads them for the
test message's id within a bounded wait. Real stand-ins, the real app stand-in, a real database."""

from __future__ import annotations

import hashlib
import hmac
import json

import requests

from rotation.core.database import connect
from rotation.core.envfile import read_env
from rotation.providers.app_records import AppDeliveryRecords
from rotation.providers.base import Delivery, DeliveryWait
from staging.app_webhook import PATH
from staging.graph_standin import UNDELIVERABLE
from tests.providers.conftest import ProviderWorld

WAIT = DeliveryWait(timeout_s=5.0, interval_s=0.05)


def send(pw: ProviderWorld) -> Delivery:
    return pw.provider("whatsapp").send_test_message(pw.in_env("whatsapp"), "delivery proof test")


def test_the_apps_records_prove_delivered_failed_or_nothing_within_the_wait(provider_world: ProviderWorld) -> None:
    records = AppDeliveryRecords(provider_world.deployment.dsn, WAIT)
    delivered = records.report(send(provider_world))
    assert delivered.verdict == "delivered" and [h["status"] for h in delivered.history] == ["sent", "delivered"]
    provider_world.standins.graph.outcome = UNDELIVERABLE
    failed = records.report(send(provider_world))
    assert (failed.verdict, failed.status, failed.error_code) == ("failed", "failed", "131026 Message undeliverable")
    provider_world.standins.graph.webhook_url = ""  # Meta never calls the app: nothing is recorded
    silent = AppDeliveryRecords(provider_world.deployment.dsn, DeliveryWait(0.5, 0.1)).report(send(provider_world))
    assert silent.verdict == "failed" and "recorded no delivery" in silent.detail and "0.5 s wait" in silent.detail
    assert silent.reading == "failed" and delivered.reading == "delivered"


def notification(wamid: str, status: str) -> bytes:
    change = {"field": "messages", "value": {"messaging_product": "whatsapp",
                                             "statuses": [{"id": wamid, "status": status, "timestamp": "0"}]}}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}).encode()


def test_the_webhook_updates_the_apps_own_communication_and_refuses_a_bad_signature(
        provider_world: ProviderWorld) -> None:
    dsn, wamid = provider_world.deployment.dsn, "wamid.app-own-message"
    with connect(dsn) as conn:
        conn.execute("INSERT INTO crm_communications (client_id, message_type, channel, status, body, metadata) "
                     "VALUES ('client-00000001', 'reminder', 'whatsapp', 'sent', 'x', %s)",
                     (json.dumps({"whatsapp_message_id": wamid}),))
        conn.commit()
    url = provider_world.deployment.app.health_url.rsplit("/", 1)[0] + PATH
    secret = read_env(provider_world.env_file)["WHATSAPP_APP_SECRET"].encode()
    body = notification(wamid, "delivered")
    forged = requests.post(url, data=body, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64}, timeout=5)
    assert forged.status_code == 403
    with connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM crm_delivery_logs").fetchone()
    assert row is not None and row[0] == 0
    signed = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert requests.post(url, data=body, headers={"X-Hub-Signature-256": signed}, timeout=5).status_code == 200
    with connect(dsn) as conn:
        status = conn.execute("SELECT status, delivered_at IS NOT NULL FROM crm_communications").fetchone()
    assert status == ("delivered", True)
    proof = AppDeliveryRecords(dsn, WAIT).report(Delivery("whatsapp", wamid, "+15550100001", "accepted"))
    assert proof.verdict == "delivered"
