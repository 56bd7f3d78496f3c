"""The process's own logging (stderr): one format, and the one filter that redacts secrets from every record.
``redact`` also masks the lines the engine writes to job logs (``engine.logwriter``).

Request lines carry ``bk_app_secret`` and ``bk_token`` in their query strings, and JSON bodies or headers may
echo them; ``RedactingFilter`` masks their values before any handler formats the record. Imports nothing
else from nodeops.
"""

from __future__ import annotations

import logging
import re

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
    """Formats the record's message once, redacted, so no handler ever sees the raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


# Libraries that log at INFO for every connection and channel: with a fleet of hosts that is dozens of records
# per host, each formatted and redacted, so they speak only from WARNING unless DEBUG is asked for.
CHATTY_LOGGERS = ("asyncssh",)


def configure_logging(level: str = "INFO") -> None:
    """Send every logger of the process through the redacting filter to stderr."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level.upper() == "DEBUG" else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
