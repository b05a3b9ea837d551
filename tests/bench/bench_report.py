"""Benchmark of ``flask report send`` on a big day (not collected by pytest).

Loads ``--rows`` transactions (default 1,000,000) into one UTC day of a
PostgreSQL database with ``COPY``, computes that day's ``daily_summaries``
with one ``INSERT … SELECT … GROUP BY`` (what the buy flow accumulates row by
row), then runs the real command end to end in a subprocess, writing the
message into a temporary outbox, and prints its wall time and peak memory.

    .venv/bin/python -m tests.bench.bench_report --database-url postgresql://…/scratch

The day's earlier rows, summaries and report run are deleted first; the rest of
the database is left alone (the schema is brought up to date by the migrations).
Exit status 1 when the goal (10 s, 256 MB) is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from service.config import normalise_database_url
from tests.bench.harness import (
    DEFAULT_DATABASE_URL,
    ROOT,
    BenchmarkError,
    Goal,
    migrate_database,
    print_table,
)

GOAL_SECONDS = 10.0
DAY = date(2026, 1, 15)
GOAL_RSS_MB = 256.0
COLUMNS = (
    "user_id, symbol, quantity, requested_price, market_price, executed_price, total, status,"
    " reason, vendor_status, vendor_message, attempts, created_at, updated_at, completed_at"
)
# (status, reason, vendor status, vendor message, share of the day)
OUTCOMES = (
    ("succeeded", "", "", "", 0.90),
    ("rejected", "price_out_of_tolerance", "", "", 0.04),
    ("failed", "vendor_rejected", "400", "Price is outside the allowed range", 0.02),
    ("failed", "retries_exhausted", "503", "Service temporarily unavailable", 0.015),
    ("unknown", "vendor_timeout", "", "", 0.01),
    ("failed", "circuit_open", "", "", 0.015),
)


def ledger_rows(rows: int, day: date, users: int, symbols: int, seed: int) -> Iterator[bytes]:
    """``rows`` CSV lines for ``COPY transactions FROM STDIN``, spread over ``day``."""
    rng = random.Random(seed)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    step = 86_400_000_000 // rows  # microseconds between two attempts
    weights = [outcome[4] for outcome in OUTCOMES]
    prices = [f"{rng.uniform(0.25, 900):.2f}" for _ in range(symbols)]
    for n in range(rows):
        created = start + timedelta(microseconds=n * step)
        stamp = created.isoformat()
        done = (created + timedelta(milliseconds=250)).isoformat()
        status, reason, vendor_status, message, _ = rng.choices(OUTCOMES, weights)[0]
        symbol = rng.randrange(symbols)
        price = prices[symbol]
        quantity = rng.randint(1, 100)
        bought = status == "succeeded"
        total = f"{float(price) * quantity:.2f}" if bought else ""
        yield (
            f"u{rng.randrange(users):06d},S{symbol:04d},{quantity},{price},{price},"
            f"{price if bought else ''},{total},{status},{reason},{vendor_status},{message},"
            f"1,{stamp},{done},{done}\n"
        ).encode()


class _Stream:
    """A read()-able view of an iterator of byte strings, for ``copy_expert``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    readline = read


def load(url: str, day: date, rows: int, users: int, symbols: int, seed: int) -> None:
    migrate_database(url)
    engine = sa.create_engine(url)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    window = {"start": start, "end": start + timedelta(days=1), "day": day}
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "DELETE FROM transactions WHERE created_at >= :start AND created_at < :end"
                ),
                window,
            )
            conn.execute(sa.text("DELETE FROM daily_summaries WHERE day = :day"), window)
            conn.execute(sa.text("DELETE FROM report_runs WHERE day = :day"), window)
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.copy_expert(
                f"COPY transactions ({COLUMNS}) FROM STDIN WITH (FORMAT csv)",
                _Stream(ledger_rows(rows, day, users, symbols, seed)),
            )
            conn.execute(
                sa.text(
                    "INSERT INTO daily_summaries (day, status, reason, symbol, count, quantity,"
                    " amount)"
                    " SELECT :day, status, coalesce(reason, ''), symbol, count(*), sum(quantity),"
                    " sum(CASE WHEN status = 'succeeded' THEN total"
                    " ELSE requested_price * quantity END)"
                    " FROM transactions WHERE created_at >= :start AND created_at < :end"
                    " AND status <> 'pending' GROUP BY status, coalesce(reason, ''), symbol"
                ),
                window,
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE transactions"))
    finally:
        engine.dispose()


def run_report(url: str, day: date, outbox: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and the output of ``report send``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SMTP_", "REPORT_", "DATABASE_URL"))
    }
    env.update(DATABASE_URL=url, REPORT_OUTBOX_DIR=str(outbox), LOG_LEVEL="warning")
    command = [sys.executable, "-m", "flask", "--app", "service.wsgi", "report", "send"]
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*command, "--date", day.isoformat()],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        # wait4: the peak of this process alone (RUSAGE_CHILDREN would be the
        # largest of every child this process ever had, e.g. gunicorn workers).
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise BenchmarkError(f"report send failed ({process.returncode}):\n{text}")
    return elapsed, usage.ru_maxrss / 1024, text.strip()


@dataclass(frozen=True)
class ReportFigures:
    rows: int
    load_seconds: float
    seconds: float
    peak_mb: float
    message_mb: float
    output: str

    @property
    def met(self) -> bool:
        return self.seconds <= GOAL_SECONDS and self.peak_mb <= GOAL_RSS_MB


def measure(
    url: str,
    rows: int = 1_000_000,
    *,
    day: date = DAY,
    users: int = 50_000,
    symbols: int = 120,
    seed: int = 7,
) -> ReportFigures:
    """Load ``rows`` transactions into ``day`` and send its report."""
    started = time.perf_counter()
    load(url, day, rows, users, symbols, seed)
    loaded = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-report-") as outbox:
        elapsed, peak_mb, output = run_report(url, day, Path(outbox))
        [message] = Path(outbox).glob("*.eml")
        size_mb = message.stat().st_size / 1e6
    return ReportFigures(rows, loaded, elapsed, peak_mb, size_mb, output)


def bench(quick: bool = False) -> list[Goal]:
    """The figures for ``python -m tests.bench.run`` (100,000 rows with ``quick``)."""
    figures = measure(DEFAULT_DATABASE_URL, 100_000 if quick else 1_000_000)
    print_table(
        f"Daily report of {figures.rows:,} transactions (one UTC day, loaded with COPY)",
        ["rows", "load s (COPY)", "report send s", "peak RSS MB", "message MB"],
        [
            [
                figures.rows,
                figures.load_seconds,
                figures.seconds,
                figures.peak_mb,
                figures.message_mb,
            ]
        ],
    )
    return [
        Goal(
            "report",
            f"report send of {figures.rows:,} transactions: wall time, peak memory",
            f"{figures.seconds:.1f} s, {figures.peak_mb:.0f} MB",
            f"≤ {GOAL_SECONDS:.0f} s, ≤ {GOAL_RSS_MB:.0f} MB",
            figures.met,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="PostgreSQL database to load (default: TEST_DATABASE_URL)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--symbols", type=int, default=120)
    parser.add_argument("--day", type=date.fromisoformat, default=DAY)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    figures = measure(
        normalise_database_url(args.database_url),
        args.rows,
        day=args.day,
        users=args.users,
        symbols=args.symbols,
        seed=args.seed,
    )
    print(f"loaded {figures.rows:,} transactions into {args.day} in {figures.load_seconds:.1f} s")
    print(figures.output)
    print(
        f"report send: {figures.seconds:.2f} s wall, {figures.peak_mb:.0f} MB peak RSS, "
        f"message {figures.message_mb:.1f} MB"
    )
    print(
        f"goal ({GOAL_SECONDS:.0f} s, {GOAL_RSS_MB:.0f} MB): {'met' if figures.met else 'MISSED'}"
    )
    sys.exit(0 if figures.met else 1)


if __name__ == "__main__":
    main()
