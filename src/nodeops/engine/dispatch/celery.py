"""Celery as the distributed mode's transport: the only module that imports Celery.

The broker carries one kind of message, "run these records of this task" (one host's), named ``nodeops.run_host``
with ``(task_id, record_ids, package_version)``. Messages are acknowledged late (after the host is done) and a
worker takes one at a time per thread (prefetch 1); a message delivered twice, or lost, does no harm, because
every decision is a claim in PostgreSQL (``engine.cluster``). ``CeleryDispatcher`` is the API's side: it
publishes a task's hosts, revokes through the database and runs the reaper. ``run_worker`` is ``nodeops worker``:
Celery's own worker with a thread pool, each thread handing its message to the process's ``ClusterWorker``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine, Sequence
from datetime import tzinfo
from typing import Any

from celery import Celery

from nodeops.domain.status import ACTIVE, Status
from nodeops.engine.cluster import ClusterWorker, Publish, Reaper, publish_task
from nodeops.engine.dispatch import REVOKED_LINE, cancel_all
from nodeops.engine.logwriter import format_lines, line_stamp
from nodeops.engine.packages import ChosenPackage
from nodeops.engine.runner import forget_credentials_forever
from nodeops.store import cluster, jobs
from nodeops.store.db import Database

log = logging.getLogger(__name__)
TASK_NAME = "nodeops.run_host"
QUEUE = "nodeops.hosts"


def celery_app(broker_url: str) -> Celery:
    """The Celery application of the API and the workers: late acknowledgement, prefetch 1, JSON only, no
    result backend (results are rows in PostgreSQL)."""
    app = Celery("nodeops", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_publish_retry=True,
    )
    return app


def publisher(app: Celery) -> Publish:
    def publish(task_id: int, record_ids: Sequence[int], package_version: str) -> None:
        app.send_task(TASK_NAME, args=(task_id, list(record_ids), package_version), queue=QUEUE)

    return publish


QUEUE_DEPTH_TIMEOUT_S = 3.0  # a broker that does not answer within this fails the scrape's figure, not the scrape


def queue_depth(broker_url: str) -> int:
    """Messages waiting in the host queue now (a metrics scrape's figure): one passive declare on a connection of
    its own, bounded by ``QUEUE_DEPTH_TIMEOUT_S``. Raises whatever the broker's client raises."""
    from kombu.connection import Connection
    from kombu.exceptions import ChannelError

    options = {
        "socket_timeout": QUEUE_DEPTH_TIMEOUT_S,
        "socket_connect_timeout": QUEUE_DEPTH_TIMEOUT_S,
        "max_retries": 0,
    }
    connection = Connection(  # type: ignore[no-untyped-call]
        broker_url, connect_timeout=QUEUE_DEPTH_TIMEOUT_S, transport_options=options
    )
    with connection as conn:
        conn.ensure_connection(max_retries=1, timeout=QUEUE_DEPTH_TIMEOUT_S)
        try:
            declared = conn.default_channel.queue_declare(queue=QUEUE, passive=True)
        except ChannelError as exc:
            if str(getattr(exc, "reply_code", "")) == "404":  # no such queue yet (Redis: an empty one): nothing waits
                return 0
            raise
        return int(declared.message_count)


class CeleryDispatcher:
    """The API process's dispatcher in celery mode: it runs no pipeline itself."""

    def __init__(self, db: Database, tz: tzinfo, *, broker_url: str, reaper_interval_s: float) -> None:
        self.db = db
        self.tz = tz
        self.app = celery_app(broker_url)
        self.publish = publisher(self.app)
        self.reaper = Reaper(db, tz, self.publish, interval_s=reaper_interval_s)
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """The reaper and the credentials janitor; nothing is recovered: the reaper ends what lost workers left."""
        self._spawn(self.reaper.run(), "nodeops-reaper")
        self._spawn(forget_credentials_forever(self.db), "nodeops-janitor")

    def submit(self, job_id: int, task_id: int, package: ChosenPackage) -> None:
        """Publish the task's hosts in the background; should this process die first, the reaper publishes
        them (the task stays unpublished in the database until then)."""
        self._spawn(self._publish(task_id, package.version), f"publish-{task_id}")

    async def _publish(self, task_id: int, version: str) -> None:
        try:
            count = await asyncio.to_thread(publish_task, self.db, self.publish, task_id, version)
        except Exception:
            log.exception(
                "publishing task %d failed; the reaper publishes it again", task_id, extra={"action": "publish_failed"}
            )
            return
        log.info("published task %d: %d hosts", task_id, count, extra={"action": "task_published"})

    async def wait(self, job_id: int, poll_s: float = 0.2) -> None:
        while True:
            status = await self.db.call(functools.partial(self._status, job_id))
            if not status or Status(status) not in ACTIVE:
                return
            await asyncio.sleep(poll_s)

    def _status(self, job_id: int) -> str:
        with self.db.session() as session:
            return jobs.job_status(session, job_id)

    async def revoke(self, job_id: int, record_ids: Sequence[int], *, whole_job: bool) -> None:
        """One transaction: PENDING records FAILED, RUNNING ones asked to stop, the job TERMINATED; then their
        owners, notified, cancel them (a lost owner's are ended by the reaper)."""
        line = "\n".join(format_lines(REVOKED_LINE, level="WARNING", stamp=line_stamp(self.tz)))

        def request() -> None:
            with self.db.session() as session:
                cluster.request_revoke(self.db, session, job_id=job_id, record_ids=record_ids, line=line)

        await self.db.call(request)

    async def aclose(self) -> None:
        await cancel_all(self._background)
        self.app.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def run_worker(app: Celery, worker: ClusterWorker, *, name: str, concurrency: int, celery_args: Sequence[str]) -> None:
    """Run Celery's worker (a thread pool of ``concurrency``) until it stops, each message run by ``worker``;
    ``celery_args`` are passed to Celery's worker as they are (its usual options)."""

    def run_host(*args: object, **kwargs: object) -> None:
        if len(args) != 3 or kwargs:  # a message not sent by publish_task: the worker logs and drops it
            worker.run(None, args, kwargs)
            return
        worker.run(*args)

    app.task(name=TASK_NAME, acks_late=True)(run_host)
    worker.start()
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--hostname={name}@%h",
                f"--queues={QUEUE}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",  # no event every 2 s: a worker's liveness is its lease in PostgreSQL
                "--loglevel=INFO",
                *celery_args,
            ]
        )
    finally:
        worker.stop()
