"""CLI commands the CronJobs run (``flask --app service.wsgi <group> <command>``)."""

from __future__ import annotations

import click
from flask import Flask


def register_commands(app: Flask) -> None:
    """Add every job's command group to ``app.cli``."""
    for group in _command_groups():
        app.cli.add_command(group)


def _command_groups() -> list[click.Group]:
    from service.jobs import buys, reports, tokens

    return [buys.cli, reports.report, tokens.cli]
