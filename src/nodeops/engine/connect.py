"""Builds the transport of a host pipeline: ``local`` hosts get a subprocess, others SSH, checking host keys
against the database's ``host_keys`` (``store.host_keys.HostKeyTable``), which every process shares; the keys of
the host were read with its work, so a login asks the database only to record a new host's key.

Credentials are opened here, at connect time, and registered with the log writer so the exact password
text is masked should any command output echo it. A host with a route (a P-Agent behind a proxy of its area, a
host of an install channel) is reached through the hop its work was given, logging in to the hop with the hop's
own stored login, both hosts' keys checked the same way; a route without a hop fails the connect with its reason.
"""

from __future__ import annotations

from nodeops.crypto import SecretBox
from nodeops.engine.logwriter import LogWriter
from nodeops.engine.steps import TransportFactory
from nodeops.engine.transports.base import Transport
from nodeops.engine.transports.local import LocalTransport
from nodeops.engine.transports.ssh import HostKeyPolicy, SSHTarget, SSHTransport, UploadLimiter
from nodeops.errors import AuthFailed, HostUnreachable
from nodeops.store.db import Database
from nodeops.store.host_keys import HostKeyTable, ReadAhead
from nodeops.store.pipelines import HostWork


def transport_factory(*, db: Database, policy: str, connect_timeout_s: float) -> TransportFactory:
    """A factory sharing one upload budget across every SSH transport it makes, whose host keys are those of
    ``db`` (``policy``: accept-new, strict or off, as ``Settings.ssh_host_key_policy``)."""
    limiter = UploadLimiter()
    host_keys = HostKeyTable(db)
    key_policy = HostKeyPolicy(policy)

    def login(
        *,
        host: str,
        port: int,
        account: str | None,
        password_enc: bytes | None,
        key_enc: bytes | None,
        known: tuple[str, ...] | None,
        box: SecretBox,
        writer: LogWriter,
        via: SSHTransport | None = None,
    ) -> SSHTransport:
        if not account:
            raise AuthFailed(f"no account is known for {host}; reinstall the host with its login")
        password = box.open(password_enc) if password_enc else None
        key = box.open(key_enc) if key_enc else None
        if password:
            writer.add_secret(password)
        target = SSHTarget(
            host=host,
            port=port,
            username=account,
            password=password,
            private_key=key,
            connect_timeout_s=connect_timeout_s,
            host_key_policy=key_policy,
        )
        keys = host_keys if known is None else ReadAhead(host_keys, host, port, known)
        return SSHTransport(target, upload_limiter=limiter, host_keys=keys, via=via)

    def connect(work: HostWork, box: SecretBox, writer: LogWriter) -> Transport:
        if work.transport == "local":
            return LocalTransport()
        via = None
        if work.route is not None:
            hop = work.route.hop
            if hop is None:
                raise HostUnreachable(work.route.missing or f"no way to reach {work.ip}", host=work.ip)
            via = login(
                host=hop.address,
                port=hop.ssh_port,
                account=hop.account,
                password_enc=hop.password_enc,
                key_enc=hop.key_enc,
                known=hop.host_keys,
                box=box,
                writer=writer,
            )
        return login(
            host=work.ssh_address,
            port=work.ssh_port,
            account=work.account,
            password_enc=work.password_enc,
            key_enc=work.key_enc,
            known=work.host_keys,
            box=box,
            writer=writer,
            via=via,
        )

    return connect
