"""Liveness, readiness and metrics endpoints (never rate limited, not in the API docs)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from service import metrics
from service.services import health

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz() -> Response:
    """The process is alive and serving."""
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Each dependency and its state; 503 only when PostgreSQL is unreachable."""
    report = health.readiness()
    return jsonify(report), 200 if report["status"] != "unavailable" else 503


@blp.get("/metrics")
def metrics_endpoint() -> Response:
    return metrics.render(current_app)
