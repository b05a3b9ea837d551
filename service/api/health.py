"""Liveness, readiness and metrics endpoints (never rate limited)."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from service import metrics
from service.api import Blueprint
from service.services import health

blp = Blueprint(
    "health",
    __name__,
    rate_limited=False,
    description="Probes and metrics: never rate limited, never authenticated.",
)

_STATUS = {"type": "object", "properties": {"status": {"type": "string", "example": "ok"}}}
_READINESS = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "degraded", "unavailable"]},
        "checks": {
            "type": "object",
            "description": "Each dependency (database, redis …) and its state.",
            "additionalProperties": True,
        },
    },
}


@blp.get("/healthz")
@blp.alt_response(200, success=True, schema=_STATUS, description="The process is alive.")
def healthz() -> Response:
    """Liveness: the process is alive and serving."""
    return jsonify({"status": "ok"})


@blp.get("/readyz")
@blp.alt_response(
    200,
    success=True,
    schema=_READINESS,
    description="Ready; a Redis that is down or refuses writes (full) is reported as "
    "degraded (the service still serves).",
)
@blp.alt_response(503, schema=_READINESS, description="PostgreSQL is unreachable.")
def readyz() -> tuple[Response, int]:
    """Readiness: each dependency and its state; 503 only when PostgreSQL is unreachable."""
    report = health.readiness()
    return jsonify(report), 200 if report["status"] != "unavailable" else 503


@blp.get("/metrics")
@blp.alt_response(
    200,
    success=True,
    content_type="text/plain",
    schema={"type": "string"},
    description="Prometheus text exposition format (metric names start with trading_).",
)
def metrics_endpoint() -> Response:
    """Prometheus metrics of every worker process."""
    return metrics.render(current_app)
