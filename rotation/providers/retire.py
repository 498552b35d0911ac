"""Retiring a provider credential's old value (Twilio auth token, WhatsApp access token, SMTP password), the provider's
part of rotation.core.retirement. The rotation itself proved the provider refuses the old value (its
`old credential refused` check, in the rotation's run folder); this retirement does not ask the provider again, and
its record says so. The app must answer healthy; then the .env backups holding the old value are destroyed."""

from __future__ import annotations

from rotation.core.proof import Evidence
from rotation.core.retirement import Retirement
from rotation.core.secret import Secret
from rotation.evidence.leaks import scan_bytes


def holds(data: bytes, value: Secret) -> bool:
    return bool(scan_bytes(data, [value.reveal()], label="retirement"))


class ProviderRetirement(Retirement):
    def dead_text(self) -> str:
        return "the rotation proved the provider refuses the old value"

    def check_in_service(self, evidence: Evidence) -> None:
        self.check_healthy(evidence)

    def check_old_value_dead(self, evidence: Evidence) -> None:
        found = self.need_found()
        evidence.record("old value refused by the provider", {
            "rotation": found.rotation_id, "old": found.old.fingerprint,
            "how": "read from the rotation's own evidence (its check that the provider refuses the old value); not "
                   "asked again by this retirement"},
            source=f"the run folder of rotation {found.rotation_id} (rotation audit-trail lists it)")
