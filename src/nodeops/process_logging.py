"""The process's own logging (stderr): text or JSON lines, and the one filter that redacts secrets from every
record. ``redact`` also masks the lines the engine writes to job logs (``engine.logwriter``).

Request lines carry ``bk_app_secret`` and ``bk_token`` in their query strings, and JSON bodies or headers may
echo them, as may an exception's text; ``RedactingFilter`` masks their values in the message and the traceback
before any handler formats the record, and stamps the record with the id of the request being served
(``request_context``), so a log line can be found from an answer's ``request_id``.

``NODEOPS_LOG_FORMAT=json`` writes one JSON object per line (``JsonFormatter``): ``ts`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, ``request_id`` while a request is served, ``exc`` (the traceback) when there
is one, and the record's ``extra`` fields (``action``, ``job_id``, ...). Imports nothing else from nodeops but
``request_context``.
"""

from __future__ import annotations

import logging
import re
import traceback
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

from nodeops.request_context import current_request_id

SECRET_FIELDS = ("bk_app_secret", "bk_token", "app_secret", "password", "key", "access_token", "secret")
MASK = "******"
# key=value in query strings, "key": "value" in JSON, key: value in reprs
_NAMES = "|".join(SECRET_FIELDS)
_PATTERN = re.compile(
    rf"""(?P<prefix>(?P<q>["']?)\b(?:{_NAMES})(?P=q)\s*[=:]\s*(?P<v>["']?))(?P<secret>[^&\s"',}}]+)""",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the value of every secret-named field replaced by ``******``."""
    return _PATTERN.sub(lambda m: m.group("prefix") + MASK, text)


class RedactingFilter(logging.Filter):
    """Formats the record's message and its traceback once, redacted, so no handler ever sees the raw arguments
    or an exception's raw text; stamps ``request_id`` (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        # what every formatter writes for the exception (``Formatter.format`` keeps an exc_text it finds; another
        # handler may have formatted the record first)
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        if not hasattr(record, "request_id"):  # a record may name its request itself (``extra``)
            record.request_id = current_request_id()
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# what every LogRecord has; the rest are the ``extra`` fields of the call, which JSON lines carry
# (and uvicorn's ``color_message``, the message again with terminal colours)
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
    "color_message",
}
_SECRET_NAMES = frozenset(SECRET_FIELDS)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, with `` [request_id=…]`` after the message while a request is served."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the message or traceback are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info and not record.exc_text:  # a record that did not pass RedactingFilter
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and name not in entry:
                entry[name] = _extra_value(name, value)
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _extra_value(name: str, value: object) -> object:
    """An ``extra`` field as it is written: masked if it is named as a secret, redacted if it is text."""
    if name.lower() in _SECRET_NAMES:
        return MASK
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


# Libraries that log at INFO for every connection and channel: with a fleet of hosts that is dozens of records
# per host, each formatted and redacted, so they speak only from WARNING unless DEBUG is asked for.
CHATTY_LOGGERS = ("asyncssh",)


LogFormat = Literal["text", "json"]


def log_handler(log_format: LogFormat = "text", stream: TextIO | None = None) -> logging.Handler:
    """The process's one handler: the redacting filter, then text or JSON lines, to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Send every logger of the process, uvicorn's and Celery's included, through the redacting filter to
    stderr, as text or as JSON lines (``NODEOPS_LOG_FORMAT``)."""
    handler = log_handler(log_format)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level.upper() == "DEBUG" else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
