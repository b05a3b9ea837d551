"""A real Prometheus scrapes the service under gunicorn (two workers, multiprocess
metrics) while traffic, both jobs, a Redis outage and a vendor outage go through it;
then every dashboard query and every alert of the chart is evaluated by its HTTP API.

A renamed metric or a wrong label in a query makes it answer nothing, and the test
names the query. The alerts run as the chart renders them, with every ``for:``
shortened through the chart's values (``metrics.prometheusRule.for``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import yaml
from flask import Flask

from service.extensions import db
from service.vendorapi.simulator import Simulator, SimulatorServer
from tests import ledger
from tests.bench.harness import RedisServer
from tests.buys_support import STEADY_REPRICE_SECONDS
from tests.deploy import helm, promql
from tests.functional.servers import Gunicorn, free_port
from tests.processes import run_flask
from tests.requires import PROMETHEUS_HINT, executable

SCRAPE_CONFIG = Path(__file__).with_name("prometheus.yml")
DASHBOARD_VARIABLES = {
    "$namespace": helm.NAMESPACE,
    "$job": helm.RELEASE_NAME,
    # Grafana's $__rate_interval is at least four scrape intervals; the whole scenario
    # fits in five minutes, so every rate sees all of it.
    "$__rate_interval": "5m",
}
# Alerts whose scenario the test drives: each must be pending or firing at the end.
EXERCISED_ALERTS = {
    "StockTradingBuysInterrupted",  # the `buys sweep` job ends a pending attempt
    "StockTradingVendorErrors",  # the vendor outage
    "StockTradingVendorCircuitOpen",  # the vendor outage
    "StockTradingRedisErrors",  # the Redis outage
    "StockTradingUnknownBuys",  # orders whose answer the vendor lost
    "StockTradingUnresolvedOrders",  # an unknown order two hours old
}
WAIT_SECONDS = 60


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus server of the test's own: its HTTP API at ``url``."""

    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) ``expr`` evaluates to now; AssertionError
        naming the expression when Prometheus refuses it."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{body.get('error')}\nin the expression\n{expr}"
        result = body["data"]["result"]
        return result if isinstance(result, list) else [result]

    def alert_states(self) -> dict[str, str]:
        """Alert name → ``pending`` or ``firing``, for the alerts active now."""
        response = requests.get(f"{self.url}/api/v1/alerts", timeout=10)
        response.raise_for_status()
        return {a["labels"]["alertname"]: a["state"] for a in response.json()["data"]["alerts"]}

    def wait_for(self, expr: str) -> None:
        """Return once ``expr`` answers (e.g. a new series was scraped)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.query(expr):
            assert time.monotonic() < deadline, f"no data within {WAIT_SECONDS} s for\n{expr}"
            time.sleep(0.5)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[Gunicorn], Prometheus]]:
    """``start(server)``: a Prometheus scraping ``server`` every second with the chart's
    alerts (every ``for:`` 2 s), configured from tests/functional/prometheus.yml."""
    binary = executable("prometheus", PROMETHEUS_HINT)
    processes: list[subprocess.Popen[bytes]] = []

    def start(server: Gunicorn) -> Prometheus:
        defaults = helm.merged_values()["metrics"]["prometheusRule"]["for"]
        short = {"metrics": {"prometheusRule": {"for": dict.fromkeys(defaults, "2s")}}}
        promql.write_rule_file(tmp_path / "rules.yaml", short)
        config = yaml.safe_load(SCRAPE_CONFIG.read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        (job,) = config["scrape_configs"]
        assert job["job_name"] == helm.RELEASE_NAME
        job["static_configs"][0]["targets"] = [server.url.removeprefix("http://")]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        with (tmp_path / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).ok:
                    return Prometheus(url)
            except requests.RequestException:
                pass
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus did not start"
            time.sleep(0.2)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


class Traffic:
    """Requests to a running service, each answer's status checked."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, status: int = 200) -> Any:
        response = requests.get(self.url + path, timeout=30)
        assert response.status_code == status, (path, response.status_code, response.text)
        return response.json() if "json" in response.headers.get("Content-Type", "") else None

    def buy(
        self, symbol: str, price: str, status: int | None, user: str = "alice"
    ) -> dict[str, Any]:
        """POST a buy of one share; ``status`` None accepts any answer."""
        response = requests.post(
            f"{self.url}/stocks/{symbol}/buy",
            json={"userId": user, "price": price, "quantity": 1},
            timeout=30,
        )
        assert status in (None, response.status_code), (symbol, response.status_code, response.text)
        body: dict[str, Any] = response.json()
        return body

    def price(self, symbol: str) -> str:
        (item,) = [
            i for i in self.get(f"/stocks?search={symbol}")["items"] if i["symbol"] == symbol
        ]
        return str(item["price"])


def run_job(env: dict[str, str], *command: str) -> None:
    """Run a CronJob's command (``flask --app service.wsgi …``) to completion."""
    result = run_flask(*command, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def turned_away(traffic: Traffic) -> bool:
    """Send concurrent requests; True once one of them got 429."""
    with ThreadPoolExecutor(8) as pool:
        statuses = pool.map(
            lambda _: requests.get(traffic.url + "/stocks?limit=5", timeout=30).status_code,
            range(16),
        )
        return 429 in set(statuses)


@pytest.mark.slow
def test_prometheus_answers_every_dashboard_query_and_alert(
    app: Flask,
    database_url: str,
    simulator_server: SimulatorServer,
    simulator: Simulator,
    private_redis: RedisServer,
    gunicorn: Callable[..., Gunicorn],
    prometheus: Callable[[Gunicorn], Prometheus],
    tmp_path: Path,
) -> None:
    # Prices hold still: the test outlasts a repricing cycle, and its buys reuse one price.
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    # An attempt a crashed worker left pending: the `buys sweep` job ends it.
    ledger.record(db.session(), datetime.now(UTC) - timedelta(minutes=10), status="pending")
    # An order whose outcome nobody has reconciled for two hours.
    ledger.record(
        db.session(), datetime.now(UTC) - timedelta(hours=2), "unknown", reason="vendor_timeout"
    )
    db.session.commit()
    env = {
        "REDIS_URL": private_redis.url,
        "VENDOR_RETRY_DELAYS": "0.05,0.05",
        "VENDOR_CIRCUIT_RESET_SECONDS": "600",  # stays open until the alerts are read
        "RATE_LIMIT": "1000/second",
        "MAX_CONCURRENT_REQUESTS": "1",  # concurrent requests get 429; sequential ones never
        "REPORT_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    server = gunicorn(**env)
    prom = prometheus(server)
    traffic = Traffic(server.url)

    # Every endpoint, cache misses and hits, buys of every kind.
    traffic.get("/healthz")
    traffic.get("/readyz")
    traffic.get("/openapi.json")
    page = traffic.get("/stocks?limit=5")
    traffic.get("/stocks?limit=5")
    traffic.get("/stocks?" + urlencode({"limit": 5, "nextToken": page["nextToken"]}))
    price = traffic.price("AAPL")
    traffic.buy("AAPL", price, 201)
    traffic.buy("AAPL", price, 201)
    traffic.buy("AAPL", "1", 422)
    traffic.buy("NOSUCH", "1", 404)
    traffic.buy("AAPL", "-1", 400)
    traffic.get("/users/alice/portfolios")
    traffic.get("/users/alice/portfolios")
    deadline = time.monotonic() + WAIT_SECONDS
    while not turned_away(traffic):
        assert time.monotonic() < deadline, "no request was turned away with 429"

    selector = f'namespace="{helm.NAMESPACE}", job="{helm.RELEASE_NAME}"'

    # A Redis outage: the service serves on, counting what it bypassed. Everything in
    # Redis is lost, so the jobs (whose state is in Redis) run after it.
    private_redis.stop()
    traffic.get("/users/alice/portfolios")
    prom.wait_for(f"trading_redis_errors_total{{{selector}}}")
    traffic.get("/users/alice/portfolios")
    traffic.get("/stocks?limit=5")
    private_redis.start()

    # The CronJobs' commands, against the same database and Redis.
    job_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VENDOR_BASE_URL": simulator_server.url,
        **env,
    }
    run_job(job_env, "tokens", "refresh")
    # The sweep's count is scraped at 0 first, so increase() sees the sweep's 1.
    prom.wait_for(f"trading_abandoned_attempts_finalised_total{{{selector}}} == 0")
    run_job(job_env, "buys", "sweep")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    run_job(job_env, "report", "send", "--date", yesterday)

    # Orders whose answer the vendor lost, in two rounds: a counter's first scrape is
    # its baseline, rates see only what it gained after.
    simulator.configure(lost_rate=1.0)
    traffic.buy("AAPL", price, 502)
    prom.wait_for(f'trading_buys_total{{{selector}, status="unknown", reason!="interrupted"}}')
    traffic.buy("AAPL", price, 502)
    simulator.configure(lost_rate=0.0)
    traffic.buy("AAPL", price, 201)

    # A vendor outage: buys fail until the circuit opens.
    simulator.configure(error_rate=1.0)
    traffic.buy("AAPL", price, 502)
    prom.wait_for(f'trading_vendor_requests_total{{{selector}, outcome="server_error"}}')
    deadline = time.monotonic() + WAIT_SECONDS
    while traffic.buy("AAPL", price, None)["error"]["code"] != "circuit_open":
        assert time.monotonic() < deadline, "the circuit did not open"

    # Every query runs (a refused one fails at once, named); those of what the
    # scenario exercised answer once Prometheus has scraped and evaluated it all.
    expressions = [(where, dashboard_query(expr)) for where, expr in promql.chart_expressions()]
    deadline = time.monotonic() + WAIT_SECONDS
    while silent := [
        f"{where}:\n{expr}"
        for where, expr in expressions
        if not prom.query(expr) and exercised(where)
    ]:
        assert time.monotonic() < deadline, "no data for:\n" + "\n".join(silent)
        time.sleep(0.5)
    while inactive := EXERCISED_ALERTS - prom.alert_states().keys():
        assert time.monotonic() < deadline, f"neither pending nor firing: {sorted(inactive)}"
        time.sleep(0.5)


def dashboard_query(expr: str) -> str:
    """``expr`` with the dashboard's variables as Grafana would fill them in."""
    for variable, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def exercised(where: str) -> bool:
    """Whether the scenario makes ``expr`` answer: an alert's when the alert is in
    :data:`EXERCISED_ALERTS`, every panel's."""
    if where.startswith("PrometheusRule"):
        return where.rsplit("/", 1)[1] in EXERCISED_ALERTS
    return True
