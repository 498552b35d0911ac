"""The deployment configuration (rotation.toml): the credential registry, the encrypted-data inventory, the app's
commands and health endpoint, the access-review tables and the stakeholders.

Found through `--config FILE`, else $ROTATION_CONFIG, else the built-in default (rotation/core/rotation.toml, which
matches the CRM and documents every key). Loading validates everything and refuses unknown keys, so a typo is an
error rather than a silent default.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from rotation.core.errors import RotationError

CONFIG_ENV = "ROTATION_CONFIG"
DEFAULT_NAME = "rotation.toml"
PROVIDERS = ("database", "twilio", "whatsapp", "smtp")
EncryptionKind = Literal["pgcrypto", "fernet"]


class ConfigError(RotationError, ValueError):
    """The configuration file is missing, malformed or inconsistent. The message names the file and the key."""


@dataclass(frozen=True)
class StrengthPolicy:
    min_length: int
    min_distinct: int = 1
    min_classes: int = 1
    pattern: str | None = None


@dataclass(frozen=True)
class Credential:
    type: str  # the rotation log's credential_type
    label: str
    env: str
    provider: str
    interval: dt.timedelta
    warning: dt.timedelta
    log_aliases: tuple[str, ...]
    strength: StrengthPolicy

    @property
    def log_names(self) -> tuple[str, ...]:
        """Every credential_type value the rotation log may hold for this credential."""
        return (self.type, *self.log_aliases)


@dataclass(frozen=True)
class EncryptedColumns:
    table: str
    key: str
    columns: tuple[str, ...]
    kind: EncryptionKind


@dataclass(frozen=True)
class AppSettings:
    start: str
    stop: str
    restart: str
    reload: str | None
    health_url: str
    health_timeout_s: float = 60.0  # how long a step waits for the app to come up (or go down) before failing
    # How a run proves which key the running app uses (rotation.core.app_proof); see rotation.toml.
    probe_url: str | None = None
    probe_command: str | None = None
    probe_field: str | None = None
    probe_column: str | None = None
    systemd_unit: str | None = None
    pidfile: str | None = None


@dataclass(frozen=True)
class Stakeholders:
    security_team: tuple[str, ...]
    system_administrators: tuple[str, ...]
    compliance_officer: tuple[str, ...]
    sender: str

    def all(self) -> tuple[str, ...]:
        """Every address once, in the order the groups are listed."""
        return tuple(dict.fromkeys((*self.security_team, *self.system_administrators, *self.compliance_officer)))


@dataclass(frozen=True)
class Duties:
    allow_self_approval: bool = False  # a live run whose approver is its operator is refused unless true


@dataclass(frozen=True)
class Retirement:
    quiet_period: dt.timedelta = dt.timedelta(hours=24)  # the runbook's "24 hours of successful operation"
    escrow: tuple[str, ...] = ()  # credential types sealed to the recovery key instead of only destroyed
    escrow_public_key: str | None = None
    escrow_dir: str | None = None
    escrow_days: int = 35


@dataclass(frozen=True)
class Config:
    credentials: tuple[Credential, ...]
    emergency_order: tuple[str, ...]
    encrypted_data: tuple[EncryptedColumns, ...]
    app: AppSettings
    access_review: Mapping[str, Mapping[str, str]]
    stakeholders: Stakeholders
    source: str  # the file it came from, or "built-in default"
    duties: Duties = Duties()
    retirement: Retirement = Retirement()

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(c.type for c in self.credentials)

    def credential(self, name: str) -> Credential:
        """By credential type, log alias, label or provider name: 'twilio_token', 'twilio', 'Twilio auth token'."""
        wanted = name.strip().lower()
        for c in self.credentials:
            if wanted in (c.type, c.label.lower(), c.provider, *c.log_aliases):
                return c
        raise ConfigError(f"unknown credential {name!r}; {self.source} defines {', '.join(self.types)}")

    def credential_for_env(self, env_name: str) -> Credential:
        for c in self.credentials:
            if c.env == env_name:
                return c
        raise ConfigError(f"no credential in {self.source} is kept in .env as {env_name}")

    def log_type(self, logged: str) -> str | None:
        """The credential type a rotation-log row belongs to (its own type or an alias), or None."""
        return next((c.type for c in self.credentials if logged in c.log_names), None)

    def in_emergency_order(self, types: set[str] | frozenset[str]) -> tuple[str, ...]:
        return tuple(t for t in self.emergency_order if t in types)


def app_with_overrides(config: Config, given: Mapping[str, Any]) -> AppSettings:
    """The configuration's [app] with the command line's --app-*/--health-url values (None: not given) applied. The
    default configuration's proof of the app's key (its systemd unit) describes its own commands; an app given on the
    command line is proven by the process serving its health endpoint (rotation.core.app_proof)."""
    chosen: dict[str, Any] = {field: value for field, value in given.items() if value is not None}
    base = config.app
    if chosen and config.source == "built-in default":
        base = dataclasses.replace(base, systemd_unit=None, pidfile=None, probe_url=None, probe_command=None)
    return dataclasses.replace(base, **chosen)


def config_path(explicit: str | Path | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    chosen = explicit or environ.get(CONFIG_ENV) or None
    return Path(chosen) if chosen else None


def load_config(path: str | Path | None = None, environ: Mapping[str, str] = os.environ) -> Config:
    """The configuration named by `path`, else $ROTATION_CONFIG, else the built-in default."""
    chosen = config_path(path, environ)
    if chosen is None:
        text, source = resources.files("rotation.core").joinpath(DEFAULT_NAME).read_text(), "built-in default"
    else:
        try:
            text, source = chosen.read_text(), str(chosen)
        except OSError as exc:
            raise ConfigError(f"cannot read the configuration {chosen}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    return parse_config(data, source)


def default_config() -> Config:
    return load_config(None, environ={})


# --- parsing and validation ------------------------------------------------------------------------------------------

def parse_config(data: Mapping[str, Any], source: str) -> Config:
    top = _Table(data, source, "")
    top.only("credentials", "emergency", "encrypted_data", "app", "access_review", "stakeholders", "duties",
             "retirement")
    credentials = tuple(_credential(name, _Table(v, source, f"credentials.{name}"))
                        for name, v in top.table("credentials").items())
    if not credentials:
        raise ConfigError(f"{source}: [credentials] defines no credential")
    _unique(source, "credentials.*.env", [c.env for c in credentials])
    _unique(source, "credentials.*.log_aliases", [n for c in credentials for n in c.log_names])
    emergency = top.sub("emergency")
    emergency.only("order")
    order = emergency.strings("order")
    if sorted(order) != sorted(c.type for c in credentials):
        raise ConfigError(f"{source}: emergency.order must name every credential type once: "
                          f"{', '.join(c.type for c in credentials)}")
    return Config(
        credentials=credentials,
        emergency_order=order,
        encrypted_data=tuple(_encrypted(_Table(v, source, f"encrypted_data[{i}]"))
                             for i, v in enumerate(top.array("encrypted_data"))),
        app=_app(top.sub("app")),
        access_review={name: _columns(top.sub("access_review").sub(name))
                       for name in top.sub("access_review").keys()},
        stakeholders=_stakeholders(top.sub("stakeholders")),
        source=source,
        duties=_duties(top.optional_sub("duties")),
        retirement=_retirement(top.optional_sub("retirement"), tuple(c.type for c in credentials)),
    )


def _duties(t: _Table) -> Duties:
    t.only("allow_self_approval")
    return Duties(allow_self_approval=t.boolean("allow_self_approval", False))


def _retirement(t: _Table, types: tuple[str, ...]) -> Retirement:
    t.only("quiet_period_hours", "escrow", "escrow_public_key", "escrow_dir", "escrow_days")
    hours, days = t.number("quiet_period_hours", 24), t.integer("escrow_days", 35)
    if hours < 0 or days < 1:
        raise ConfigError(f"{t.source}: {t.where('quiet_period_hours')} must be >= 0 and escrow_days >= 1")
    escrow = t.strings("escrow")
    unknown = [e for e in escrow if e not in types]
    if unknown:
        raise ConfigError(f"{t.source}: {t.where('escrow')} names unknown credential types {', '.join(unknown)}")
    key = t.optional_string("escrow_public_key")
    if escrow and key is None:
        raise ConfigError(f"{t.source}: {t.where('escrow')} needs {t.where('escrow_public_key')}, the recovery "
                          "public key the old values are sealed to")
    return Retirement(quiet_period=dt.timedelta(hours=hours), escrow=escrow, escrow_public_key=key,
                      escrow_dir=t.optional_string("escrow_dir"), escrow_days=days)


def _credential(name: str, t: _Table) -> Credential:
    t.only("label", "env", "provider", "interval_days", "warning_days", "log_aliases", "strength")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"{t.source}: credential type {name!r} must be lower_snake_case")
    provider = t.string("provider")
    if provider not in PROVIDERS:
        raise ConfigError(f"{t.source}: {t.where('provider')} must be one of {', '.join(PROVIDERS)}")
    interval, warning = t.integer("interval_days"), t.integer("warning_days")
    if interval <= 0 or not 0 <= warning < interval:
        raise ConfigError(f"{t.source}: {t.where('interval_days')} must be positive and warning_days in "
                          "[0, interval_days)")
    return Credential(type=name, label=t.string("label"), env=t.string("env"), provider=provider,
                      interval=dt.timedelta(days=interval), warning=dt.timedelta(days=warning),
                      log_aliases=t.strings("log_aliases"), strength=_strength(t.sub("strength")))


def _strength(t: _Table) -> StrengthPolicy:
    t.only("min_length", "min_distinct", "min_classes", "pattern")
    pattern = t.optional_string("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{t.source}: {t.where('pattern')} is not a regular expression: {exc}") from None
    policy = StrengthPolicy(min_length=t.integer("min_length"), min_distinct=t.integer("min_distinct", 1),
                            min_classes=t.integer("min_classes", 1), pattern=pattern)
    if policy.min_length < 1 or not 1 <= policy.min_classes <= 4 or policy.min_distinct < 1:
        raise ConfigError(f"{t.source}: {t.where('')} needs min_length >= 1, min_classes 1..4, min_distinct >= 1")
    return policy


def _encrypted(t: _Table) -> EncryptedColumns:
    t.only("table", "key", "columns", "kind")
    kind = t.string("kind")
    if kind not in ("pgcrypto", "fernet"):
        raise ConfigError(f"{t.source}: {t.where('kind')} must be 'pgcrypto' or 'fernet'")
    columns = t.strings("columns")
    if not columns:
        raise ConfigError(f"{t.source}: {t.where('columns')} names no column")
    return EncryptedColumns(table=t.string("table"), key=t.string("key"), columns=columns,
                            kind=kind)  # type: ignore[arg-type]  # checked above


PROBE_KEYS = ("probe_url", "probe_command", "probe_field", "probe_column", "systemd_unit", "pidfile")


def _app(t: _Table) -> AppSettings:
    t.only("start", "stop", "restart", "reload", "health_url", "health_timeout_s", *PROBE_KEYS)
    probe = {key: t.optional_string(key) for key in PROBE_KEYS}
    for key in ("probe_url", "probe_command"):
        if probe[key] is not None and "{id}" not in str(probe[key]):
            raise ConfigError(f"{t.source}: {t.where(key)} must contain {{id}}, where the row id goes")
    if probe["probe_column"] is not None and "." not in str(probe["probe_column"]):
        raise ConfigError(f"{t.source}: {t.where('probe_column')} must be <table>.<column> of the inventory")
    return AppSettings(start=t.string("start"), stop=t.string("stop"), restart=t.string("restart"),
                       reload=t.optional_string("reload"), health_url=t.string("health_url"),
                       health_timeout_s=float(t.number("health_timeout_s", 60)), **probe)


def _columns(t: _Table) -> Mapping[str, str]:
    return {key: t.string(key) for key in t.keys()}


def _stakeholders(t: _Table) -> Stakeholders:
    t.only("security_team", "system_administrators", "compliance_officer", "sender")
    return Stakeholders(t.strings("security_team"), t.strings("system_administrators"),
                        t.strings("compliance_officer"), t.string("sender"))


def _unique(source: str, where: str, values: list[str]) -> None:
    seen = {v for v in values if values.count(v) > 1}
    if seen:
        raise ConfigError(f"{source}: {where} names {', '.join(sorted(seen))} more than once")


class _Table:
    """One TOML table, with typed getters whose errors name the file and the dotted key."""

    def __init__(self, data: object, source: str, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: {path or 'the file'} must be a table")
        self.data, self.source, self.path = data, source, path

    def where(self, key: str) -> str:
        return ".".join(p for p in (self.path, key) if p)

    def keys(self) -> list[str]:
        return list(self.data)

    def only(self, *allowed: str) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise ConfigError(f"{self.source}: unknown key {', '.join(self.where(k) for k in unknown)} "
                              f"(known here: {', '.join(allowed)})")

    def _get(self, key: str, kind: type | tuple[type, ...], what: str, default: object = None) -> Any:
        if key not in self.data:
            if default is not None:
                return default
            raise ConfigError(f"{self.source}: {self.where(key)} is missing")
        value = self.data[key]
        if not isinstance(value, kind) or isinstance(value, bool):  # TOML booleans are ints to isinstance
            raise ConfigError(f"{self.source}: {self.where(key)} must be {what}")
        return value

    def string(self, key: str) -> str:
        value = self._get(key, str, "a string")
        if not value.strip():
            raise ConfigError(f"{self.source}: {self.where(key)} is empty")
        return str(value)

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.data else None

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.source}: {self.where(key)} must be true or false")
        return value

    def optional_sub(self, key: str) -> _Table:
        """A table that may be absent (older configurations): an absent one reads as empty."""
        return self.sub(key) if key in self.data else _Table({}, self.source, self.where(key))

    def integer(self, key: str, default: int | None = None) -> int:
        return int(self._get(key, int, "a whole number", default))

    def number(self, key: str, default: float | None = None) -> float:
        return float(self._get(key, (int, float), "a number", default))

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, list, "a list of strings", [])
        if not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{self.source}: {self.where(key)} must be a list of non-empty strings")
        return tuple(value)

    def table(self, key: str) -> Mapping[str, Any]:
        return dict(self._get(key, Mapping, "a table", {}))

    def sub(self, key: str) -> _Table:
        return _Table(self._get(key, Mapping, "a table"), self.source, self.where(key))

    def array(self, key: str) -> list[Any]:
        return list(self._get(key, list, "an array of tables", []))
