"""The application factory: it only wires things together (into :class:`ServiceApp`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from service import api as api_package
from service import jobs
from service.api.errors import register_error_handlers
from service.auth import register_auth
from service.config import Settings
from service.extensions import (
    AUTOCOMMIT_BIND,
    db,
    migrate,
    ping_idle_connections,
    redis_store,
    register_autocommit,
)
from service.logging import register_request_id
from service.metrics import register_request_metrics, register_state_collectors
from service.ratelimit import register_limits
from service.services.reports import report_metrics
from service.services.resolutions import unresolved_state
from service.services.sweep import sweep_state
from service.services.tokens import refresh_state
from service.vendorapi.client import circuit_state, register_vendor

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")
# No use case keeps a transaction open while it waits on anything else (the
# vendor is called between transactions), so a session idle in a transaction
# for a minute is a zombie — e.g. its client vanished in a network cut — and
# PostgreSQL ends it rather than let it hold ledger row locks. Connecting
# fails fast, and keepalives notice a dead peer within about a minute.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 5,
    "options": "-c idle_in_transaction_session_timeout=60000",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

BEARER_SCHEME = "bearerAuth"
BEARER_SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "A JWT from the identity provider (AUTH_MODE=jwt).",
}


class ServiceApp(Flask):
    """Flask, with what each request asks of ``ensure_sync`` remembered."""

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Flask asks for every hook and view on every request; inspect's
        # answer took 2 % of a cached listing's CPU (issue 17).
        if _is_coroutine_function(func):
            return self.async_to_sync(func)
        return func


# Bounded: one-off functions (``after_this_request``'s) pass through too.
_is_coroutine_function = functools.lru_cache(maxsize=512)(inspect.iscoroutinefunction)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app from ``settings`` (default: the environment).

    :raises ConfigError: when an environment variable has an unusable value.
    """
    settings = settings or Settings.from_env()
    app = ServiceApp(__name__, instance_relative_config=False)
    app.config.update(_flask_config(settings))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["settings"] = settings
    # Client addresses (logs, per-client limits) from the X-Forwarded-For
    # entries added by the TRUSTED_PROXIES nearest proxies; 0 trusts none, and
    # then no forwarded header is read at all (nor paid for on each request).
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    register_request_id(app)
    register_request_metrics(app)
    # The CronJobs' pods are never scraped: the web pods export what they leave behind.
    register_state_collectors(
        app, circuit_state, refresh_state, report_metrics, sweep_state, unresolved_state
    )
    register_extensions(app, settings)
    app.before_request(api_package.read_body)  # before the limits: no slot while it arrives
    register_auth(app, settings)  # before the limits: the per-user limit needs the user
    register_limits(app, settings)  # after the request-id and metrics hooks and Redis
    register_error_handlers(app)
    api_package.register_response_headers(app)
    api_package.register_blueprints(app)
    jobs.register_commands(app)
    return app


def register_extensions(app: Flask, settings: Settings) -> None:
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            ping_idle_connections(engine)
        register_autocommit(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    redis_store.init_app(app, settings.redis_url)
    register_vendor(app, settings)
    api_package.api.init_app(app)


def _flask_config(settings: Settings) -> dict[str, Any]:
    engine_options: dict[str, Any] = {}
    if not settings.uses_sqlite:
        engine_options.update(
            pool_size=10, max_overflow=10, pool_recycle=1800, connect_args=POSTGRES_CONNECT_ARGS
        )
    config: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": settings.database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        # A second pool, of connections always in autocommit, for the buy's
        # one-statement writes (service.extensions.autocommit), with the same
        # options (Flask-SQLAlchemy gives a bind none of the ones above).
        "SQLALCHEMY_BINDS": {}
        if settings.uses_sqlite
        else {
            AUTOCOMMIT_BIND: {
                **engine_options,
                "url": settings.database_url,
                "isolation_level": "AUTOCOMMIT",
            }
        },
        # A larger body is refused (413 request_too_large) before it is read.
        "MAX_CONTENT_LENGTH": settings.max_request_bytes,
        "API_TITLE": "Stock trading service",
        "API_VERSION": "1.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",  # service.api.docs_assets
    }
    if settings.auth_mode == "jwt":
        # Every documented operation needs the token; /docs shows "Authorize" for it.
        config["API_SPEC_OPTIONS"] = {
            "components": {"securitySchemes": {BEARER_SCHEME: BEARER_SECURITY_SCHEME}},
            "security": [{BEARER_SCHEME: []}],
        }
    return config
