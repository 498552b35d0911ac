"""Contracts of the provider stand-ins: every request the suite makes and every answer a stand-in gives, checked
against the provider's own API description with openapi-core (a maintained OpenAPI validator).

Twilio's descriptions are not carried in this repository: `sources.json` names the npm package that ships them (the
files of Twilio's public twilio-oai repository), its version, the files' paths and their sha256. `twilio_spec()`
obtains them with the ordinary npm client (`npm pack`) into a cache (ROTATION_CONTRACT_CACHE, default
~/.cache/rotation-runbook/contracts), verifies every sha256 and fails with a clear message when npm or the registry
cannot be reached. Meta's description of the WhatsApp Cloud API (facebook/openapi, business-messaging-api_v23.0.yaml)
is vendored here, its repository, path, commit and sha256 recorded in `sources.json`; `meta_spec()` verifies the sha256
before using it. It covers the phone-number GET and the messages POST; the three Graph calls it does not cover
(debug_token, {system-user-id}/access_tokens, oauth/revoke) are described in `graph_cloud_api.json`, written here from
Graph's reference pages (`graph_spec()`).

Meta's description as published needs two mechanical changes before a validator can use it, both recorded in
`prepared_meta()`: its non-standard `components.parameterGroups` key is dropped (strict validators reject it), and in
an `allOf` a member's `additionalProperties: false` (TextMessage closes its own part, so that no message body could
pass: the base part's `messaging_product`, `to` ... are "additional" to it) is expressed as `unevaluatedProperties:
false` on the `allOf` itself, which is what JSON Schema 2020-12 (OpenAPI 3.1) means by a closed composition.

Strictness beyond the descriptions: Twilio's declare no required fields and leave objects open, so every object
schema is closed here (additionalProperties: false) and a renamed field is an undeclared one; `date-time` (ISO 8601)
is checked with rfc3339-validator, Twilio's `date-time-rfc-2822` with email.utils. Answers a description does not
describe (error bodies) must be listed, with their source, in `undescribed.json` (and docs/provider-rotation.md).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from staging.errors import StagingError
from staging.http_standin import Exchange

HERE = Path(__file__).resolve().parent
NPM_TIMEOUT_S = 180


class ContractSourceUnavailable(StagingError, RuntimeError):
    """The provider's API description could not be obtained or did not match its recorded sha256."""


def sources() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((HERE / "sources.json").read_text())
    return loaded


def undescribed() -> dict[str, list[dict[str, Any]]]:
    loaded: dict[str, list[dict[str, Any]]] = json.loads((HERE / "undescribed.json").read_text())
    return loaded


def cache_dir() -> Path:
    return Path(os.environ.get("ROTATION_CONTRACT_CACHE") or Path.home() / ".cache" / "rotation-runbook" / "contracts")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def twilio_spec(name: str) -> dict[str, Any]:
    """Twilio's description `name` ("accounts_v1", "api_v2010"), from the cache or the npm registry, sha256-checked."""
    source = sources()["twilio"]
    wanted = source["files"][name]
    folder = cache_dir() / f"{source['package'].replace('/', '+')}-{source['version']}"
    target = folder / Path(wanted["path"]).name
    if not target.exists() or sha256(target) != wanted["sha256"]:
        fetch_twilio(source, folder)
    spec: dict[str, Any] = json.loads(target.read_text())
    return spec


def fetch_twilio(source: Mapping[str, Any], folder: Path) -> None:
    """`npm pack <package>@<version>`, the tarball's and each file's sha256 verified, the files put into `folder`."""
    spec = f"{source['package']}@{source['version']}"
    npm = shutil.which("npm")
    if npm is None:
        raise ContractSourceUnavailable(
            f"npm is not installed: the contract tests obtain Twilio's OpenAPI descriptions from the npm registry "
            f"(`npm pack {spec}`). Install nodejs and npm (.ci/run does), or put the files, with the sha256 of "
            f"staging/contracts/sources.json, into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        try:
            done = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", scratch], cwd=scratch,
                                  capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ContractSourceUnavailable(f"`npm pack {spec}` did not finish within {NPM_TIMEOUT_S} s: is the "
                                            "npm registry reachable?") from None
        tarballs = list(Path(scratch).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise ContractSourceUnavailable(f"`npm pack {spec}` failed (exit {done.returncode}): is the npm registry "
                                            f"reachable? {(done.stderr or done.stdout).strip()[-600:]}")
        if sha256(tarballs[0]) != source["tarball_sha256"]:
            raise ContractSourceUnavailable(f"the npm registry's {spec} tarball has sha256 {sha256(tarballs[0])}, "
                                            f"not the recorded {source['tarball_sha256']}")
        with tarfile.open(tarballs[0]) as tar:
            for entry in source["files"].values():
                member = tar.extractfile(entry["path"])
                if member is None:
                    raise ContractSourceUnavailable(f"{spec} holds no {entry['path']}")
                data = member.read()
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise ContractSourceUnavailable(f"{spec}'s {entry['path']} does not match its recorded sha256")
                staged = Path(scratch) / Path(entry["path"]).name
                staged.write_bytes(data)
                os.replace(staged, folder / staged.name)  # atomic: a parallel test sees the whole file or none


def graph_spec() -> dict[str, Any]:
    """The Graph calls Meta publishes no description for (debug_token, access_tokens, oauth/revoke), described here."""
    spec: dict[str, Any] = json.loads((HERE / sources()["graph"]["file"]).read_text())
    return spec


def meta_spec() -> dict[str, Any]:
    """Meta's published description, as vendored, after its sha256 is verified (ContractSourceUnavailable if not)."""
    import yaml  # noqa: PLC0415  (only the contract tests read YAML)

    wanted = sources()["graph"]["meta"]
    path = HERE / wanted["file"]
    if not path.exists():
        raise ContractSourceUnavailable(f"{path.name} is missing: obtain it with {wanted['fetch']}")
    if sha256(path) != wanted["sha256"]:
        raise ContractSourceUnavailable(f"{path.name} has sha256 {sha256(path)}, not the recorded {wanted['sha256']} "
                                        f"of {wanted['repository']} {wanted['path']} at {wanted['commit']}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec: dict[str, Any] = yaml.load(path.read_text(), Loader=loader)  # noqa: S506  (a safe loader)
    return spec


def prepared_meta(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Meta's description cut to the paths the suite uses, `parameterGroups` dropped, closed allOf compositions
    expressed as JSON Schema 2020-12 says (see the module docstring). Nothing else is changed."""
    wanted = sources()["graph"]["meta"]
    components = {k: v for k, v in spec.get("components", {}).items() if k != "parameterGroups"}
    cut = only_paths({**spec, "components": components}, wanted["paths"])
    members = {m["$ref"] for node in _walk(cut) for m in node.get("allOf", []) if isinstance(m, dict) and "$ref" in m}
    schemas = {name: (_open(schema) if f"#/components/schemas/{name}" in members else schema)
               for name, schema in components.get("schemas", {}).items()}
    prepared: dict[str, Any] = _compose({**cut, "components": {**components, "schemas": schemas}})
    return prepared


def _walk(node: Any) -> Iterable[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _open(schema: Any) -> Any:
    """An allOf member: its own closing is left to the composition (unevaluatedProperties)."""
    if isinstance(schema, dict):
        return {k: v for k, v in schema.items() if k not in ("additionalProperties", "unevaluatedProperties")} | {
            "x-open-in-allOf": True}
    return schema


def _compose(node: Any) -> Any:
    if isinstance(node, dict):
        copy = {k: _compose(v) for k, v in node.items()}
        if "allOf" in copy:
            copy["allOf"] = [_open(m) if "$ref" not in m else m for m in copy["allOf"]]
            copy["unevaluatedProperties"] = False
        return copy
    if isinstance(node, list):
        return [_compose(v) for v in node]
    return node


def closed(node: Any) -> Any:
    """The description with every object schema that lists its properties closed (additionalProperties: false),
    except the members of an allOf, which the composition closes (unevaluatedProperties: false)."""
    if isinstance(node, dict):
        copy = {k: closed(v) for k, v in node.items()}
        open_member = copy.pop("x-open-in-allOf", False)
        if "properties" in copy and "additionalProperties" not in copy and not open_member \
                and "unevaluatedProperties" not in copy:
            copy["additionalProperties"] = False
        return copy
    if isinstance(node, list):
        return [closed(v) for v in node]
    return node


def only_paths(spec: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """The description cut down to the paths the suite uses (the 2010 API describes hundreds)."""
    keep = set(paths)
    return {**spec, "paths": {p: v for p, v in spec["paths"].items() if p in keep}}


def rfc2822(value: object) -> bool:
    try:
        return isinstance(value, str) and email.utils.parsedate_to_datetime(value) is not None
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Contract:
    """One API description, ready to validate exchanges against (openapi-core)."""

    spec: Any  # openapi_core.OpenAPI
    host: str

    @classmethod
    def of(cls, description: Mapping[str, Any], host: str) -> Contract:
        from openapi_core import Config, OpenAPI  # the test extra: only the contract tests import this module

        config = Config(extra_format_validators={"date-time-rfc-2822": rfc2822})
        return cls(OpenAPI.from_dict(closed(dict(description)), config=config), host.rstrip("/"))

    def violations(self, exchange: Exchange) -> list[str]:
        """What in the request or the answer the description does not allow (empty: it holds)."""
        from openapi_core.testing import MockRequest, MockResponse

        body = json.dumps(dict(exchange.json)) if exchange.json is not None else urlencode(dict(exchange.form))
        headers = dict(exchange.headers) if exchange.headers else {"Authorization": "Basic c2lkOnRva2Vu"}
        request = MockRequest(self.host, exchange.method.lower(), exchange.path, args=dict(exchange.query),
                              headers=headers, data=body.encode(),
                              content_type=exchange.content_type.split(";")[0] or "application/json")
        answer = MockResponse(b"" if exchange.body is None else json.dumps(exchange.body).encode(),
                              status_code=exchange.status)
        found: list[str] = []
        checks: tuple[tuple[str, Callable[[], object]], ...] = (
            ("request", lambda: self.spec.validate_request(request)),
            ("answer", lambda: self.spec.validate_response(request, answer)))
        for what, check in checks:
            try:
                check()
            except Exception as exc:  # openapi-core raises one of many error types; each is a violation
                found.append(f"{exchange.method} {exchange.path} {exchange.status} {what}: {describe(exc)}")
        return found


def describe(exc: Exception) -> str:
    """An openapi-core error as field names and rules, never the values (an answer may hold a token)."""
    errors = getattr(exc.__cause__, "schema_errors", None) or getattr(exc, "schema_errors", None)
    if not errors:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    parts = []
    for error in errors:
        where = "/".join(str(p) for p in error.path) or "(body)"
        rule = error.message if error.validator in ("additionalProperties", "required") else (
            f"{error.validator} {error.validator_value!r}")
        parts.append(f"{where}: {rule}")
    return "; ".join(parts)
