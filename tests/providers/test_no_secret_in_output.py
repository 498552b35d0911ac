"""A failing test's report (long tracebacks with every frame's arguments and locals) names credentials only by
fingerprint: run a deliberately failing inner pytest session and search its whole output for the tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

INNER = '''
import os
from pathlib import Path

from rotation.core.secret import Secret
from rotation.providers.smtp import SmtpProvider, SmtpSettings
from rotation.providers.twilio import TwilioProvider, TwilioSettings
from rotation.providers.whatsapp import GraphSettings, WhatsAppProvider
from staging.graph_standin import graph_standin
from staging.provider_standins import FAST
from staging.smtp_standin import StandInConsole, smtp_standin
from staging.twilio_standin import twilio_standin

SEEN = Path(os.environ["SECRETS_SEEN"])


def remember(*values):
    with SEEN.open("a") as f:
        f.writelines((v.reveal() if isinstance(v, Secret) else v) + "\\n" for v in values)


def test_twilio_promote_unavailable():
    with twilio_standin() as api:
        p = TwilioProvider(TwilioSettings(api.account_sid, "+15550100002", "+15550100001", api.base_url, FAST))
        old = Secret(api.primary)
        new = p.issue(old)
        remember(old, new)
        api.faults.fail_forever()
        p.retire_old(old, new)


def test_whatsapp_old_token_still_valid():
    with graph_standin() as api:
        api.keep_revoked_tokens_valid = True
        p = WhatsAppProvider(GraphSettings(api.phone_number_id, api.app_id, Secret(api.app_secret),
                                           api.system_user_id, "+15550100001", api.base_url, api.version, FAST))
        old = Secret(api.mint())
        new = p.issue(old)
        remember(old, new, api.app_secret)
        p.retire_old(old, new)
        p.expect_rejected(old)


def test_smtp_wrong_password(tmp_path):
    with smtp_standin(tmp_path) as server:
        p = SmtpProvider(SmtpSettings("127.0.0.1", server.port, server.username, server.username, "a@example.com",
                                      str(server.ca_file), FAST), StandInConsole(server.console_url))
        current = p.console.obtain()
        new = p.issue(current)
        remember(current, new)
        assert p.check(current).accepted is False, p.check(current)
        assert p.check(new) == p.check(current)
'''


def test_failing_reports_show_fingerprints_not_credentials(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    seen = tmp_path / "seen.txt"
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "SECRETS_SEEN": str(seen)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--tb=long", "--showlocals",
                           "-rA", "--log-level=DEBUG", str(tmp_path / "test_inner.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert "3 failed" in output, output[-3000:]
    secrets = [s for s in seen.read_text().splitlines() if s]
    assert len(secrets) == 7
    leaked = [i for i, s in enumerate(secrets) if s in output]
    assert not leaked, f"credentials #{leaked} appear in the failing report"
    assert "<secret sha256:" in output
