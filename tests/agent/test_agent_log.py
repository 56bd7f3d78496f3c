"""agent.log: bounded by rotation (one old file kept), with the token masked in every line, tracebacks included."""

from __future__ import annotations

import logging
import os

import pytest

from nodeops.agent import nodeops_agent

TOKEN = "tok-log-test-9d2e"


@pytest.fixture
def agent_log(tmp_path):
    log = nodeops_agent.setup_logging(str(tmp_path), secrets=[TOKEN], max_bytes=2000)
    try:
        yield log
    finally:
        nodeops_agent.close_logging(log)


def test_log_rotates_at_its_limit_and_keeps_one_old_file(tmp_path, agent_log):
    for n in range(200):
        agent_log.info("heartbeat failed (%d in a row): cannot reach http://127.0.0.1:9/", n)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.log", "agent.log.1"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert "(199 in a row)" in (tmp_path / "agent.log").read_text()


def test_default_limit_is_one_mebibyte(tmp_path):
    log = nodeops_agent.setup_logging(str(tmp_path), secrets=[])
    try:
        [handler] = log.handlers
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        assert (handler.maxBytes, handler.backupCount) == (1024 * 1024, 1)
    finally:
        nodeops_agent.close_logging(log)


def test_token_is_masked_in_messages_arguments_and_tracebacks(tmp_path, agent_log):
    agent_log.warning("rejected: bad token %s", TOKEN)
    agent_log.warning(f'echoed in a JSON body: {{"token": "{TOKEN}"}}')
    try:
        raise RuntimeError(f"failure quoting {TOKEN}")
    except RuntimeError:
        agent_log.exception("unexpected")

    text = (tmp_path / "agent.log").read_text()
    assert TOKEN not in text
    assert text.count("***") == 3  # the argument, the JSON body, the exception's line
    assert "RuntimeError: failure quoting ***" in text


def test_log_lines_carry_a_utc_time_level_and_pid(tmp_path, agent_log):
    agent_log.info("hello")

    line = (tmp_path / "agent.log").read_text().strip()
    assert line.endswith(f"INFO [{os.getpid()}] hello")
    assert line[19] == "Z"
