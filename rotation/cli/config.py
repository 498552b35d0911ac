"""`rotation config`: show the built-in deployment configuration (commented, to copy and edit), or check one."""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from rotation.cli.parsing import SubParsers
from rotation.core.config import CONFIG_ENV, DEFAULT_NAME, ConfigError, config_path, load_config


def register(sub: SubParsers) -> None:
    p = sub.add_parser("config", help="show the built-in rotation.toml, or check a configuration file",
                       description="With --show-default: print the built-in configuration (every key documented) to "
                                   "copy and edit. Otherwise: load the configuration (--config FILE, else "
                                   f"${CONFIG_ENV}, else the built-in one), check it, and summarise what it defines. "
                                   "Exit 0 when it is valid, 2 when it is not.")
    p.add_argument("--config", default=None, help=f"the file to check (default: ${CONFIG_ENV}, else built-in)")
    p.add_argument("--show-default", action="store_true", help="print the built-in rotation.toml and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.show_default:
        sys.stdout.write(resources.files("rotation.core").joinpath(DEFAULT_NAME).read_text())
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"rotation config: {exc}", file=sys.stderr)
        return 2
    print(f"configuration: {config.source if config_path(args.config) else 'built-in default'} (valid)")
    for c in config.credentials:
        aliases = f"; also logged as {', '.join(c.log_aliases)}" if c.log_aliases else ""
        print(f"  {c.type:<18} {c.label} in {c.env}, from {c.provider}, every {c.interval.days} days, warning "
              f"{c.warning.days} days before{aliases}")
    print(f"  emergency order: {', '.join(config.emergency_order)}")
    for inv in config.encrypted_data:
        print(f"  encrypted ({inv.kind}): {inv.table}.{{{', '.join(inv.columns)}}} by {inv.key}")
    print(f"  app: stop `{config.app.stop}`, start `{config.app.start}`, health {config.app.health_url}")
    print(f"  stakeholders: {', '.join(config.stakeholders.all()) or '(none: a live emergency run refuses to start)'}")
    return 0
