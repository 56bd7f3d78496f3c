"""The process's own log (``nodeops.process_logging``): JSON lines with ``NODEOPS_LOG_FORMAT=json`` (ts in UTC, level,
logger, message, request_id while a request is served, exc, the record's extra fields), text lines otherwise, and
secrets masked in both, in the message, in an exception's text and in extra fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from nodeops.process_logging import LogFormat, log_handler
from nodeops.request_context import serving
from nodeops.settings import Settings

SECRET = "S3cr3t-of-the-app-0123456789"
PASSWORD = "hunter2-pässwörd"


class Captured:
    """A logger whose records go through the service's handler into a string."""

    def __init__(self, log_format: LogFormat) -> None:
        self.stream = io.StringIO()
        self.handler = log_handler(log_format, self.stream)
        self.logger = logging.getLogger(f"nodeops.test_process_logging.{log_format}")
        self.logger.handlers[:] = [self.handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def json_log() -> Iterator[Captured]:
    captured = Captured("json")
    yield captured
    captured.logger.handlers.clear()


@pytest.fixture
def text_log() -> Iterator[Captured]:
    captured = Captured("text")
    yield captured
    captured.logger.handlers.clear()


def fail_with_password() -> None:
    raise ValueError(f"could not log in: password={PASSWORD} and bk_app_secret: {SECRET}")


def test_a_json_line_has_the_time_in_utc_the_level_the_logger_and_the_message(json_log):
    before = datetime.now(UTC)
    json_log.logger.info("job %d: 任务完成 ünïcödé\nsecond line", 7)
    [line] = json_log.lines()
    assert json_log.text.count("\n") == 1  # one line, whatever the message holds
    assert set(line) == {"ts", "level", "logger", "message"}  # no request, no exception, no extra
    ts = datetime.fromisoformat(str(line["ts"]))
    assert ts.utcoffset() == timedelta(0) and before - timedelta(seconds=1) <= ts <= datetime.now(UTC)
    assert (line["level"], line["logger"]) == ("INFO", json_log.logger.name)
    assert line["message"] == "job 7: 任务完成 ünïcödé\nsecond line"


def test_a_json_line_made_while_serving_a_request_carries_its_id(json_log):
    with serving("req-42"):
        json_log.logger.warning("inside")
    json_log.logger.warning("outside")
    inside, outside = json_log.lines()
    assert inside["request_id"] == "req-42"
    assert "request_id" not in outside


def test_secrets_in_the_message_and_the_exception_are_masked_in_json(json_log):
    try:
        fail_with_password()
    except ValueError:
        json_log.logger.exception("GET /api/c/compapi/v2/nodeman/api/job/log/?bk_app_secret=%s&job_id=1", SECRET)
    [line] = json_log.lines()
    assert line["level"] == "ERROR"
    assert line["message"] == "GET /api/c/compapi/v2/nodeman/api/job/log/?bk_app_secret=******&job_id=1"
    exc = str(line["exc"])
    assert exc.startswith("Traceback (most recent call last):") and "ValueError: could not log in" in exc
    assert "password=******" in exc and "bk_app_secret: ******" in exc
    assert SECRET not in json_log.text and PASSWORD not in json_log.text
    assert "pässwörd" not in json_log.text  # nor the non-ASCII part


def test_secrets_in_the_exception_are_masked_in_text_lines_too(text_log):
    try:
        fail_with_password()
    except ValueError:
        text_log.logger.exception("it failed")
    assert "ValueError: could not log in: password=******" in text_log.text
    assert SECRET not in text_log.text and PASSWORD not in text_log.text


def test_extra_fields_are_written_and_secret_ones_masked(json_log):
    json_log.logger.info(
        "step finished",
        extra={
            "action": "step_finished",
            "job_id": 3,
            "instance_id": "host|instance|host|1",
            "ok": True,
            "password": PASSWORD,
            "detail": f"token bk_token={SECRET}",
            "facts": {"bk_app_secret": SECRET},
        },
    )
    [line] = json_log.lines()
    assert line["action"] == "step_finished" and line["job_id"] == 3 and line["ok"] is True
    assert line["instance_id"] == "host|instance|host|1"
    assert line["password"] == "******" and line["detail"] == "token bk_token=******"
    assert SECRET not in json_log.text and PASSWORD not in json_log.text


def test_a_text_line_names_the_request_it_was_made_for(text_log):
    with serving("req-7"):
        text_log.logger.info("inside")
    text_log.logger.info("outside")
    inside, outside = text_log.text.splitlines()
    assert inside.endswith(" INFO nodeops.test_process_logging.text: inside [request_id=req-7]")
    assert outside.endswith(" INFO nodeops.test_process_logging.text: outside")


def test_the_log_format_setting_takes_text_or_json_only(monkeypatch):
    assert Settings().log_format == "text"
    monkeypatch.setenv("NODEOPS_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    monkeypatch.setenv("NODEOPS_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()
