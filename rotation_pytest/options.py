"""Every command-line option of the suite, in one place (see `pytest --help`, groups "credential rotation runbook").

The operator's commands (`rotation db-key rotate`, `rotation provider rotate`, `rotation emergency`) pass their
arguments through to these options: one set of options, whoever runs the procedure.
"""

from __future__ import annotations

import os

import pytest

from rotation.core.config import CONFIG_ENV


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rotation", "credential rotation runbook")
    group.addoption("--config", default=os.environ.get(CONFIG_ENV),
                    help=f"the deployment configuration (rotation.toml; or {CONFIG_ENV}). Default: the built-in one, "
                         "which matches the CRM")
    group.addoption("--target", choices=("staging", "live"), default="staging",
                    help="where the procedures run: 'staging' (throwaway PostgreSQL and local stand-ins, the default) "
                         "or 'live' (real DSN, real .env, real provider APIs; needs --confirm-live)")
    group.addoption("--dsn", default=os.environ.get("ROTATION_DSN"),
                    help="PostgreSQL DSN (or ROTATION_DSN). Staging: a server on which the suite creates and drops its "
                         "own scratch database. Live: the CRM database itself")
    group.addoption("--env-file", default=None,
                    help="the app's .env file. Staging default: a generated one in a temp dir")
    group.addoption("--operator", default=os.environ.get("ROTATION_OPERATOR"),
                    help="the person who performs the rotation, written to rotated_by and the evidence (or "
                         "ROTATION_OPERATOR; default: the OS user). A live run refuses a shared account such as root")
    group.addoption("--reason", default=None,
                    help="the rotation reason for the rotation log (default: 'Scheduled 90-day rotation'; "
                         "'emergency' for the emergency procedure)")
    group.addoption("--abandon-pending", action="store_true", default=False,
                    help="start over a PENDING rotation whose new credential never reached .env or the data")
    group.addoption("--take-over-lock", action="store_true", default=False,
                    help="take over the run lock of a rotation whose lock session is gone (killed, or its connection "
                         "lost) but whose record remains; only once you know that run is over. The evidence says so")
    group.addoption("--replace-secondary", action="store_true", default=False,
                    help="Twilio: when Twilio already holds a secondary auth token that this rotation did not create, "
                         "delete it and create a new one (without this the rotation stops, changing nothing)")
    group.addoption("--delivery-wait", type=float, default=None, metavar="SECONDS",
                    help="how long the check of a test message waits for its final word: Twilio's final status, the "
                         "app's delivery record (default 120; staging 5)")
    group.addoption("--prove-delivery-from-app", action="store_true", default=False,
                    help="prove WhatsApp delivery from the app's own records (crm_delivery_logs / crm_communications "
                         "for the message id) within --delivery-wait; without it the check reads 'accepted by Meta'. "
                         "Staging always does")
    group.addoption("--revoke-wait", type=float, default=None, metavar="SECONDS",
                    help="how long to keep asking the provider whether a revoked credential is refused, after the "
                         "operator was asked to revoke it at the provider (at their terminal, or, without one, in the "
                         "log) or this run revoked it (default 300; staging 2)")
    group.addoption("--max-retry-wait", type=float, default=None, metavar="SECONDS",
                    help="the longest a provider call waits in all before its retries (Twilio, Meta): the provider's "
                         "Retry-After is honoured up to this, a longer wait asked for ends the step saying so "
                         "(default 120)")
    group.addoption("--workers", type=int, default=None,
                    help="parallel re-encryption workers (default: the number of CPUs)")
    group.addoption("--stop-the-world", action="store_true", default=False,
                    help="DB key, scheduled: re-encrypt every value while the app is stopped instead of staging the "
                         "new values while it runs (the emergency rotation always does)")
    group.addoption("--leave-unreadable", action="store_true", default=False,
                    help="DB key: values that neither the current nor the new key opens (written under a key nobody "
                         "has) are left byte for byte as they are and the rotation goes on; the verdict then says "
                         "INCOMPLETE, naming them. Without it a scheduled rotation refuses them before the app stops "
                         "(the emergency rotation always leaves them)")
    group.addoption("--max-rate", type=float, default=None, metavar="ROWS_PER_S",
                    help="DB key, staged: at most this many rows per second while the app runs (default: no limit)")
    group.addoption("--progress", choices=("auto", "lines", "off"), default="auto",
                    help="progress lines of the long steps (rows done of the total, rate, ETA): auto (the default) "
                         "in live runs and at a terminal, lines (always), off (never: a quiet CI log)")
    group.addoption("--rows", type=int, default=2000,
                    help="staging only: how many synthetic clients to seed (default 2,000)")
    group.addoption("--confirm-live", action="store_true", default=False,
                    help="carry out the printed plan on live systems (or set ROTATION_CONFIRM_LIVE=yes)")
    group.addoption("--dry-run", action="store_true", default=False, help="print the plan and stop; change nothing")
    group.addoption("--allow-staging-endpoints", action="store_true", default=False,
                    help="let a live run use loopback or stand-in endpoints (rehearsing the live path in CI); "
                         "the plan says so in its first line")

    app = parser.getgroup("rotation-app", "the application under rotation (default: the configuration's [app])")
    app.addoption("--app-start", default=None, help="command that starts the app")
    app.addoption("--app-stop", default=None, help="command that stops the app")
    app.addoption("--app-restart", default=None, help="command that restarts the app")
    app.addoption("--app-reload", default=None, help="command that reloads the app's configuration without downtime")
    app.addoption("--health-url", default=None, help="the app's health endpoint")
    app.addoption("--health-timeout", type=float, default=None,
                  help="seconds to wait for the app to become healthy (or stop) before a step fails")

    hygiene = parser.getgroup("rotation-hygiene", "Best Practices checks (runbook: Best Practices)")
    hygiene.addoption("--app-repo", default=None,
                      help="the app's git repository (live; default: the directory holding --env-file). Staging builds "
                           "a small one around its .env")
    hygiene.addoption("--env-owner", default=None,
                      help="the account that must own .env, user[:group] (live default eventuser:eventuser, the "
                           "runbook's chown; staging: the user running the suite)")
    hygiene.addoption("--pg-server-log", default=None,
                      help="staging with --dsn: the PostgreSQL server's log file, which the suite may read (a private "
                           "staging cluster provides its own)")

    evidence = parser.getgroup("evidence", "SOC 2 evidence")
    evidence.addoption("--requester", default=None,
                       help="who requested the change (recorded with approver, operator and change id)")
    evidence.addoption("--approver", default=None,
                       help="who approved the change (required with --target live; not the operator unless the "
                            "configuration's [duties] allow_self_approval)")
    evidence.addoption("--change-id", default=None, help="the change ticket id (required with --target live)")
    evidence.addoption("--signing-key", default=os.environ.get("ROTATION_SIGNING_KEY"),
                       help="Ed25519 private key (unencrypted PEM) that signs the evidence manifest (or env "
                            "ROTATION_SIGNING_KEY); without one a per-run key is generated and only its public key "
                            "kept")
    evidence.addoption("--evidence-pdf", choices=("auto", "yes", "no"), default=os.environ.get("ROTATION_EVIDENCE_PDF",
                                                                                                "no"),
                       help="print the report to report.pdf in the run folder, sealed by the manifest: auto when "
                            "Chromium is found, yes (a missing Chromium is a problem of the run), no (the default of "
                            "plain pytest; the rotation commands pass auto)")
    evidence.addoption("--reports-dir", default=None,
                       help="where run folders are written (default: reports/ in the current directory)")

    emergency = parser.getgroup("rotation-emergency", "emergency rotation (runbook: Emergency Rotation Procedure)")
    emergency.addoption("--compromised", default=None, metavar="LIST",
                        help="compromised credentials to rotate, comma-separated credential types or provider names, "
                             "or 'all' (staging default: all; live: required)")
    emergency.addoption("--review-policy", default=None, metavar="YAML",
                        help="access review policy: allowed_accessors, allowed_networks, ... (required on live; "
                             "staging: the seeded history's policy)")
    emergency.addoption("--review-window-hours", type=float, default=None,
                        help="how far back the access review looks (default 24, or the policy file's window_hours)")
    for name, who in (("security", "the security team"), ("sysadmins", "the system administrators"),
                      ("compliance", "the compliance officer")):
        emergency.addoption(f"--notify-{name}", default=None, metavar="ADDRESSES",
                            help=f"comma-separated e-mail addresses of {who} (default: the configuration's "
                                 "[stakeholders])")
    emergency.addoption("--notify-from", default=None, metavar="ADDRESS",
                        help="sender of the stakeholder notification (default: the configuration's)")
    emergency.addoption("--incident-start", default=None, metavar="ISO-8601",
                        help="start of the incident window for the post-incident audit (with a UTC offset)")
    emergency.addoption("--incident-end", default=None, metavar="ISO-8601", help="end of the incident window")
    emergency.addoption("--detected-at", default=None, metavar="ISO-8601",
                        help="when the compromise was detected (with a UTC offset): time-to-revoke and "
                             "time-to-restore are measured from it against the runbook's one-hour target")
    emergency.addoption("--root-cause", default=None, help="root cause, for the incident report")
    emergency.addoption("--preventive-measure", action="append", default=None,
                        help="a preventive measure taken, for the incident report (repeatable)")
    emergency.addoption("--incident-notes", default=None, metavar="YAML",
                        help="file with root_cause, preventive_measures and summary for the incident report")
