"""SQLAlchemy models of the ledger (DESIGN §5). Import them all from here."""

from service.models.portfolios import Holding, Portfolio
from service.models.reports import DailySummary, ReportRun
from service.models.resolutions import ResolutionStatus, TransactionResolution
from service.models.transactions import Transaction, TransactionStatus

__all__ = [
    "DailySummary",
    "Holding",
    "Portfolio",
    "ReportRun",
    "ResolutionStatus",
    "Transaction",
    "TransactionResolution",
    "TransactionStatus",
]
