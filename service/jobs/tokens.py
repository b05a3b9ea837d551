"""``flask --app service.wsgi tokens refresh``: rebuild the symbol → page-token map."""

from __future__ import annotations

import sys

import click

from service.config import current_settings
from service.errors import AlreadyRunning
from service.jobs import JobGroup
from service.services import tokens

EXIT_FAILED = 1
EXIT_NO_REDIS = 2
EXIT_ALREADY_RUNNING = 3

cli = JobGroup("tokens", help="The symbol → page-token map and the catalogue search reads.")


@cli.command("refresh")
def refresh() -> None:
    """Walk every vendor page; store symbol → page token and the catalogue.

    Prints a one-line summary. Exit codes: 0 done, 1 could not finish (the
    summary says why), 2 REDIS_URL is not set (nothing done), 3 another run is
    in progress (nothing done).
    """
    if current_settings().redis_url is None:
        # The embedded stand-in lives inside each process: a map written here
        # would vanish with this command and never reach the web server.
        click.echo(
            "tokens refresh needs REDIS_URL: without it each process has its own "
            "in-memory store, so the map would be lost when this command ends. "
            "The service fills the map lazily meanwhile; nothing to do.",
            err=True,
        )
        raise SystemExit(EXIT_NO_REDIS)
    on_terminal = sys.stderr.isatty()
    try:
        summary = tokens.refresh_tokens(progress=_show_progress if on_terminal else None)
    except AlreadyRunning as exc:
        click.echo(f"tokens refresh not started: {exc.message}", err=True)
        raise SystemExit(EXIT_ALREADY_RUNNING) from None
    if on_terminal:
        click.echo(err=True)  # end the progress line
    click.echo(summary.line())
    if not summary.ok:
        raise SystemExit(EXIT_FAILED)


def _show_progress(pages: int, symbols: int) -> None:
    click.echo(f"\rtokens refresh: {pages} pages, {symbols} symbols", nl=False, err=True)
