"""``flask --app service.wsgi buys sweep``: apply kept buy outcomes, end attempts
a crashed worker left pending.

Exit status: 0 when the sweep ran (whether or not it found anything); 1 when
the database could not be reached (the next run, a minute later, retries).
"""

from __future__ import annotations

import click

from service.jobs import JobGroup
from service.services import sweep
from service.services.orders import ABANDONED_AFTER

cli = JobGroup("buys", help="Buy attempts: housekeeping of the ledger.")


@cli.command("sweep")
def sweep_command() -> None:
    """Apply the buy outcomes kept while the ledger was away, then end attempts
    left ``pending`` for over five minutes: ``failed`` when no order was sent,
    else ``unknown`` (interrupted).

    Prints one line saying how many it finalised. Safe to run concurrently
    with itself and with buys: each attempt leaves ``pending`` once.
    """
    finalised = sweep.sweep()
    minutes = int(ABANDONED_AFTER.total_seconds() // 60)
    click.echo(
        f"buys sweep: {finalised} attempt(s) finalised (kept outcomes applied;"
        f" pending for over {minutes} minutes: failed if no order was sent, else unknown)"
    )
