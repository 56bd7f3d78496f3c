"""collect_log (spec §8): the agent's own log (``agent.log`` in its install path) fetched from a host after its
job ran, logging in as the job did (its route, its account, with the rights ``engine.privilege`` decides), capped
at its last ``AGENT_LOG_MAX_BYTES`` and masked as job logs are (the login's password, secret-named fields); the
agent masks its own token in that file itself."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import tzinfo

from nodeops.crypto import SecretBox
from nodeops.engine import privilege
from nodeops.engine.logwriter import LogWriter, mask
from nodeops.engine.steps import TransportFactory
from nodeops.errors import TransportError
from nodeops.store.db import Database
from nodeops.store.pipelines import HostWork

AGENT_LOG = "agent.log"
AGENT_LOG_MAX_BYTES = 1024 * 1024  # the agent rotates its log at 1 MiB: about one whole file
NO_LOG_EXIT = 44  # the probe's status when there is no agent.log


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedLog:
    content: bytes  # masked; its last AGENT_LOG_MAX_BYTES, after a line saying so when the file is longer
    size_bytes: int  # of the file on the host
    truncated: bool


async def fetch_agent_log(
    work: HostWork, box: SecretBox, connect: TransportFactory, db: Database, tz: tzinfo, *, timeout_s: float
) -> FetchedLog:
    """Read ``work``'s agent.log from its host; raises TransportError (the host unreachable, refused, no log)."""
    writer = LogWriter(db, tz)  # never started: only collects the secrets the connect opens, to mask them
    transport = connect(work, box, writer)
    try:
        rights = await privilege.decide(transport, work, timeout_s=timeout_s)
        path = shlex.quote(f"{work.setup_path}/{AGENT_LOG}")
        command = f"[ -f {path} ] || exit {NO_LOG_EXIT}; wc -c < {path}; tail -c {AGENT_LOG_MAX_BYTES} {path}"
        lines: list[str] = []
        result = await transport.run(privilege.wrap(command, rights), timeout_s=timeout_s, on_line=lines.append)
    finally:
        await transport.aclose()
    if result.exit_status == NO_LOG_EXIT:
        raise TransportError(f"{work.setup_path}/{AGENT_LOG} does not exist on {work.ip}", host=work.ip)
    if not result.ok or not lines or not lines[0].strip().isdigit():
        said = "; ".join(result.tail[-3:]) or "no output"
        raise TransportError(f"reading {work.setup_path}/{AGENT_LOG} exited {result.exit_status}: {said}")
    size = int(lines[0])
    text = "\n".join(lines[1:]) + "\n" if len(lines) > 1 else ""
    truncated = size > AGENT_LOG_MAX_BYTES
    if truncated:
        text = f"[nodeops: {AGENT_LOG} is {size} bytes; its last {AGENT_LOG_MAX_BYTES} follow]\n{text}"
    return FetchedLog(content=mask(text, writer.secrets).encode(), size_bytes=size, truncated=truncated)
