"""Shared fixtures: real PostgreSQL, real Redis, the vendor simulator over real HTTP.

Servers are found through ``TEST_DATABASE_URL`` and ``TEST_REDIS_URL``
(defaults: the local servers). When one is missing the tests that need it are
skipped with instructions — except under ``CI=true``, where that is a failure.

Isolation: the schema is built once per session by the real migrations; after
each test every table is truncated and the Redis test database flushed. Tests
commit for real, so concurrency tests see what production would.
"""

from __future__ import annotations

import email
import gc
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from flask import Flask
from flask.testing import FlaskClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService

from service.app import create_app
from service.config import Settings, normalise_database_url
from service.extensions import db
from service.marketdata import prefetch
from service.vendorapi.simulator import (
    SIMULATOR_API_KEY,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    serve,
)
from tests.requires import missing
from tests.vendor_stub import StubVendor

TEST_DATABASE_URL = normalise_database_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LEDGER_TABLES = (
    "transaction_resolutions",
    "transactions",
    "holdings",
    "portfolios",
    "daily_summaries",
    "report_runs",
)

START_HINT = (
    "start them with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start; "
    'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
)


def _unavailable(what: str, exc: Exception) -> None:
    missing(f"{what} is not reachable ({exc}); {START_HINT}")


@pytest.fixture(scope="session")
def database_url() -> str:
    """A PostgreSQL database migrated from nothing by ``flask db upgrade``."""
    engine = sa.create_engine(TEST_DATABASE_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    except sa.exc.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    finally:
        engine.dispose()
    from flask_migrate import upgrade

    app = create_app(Settings.from_env({}, database_url=TEST_DATABASE_URL))
    with app.app_context():
        upgrade()
        for engine in db.engines.values():
            engine.dispose()
    return TEST_DATABASE_URL


@pytest.fixture
def no_pending_collection() -> None:
    """A full garbage collection now, so none falls inside the test: in this
    long process one takes ~150 ms, longer than the milliseconds in which a
    limits test expects a slot back (the service freezes its start-up objects
    instead, service/wsgi.py)."""
    gc.collect()


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    return TEST_REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """The Redis test database, empty at the start and end of each test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[SimulatorServer]:
    server = serve(Simulator(SimulatorConfig()))
    yield server
    server.shutdown()


@pytest.fixture
def simulator(simulator_server: SimulatorServer) -> Iterator[Simulator]:
    """The vendor simulator (served over HTTP), reset to a healthy state per test."""
    simulator_server.simulator.reset()
    yield simulator_server.simulator
    simulator_server.simulator.reset()


@pytest.fixture
def vendor_stub() -> Iterator[StubVendor]:
    """A vendor answering what the test sets (:class:`tests.vendor_stub.StubVendor`)."""
    with StubVendor() as stub:
        yield stub


@pytest.fixture
def make_settings(
    database_url: str, redis_client: redis.Redis, simulator_server: SimulatorServer
) -> Callable[..., Settings]:
    """Settings for a test app; keyword arguments override single fields."""

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": TEST_REDIS_URL,
            "vendor_base_url": simulator_server.url,
            "vendor_api_key": SIMULATOR_API_KEY,
            "vendor_timeout_seconds": 2,
            "vendor_retry_delays": (0.0, 0.0, 0.0),
            "rate_limit_enabled": False,
        }
        base.update(overrides)
        return Settings.from_env({}, **base)

    return build


@pytest.fixture
def make_app(
    make_settings: Callable[..., Settings], simulator: Simulator
) -> Iterator[Callable[..., Flask]]:
    """Build apps with overridden settings; tables are truncated afterwards."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        # A new app is a new process: it knows no pre-cached page yet.
        prefetch.settled.clear()
        app = create_app(make_settings(**overrides))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            with db.engine.begin() as conn:
                conn.execute(
                    sa.text(f"TRUNCATE {', '.join(LEDGER_TABLES)} RESTART IDENTITY CASCADE")
                )
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """The app with test settings, inside an application context."""
    application = make_app()
    with application.app_context():
        yield application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a free local port that keeps what it receives.

    ``stop()``/``start()`` simulate an outage (connections refused); set
    ``refuse`` to an SMTP reply such as ``"451 4.3.0 try later"`` to refuse
    messages, and list addresses in ``unknown_recipients`` to refuse those.
    With ``credentials`` it requires ``AUTH`` with that user and password.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.credentials = credentials
        self.received: list[Envelope] = []
        self.refuse: str | None = None
        self.unknown_recipients: set[str] = set()
        self._controller: Controller | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.unknown_recipients:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.credentials and not session.authenticated:
            return "530 5.7.0 authentication required"
        if self.refuse:
            return self.refuse
        self.received.append(envelope)
        return "250 2.0.0 accepted"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        given = (data.login.decode(), data.password.decode())
        return AuthResult(success=given == self.credentials, handled=False)

    @property
    def messages(self) -> list[EmailMessage]:
        """The received messages, parsed."""
        return [
            email.message_from_bytes(envelope.original_content or b"", policy=default_policy)
            for envelope in self.received
        ]

    def start(self) -> None:
        auth: dict[str, Any] = {}
        if self.credentials:
            auth = {"authenticator": self._authenticate, "auth_require_tls": False}
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **auth)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running :class:`SmtpServer`; point the app at it with
    ``make_app(smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_starttls=False)``."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's headless Chromium driven through chromium-driver.

    It reaches only this machine: every other address goes to a proxy that
    does not exist (loopback addresses never go through a proxy), so a page
    that needs the internet breaks here as it would offline.
    """
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        missing("Chromium is not installed; apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite may run as root (CI does)
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
        "--proxy-server=http://127.0.0.1:9",
        "--no-first-run",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=ChromeService(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()
