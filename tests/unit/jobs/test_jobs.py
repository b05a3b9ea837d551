"""Every job run logs one line when it starts and one when it ends, with its outcome."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask import Flask

from service.services import tokens
from service.vendorapi.simulator import Simulator
from tests.functional.test_health import DEAD_POSTGRES
from tests.processes import run_flask


def _job_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, object]]]:
    return [
        (
            record.levelname,
            record.getMessage(),
            {key: getattr(record, key, None) for key in ("job", "outcome", "exit_code", "error")},
        )
        for record in caplog.records
        if record.name == "service.jobs"
    ]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service.jobs")


def test_a_successful_run_logs_its_start_and_its_end(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    result = app.test_cli_runner().invoke(args=["tokens", "refresh"])
    assert result.exit_code == 0, result.output
    (start_level, start, _), (end_level, end, fields) = _job_lines(caplog)
    assert (start_level, start) == ("INFO", "job tokens refresh started")
    assert (end_level, end) == ("INFO", "job tokens refresh ok (exit 0)")
    assert fields == {"job": "tokens refresh", "outcome": "ok", "exit_code": 0, "error": None}
    end_record = [record for record in caplog.records if record.name == "service.jobs"][-1]
    assert end_record.duration_seconds >= 0  # type: ignore[attr-defined]


def test_a_failed_run_ends_with_a_warning_and_its_exit_code(
    app: Flask,
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokens, "PAGE_RETRY_WAIT", lambda _state: 0.0)
    simulator.configure(error_rate=1.0)
    result = app.test_cli_runner().invoke(args=["tokens", "refresh"])
    assert result.exit_code == 1
    [_, (level, message, fields)] = _job_lines(caplog)
    assert (level, message) == ("WARNING", "job tokens refresh failed (exit 1)")
    assert fields["outcome"] == "failed"


def test_a_refused_option_is_logged_with_the_message_the_operator_saw(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    today = datetime.now(UTC).date().isoformat()
    result = app.test_cli_runner().invoke(args=["report", "send", "--date", today])
    assert result.exit_code == 2
    [_, (level, message, fields)] = _job_lines(caplog)
    assert (level, message) == ("WARNING", "job report send failed (exit 2)")
    assert str(fields["error"]) in result.output


def test_tokens_refresh_without_redis_says_why_and_exits_2(
    make_app: Callable[..., Flask], simulator: Simulator
) -> None:
    app = make_app(redis_url=None)
    result = app.test_cli_runner().invoke(args=["tokens", "refresh"])
    assert result.exit_code == 2
    assert result.stderr.startswith("tokens refresh needs REDIS_URL:")
    assert "lazily" in result.stderr
    assert simulator.stats()["requests"].get("list", 0) == 0  # the vendor was not called


@pytest.mark.parametrize(
    "command",
    [
        "report send",
        "report preview",
        "buys sweep",
        "transactions list",
        "transactions resolve 1 --as failed --by ops --note lost",
    ],
)
def test_every_job_says_an_unreachable_database_in_one_line_and_fails(command: str) -> None:
    # As the CronJob runs it: a process of its own, its logs (JSON lines) on stderr.
    env = {**os.environ, "DATABASE_URL": DEAD_POSTGRES, "REPORT_OUTBOX_DIR": "/nonexistent"}
    env.pop("REDIS_URL", None)
    ran = run_flask(*command.split(), env=env)

    said = [line for line in ran.stderr.splitlines() if not line.startswith("{")]
    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    assert len(said) == 1, ran.stderr
    assert "the database is unavailable" in said[0]
