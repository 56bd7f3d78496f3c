"""The one Settings class, read from ``NODEOPS_*`` environment variables.

Its defaults run the embedded mode: a SQLite file under the data dir, in-process work, bound to 127.0.0.1.
Build it once in an entry point (``create_app``, the CLI callback) and pass it down; nothing imports a
module-level instance. This module imports nothing else from nodeops.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import tzinfo
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SQLITE_FILE_NAME = "nodeops.sqlite3"
SECRET_KEY_FILE_NAME = "secret_key"
MAX_BODY_BYTES = 1024 * 1024
BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp")
# Where a proxy's relay listens on the proxy's inner address, so where its area's agents report: Node Manager's
# proxy-pass port (network spec §13.2), as the agent's own RELAY_PORT
RELAY_PORT = 17981
# what the 安装 step POSTs to from the host before it starts the agent (a path the relays forward)
PING_PATH = "/api/agent/ping/"


def machine_time_zone() -> str:
    """Name of the machine's IANA time zone: ``$TZ``, ``/etc/timezone``, the ``/etc/localtime`` link, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[-1])
    except OSError:
        pass
    for name in candidates:
        if name and _is_zone(name):
            return name
    return "UTC"


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class Settings(BaseSettings):
    """Everything the service is configured by; see docs/configuration in the README."""

    model_config = SettingsConfigDict(env_prefix="NODEOPS_", extra="ignore")

    data_dir: Path = Field(default=Path("./var"), description="Where the SQLite file and the secret key live.")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty = a SQLite file in the data dir; postgresql+psycopg://... for PostgreSQL.",
    )
    db_statement_timeout_s: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="PostgreSQL: longest one statement may run, waits for locks included, before the database "
        "cancels it and the request or step fails saying so (0 = no limit; migrations have none).",
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the HTTP server binds (0 = any free port).")
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key that signs bk_tokens and encrypts host credentials; empty = generated once into the data dir.",
    )
    time_zone: str = Field(default_factory=machine_time_zone, description="IANA zone the API formats times in.")
    token_ttl_s: int = Field(default=86400, gt=0, description="Default lifetime of an issued bk_token.")
    public_url: str = Field(
        default="", description="URL agents report to (access point 1); empty = this service's own address."
    )
    job_limit: int = Field(
        default=100,
        gt=0,
        le=10000,
        description="Hosts running at once, over all jobs (in celery mode, over the cluster).",
    )
    step_timeout_s: float = Field(default=600.0, gt=0, description="Longest a single step may run on a host.")
    agent_heartbeat_interval_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds between an installed agent's heartbeats (it also reports at once when it starts).",
    )
    agent_missed_heartbeats: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Heartbeats a RUNNING agent may miss before its host is marked TERMINATED (异常): silent for this "
        "many of its intervals (the one configured into it, else agent_heartbeat_interval_s); its next heartbeat "
        "makes it RUNNING again.",
    )
    proxy_relay_port: int = Field(
        default=RELAY_PORT,
        gt=0,
        le=65535,
        description="The port a proxy's relay listens on, on the proxy's inner address: its cloud area's agents "
        "report there (Node Manager's proxy-pass port).",
    )
    heartbeat_poll_s: float = Field(
        default=3.0,
        gt=0,
        le=300,
        description="How often a step waiting for an agent's heartbeat reads the store, in case no notice woke it "
        "(a heartbeat taken by another process whose notice was lost).",
    )
    manual_install_timeout_s: float = Field(
        default=360.0,
        gt=0,
        le=86400,
        description="How long the 安装 step of a manual host (is_manual) waits for someone to run its install "
        "command (get_job_commands) and for that command to end, before it fails with 安装超时 (Node Manager's "
        "POLLING_TIMEOUT).",
    )
    manual_install_poll_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often the 安装 step of a manual host reads the store for the end its install command "
        "reported (the report may reach any process).",
    )
    install_token_ttl_s: int = Field(
        default=3600,
        gt=0,
        le=86400,
        description="How long a manual install's one-time command token, and the token its script reports with, "
        "stay valid (Node Manager's 3600 s).",
    )
    ssh_host_key_policy: str = Field(
        default="accept-new",
        pattern="^(accept-new|strict|off)$",
        description="accept-new: trust a host's key on first use, refuse a changed one; strict: known keys only; "
        "off: no check.",
    )
    credentials_retention_s: int = Field(
        default=86400, ge=0, description="How long host passwords and keys are kept after a job (0 = forever)."
    )
    log_step_max_bytes: int = Field(
        default=1024 * 1024,
        ge=4096,
        le=1 << 30,
        description="Most bytes of one step's log in the log API's seed-form answer; a longer log is cut at a line "
        "boundary and ends with a line saying how to read the rest.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Longest a client may take to send a request's line and headers, from its first byte (or from "
        "the connection's opening); past it the server answers 408 and closes the connection.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest a client may take to send a request's whole body, from the end of its headers; past it "
        "the server answers 408 and closes the connection.",
    )
    send_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Longest the server waits for a client to read its answer: a connection whose unsent answer "
        "stays over 64 KiB for this long (the client reads nothing, or next to nothing) is closed.",
    )
    max_connections: int = Field(
        default=1024,
        ge=1,
        le=100_000,
        description="Open HTTP connections the server accepts at once; past it a new connection is answered 503 "
        "(code 3800503) and closed.",
    )
    retention_days: int = Field(
        default=0, ge=0, description="Delete jobs that ended more than this many days ago (0 = keep everything)."
    )
    cleanup_interval_s: float = Field(
        default=3600.0, gt=0, description="Seconds between two retention cleanups (when retention_days > 0)."
    )

    # the distributed mode (docs/deploy.md)
    executor: Literal["embedded", "celery"] = Field(
        default="embedded",
        description="Where pipelines run: embedded = in the API's own process; celery = in `nodeops worker` "
        "processes fed through the broker, with every guarantee kept by PostgreSQL (docs/deploy.md).",
    )
    broker_url: str = Field(
        default="",
        description="celery mode: the broker that carries work to the workers, redis://host:6379/0 or "
        "redis+socket:///path/redis.sock?virtual_host=0 (Redis) or amqp://user:password@host:5672// (RabbitMQ); "
        "ignored in embedded mode.",
    )
    worker_lease_s: float = Field(
        default=15.0,
        ge=3,
        le=600,
        description="celery mode: how long a worker's lease lasts without renewal (it renews every third of it); "
        "a worker whose lease ran out is lost, and the reaper fails its records.",
    )
    reaper_interval_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="celery mode: seconds between two looks of the reaper for lost workers and unpublished tasks.",
    )
    worker_concurrency: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="celery mode: hosts one worker process runs at once (the default of `nodeops worker "
        "--concurrency`).",
    )

    auth_max_failures: int = Field(
        default=10,
        ge=1,
        le=100000,
        description="Failed authentications of one app from one client address, within auth_failure_window_s, "
        "after which that app is refused from that address for auth_block_s (1306429).",
    )
    auth_failure_window_s: float = Field(
        default=60.0, gt=0, le=86400, description="Seconds over which failed authentications are counted."
    )
    auth_block_s: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="Seconds an app is refused from a client address once its failures reach auth_max_failures.",
    )

    # --- notifications (webhooks when a job ends; docs/notifications.md) ---
    webhook_url: str = Field(
        default="",
        description="Where the end of a job is notified when its request gave no webhook_url (applied when the job "
        "or subscription is created), e.g. http://127.0.0.1:9000/hooks/nodeops; empty = only jobs that ask.",
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Key of the X-Nodeops-Signature header (HMAC-SHA256 of '<unix time>.<body>'); empty = "
        "notifications are sent unsigned.",
    )
    webhook_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Longest wait to connect to a receiver, and again for its answer; a receiver that takes longer "
        "fails the attempt, which is retried.",
    )
    webhook_max_attempts: int = Field(
        default=6, ge=1, le=20, description="Attempts per notification before it is left FAILED."
    )
    webhook_backoff_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Wait after the first failed attempt; doubled after each further one (at most an hour).",
    )
    webhook_concurrency: int = Field(default=8, ge=1, le=256, description="Notifications one process sends at once.")
    webhook_poll_s: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between two looks of a process for notifications due."
    )

    # --- metrics (docs/operations.md) ---
    metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token that reads /metrics (Prometheus text format): `Authorization: Bearer <token>`; "
        "empty = no metrics endpoint at all (it answers as an unknown path), on the API and on every worker.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        description="celery mode: address each `nodeops worker` serves its own /metrics on (when metrics_token "
        "is set).",
    )
    worker_metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="celery mode: port of a worker's /metrics listener (0 = any free port, logged at start); "
        "workers sharing a machine each need their own (`nodeops worker --metrics-port`).",
    )

    # structured logs and the package (issue 16)
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="The process's own log on stderr (not job logs): text lines, or one JSON object per line "
        "(ts, level, logger, message, request_id, exc, and the record's extra fields) for a log collector.",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not _is_zone(value):
            sample = ", ".join(sorted(available_timezones())[:3])
            raise ValueError(f"time zone {value!r} is not an IANA zone name (e.g. Asia/Shanghai, UTC, {sample})")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        """The rule of a request's webhook_url (``domain.webhook``, which this leaf may not import), for the
        default: refused at start rather than on the first job. The URL is not repeated: it may carry a password."""
        url = value.strip()
        if not url:
            return ""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (an invalid port raises)
        except ValueError:
            parts = None
        if (
            parts is None
            or len(url) > 2048
            or not url.isascii()
            or any(char.isspace() or not char.isprintable() for char in url)
            or parts.scheme.lower() not in ("http", "https")
            or not parts.hostname
            or "@" in parts.netloc
        ):
            raise ValueError(
                "NODEOPS_WEBHOOK_URL must be an http:// or https:// URL of at most 2048 ASCII characters with a host "
                "and no user:password, e.g. http://127.0.0.1:9000/hooks/nodeops (or empty)"
            )
        return url

    @field_validator("host", "worker_metrics_host")
    @classmethod
    def _ip_literal(cls, value: str) -> str:
        if value == "localhost":
            return "127.0.0.1"
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(f"host {value!r} must be an IP address such as 127.0.0.1") from exc
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        url = self.database_url.strip()
        if not url:
            url = f"sqlite:///{(self.data_dir / SQLITE_FILE_NAME).resolve()}"
        elif url.startswith(("postgres://", "postgresql://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        if not url.startswith(("sqlite:///", "postgresql+psycopg://")):
            raise ValueError("database_url must start with sqlite:/// or postgresql+psycopg://")
        self.database_url = url
        return self

    @model_validator(mode="after")
    def _cluster_ready(self) -> Settings:
        """In celery mode, refuse at once what would break the cluster later, every problem in one message."""
        if self.executor != "celery":
            return self
        problems: list[str] = []
        if self.is_sqlite:
            problems.append(
                "NODEOPS_DATABASE_URL is SQLite (empty means a SQLite file in the data dir): the API and every "
                "worker must share one PostgreSQL database; set it to "
                "postgresql+psycopg://USER:PASSWORD@db.example.internal:5432/nodeops"
            )
        broker = self.broker_url.strip()
        scheme = broker.split("://", 1)[0].lower() if "://" in broker else ""
        if not broker:
            problems.append(
                "NODEOPS_BROKER_URL is empty: set it to redis://broker.example.internal:6379/0 (Redis) or "
                "amqp://USER:PASSWORD@broker.example.internal:5672// (RabbitMQ)"
            )
        elif scheme not in BROKER_SCHEMES:
            # the URL itself is not repeated: it may carry a password
            shown = f"has the scheme {scheme!r}" if scheme else "is not a URL"
            problems.append(
                f"NODEOPS_BROKER_URL {shown}: it must start with " + ", ".join(f"{s}://" for s in BROKER_SCHEMES)
            )
        if not self.secret_key.get_secret_value():
            problems.append(
                "NODEOPS_SECRET_KEY is empty: the API and every worker, on every machine, must use the same key "
                "(it signs bk_tokens and encrypts host credentials); generate one with "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'` and set it everywhere"
            )
        if not self.public_url.strip():
            problems.append(
                "NODEOPS_PUBLIC_URL is empty: agents on the hosts report to the API, not to the worker that "
                "installed them; set it to the URL hosts reach the API at, e.g. http://nodeops.example.internal:8000"
            )
        if problems:
            raise ValueError("NODEOPS_EXECUTOR=celery needs:\n" + "\n".join(f"- {p}" for p in problems))
        self.broker_url = broker
        return self

    @property
    def tz(self) -> tzinfo:
        """The configured zone as a tzinfo."""
        return ZoneInfo(self.time_zone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def agent_server_url(self) -> str:
        """Where agents send heartbeats."""
        return (self.public_url or self.base_url).rstrip("/")

    @property
    def known_hosts_path(self) -> Path:
        return self.data_dir / "known_hosts"

    @property
    def packages_dir(self) -> Path:
        return self.data_dir / "packages"

    def resolved_secret_key(self) -> bytes:
        """The secret key: configured, else read from (or generated once into) ``data_dir/secret_key``."""
        configured = self.secret_key.get_secret_value()
        if configured:
            return configured.encode()
        path = self.data_dir / SECRET_KEY_FILE_NAME
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process generated it first
                return path.read_text().strip().encode()
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()
