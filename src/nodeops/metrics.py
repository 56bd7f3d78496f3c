"""The service's Prometheus metrics: every definition, the scrape's text, the bearer check and a worker's listener.

A shared leaf (``tests/test_layers.py``), so the engine (steps, the log writer), the service (heartbeats) and the
API (HTTP requests) all count into the same objects, and the only module that imports ``prometheus_client``.
Two kinds of figures:

- **this process's own**, in ``PROCESS`` (counters, histograms and gauges kept in memory, observed where the
  thing happens): each process exports its own, the API at ``/metrics``, each ``nodeops worker`` on its listener;
- **the store's**, read at scrape time (``StoreCounts``, one bounded GROUP BY query each, ``store.metrics_reads``)
  and turned into gauges by ``StoreCollector``, a collector of the scrape's own registry.

Label values are bounded: job types, step names, statuses and route templates are finite sets of the code's, and
a path no route matches is counted as ``UNMATCHED``. docs/operations.md lists every metric. Imports nothing from
nodeops but ``nodeops.errors``.
"""

from __future__ import annotations

import bisect
import hmac
import http.server
import itertools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from nodeops.errors import ErrorCode, MetricsUnauthorized, NodeopsError, RouteNotFound

log = logging.getLogger(__name__)

# no ``*_created`` series beside every counter and histogram: half the text, and no use here
disable_created_metrics()  # type: ignore[no-untyped-call]
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the classic text format, which every Prometheus reads
PROCESS = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=PROCESS)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

UNMATCHED = "unmatched"  # the route label of a path no route matches: one label, whatever the path

# --- jobs and steps (the embedded engine and each worker count their own) -----------------------------------
STEP_SECONDS = Histogram(
    "nodeops_step_duration_seconds",
    "How long a step took on a host, from its start to its end (whatever its outcome), by job type and step code.",
    ("job_type", "step"),
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=PROCESS,
)
HOSTS_RUNNING = Gauge(
    "nodeops_hosts_running",
    "Host pipelines this process is running now.",
    registry=PROCESS,
)
JOB_LIMIT = Gauge(
    "nodeops_job_limit_hosts",
    "Hosts this process may run at once (NODEOPS_JOB_LIMIT; a worker: its concurrency).",
    registry=PROCESS,
)

# --- heartbeats (the API processes) ---------------------------------------------------------------------------
HEARTBEATS_RECEIVED = Counter(
    "nodeops_heartbeats_received_total",
    "Agent heartbeats accepted and committed.",
    registry=PROCESS,
)
HEARTBEATS_REFUSED = Counter(
    "nodeops_heartbeats_refused_total",
    "Agent heartbeats refused, by reason: invalid (a malformed body), token (a wrong token or an unknown host), "
    "store (the store failed to write its group).",
    ("reason",),
    registry=PROCESS,
)

# --- job logs (engine.logwriter) --------------------------------------------------------------------------------
LOG_LINES = Counter("nodeops_log_lines_written_total", "Job log lines committed to the store.", registry=PROCESS)
LOG_BYTES = Counter(
    "nodeops_log_written_bytes_total", "Job log bytes (UTF-8) committed to the store.", registry=PROCESS
)
LOG_FLUSH_SECONDS = Histogram(
    "nodeops_log_flush_duration_seconds",
    "How long one write of a batch of log lines and status changes took (one transaction), failed ones too.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=PROCESS,
)
LOG_FLUSH_FAILURES = Counter(
    "nodeops_log_flush_failures_total",
    "Failed writes of a log batch, by kind: transient (written again), refused (held back, tried again), "
    "dropped (refused too often: its lines are lost).",
    ("kind",),
    registry=PROCESS,
)

# --- HTTP (every answer of an API process, the fast path's included) ----------------------------------------
HTTP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpStats(Collector):
    """``nodeops_http_requests_total`` and ``nodeops_http_request_duration_seconds``, kept by hand.

    The log lane answers a request in tens of microseconds, so counting one must cost far less: one dict lookup,
    one bisect and three additions under one lock, where prometheus-client's counter and histogram children
    take a lock per value (several microseconds together). The histogram's buckets are made cumulative at scrape
    time, and summed over status and code there."""

    def __init__(self, buckets_s: tuple[float, ...] = HTTP_BUCKETS_S) -> None:
        self._bounds = buckets_s
        self._lock = threading.Lock()
        # (route, method, status, code) -> [count, seconds, one count per bucket (not cumulative), then +Inf]
        self._series: dict[tuple[str, str, int, str], list[float]] = {}

    def observe(self, route: str, method: str, status: int, code: str, seconds: float) -> None:
        key = (route, method if method in _METHODS else "OTHER", status, code)
        index = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (3 + len(self._bounds))
            series[0] += 1
            series[1] += seconds
            series[2 + index] += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = {key: list(values) for key, values in self._series.items()}
        requests = CounterMetricFamily(
            "nodeops_http_requests",
            "HTTP requests answered, by route template, method, HTTP status and envelope code ('' when the answer "
            "is not an envelope).",
            labels=("route", "method", "status", "code"),
        )
        timed: dict[tuple[str, str], list[float]] = {}
        for (route, method, status, code), values in sorted(series.items()):
            requests.add_metric((route, method, str(status), code), values[0])
            into = timed.setdefault((route, method), [0.0] * len(values))
            for i, number in enumerate(values):
                into[i] += number
        yield requests
        latency = HistogramMetricFamily(
            "nodeops_http_request_duration_seconds",
            "Time from a request's arrival (its headers read) to its answer, by route template and method.",
            labels=("route", "method"),
        )
        bounds = [*(str(float(bound)) for bound in self._bounds), "+Inf"]
        for (route, method), values in sorted(timed.items()):
            cumulative = list(itertools.accumulate(values[2:]))
            latency.add_metric((route, method), list(zip(bounds, cumulative, strict=True)), sum_value=values[1])
        yield latency


HTTP = HttpStats()
PROCESS.register(HTTP)


def http_answered(route: str, method: str, status: int, code: str, seconds: float) -> None:
    """Count one answered request; ``route`` is a template or ``UNMATCHED``, never a raw path. A method outside
    HTTP's usual ones is counted as ``OTHER``."""
    HTTP.observe(route, method, status, code, seconds)


_ENVELOPE_CODE = re.compile(rb'^\{"result":(?:true|false),"code":(\d{1,9})[,}]')


def envelope_code(body: bytes) -> str:
    """The ``code`` of an envelope as the service writes it (``{"result":…,"code":N,…}``), from its first bytes;
    ``""`` for any other body."""
    match = _ENVELOPE_CODE.match(body[:48])
    return match.group(1).decode() if match else ""


def outcome_code(outcome: object) -> str:
    """The envelope code of a fast-path outcome: 0 for an answer, the error's code, else the internal one."""
    if isinstance(outcome, bytes):
        return "0"
    if isinstance(outcome, NodeopsError):
        return str(int(outcome.code))
    return str(int(ErrorCode.INTERNAL))


# --- the store's figures, read at scrape time ----------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCounts:
    """What the store holds now, as the scrape read it; ``None`` where this process does not read it."""

    jobs: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (job_type, status) -> jobs
    instances: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (job_type, status) -> latest records
    agents: Mapping[str, int] = field(default_factory=dict)  # running / abnormal / not_installed -> hosts
    workers_alive: int | None = None  # celery mode: workers holding a lease
    queue_depth: int | None = None  # celery mode: messages waiting in the broker's queue
    read_seconds: float = 0.0
    failed: str = ""  # why the store (or the broker) could not be read; then the figures above are partial


class StoreCollector(Collector):
    """The gauges of ``counts``: a collector of one scrape's registry (``render``)."""

    def __init__(self, counts: StoreCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        yield _gauges("nodeops_jobs", "Jobs in the store, by job type and status.", ("job_type", "status"), counts.jobs)
        yield _gauges(
            "nodeops_instances",
            "Host instances of jobs (each instance's latest attempt), by job type and status.",
            ("job_type", "status"),
            counts.instances,
        )
        yield _gauges(
            "nodeops_agents",
            "Hosts by agent status as Node Manager counts them: running, abnormal (异常), not_installed.",
            ("status",),
            {(status,): number for status, number in counts.agents.items()},
        )
        if counts.workers_alive is not None:
            yield GaugeMetricFamily(
                "nodeops_workers_alive",
                "Cluster workers holding a lease now (celery mode).",
                value=counts.workers_alive,
            )
        if counts.queue_depth is not None:
            yield GaugeMetricFamily(
                "nodeops_queue_depth_messages",
                "Messages waiting in the broker's host queue (celery mode).",
                value=counts.queue_depth,
            )
        yield GaugeMetricFamily(
            "nodeops_store_scrape_ok",
            "1 when the scrape read the store (and broker) in full, else 0.",
            value=0 if counts.failed else 1,
        )
        yield GaugeMetricFamily(
            "nodeops_store_scrape_duration_seconds",
            "How long the scrape's store reads took.",
            value=counts.read_seconds,
        )


def _gauges(name: str, documentation: str, labels: tuple[str, ...], values: Mapping[Any, int]) -> Metric:
    """A gauge family with one sample per ``values`` item (label values -> number), in label order."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, number in sorted(values.items()):
        family.add_metric(label_values, number)
    return family


def render(counts: StoreCounts | None) -> bytes:
    """The scrape's text: this process's metrics, then the store's gauges of ``counts`` (when given)."""
    text = generate_latest(PROCESS)
    if counts is None:
        return text
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(StoreCollector(counts))
    return text + generate_latest(scrape)


# --- who may read it ------------------------------------------------------------------------------------------
def is_authorized(header: bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` header's raw bytes are ``Bearer <token>``, compared in constant time (a wrong
    length, non-ASCII bytes, a huge value: simply refused)."""
    if not token or header is None:
        return False
    return hmac.compare_digest(header, b"Bearer " + token.encode())


# --- a worker's listener ------------------------------------------------------------------------------------------
class MetricsListener:
    """``GET /metrics`` on its own HTTP listener (a ``nodeops worker``'s), with the same bearer token as the API;
    ``read`` gives the store's counts of each scrape (``None``: this process's own figures only). Every other path
    is 404 and a wrong token 401, answered as the API answers them, in the envelope."""

    def __init__(self, host: str, port: int, token: str, read: Callable[[], StoreCounts | None]) -> None:
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # a client that stalls holds a thread at most this long
            server_version = "nodeops"
            sys_version = ""

            def do_GET(self) -> None:
                listener.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no line per scrape in the service's log

        self.token = token
        self.read = read
        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="nodeops-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info(
            "metrics at http://%s:%d/metrics",
            self.server.server_address[0],
            self.port,
            extra={"action": "metrics_listening", "port": self.port},
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path != "/metrics":
            self._send(request, 404, _envelope(RouteNotFound(path=path[:200])))
            return
        header = request.headers.get("Authorization")
        raw = None if header is None else header.encode("latin-1", "replace")
        if not is_authorized(raw, self.token):
            self._send(request, 401, _envelope(MetricsUnauthorized()), bearer=True)
            return
        counts: StoreCounts | None = None
        try:
            counts = self.read()
        except Exception:  # the process's own figures are still worth answering
            log.exception("reading the store for metrics failed", extra={"action": "metrics_read_failed"})
            counts = StoreCounts(failed="read failed")
        body = render(counts)
        request.send_response(200)
        request.send_header("Content-Type", CONTENT_TYPE)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    @staticmethod
    def _send(request: http.server.BaseHTTPRequestHandler, status: int, body: bytes, *, bearer: bool = False) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("X-Content-Type-Options", "nosniff")
        if bearer:
            request.send_header("WWW-Authenticate", 'Bearer realm="nodeops metrics"')
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def _envelope(error: NodeopsError) -> bytes:
    """The envelope of ``error``, as the API writes it (``api.envelope``, which this leaf may not import)."""
    code = int(error.code)
    body = {"result": False, "code": code, "message": f"{error.message}（{code}）", "data": None, "errors": None}
    return json.dumps(body, ensure_ascii=False).encode()
