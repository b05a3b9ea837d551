"""``flask --app service.wsgi transactions list|resolve``: reconciliation of
buys whose outcome is ``unknown``, for operators.

Exit status of both: 0 done (``resolve``: also when the row already had that
very resolution, a no-op); 1 the database is unavailable; 2 bad usage (an
option missing or malformed); 3 no such transaction; 4 the resolution conflicts
(the row is not ``unknown``, or was resolved otherwise). Errors are one line,
never a traceback.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import click

from service.errors import InvalidInput, ResolutionConflict, TransactionNotFound
from service.jobs import DAY_FORMAT, JobGroup
from service.models import ResolutionStatus, Transaction, TransactionResolution, TransactionStatus
from service.money import money_text
from service.schemas.buys import TransactionSchema
from service.services import resolutions

cli = JobGroup(
    "transactions", help="The ledger of buy attempts: reconciliation of unknown outcomes."
)

NOT_FOUND_EXIT = 3
CONFLICT_EXIT = 4
# id, created (UTC), user, symbol, quantity, requested price, status, reason, resolution
ROW = "{:>9}  {:<20}  {:<16}  {:<7}  {:>7}  {:>12}  {:<9}  {:<20}  {}"
HEADER = ROW.format(
    "id", "created (UTC)", "user", "symbol", "qty", "price", "status", "reason", "resolution"
)


class _NotFound(click.ClickException):
    exit_code = NOT_FOUND_EXIT


class _Conflict(click.ClickException):
    exit_code = CONFLICT_EXIT


@cli.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([status.value for status in TransactionStatus]),
    help="Only attempts with this status (repeatable).",
)
@click.option(
    "--since",
    type=DAY_FORMAT,
    help="Only attempts created on this UTC day (YYYY-MM-DD) or later.",
)
@click.option("--user", "user_id", help="Only this user's attempts.")
@click.option(
    "--unresolved", is_flag=True, help="Only unknown outcomes no operator has resolved yet."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, the API's Transaction shape.")
def list_command(
    statuses: tuple[str, ...],
    since: datetime | None,
    user_id: str | None,
    unresolved: bool,
    as_json: bool,
) -> None:
    """List buy attempts, oldest first, with their resolutions.

    Exit status: 0 listed (possibly nothing); 1 the database is unavailable;
    2 bad usage.
    """
    rows = resolutions.list_attempts(
        statuses=statuses,
        since=since.replace(tzinfo=UTC) if since else None,
        user_id=user_id,
        only_unresolved=unresolved,
    )
    if as_json:
        schema = TransactionSchema()
        for row in rows:
            click.echo(json.dumps(schema.dump(row)))
        return
    click.echo(HEADER)
    for row in rows:
        click.echo(_line(row))


@cli.command("resolve")
@click.argument("transaction_id", type=int)
@click.option(
    "--as",
    "outcome",
    required=True,
    type=click.Choice([status.value for status in ResolutionStatus]),
    help="What the vendor confirmed: the order was executed (succeeded) or not (failed).",
)
@click.option("--by", required=True, help="Who resolves it (1–64 characters).")
@click.option("--note", required=True, help="How the outcome was confirmed.")
@click.option(
    "--executed-price",
    type=Decimal,
    help="The vendor's execution price (succeeded only). Default: the requested price.",
)
def resolve_command(
    transaction_id: int, outcome: str, by: str, note: str, executed_price: Decimal | None
) -> None:
    """Record the true outcome of an unknown buy attempt, once.

    succeeded credits the user's holding (total = price × quantity) and counts
    the attempt as succeeded in its day's summary; failed changes no holding.

    Exit status: 0 resolved, or already resolved the same way (nothing
    changed); 1 the database is unavailable; 2 bad usage; 3 no such
    transaction; 4 the transaction is not unknown, or was resolved otherwise.
    """
    try:
        done = resolutions.resolve(
            transaction_id,
            status=ResolutionStatus(outcome),
            by=by,
            note=note,
            executed_price=executed_price,
        )
    except InvalidInput as exc:
        fields = "; ".join(
            f"--{name.replace('executedPrice', 'executed-price')}: {' '.join(messages)}"
            for name, messages in exc.details.get("fields", {}).items()
        )
        raise click.UsageError(fields or exc.message) from exc
    except TransactionNotFound as exc:
        raise _NotFound(exc.message) from exc
    except ResolutionConflict as exc:
        raise _Conflict(exc.message) from exc
    verb = "resolved" if done.changed else "already resolved; nothing changed:"
    assert done.transaction.resolution is not None
    click.echo(f"transaction {transaction_id} {verb} {_resolution(done.transaction.resolution)}")


def _line(row: Transaction) -> str:
    return ROW.format(
        row.id,
        row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        row.user_id,
        row.symbol,
        f"{row.quantity:,}",
        money_text(row.requested_price),
        row.status,
        row.reason or "",
        _resolution(row.resolution) if row.resolution else "",
    )


def _resolution(resolution: TransactionResolution) -> str:
    price, total = resolution.executed_price, resolution.total
    priced = (
        f" at {money_text(price)} (total {money_text(total)})"
        if price is not None and total is not None
        else ""
    )
    return (
        f"{resolution.status}{priced} by {resolution.resolved_by} "
        f"at {resolution.resolved_at.isoformat(timespec='seconds')}: {resolution.note}"
    )
