"""What the daily report says: its tables as dataclasses, folded from the
day's aggregate rows and ledger rows (:func:`summarise`). Reading them is
:mod:`service.services.reports`; writing them out, :mod:`service.services.report_views`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from service.models import DailySummary, Transaction, TransactionResolution, TransactionStatus
from service.repositories import reports as runs

REPORTED_STATUSES = tuple(status.value for status in TransactionStatus if status.is_final)


@dataclass(frozen=True)
class StatusTotal:
    """One final status: attempts, shares, and amount (paid when succeeded,
    price × quantity asked otherwise)."""

    status: str
    count: int
    quantity: int
    amount: Decimal


@dataclass(frozen=True)
class ReasonCount:
    status: str
    reason: str
    count: int


@dataclass(frozen=True)
class SymbolFigures:
    """One symbol: its catalogue name (``""`` when unknown), succeeded buys
    (trades, shares, value) and the other attempts."""

    symbol: str
    name: str
    trades: int
    quantity: int
    value: Decimal
    unsuccessful: int


@dataclass(frozen=True)
class Problem:
    """A failed or unknown attempt, as listed in the report body.

    ``vendor_answer`` is the vendor's status and text when the vendor answered,
    ``""`` when it was never asked or never answered (the reason says why).
    """

    id: int
    created_at: datetime
    user_id: str
    symbol: str
    quantity: int
    requested_price: Decimal
    status: str
    reason: str
    vendor_answer: str

    @classmethod
    def of(cls, row: Transaction) -> Problem:
        answered = row.vendor_status is not None
        return cls(
            id=row.id,
            created_at=row.created_at,
            user_id=row.user_id,
            symbol=row.symbol,
            quantity=row.quantity,
            requested_price=row.requested_price,
            status=row.status,
            reason=row.reason or "",
            vendor_answer=f"{row.vendor_status} {row.vendor_message or ''}".strip()
            if answered
            else "",
        )


@dataclass(frozen=True)
class Totals:
    """The final attempts of one day by status (from ``daily_summaries``)."""

    statuses: list[StatusTotal]

    @property
    def attempts(self) -> int:
        return sum(total.count for total in self.statuses)

    @property
    def value_bought(self) -> Decimal:
        return self.status(TransactionStatus.SUCCEEDED).amount

    def count(self, status: str) -> int:
        return self.status(status).count

    def status(self, status: str) -> StatusTotal:
        return next(total for total in self.statuses if total.status == status)


@dataclass(frozen=True)
class Change:
    """One figure of the day against the previous day."""

    label: str
    current: int | Decimal
    previous: int | Decimal

    @property
    def delta(self) -> int | Decimal:
        return self.current - self.previous

    @property
    def is_amount(self) -> bool:
        return isinstance(self.current, Decimal)


@dataclass(frozen=True)
class HourBar:
    """One UTC hour of the chart; widths are percentages of the busiest hour."""

    hour: int
    attempts: int
    problems: int
    attempts_width: int
    problems_width: int


@dataclass(frozen=True)
class Outstanding:
    """An ``unknown`` attempt no operator has resolved, and how long it has
    waited when the report was made."""

    problem: Problem
    age: timedelta

    @property
    def age_text(self) -> str:
        """The age in its two largest units: ``3 d 4 h``, ``5 h 12 min``, ``7 min``."""
        minutes = int(self.age.total_seconds() // 60)
        days, hours = divmod(minutes // 60, 24)
        if days:
            return f"{days} d {hours} h"
        return f"{hours} h {minutes % 60} min" if hours else f"{minutes} min"


@dataclass(frozen=True)
class ResolvedAttempt:
    """An operator's resolution (made on the report's day) of an ``unknown`` attempt."""

    attempt: Problem
    status: str
    total: Decimal | None
    by: str
    note: str
    resolved_at: datetime

    @classmethod
    def of(cls, resolution: TransactionResolution, row: Transaction) -> ResolvedAttempt:
        return cls(
            Problem.of(row),
            resolution.status,
            resolution.total,
            resolution.resolved_by,
            resolution.note,
            resolution.resolved_at,
        )


@dataclass(frozen=True)
class DayReport:
    """Everything the message says about one day.

    ``so_far`` is set when the day has not ended: the figures stop at that time.
    The totals count an attempt an operator resolved under its resolution.
    """

    day: date
    totals: Totals
    previous: Totals
    users: int
    pending: int
    reasons: list[ReasonCount]
    symbols: list[SymbolFigures]
    failed: list[Problem]
    unknown: list[Problem]
    hours: list[HourBar]
    so_far: datetime | None = None
    csv_rows: int = 0  # rows in the attached CSV
    # Every unresolved unknown attempt up to the day (the first PROBLEMS_SHOWN
    # listed), and the resolutions made on the day.
    to_reconcile: list[Outstanding] = field(default_factory=list)
    unreconciled: int = 0
    resolved: list[ResolvedAttempt] = field(default_factory=list)

    @property
    def transactions(self) -> int:
        return self.totals.attempts + self.pending

    @property
    def previous_day(self) -> date:
        return self.day - timedelta(days=1)

    @property
    def value_bought(self) -> Decimal:
        return self.totals.value_bought

    def count(self, status: str) -> int:
        return self.totals.count(status)

    def not_shown(self, status: str) -> int:
        """How many attempts with ``status`` the body leaves to the CSV."""
        listed = self.failed if status == TransactionStatus.FAILED else self.unknown
        return self.count(status) - len(listed)

    @property
    def changes(self) -> list[Change]:
        """Attempts, each final status and the value bought, against the day before."""
        return [
            Change("attempts", self.totals.attempts, self.previous.attempts),
            *(
                Change(total.status, total.count, self.previous.count(total.status))
                for total in self.totals.statuses
            ),
            Change("value bought", self.value_bought, self.previous.value_bought),
        ]


@dataclass
class _Tally:
    count: int = 0
    quantity: int = 0
    amount: Decimal = Decimal(0)

    def add(self, row: DailySummary) -> None:
        self.count += row.count
        self.quantity += row.quantity
        self.amount += row.amount


def totals(rows: Iterable[DailySummary]) -> Totals:
    """One day's aggregate rows by final status (every status present)."""
    statuses = {status: _Tally() for status in REPORTED_STATUSES}
    for row in rows:
        statuses[row.status].add(row)
    return Totals([StatusTotal(s, t.count, t.quantity, t.amount) for s, t in statuses.items()])


def summarise(
    day: date,
    rows: Iterable[DailySummary],
    *,
    previous: Iterable[DailySummary],
    users: int,
    pending: int,
    failed: list[Problem],
    unknown: list[Problem],
    hours: Iterable[runs.HourCounts],
    names: Mapping[str, str],
    so_far: datetime | None = None,
) -> DayReport:
    """Fold the day's and the previous day's aggregate rows into the report's tables."""
    rows = list(rows)
    bought: dict[str, _Tally] = defaultdict(_Tally)
    unsuccessful: dict[str, int] = defaultdict(int)
    reasons: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        if row.status == TransactionStatus.SUCCEEDED:
            bought[row.symbol].add(row)
        else:
            unsuccessful[row.symbol] += row.count
            reasons[row.status, row.reason] += row.count
    symbols = [
        SymbolFigures(
            symbol,
            names.get(symbol, ""),
            tally.count,
            tally.quantity,
            tally.amount,
            unsuccessful[symbol],
        )
        for symbol in bought.keys() | unsuccessful.keys()
        for tally in [bought.get(symbol, _Tally())]
    ]
    return DayReport(
        day=day,
        totals=totals(rows),
        previous=totals(previous),
        users=users,
        pending=pending,
        reasons=sorted(
            (ReasonCount(status, reason, count) for (status, reason), count in reasons.items()),
            key=lambda reason: (-reason.count, reason.status, reason.reason),
        ),
        symbols=sorted(symbols, key=lambda figures: (-figures.value, figures.symbol)),
        failed=failed,
        unknown=unknown,
        hours=hour_bars(hours),
        so_far=so_far,
    )


def hour_bars(counts: Iterable[runs.HourCounts]) -> list[HourBar]:
    """All 24 hours of the day; bar widths in percent of the busiest hour, at
    least 1 for an hour with any attempt so that it stays visible."""
    by_hour = {count.hour: count for count in counts}
    busiest = max((count.attempts for count in by_hour.values()), default=0)

    def width(value: int) -> int:
        return max(1, round(100 * value / busiest)) if value else 0

    return [
        HourBar(hour, count.attempts, count.problems, width(count.attempts), width(count.problems))
        for hour in range(24)
        for count in [by_hour.get(hour, runs.HourCounts(hour, 0, 0))]
    ]
