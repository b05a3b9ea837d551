"""``flask --app service.wsgi tokens refresh``: rebuild the symbol → page-token map."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from service.errors import AlreadyRunning
from service.services import tokens

EXIT_FAILED = 1
EXIT_ALREADY_RUNNING = 3

cli = AppGroup("tokens", help="The symbol → page-token map and the catalogue search reads.")


@cli.command("refresh")
def refresh() -> None:
    """Walk every vendor page; store symbol → page token and the catalogue.

    Prints a one-line summary. Exit codes: 0 done, 1 could not finish (the
    summary says why), 3 another run is in progress (nothing done).
    """
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
