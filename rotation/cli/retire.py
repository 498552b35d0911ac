"""`rotation retire CREDENTIAL` (the same as `rotation db-key retire` and `rotation provider retire TYPE`): retire the
old value a finished rotation left behind (NIST SP 800-57: deactivated -> destroyed; the runbook's "remove the backup
after 24 hours of successful operation").

After the quiet period ([retirement] quiet_period_hours, the runbook's 24 h), with the app healthy on the new value
(the DB key: proven by the rotation's own proof) and, for the DB key, the completeness sweep run again and clean, it
destroys every copy of the old value the suite made (.env backups, pending and temporary files), or first seals it to
the recovery public key where database backups must stay readable ([retirement] escrow), destroys escrows past their
destruction date, and signs a retirement record: a run folder under reports/ like every other command's, listing
each file with its SHA-256 before, when and by whom.

Like every live command it prints its plan first and changes nothing without --confirm-live, a --change-id, an
--approver other than the --operator (unless [duties] allow_self_approval) and a --signing-key. --quiet-period
shortens the wait only with --allow-staging-endpoints (a rehearsal of the live path).

Exit codes: 0 retired (or nothing left to retire); 1 a check failed, nothing destroyed after it (the run folder says
which); 2 bad input; 4 refused or not confirmed, nothing changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from rotation.cli.option_table import RETIRE, taken_by
from rotation.cli.parsing import SubParsers
from rotation.core import escrow
from rotation.core.clock import utc_now
from rotation.core.config import Config, ConfigError, Credential, app_with_overrides, load_config
from rotation.core.duties import People, is_account, os_user
from rotation.core.envfile import EnvFileError
from rotation.core.proof import CheckFailed, Evidence, NoEvidence
from rotation.core.retirement import NothingToRetire, Retirement, span
from rotation.db_key.retire import DbKeyRetirement
from rotation.db_key.retire import holds as key_holds
from rotation.evidence.controls import load_catalog
from rotation.evidence.journal import Journal, JournalingRecorder, journal_path, seal_dead_journals
from rotation.evidence.metadata import RunMetadata, git_state, package_versions
from rotation.evidence.recorder import ScenarioRecord, StepRecord, strip_url_passwords
from rotation.evidence.report import reports_folder, write_run
from rotation.evidence.signing import SigningKeyError, load_private_key
from rotation.providers.retire import ProviderRetirement
from rotation.providers.retire import holds as provider_holds

EXIT_FAILED, EXIT_INPUT, EXIT_REFUSED = 1, 2, 4
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
QUIET_PERIOD = ("how long the new value must have been in service, e.g. 24h, 90m, 0s (default: the configuration's; "
                "shorter only with --allow-staging-endpoints)")


def add_retire_options(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """The retirement's options: its rows of the option table (those a parser already has, e.g. from
    add_command_options, are skipped) and --quiet-period, the one option only a retirement takes."""
    for option in taken_by(RETIRE):
        if option.flag not in skip:
            parser.add_argument(option.flag, **option.arguments(default=None))
    parser.add_argument("--quiet-period", default=None, help=QUIET_PERIOD)


def register(sub: SubParsers) -> None:
    p = sub.add_parser("retire", help="destroy (or escrow) the old value a finished rotation left, after the quiet "
                                      "period, with a signed record", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("credential", metavar="CREDENTIAL",
                   help="a credential type, provider or label of the configuration (e.g. database, twilio)")
    add_retire_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return retire(args, args.credential)


KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def masked(arg: str) -> str:
    """A command-line argument as the evidence records it: no DSN password, in URL or key=value form."""
    return KEYWORD_PASSWORD.sub(r"\1***", strip_url_passwords(arg))


def parse_duration(text: str) -> dt.timedelta:
    match = DURATION.match(text.strip())
    if not match:
        raise ValueError(f"--quiet-period: {text!r} is not a duration such as 24h, 90m, 2d or 0s")
    return dt.timedelta(**{UNITS[match.group(2)]: float(match.group(1))})


def _option(args: argparse.Namespace, name: str, env: str | None = None) -> str | None:
    value = getattr(args, name, None)
    return str(value) if value is not None else (os.environ.get(env) if env else None)


def refusals(args: argparse.Namespace, config: Config, people: People, quiet: dt.timedelta) -> list[str]:
    """Why this retirement must not start (empty when it may)."""
    out = []
    if not people.change_id:
        out.append("--change-id is required: destroying a key is a change (SOC 2 CC8.1)")
    if not people.approver:
        out.append("--approver is required: who approved the destruction")
    if is_account(people.operator):
        out.append(f"--operator (or ROTATION_OPERATOR) must name a person: '{people.operator}' is an account")
    out += people.refusals(config.duties, config.source)
    if not _option(args, "signing_key", "ROTATION_SIGNING_KEY"):
        out.append("--signing-key (or ROTATION_SIGNING_KEY) is required: the retirement record must be signed by a "
                   "key an auditor can pin")
    if quiet < config.retirement.quiet_period and not args.allow_staging_endpoints:
        out.append(f"--quiet-period {span(quiet)} is shorter than the configured "
                   f"{span(config.retirement.quiet_period)}: allowed only with --allow-staging-endpoints (a rehearsal)")
    return out


def retirement_of(args: argparse.Namespace, config: Config, credential: Credential, quiet: dt.timedelta,
                  operator: str) -> Retirement:
    env_file = Path(str(_option(args, "env_file")))
    app = app_with_overrides(config, {"start": args.app_start, "stop": args.app_stop, "restart": args.app_restart,
                                      "reload": args.app_reload, "health_url": args.health_url})
    dsn = _option(args, "dsn", "ROTATION_DSN")
    if credential.provider == "database":
        return DbKeyRetirement(credential, config, env_file, app, dsn=dsn, quiet_period=quiet, holds=key_holds,
                               performed_by=operator)
    return ProviderRetirement(credential, config, env_file, app, dsn=dsn, quiet_period=quiet, holds=provider_holds,
                              performed_by=operator)


def _say(lines: list[str]) -> None:
    for line in lines:
        print(line)
    sys.stdout.flush()


def plan(retirement: Retirement, quiet: dt.timedelta) -> tuple[list[str], bool]:
    """What the run will do, from a read-only look at the files (the run itself checks everything again), and
    whether anything is left to retire."""
    label = retirement.credential.label
    try:
        retirement.find_old(NoEvidence())
    except NothingToRetire as exc:
        return [f"RETIREMENT PLAN  {label}: nothing to retire: {exc}"], False
    except (CheckFailed, EnvFileError, OSError) as exc:
        return [f"RETIREMENT PLAN  {label}: cannot start: {exc}"], True
    found = retirement.need_found()
    lines = [f"RETIREMENT PLAN  {label}  old {found.old.fingerprint} (rotation {found.rotation_id}), in service "
             f"{found.new.fingerprint}",
             f"  1. check: the quiet period ({span(quiet)}) has passed since {found.finished_at.isoformat()}",
             f"  2. check: the app is healthy on the new {retirement.noun}; {retirement.dead_text()}"]
    action = "seal to the recovery key, then destroy" if retirement.escrows else "destroy"
    lines += [f"  3. {action}: {c.path} ({c.kind}, sha256 {c.sha256[:16]}...)" for c in found.copies]
    lines.append("  4. check that no file the suite keeps holds it; destroy escrows past their destruction date")
    return lines, True


def retire(args: argparse.Namespace, name: str) -> int:
    try:
        config = load_config(args.config)
        credential = config.credential(name)
        quiet = parse_duration(args.quiet_period) if args.quiet_period else config.retirement.quiet_period
        if config.retirement.escrow_public_key and credential.type in config.retirement.escrow:
            escrow.load_recipient(Path(config.retirement.escrow_public_key))
    except (ConfigError, ValueError) as exc:
        print(f"rotation retire: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if not _option(args, "env_file"):
        print("rotation retire: --env-file is required (the app's .env)", file=sys.stderr)
        return EXIT_INPUT
    operator = _option(args, "operator", "ROTATION_OPERATOR")
    people = People(args.requester, args.approver, operator or os_user(), bool(operator), os_user(), args.change_id)
    retirement = retirement_of(args, config, credential, quiet, people.operator)
    lines, anything_left = plan(retirement, quiet)
    _say(lines)
    if args.dry_run:
        _say(["dry run: the plan above was printed; nothing was changed"])
        return 0
    problems = refusals(args, config, people, quiet)
    if problems:
        _say(["RETIREMENT REFUSED; nothing was changed:", *(f"  - {p}" for p in problems)])
        return EXIT_REFUSED
    if not args.confirm_live:
        _say(["NOT CONFIRMED: nothing was changed. Check the plan above, then re-run with --confirm-live."])
        return EXIT_REFUSED
    sealed = _seal_dead(args)
    if sealed:
        _say(sealed)
    if not anything_left:
        _say([f"nothing to retire: the last rotation of the {credential.label} is finished and no file the suite "
              "keeps holds its old value (retired already: see its retirement record under reports/)"])
        return 0
    return _run(args, config, credential, retirement, people)


def _seal_dead(args: argparse.Namespace) -> list[str]:
    """A run killed earlier left only its journal: seal it first, as every run does (rotation.evidence.journal)."""
    reports = reports_folder(_option(args, "reports_dir"))
    try:
        key = load_private_key(Path(str(_option(args, "signing_key", "ROTATION_SIGNING_KEY"))))
        outputs = seal_dead_journals(reports, load_catalog(), sealed_by="rotation retire", signing_key=key,
                                     sealer={"by command": "rotation retire", "OS account": os_user()})
    except (OSError, SigningKeyError, ValueError) as exc:
        return [f"the journal of an earlier run could not be sealed ({type(exc).__name__}); it is kept: "
                f"`rotation evidence seal --reports-dir={reports}`"]
    return [f"sealed the journal of a run that died: {out.folder} ({out.verdict})" for out in outputs]


def _run(args: argparse.Namespace, config: Config, credential: Credential, retirement: Retirement,
         people: People) -> int:
    reports = reports_folder(_option(args, "reports_dir"))
    key_path = Path(str(_option(args, "signing_key", "ROTATION_SIGNING_KEY")))
    try:
        key = load_private_key(key_path)
    except SigningKeyError as exc:
        _say([f"RETIREMENT REFUSED; nothing was changed: {exc}"])
        return EXIT_REFUSED
    commit, dirty = git_state()
    meta = RunMetadata(run_id=str(uuid.uuid4()), target="live", operator=people.operator, approver=people.approver,
                       change_id=people.change_id, started=utc_now(), git_commit=commit, git_dirty=dirty,
                       packages=package_versions(), invocation=[masked(a) for a in sys.argv],
                       mark_expression=f"retire {credential.type}", signing_key=f"configured: {key_path.name}",
                       requester=people.requester, os_user=people.os_user, operator_declared=people.operator_declared,
                       duty_notes=people.notes(config.duties, config.source), selected=1)
    recorder = JournalingRecorder(Journal(journal_path(reports, meta.run_id), meta))
    retirement.found = None
    steps = retirement.steps()
    scenario = ScenarioRecord(
        nodeid=f"rotation retire {credential.type}", name=f"Retirement of the old {credential.label}",
        feature="Retiring an old credential", feature_file="rotation/core/retirement.py", line=1,
        tags=["rotation", "retirement", credential.type, "SOC2-CC6.1", "SOC2-CC8.1", "PCI-3.7.5"],
        description=f"quiet period {span(retirement.quiet_period)}; "
                    + ("sealed to the recovery key before destruction" if retirement.escrows else "destroyed"),
        steps=[StepRecord(kw, text, n) for n, (kw, text, _) in enumerate(steps, start=2)])
    recorder.begin_scenario(scenario)
    status = run_steps(recorder, steps)
    scenario.status = status
    recorder.end_scenario()
    meta.finished = utc_now()
    try:
        out = write_run(reports, meta, recorder, load_catalog(), signing_key=key, copies={})
    except (OSError, ValueError) as exc:
        recorder.journal.close(remove=False)
        _say([f"the retirement record could not be written ({type(exc).__name__}: {recorder.redact_text(str(exc))});"
              f" its journal is kept: seal it with `rotation evidence seal --reports-dir={reports}`"])
        return EXIT_FAILED
    recorder.journal.close(remove=True)
    for step in scenario.steps:
        _say([f"{step.status.upper():<8} {step.keyword} {step.text}" + (f": {step.error}" if step.error else "")])
    _say([f"run folder: {out.folder}", f"verdict: {out.verdict}",
          f"verify with: rotation verify-evidence {out.folder} --fingerprint {out.public_key_fingerprint}"])
    if out.verdict != "PASSED":
        _say(["nothing after the failed step was done (no file destroyed after it): fix what it names, then run "
              "the same command again"])
    return 0 if out.verdict == "PASSED" else EXIT_FAILED


def run_steps(recorder: JournalingRecorder, steps: list[tuple[str, str, Callable[[Evidence], None]]]) -> str:
    """Run the steps in order; the first that fails ends the run (nothing after it is done)."""
    for n, (keyword, text, method) in enumerate(steps, start=2):
        recorder.begin_step(keyword, text, n)
        try:
            method(recorder)
        except (CheckFailed, escrow.EscrowError, EnvFileError, OSError, psycopg.Error) as exc:
            recorder.end_step("failed", f"{type(exc).__name__}: {exc}")
            return "failed"
        except Exception as exc:  # noqa: BLE001  (any other error ends the run in the same safe state, recorded)
            recorder.end_step("failed", f"unexpected {type(exc).__name__}: {exc}")
            return "failed"
        except KeyboardInterrupt:
            recorder.end_step("interrupted", "interrupted (Ctrl-C): the files this step names as destroyed are gone, "
                                             "the others are kept; run the same command again to finish")
            return "error"
        recorder.end_step("passed")
    return "passed"
