"""``flask --app service.wsgi buys sweep``: end buy attempts a crashed worker left pending.

Exit status: 0 when the sweep ran (whether or not it found anything); 1 when
the database could not be reached (the next run, a minute later, retries).
"""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from service.jobs import JobGroup
from service.services import sweep
from service.services.orders import ABANDONED_AFTER

cli = JobGroup("buys", help="Buy attempts: housekeeping of the ledger.")


@cli.command("sweep")
def sweep_command() -> None:
    """End attempts left ``pending`` for over five minutes as ``unknown`` (interrupted).

    Prints one line saying how many it finalised. Safe to run concurrently
    with itself and with buys: each attempt leaves ``pending`` once.
    """
    try:
        finalised = sweep.sweep()
    except SQLAlchemyError as exc:
        # One line, no traceback: the CronJob's log should say what is wrong.
        raise click.ClickException(
            f"buys sweep failed: the database is unavailable ({type(exc).__name__})"
        ) from exc
    minutes = int(ABANDONED_AFTER.total_seconds() // 60)
    click.echo(
        f"buys sweep: {finalised} abandoned attempt(s) finalised as unknown"
        f" (pending for over {minutes} minutes)"
    )
