"""The SSH host keys the service trusts, beyond what a login records by itself (``store.host_keys``): importing
an OpenSSH known_hosts file (the data dir's, once, at start) and forgetting a host's key.

Keys live in the database so every process, on any machine, trusts the same ones. Imports nothing from the
transports: a key here is the text "algorithm base64", as the ``HostKeyStore`` seam passes it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from nodeops.errors import InvalidInput
from nodeops.store import host_keys as host_key_rows
from nodeops.store.db import Database

log = logging.getLogger(__name__)
DEFAULT_PORT = 22
IMPORTED_SUFFIX = ".imported"  # the known_hosts file is renamed so, once imported: a forgotten key stays forgotten
_BRACKETED = re.compile(r"\[(?P<host>[^\]]+)\]:(?P<port>[0-9]{1,5})")


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownHostsImport:
    """What importing a known_hosts file did."""

    added: int  # keys now trusted that were not
    already: int  # addresses that had a key: theirs is kept
    skipped: int  # lines naming no single IP address (hashed names, wildcards, markers) or not a key line


def normalise_ip(ip: str) -> str:
    """``ip`` as the inventory spells it (IPv6 compressed); raises InvalidInput naming ``ip`` if it is not one."""
    try:
        return ipaddress.ip_address(ip.strip()).compressed
    except ValueError:
        raise InvalidInput.field("ip", f"{ip!r} is not an IPv4 or IPv6 address") from None


def parse_known_hosts(text: str) -> tuple[list[tuple[str, int, str]], int]:
    """The ``(host, port, "algorithm base64")`` entries of a known_hosts text, and how many lines were skipped:
    comments and blank lines are not counted; markers (@cert-authority, @revoked), hashed names and patterns
    with wildcards or negations are skipped, as are names that are not IP addresses (hosts are reached by IP)."""
    entries: list[tuple[str, int, str]] = []
    skipped = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 3 or fields[0].startswith("@"):
            skipped += 1
            continue
        patterns, algorithm, blob = fields[:3]
        found = False
        for pattern in patterns.split(","):
            address = _address(pattern)
            if address is not None:
                entries.append((*address, f"{algorithm} {blob}"))
                found = True
        skipped += not found
    return entries, skipped


def import_known_hosts(db: Database, path: Path) -> KnownHostsImport | None:
    """Trust the keys of the known_hosts file at ``path`` for the addresses that have none yet, then rename the
    file to ``*.imported``; None when there is no file. The service calls it at every start with the data dir's
    ``known_hosts`` (where keys were kept before the database), so an upgrade keeps trusting what it trusted, and
    an operator may drop a file there to trust keys ahead of a first login (policy ``strict``)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    entries, skipped = parse_known_hosts(text)
    with db.session() as session:
        added = host_key_rows.add_missing(session, entries)
    path.replace(path.with_name(path.name + IMPORTED_SUFFIX))
    result = KnownHostsImport(added=added, already=len(entries) - added, skipped=skipped)
    log.info(
        "imported %d host keys from %s (%d addresses already had one, %d lines skipped)",
        result.added,
        path,
        result.already,
        result.skipped,
        extra={"action": "host_keys_imported"},
    )
    return result


def forget(db: Database, ip: str, port: int | None = None) -> int:
    """Stop trusting the key of ``ip`` (on ``port``, or on every port), so the next login under accept-new trusts
    the key the host shows then; returns how many keys were forgotten. Raises InvalidInput for a bad ip."""
    host = normalise_ip(ip)
    with db.session() as session:
        return host_key_rows.forget(session, host, port)


def _address(pattern: str) -> tuple[str, int] | None:
    matched = _BRACKETED.fullmatch(pattern)
    host, port = (matched["host"], int(matched["port"])) if matched else (pattern, DEFAULT_PORT)
    try:
        return ipaddress.ip_address(host).compressed, port
    except ValueError:
        return None
