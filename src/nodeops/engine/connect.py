"""Builds the transport of a host pipeline: ``local`` hosts get a subprocess, others SSH, checking host keys
against the database's ``host_keys`` (``store.host_keys.HostKeyTable``), which every process shares; the keys of
the host were read with its work, so a login asks the database only to record a new host's key.

Credentials are opened here, at connect time, and registered with the log writer so the exact password
text is masked should any command output echo it.
"""

from __future__ import annotations

from nodeops.crypto import SecretBox
from nodeops.engine.logwriter import LogWriter
from nodeops.engine.steps import TransportFactory
from nodeops.engine.transports.base import Transport
from nodeops.engine.transports.local import LocalTransport
from nodeops.engine.transports.ssh import HostKeyPolicy, SSHTarget, SSHTransport, UploadLimiter
from nodeops.errors import AuthFailed
from nodeops.store.db import Database
from nodeops.store.host_keys import HostKeyTable, ReadAhead
from nodeops.store.pipelines import HostWork


def transport_factory(*, db: Database, policy: str, connect_timeout_s: float) -> TransportFactory:
    """A factory sharing one upload budget across every SSH transport it makes, whose host keys are those of
    ``db`` (``policy``: accept-new, strict or off, as ``Settings.ssh_host_key_policy``)."""
    limiter = UploadLimiter()
    host_keys = HostKeyTable(db)
    key_policy = HostKeyPolicy(policy)

    def connect(work: HostWork, box: SecretBox, writer: LogWriter) -> Transport:
        if work.transport == "local":
            return LocalTransport()
        if not work.account:
            raise AuthFailed(f"no account is known for {work.ip}; reinstall the host with its login")
        password = box.open(work.password_enc) if work.password_enc else None
        key = box.open(work.key_enc) if work.key_enc else None
        if password:
            writer.add_secret(password)
        target = SSHTarget(
            host=work.ip,
            port=work.ssh_port,
            username=work.account,
            password=password,
            private_key=key,
            connect_timeout_s=connect_timeout_s,
            host_key_policy=key_policy,
        )
        keys = host_keys if work.host_keys is None else ReadAhead(host_keys, work.ip, work.ssh_port, work.host_keys)
        return SSHTransport(target, upload_limiter=limiter, host_keys=keys)

    return connect
