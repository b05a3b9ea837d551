"""CLI commands the CronJobs run (``flask --app service.wsgi <group> <command>``).

Every job's group is a :class:`JobGroup`, so each run logs one line when it
starts and one when it ends, with its outcome (DESIGN §8), and a database
that cannot be reached is one line on stderr and exit 1, never a traceback,
whatever the command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

log = logging.getLogger("service.jobs")


# A UTC day on the command line (--date, --since).
DAY_FORMAT = click.DateTime(formats=["%Y-%m-%d"])


class JobCommand(click.Command):
    """A job's command: its run is logged at the start (INFO) and the end (INFO
    when it exits 0, else WARNING, with the exit code and the error). A
    database error the command did not handle itself ends it as a one-line
    :class:`click.ClickException` (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        job = f"{ctx.parent.info_name} {ctx.info_name}" if ctx.parent else str(ctx.info_name)
        log.info("job %s started", job, extra={"job": job})
        started = time.perf_counter()
        exit_code: int | str | None = 1
        error: str | None = None
        try:
            result = _one_line_database_errors(job, lambda: super(JobCommand, self).invoke(ctx))
            exit_code = 0
            return result
        except click.exceptions.Exit as exc:
            exit_code = exc.exit_code
            raise
        except SystemExit as exc:
            exit_code = 0 if exc.code is None else exc.code
            raise
        except click.ClickException as exc:
            exit_code, error = exc.exit_code, exc.format_message()
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            outcome = "ok" if exit_code == 0 else "failed"
            log.log(
                logging.INFO if outcome == "ok" else logging.WARNING,
                "job %s %s (exit %s)",
                job,
                outcome,
                exit_code,
                extra={
                    "job": job,
                    "outcome": outcome,
                    "exit_code": exit_code,
                    "duration_seconds": round(time.perf_counter() - started, 3),
                    "error": error,
                },
            )


def database_problem(exc: SQLAlchemyError) -> str:
    """One line naming what the database did wrong, for an operator."""
    # The driver's first line names the server and the cause ("connection
    # refused", "password authentication failed"); the rest is SQL and hints.
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    first = str(cause).strip().partition("\n")[0] or type(exc).__name__
    trouble = "unavailable" if isinstance(exc, OperationalError | InterfaceError) else "failing"
    return f"the database is {trouble} ({first})"


def _one_line_database_errors(job: str, run: Callable[[], Any]) -> Any:
    try:
        return run()
    except SQLAlchemyError as exc:
        raise click.ClickException(f"{job} failed: {database_problem(exc)}") from exc


class JobGroup(AppGroup):
    """A group of job commands (Flask's :class:`AppGroup`: each runs inside the
    app context), each a :class:`JobCommand`."""

    command_class = JobCommand


def register_commands(app: Flask) -> None:
    """Add every job's command group to ``app.cli``."""
    for group in _command_groups():
        app.cli.add_command(group)


def _command_groups() -> list[JobGroup]:
    from service.jobs import buys, reports, tokens, transactions

    return [buys.cli, reports.report, tokens.cli, transactions.cli]
