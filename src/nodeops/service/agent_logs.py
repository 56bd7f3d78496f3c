"""collect_log (spec §8, ``POST /api/job/{job_id}/collect_log/`` with ``instance_id``): the agent's own log of a
finished instance fetched from its host into a ``record_attachments`` row, which the log API's download serves
(``GET /api/job/{job_id}/log/download/?instance_id=...&attachment_id=...``, docs/log-reading.md).

Node Manager queues a celery task and answers its id (or -1); nodeops fetches at once, within
``COLLECT_TIMEOUT_S``, and answers the attachment (docs/compatibility.md "collect_log"). Who may read the job's
logs may collect them (as retry and revoke: the job's view permission on every business of its scope).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from nodeops.crypto import SecretBox
from nodeops.domain.contract import Contract, Field, Kind
from nodeops.domain.status import ACTIVE, Status
from nodeops.engine.agent_log import AGENT_LOG, fetch_agent_log
from nodeops.engine.connect import transport_factory
from nodeops.errors import AgentLogUnavailable, InstanceNotFound, InstanceStillActive, JobNotFound, TransportError
from nodeops.service.auth import Caller
from nodeops.service.job_details import job_access, parse_job_id
from nodeops.settings import Settings
from nodeops.store import attachments, job_reads, pipelines
from nodeops.store import instances as store_instances
from nodeops.store.db import Database
from nodeops.store.pipelines import HostWork

COLLECT_TIMEOUT_S = 30.0  # each of: the login, the rights check, the read
DOWNLOAD_PATH = "/api/job/{job_id}/log/download/"

COLLECT_LOG = Contract(
    "CollectLogRequest",
    "collect_log: fetch the agent's own log (agent.log) of a finished instance from its host.",
    (
        Field(
            name="instance_id",
            kind=Kind.INSTANCE_ID,
            required=True,
            description="The instance (object_type|node_type|type|id, or a bk_host_id).",
        ),
    ),
)


class AgentLogs:
    """Fetches agents' logs for collect_log; build one per request (it holds no connection)."""

    def __init__(self, db: Database, settings: Settings, box: SecretBox) -> None:
        self.db = db
        self.settings = settings
        self.box = box

    async def collect(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        problems: dict[str, str] = {}
        job_id = parse_job_id(params, problems)
        values = COLLECT_LOG.gather(params, problems)
        COLLECT_LOG.check(problems)
        wanted = values.instance_id("instance_id")
        assert wanted is not None

        def find() -> tuple[str, HostWork]:
            with self.db.session() as session:
                job = job_reads.find_job(session, job_id)
                if job is None:
                    raise JobNotFound(job_id=job_id)
                caller.require_job_view(job_access(job))
                (instance,) = store_instances.pick(job_reads.latest_instances(session, job_id), [wanted])
                if instance is None:
                    raise InstanceNotFound(job_id=job_id, instance_id=str(wanted))
                if Status(instance.status) in ACTIVE:
                    raise InstanceStillActive(job_id=job_id, instance_id=instance.instance_id, status=instance.status)
                work = pipelines.record_work(session, record_id=instance.record_id)
                if not isinstance(work, HostWork):
                    raise InstanceNotFound(
                        job_id=job_id, instance_id=instance.instance_id, detail="its host or access point is gone"
                    )
                return instance.instance_id, work

        instance_id, work = await self.db.call(find)
        connect = transport_factory(
            db=self.db, policy=self.settings.ssh_host_key_policy, connect_timeout_s=COLLECT_TIMEOUT_S
        )
        try:
            fetched = await fetch_agent_log(
                work, self.box, connect, self.db, self.settings.tz, timeout_s=COLLECT_TIMEOUT_S
            )
        except TransportError as exc:
            raise AgentLogUnavailable(ip=work.ip, reason=str(exc)) from None
        name = f"{work.ip.replace(':', '_')}-{AGENT_LOG}"

        def keep() -> int:
            with self.db.session() as session:
                return attachments.add_attachment(
                    session, record_id=work.record_id, name=name, content=fetched.content, created_by=caller.username
                )

        attachment_id = await self.db.call(keep)
        return {
            "job_id": job_id,
            "instance_id": instance_id,
            "attachment_id": attachment_id,
            "name": name,
            "size_bytes": len(fetched.content),
            "host_size_bytes": fetched.size_bytes,
            "truncated": fetched.truncated,
            "download_url": f"{DOWNLOAD_PATH.format(job_id=job_id)}?"
            + urlencode({"instance_id": instance_id, "attachment_id": attachment_id}),
        }
