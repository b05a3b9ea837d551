"""Logs: one line per record on stdout, JSON (``LOG_FORMAT=json``) or text for
people (``LOG_FORMAT=text``), carrying the request id; one line per request
(:func:`log_request`) and per unsuccessful buy (:func:`log_unsuccessful_buy`)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from service.ids import new_id

log = logging.getLogger("service.requests")
buy_log = logging.getLogger("service.buys")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's request id (inside a request) and its ``extra=`` fields."""
    entry: dict[str, Any] = {}
    if has_request_context() and "request_id" in g:
        entry["request_id"] = g.request_id
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRS and not key.startswith("_"):
            entry[key] = value
    return entry


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time (UTC), level, logger, message,
    request id when inside a request, any ``extra=`` fields, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Formats a record for people: ``time LEVEL logger: message key=value …``
    (the same fields as the JSON lines), then the traceback on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if pairs:
            line += f"  {pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def configure_logging(level: str, log_format: str = "json") -> None:
    """Send every log record to stdout at ``level``, formatted as ``log_format``
    (``json`` or ``text``, the values ``LOG_FORMAT`` accepts)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(FORMATTERS[log_format]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _assign_request_id() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _VALID_REQUEST_ID.match(incoming) else new_id()


def _echo_request_id(response: Response) -> Response:
    if "request_id" in g:
        response.headers[REQUEST_ID_HEADER] = g.request_id
    return response


# Probes and scrapes arrive every few seconds from machines: DEBUG, not INFO.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def log_request(response: Response, seconds: float) -> None:
    """Log one line for the request being answered: INFO, DEBUG for probes and
    ``/metrics``. Fields: method, route (the URL rule), endpoint, status,
    duration_ms, client (the address through ``TRUSTED_PROXIES``), and the
    user when known (``g.user_id``, else a ``userId`` in the path)."""
    rule = request.url_rule
    route = rule.rule if rule is not None else None
    level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "method": request.method,
        "route": route,
        "endpoint": request.endpoint,
        "status": response.status_code,
        "duration_ms": round(seconds * 1000, 1),
        "client": request.remote_addr,
    }
    user = g.get("user_id") or (request.view_args.get("userId") if request.view_args else None)
    if user:
        fields["user"] = user
    log.log(level, "%s %s %s", request.method, request.path, response.status_code, extra=fields)


def log_unsuccessful_buy(
    transaction_id: int | None, status: str, reason: str | None, attempts: int
) -> None:
    """Log the WARNING every buy that does not succeed gets (DESIGN §8): call it
    once per attempt that ends ``rejected``, ``failed`` or ``unknown``."""
    buy_log.warning(
        "buy %s: %s (%s) after %d vendor attempt(s)",
        transaction_id,
        status,
        reason,
        attempts,
        extra={
            "transaction_id": transaction_id,
            "status": status,
            "reason": reason,
            "attempts": attempts,
        },
    )


def register_request_id(app: Flask) -> None:
    """Give every request an id (the caller's ``X-Request-ID`` if sane) and echo it."""
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
