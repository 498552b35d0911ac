"""Personal data in the print: e-mail and IP addresses masked in index.html (and so in report.pdf, its print), kept
whole in evidence.jsonl, the sealed system of record that the page cites by line.

The access review's findings and the incident audit name staff accounts and the addresses they came from; a print is
read, mailed and filed far more widely than the sealed folder. So every e-mail address in the page is shown as its
first character and domain (`a***@example.com`) and every IP address without its host part (`203.0.113.x`,
`2001:db8:…:x`), except the people of the change record (requester, approver, operator: the report must name who
did and approved the change) and the host's own loopback addresses (the stand-ins and the app's health URL, no
person's)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

EMAIL = re.compile(r"(?<![\w.%+-])([A-Za-z0-9._%+-]+)@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b")
IPV4 = re.compile(r"(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![./]?\d)")  # not a CIDR network
# IPv6 in full or compressed form (at least two groups and "::", or eight groups): never a time (10:00:00 has no ::)
IPV6 = re.compile(r"(?<![\w:.])((?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?"
                  r"|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4})(?![\w:/])")
MASKED_NOTE = ("e-mail and IP addresses are masked in this print (personal data of the access review); "
               "evidence.jsonl, under the signature, keeps them whole")


def mask_email(local: str, domain: str) -> str:
    return f"{local[:1]}***@{domain}"


def mask_ip(text: str) -> str | None:
    """The address without its host part, or None when it is no IP address or the host's own (loopback)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified:
        return None
    if address.version == 4:
        return text.rsplit(".", 1)[0] + ".x"
    return ":".join(f"{int(group, 16):x}" for group in address.exploded.split(":")[:3]) + ":…:x"


@dataclass(frozen=True)
class Masker:
    """Masks addresses in the print's text; `keep`: addresses shown whole (the people of the change record)."""

    keep: frozenset[str] = frozenset()

    @classmethod
    def keeping(cls, names: Iterable[str | None]) -> Masker:
        return cls(frozenset(n.lower() for n in names if n))

    def __call__(self, text: str) -> str:
        def email(match: re.Match[str]) -> str:
            whole = match.group(0)
            return whole if whole.lower() in self.keep else mask_email(match.group(1), match.group(2))

        def ip(match: re.Match[str]) -> str:
            return mask_ip(match.group(0)) or match.group(0)

        return IPV6.sub(ip, IPV4.sub(ip, EMAIL.sub(email, text)))
