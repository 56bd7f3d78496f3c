"""The tables. Every job runs through a subscription and its tasks, as in Node Manager (spec §3).

Times are stored as naive UTC and read back timezone-aware (``UTCDateTime``). A step's log is a series of
append-only chunks (``step_logs``): appending while a step runs is one INSERT, never a rewrite of the text,
and one instance's whole log is one indexed range scan on ``(record_id, step_index, id)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, stored naive in UTC so SQLite and PostgreSQL agree."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class AccessEpoch(Base):
    """One row whose ``value`` grows on every change to apps, users, grants, revoked tokens or blocks, so
    readers may cache what they read of them."""

    __tablename__ = "access_epoch"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class App(Base):
    """An ESB app allowed to call the API (``bk_app_code`` + ``bk_app_secret``)."""

    __tablename__ = "apps"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    allow_username: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # `app disable`
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person (or system) on whose behalf an app calls."""

    __tablename__ = "users"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # `user disable`
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BizGrant(Base):
    """The ``task_history_view`` right of a user on one business (spec §10)."""

    __tablename__ = "biz_grants"
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"), primary_key=True)
    bk_biz_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class RevokedToken(Base):
    """A bk_token or web session taken back before it expires (``token revoke``, signing out); kept until then."""

    __tablename__ = "revoked_tokens"
    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of the token
    username: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthFailure(Base):
    """Failed authentications of one app from one client address in the current window, and the block they
    led to; shared by every process (docs/security.md, "Revocation, throttling and the audit log")."""

    __tablename__ = "auth_failures"
    app_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_started_at: Mapped[datetime] = mapped_column(index=True)
    failures: Mapped[int] = mapped_column(Integer)
    blocked_until: Mapped[datetime | None] = mapped_column(nullable=True)


class Host(Base):
    """A host of the inventory, with its SSH login; credentials are encrypted (never plaintext)."""

    __tablename__ = "hosts"
    __table_args__ = (
        UniqueConstraint("bk_cloud_id", "inner_ip"),
        Index(None, "inner_ipv6"),
        Index(None, "bk_cloud_id", "node_type"),
        Index(None, "agent_status"),
    )
    bk_host_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bk_biz_id: Mapped[int] = mapped_column(Integer)
    bk_cloud_id: Mapped[int] = mapped_column(Integer, default=0)
    bk_supplier_id: Mapped[int] = mapped_column(Integer, default=0)
    bk_supplier_account: Mapped[str] = mapped_column(String(64), default="0", server_default="0")
    bk_host_name: Mapped[str | None] = mapped_column(String(128))
    inner_ip: Mapped[str | None] = mapped_column(String(64))
    inner_ipv6: Mapped[str | None] = mapped_column(String(64))
    outer_ip: Mapped[str | None] = mapped_column(String(64))
    os_type: Mapped[str] = mapped_column(String(16), default="LINUX")
    login_ip: Mapped[str | None] = mapped_column(String(64))
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    account: Mapped[str | None] = mapped_column(String(64))
    auth_type: Mapped[str] = mapped_column(String(16), default="PASSWORD")
    password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    credentials_expire_at: Mapped[datetime | None]
    transport: Mapped[str] = mapped_column(String(16), default="ssh", server_default="ssh")
    ap_id: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    setup_path: Mapped[str | None] = mapped_column(String(255))
    agent_status: Mapped[str] = mapped_column(String(32), default="NOT_INSTALLED", server_default="NOT_INSTALLED")
    agent_version: Mapped[str | None] = mapped_column(String(64))
    agent_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    last_heartbeat_at: Mapped[datetime | None]
    # AGENT (direct area), PROXY, PAGENT (an agent of a cloud area); network spec §13.1
    node_type: Mapped[str] = mapped_column(String(16), default="AGENT", server_default="AGENT")
    install_channel_id: Mapped[int | None] = mapped_column(Integer)
    upstream_nodes: Mapped[list[Any] | None] = mapped_column(JSON)  # the proxy/jump host it was last reached through
    heartbeat_interval_s: Mapped[float | None] = mapped_column(Float)  # its agent's configured rhythm
    is_manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # installed by hand
    # without root or sudo, the account installs into setup_path, a folder it can write (network spec §18)
    owned_path: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TopoNode(Base):
    """A node of the topology: a business (``biz``), a set or a module, with its parent (spec §4 ``bk_obj_id``).

    ``template_id`` is the set template of a set, the service template of a module (null: none).
    """

    __tablename__ = "topo_nodes"
    __table_args__ = (UniqueConstraint("bk_obj_id", "bk_inst_id"), Index(None, "bk_biz_id", "bk_obj_id"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bk_obj_id: Mapped[str] = mapped_column(String(32))
    bk_inst_id: Mapped[int] = mapped_column(BigInteger)
    bk_inst_name: Mapped[str] = mapped_column(String(128), default="")
    bk_biz_id: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("topo_nodes.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[int | None] = mapped_column(BigInteger)


class HostModule(Base):
    """A host placed in a module (a host may sit in several modules of its business)."""

    __tablename__ = "host_modules"
    bk_host_id: Mapped[int] = mapped_column(ForeignKey("hosts.bk_host_id", ondelete="CASCADE"), primary_key=True)
    bk_module_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)


class ServiceInstance(Base):
    """A service instance: processes bound to one host in one module (``service|instance|service|{id}``)."""

    __tablename__ = "service_instances"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    bk_biz_id: Mapped[int] = mapped_column(Integer, index=True)
    bk_host_id: Mapped[int] = mapped_column(ForeignKey("hosts.bk_host_id", ondelete="CASCADE"), index=True)
    bk_module_id: Mapped[int] = mapped_column(BigInteger, index=True)
    processes: Mapped[list[Any]] = mapped_column(default=list)


class AccessPoint(Base):
    """Where agents report to and where they are installed (Node Manager's ``ap_id``)."""

    __tablename__ = "access_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    server_url: Mapped[str] = mapped_column(String(255))
    linux_setup_path: Mapped[str] = mapped_column(String(255), default="/usr/local/nodeops-agent")
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    # where proxies (and so their areas' agents) report: the URL as seen from outside; None: server_url
    outer_server_url: Mapped[str | None] = mapped_column(String(255))
    package_inner_url: Mapped[str | None] = mapped_column(String(255))
    package_outer_url: Mapped[str | None] = mapped_column(String(255))
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    creator: Mapped[list[Any] | None] = mapped_column(JSON)
    # Node Manager's fields kept and echoed, not acted on (server lists, zk hosts, region, ports...)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    zk_password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(default=utcnow, onupdate=utcnow)


class CloudArea(Base):
    """A cloud area (管控区域, network spec §12); area 0, the direct area, has no row."""

    __tablename__ = "cloud_areas"
    bk_cloud_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bk_cloud_name: Mapped[str] = mapped_column(String(45), unique=True)
    isp: Mapped[str | None] = mapped_column(String(45))
    ap_id: Mapped[int] = mapped_column(Integer, default=-1, server_default="-1")  # -1: 自动选择接入点
    creator: Mapped[list[Any]] = mapped_column(JSON, default=list)
    is_visible: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InstallChannel(Base):
    """An install channel (安装通道, network spec §14): the jump servers a host is reached through, and the
    upstream its agent uses."""

    __tablename__ = "install_channels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(45))
    bk_cloud_id: Mapped[int] = mapped_column(Integer, index=True)
    jump_servers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    upstream_servers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentPackage(Base):
    """A registered, versioned agent package the service can push to hosts."""

    __tablename__ = "agent_packages"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PackageContent(Base):
    """The bytes of an agent package, by sha256: how a process on any machine gets the file it pushes
    (``engine.packages.local_copy``). Kept when a version is registered again with other bytes, so a job that
    chose the older package can still push it."""

    __tablename__ = "package_contents"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HostKey(Base):
    """The SSH host key trusted for an address and port: one, so the first process to record a new host's key
    wins and any other sees that key (``store.host_keys``). ``key`` is the base64 blob of an OpenSSH public key."""

    __tablename__ = "host_keys"
    host: Mapped[str] = mapped_column(String(64), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Subscription(Base):
    """What to do (steps) on which scope (nodes); every job runs through a one-off subscription."""

    __tablename__ = "subscriptions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(128))
    object_type: Mapped[str] = mapped_column(String(16))
    node_type: Mapped[str] = mapped_column(String(32))
    nodes: Mapped[list[Any]] = mapped_column(default=list)
    bk_biz_id: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(16), default="once")
    creator: Mapped[str] = mapped_column(String(64), default="")
    from_system: Mapped[str] = mapped_column(String(64), default="")
    enable: Mapped[bool] = mapped_column(Boolean, default=True)
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # its runs' batches and failure threshold ({batch_size, max_fail_percentage, batch_interval_s}); null: all at once
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # nodeops: where its job's end is notified (a job's own webhook_url, or the default when it was created);
    # null: nowhere (store.webhooks)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SubscriptionStep(Base):
    """One step of a subscription; agent jobs have the single step ``agent`` (spec §3)."""

    __tablename__ = "subscription_steps"
    __table_args__ = (UniqueConstraint("subscription_id", "step_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer, default=0)
    step_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Job(Base):
    """One user-facing job (``job_id``)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_type: Mapped[str] = mapped_column(String(45))
    status: Mapped[str] = mapped_column(String(45), default="PENDING")
    statistics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    from_system: Mapped[str] = mapped_column(String(64), default="")
    bk_biz_scope: Mapped[list[Any]] = mapped_column(default=list)
    error_hosts: Mapped[list[Any]] = mapped_column(default=list)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    is_auto_trigger: Mapped[bool] = mapped_column(Boolean, default=False)
    start_at: Mapped[datetime] = mapped_column(default=utcnow)
    end_at: Mapped[datetime | None]
    # its batches and failure threshold ({batch_size, max_fail_percentage, batch_interval_s}); null: all at once
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SubscriptionTask(Base):
    """One execution of a subscription; a job's first run and each retry are tasks."""

    __tablename__ = "subscription_tasks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    scope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_ready: Mapped[bool] = mapped_column(Boolean, default=True)
    err_msg: Mapped[str | None] = mapped_column(Text)
    is_auto_trigger: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # celery mode: when the task's hosts were handed to the broker; a task left unpublished (the API died
    # between commit and publish) is published by the reaper
    published_at: Mapped[datetime | None]
    package_version: Mapped[str | None] = mapped_column(String(64))  # the agent package its hosts get


LOOKUP_INDEXES = {
    "instance_id": "ix_instance_records_lookup_instance_id",
    "bk_host_id": "ix_instance_records_lookup_bk_host_id",
    "host_key": "ix_instance_records_lookup_host_key",
}


class InstanceRecord(Base):
    """One host (instance) inside one task: the thing the log API reads.

    ``instance_id`` keeps the form chosen at creation (spec §4); ``bk_host_id`` and ``host_key`` hold both
    identities of a host so either form finds the record. ``attempt`` counts runs of this instance in its job
    (1 = first run, +1 per retry).
    """

    __tablename__ = "instance_records"
    __table_args__ = (
        Index(None, "task_id", "status"),
        Index(None, "task_id", "id"),  # a page of a task's results, in record id order (task_result)
        Index(None, "subscription_id", "instance_id"),
        # the log API's lookup of an instance's records (``store.log_reads``), one index per instance_id form
        # (``store.instances``); each also holds the columns that lookup reads, so it never visits the table
        Index(LOOKUP_INDEXES["instance_id"], "job_id", "instance_id", "attempt", "revision"),
        Index(LOOKUP_INDEXES["bk_host_id"], "job_id", "bk_host_id", "attempt", "host_key", "revision", "instance_id"),
        Index(LOOKUP_INDEXES["host_key"], "job_id", "host_key", "attempt", "revision", "instance_id"),
        # celery mode: a claim checks that the host runs nothing else and counts what runs (``store.cluster``);
        # the reaper finds a lost worker's records
        Index(None, "status", "bk_host_id"),
        Index(None, "worker_id", "status"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("subscription_tasks.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    instance_id: Mapped[str] = mapped_column(String(128))
    bk_host_id: Mapped[int | None] = mapped_column(BigInteger)
    host_key: Mapped[str | None] = mapped_column(String(96))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    instance_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(45), default="PENDING")
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True)
    # bumped by every write to the record, its steps or its logs (store.jobs), so a reader may reuse what it
    # built for the same revision
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    start_at: Mapped[datetime | None]
    finish_at: Mapped[datetime | None]
    # celery mode: the worker that claimed the record (PENDING -> RUNNING), and a revoke's request to it
    worker_id: Mapped[str | None] = mapped_column(String(128))
    revoke_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    batch: Mapped[int | None] = mapped_column(Integer)  # the rolling batch of its host (null: no batches)


class InstallToken(Base):
    """A one-time, expiring token of a manual install's command (its SHA-256 only), for one record's step; the
    token the install script reports with also keeps how the script ended."""

    __tablename__ = "install_tokens"
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("instance_records.id", ondelete="CASCADE"), index=True)
    step_index: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str | None] = mapped_column(String(16))  # DONE or FAILED, once the install script ended
    detail: Mapped[str | None] = mapped_column(String(500))  # why it failed


class RecordAttachment(Base):
    """A file attached to a record after it ran (the agent's own log, fetched by collect_log)."""

    __tablename__ = "record_attachments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("instance_records.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecordStep(Base):
    """One step of one instance record's plan; ``start_at`` null until it starts (PENDING)."""

    __tablename__ = "record_steps"
    record_id: Mapped[int] = mapped_column(ForeignKey("instance_records.id", ondelete="CASCADE"), primary_key=True)
    step_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(45), default="PENDING")
    start_at: Mapped[datetime | None]
    finish_at: Mapped[datetime | None]


class RecordAnswer(Base):
    """A finished record's log API answer, sealed when it finished (``store.answers``): reading it is one row.

    Valid only while ``revision`` equals the record's (any later write to the record bumps that) and for the
    zone it was rendered in; otherwise the reader renders the answer from the steps and their logs.
    """

    __tablename__ = "record_answers"
    record_id: Mapped[int] = mapped_column(ForeignKey("instance_records.id", ondelete="CASCADE"), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    zone: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class StepLog(Base):
    """A chunk of one step's log: one or more whole lines, without a trailing newline."""

    __tablename__ = "step_logs"
    # one step's chunks in order (the log API); a record's chunks in the order written (reading on from a cursor)
    __table_args__ = (Index(None, "record_id", "step_index", "id"), Index(None, "record_id", "id"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("instance_records.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    """A ``nodeops worker`` process of the cluster and its lease, renewed by the database's clock. A worker whose
    lease has passed is ended by the reaper (``ended_at``): its running records fail, and it may write no more."""

    __tablename__ = "workers"
    __table_args__ = (Index(None, "ended_at", "lease_until"),)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    lease_until: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """A notification that a job ended, to one URL (``store.webhooks``): written in the transaction that ends
    the job, so none is lost, then POSTed by a delivery loop until a 2xx answer or ``max_attempts``.

    One per end of the job: its first run, and each retry or subscription run that ends it again (``task_id``,
    the job's newest task when it ended). ``next_attempt_at`` is when it is due; a process sending it pushes that
    forward by a lease and writes ``claim_token`` (a conditional UPDATE), so no two send one attempt, and one that
    dies mid-send leaves it due again once the lease passes. ``attempt_log`` is every attempt's
    ``{at, duration_ms, http_status | error}``. The signing secret is never stored here.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("job_id", "task_id", "url"), Index(None, "status", "next_attempt_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")  # PENDING, DELIVERED or FAILED
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempt_log: Mapped[list[Any]] = mapped_column(default=list)
    next_attempt_at: Mapped[datetime]
    claim_token: Mapped[str | None] = mapped_column(String(64))
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
