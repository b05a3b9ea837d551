"""The vendor client against the simulator over real HTTP."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar

import pytest
import redis

from service.metrics import REDIS_ERRORS, VENDOR_REQUESTS
from service.vendorapi.client import VendorClient
from service.vendorapi.errors import (
    CircuitOpen,
    UnknownSymbol,
    VendorAnswerLost,
    VendorError,
    VendorRejected,
    VendorServerError,
    VendorTimeout,
    VendorUnreachable,
)
from service.vendorapi.simulator import SIMULATOR_API_KEY, Simulator, SimulatorServer
from tests.vendor_stub import StubVendor


def _no_wait(_state: object) -> float:
    return 0.0


@pytest.fixture
def make_client(
    simulator_server: SimulatorServer, simulator: Simulator, redis_client: redis.Redis
) -> Iterator[type[VendorClient]]:
    made: list[VendorClient] = []

    def build(**kwargs: object) -> VendorClient:
        options: dict[str, object] = {
            "base_url": simulator_server.url,
            "api_key": SIMULATOR_API_KEY,
            "timeout_seconds": 1.0,
            "redis": redis_client,
            "list_wait": _no_wait,
        }
        options.update(kwargs)
        client = VendorClient(**options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield build  # type: ignore[misc]
    for client in made:
        client.close()


def _count(operation: str, outcome: str) -> float:
    return VENDOR_REQUESTS.labels(operation, outcome)._value.get()


def test_walks_every_page_with_url_encoded_tokens(make_client, simulator: Simulator) -> None:
    client = make_client()
    seen: list[str] = []
    token = None
    tokens_with_padding = 0
    while True:
        page = client.list_stocks(token)
        seen.extend(item.symbol for item in page.items)
        if page.next_token is None:
            break
        tokens_with_padding += page.next_token.endswith("=")
        token = page.next_token
    assert seen == simulator.symbols()
    assert tokens_with_padding > 0  # the '=' survived the round trip


def test_prices_are_exact_decimals(make_client, simulator: Simulator) -> None:
    page = make_client().list_stocks()
    for item in page.items:
        assert isinstance(item.price, Decimal)
        assert item.price == simulator.price(item.symbol)
        assert item.last_updated.tzinfo is not None


def test_order_is_parsed_and_sent_once(make_client, simulator: Simulator) -> None:
    price = simulator.price("AAPL")
    order = make_client().place_order("AAPL", price, 3)
    assert order.symbol == "AAPL"
    assert order.quantity == 3
    assert order.price == price
    assert order.total == price * 3
    assert len(simulator.orders()) == 1


def test_unknown_symbol_and_rejections_are_mapped(make_client, simulator: Simulator) -> None:
    client = make_client()
    with pytest.raises(UnknownSymbol):
        client.place_order("NOPE", Decimal(1), 1)
    with pytest.raises(VendorRejected) as caught:
        client.place_order("AAPL", simulator.price("AAPL") * 2, 1)
    assert caught.value.vendor_status == 400
    assert "2%" in caught.value.message
    assert not caught.value.retriable


def test_wrong_key_is_a_rejection(make_client) -> None:
    with pytest.raises(VendorRejected) as caught:
        make_client(api_key="wrong").list_stocks()
    assert caught.value.vendor_status == 403


def test_server_errors_are_retriable_and_reads_are_retried(
    make_client, simulator: Simulator
) -> None:
    client = make_client(fail_max=100)
    simulator.configure(error_rate=1.0)
    before = _count("list_stocks", "server_error")
    with pytest.raises(VendorServerError) as caught:
        client.list_stocks()
    assert caught.value.retriable
    assert _count("list_stocks", "server_error") - before == 3  # three attempts
    with pytest.raises(VendorServerError):
        client.place_order("AAPL", simulator.price("AAPL"), 1)
    assert simulator.orders() == []


def test_lost_answer_is_not_retriable_and_was_executed(make_client, simulator: Simulator) -> None:
    simulator.configure(lost_rate=1.0, fault_operations=("buy",))
    with pytest.raises(VendorAnswerLost) as caught:
        make_client().place_order("AAPL", simulator.price("AAPL"), 1)
    assert not caught.value.retriable
    assert len(simulator.orders()) == 1


def test_read_timeout_is_not_retriable(make_client, simulator: Simulator) -> None:
    simulator.configure(timeout_rate=1.0, slow_seconds=0.6, fault_operations=("buy",))
    with pytest.raises(VendorTimeout) as caught:
        make_client(timeout_seconds=0.2).place_order("AAPL", simulator.price("AAPL"), 1)
    assert not caught.value.retriable


def test_refused_connection_is_unreachable_and_safe(make_client) -> None:
    with pytest.raises(VendorUnreachable) as caught:
        make_client(base_url="http://127.0.0.1:1").place_order("AAPL", Decimal(1), 1)
    assert caught.value.retriable
    assert not caught.value.request_sent


def test_the_environments_proxy_is_used_as_when_the_client_was_built(
    make_client, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The proxy settings are read once, when the client is built.
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # nothing listens there
    proxied = make_client()
    monkeypatch.delenv("HTTP_PROXY")
    direct = make_client()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")

    with pytest.raises(VendorError):  # the proxy refused the connection
        proxied.place_order("AAPL", simulator.price("AAPL"), 1)
    assert direct.place_order("AAPL", simulator.price("AAPL"), 1).quantity == 1


def test_circuit_opens_for_every_client_sharing_redis_and_closes_again(
    make_client, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.vendorapi.client")
    first = make_client(fail_max=3, reset_timeout=1)
    second = make_client(fail_max=3, reset_timeout=1)  # another worker or pod
    assert not second.circuit_is_open()  # its breaker has seen the circuit closed
    simulator.configure(error_rate=1.0)
    with pytest.raises(VendorServerError):
        first.list_stocks()  # three failed attempts trip the breaker
    assert second.circuit_is_open()
    calls_before = simulator.stats()["requests"].get("list", 0)
    with pytest.raises(CircuitOpen) as caught:
        second.list_stocks()
    assert caught.value.retry_after is not None
    assert 1 <= caught.value.retry_after <= 1
    assert simulator.stats()["requests"].get("list", 0) == calls_before  # no call was made
    simulator.configure(error_rate=0.0)
    threading.Event().wait(1.1)
    assert second.list_stocks().items  # the half-open trial succeeds
    assert not first.circuit_is_open()
    # One WARNING per transition, from the client that made it; the second
    # client noticing the open circuit in Redis adds none.
    transitions = [
        (record.levelname, record.from_state, record.to_state)  # type: ignore[attr-defined]
        for record in caplog.records
        if record.getMessage().startswith("vendor circuit")
    ]
    assert transitions == [
        ("WARNING", "closed", "open"),
        ("WARNING", "open", "half-open"),
        ("WARNING", "half-open", "closed"),
    ]


def test_rejections_do_not_open_the_circuit(make_client) -> None:
    client = make_client(fail_max=2)
    for _ in range(4):
        with pytest.raises(UnknownSymbol):
            client.place_order("NOPE", Decimal(1), 1)
    assert not client.circuit_is_open()


def test_unreadable_page_is_a_bad_response(make_client, vendor_stub: StubVendor) -> None:
    from service.vendorapi.errors import VendorBadResponse

    vendor_stub.answer("GET", "/stocks", json_body={"status": 200, "data": {"items": None}})
    with pytest.raises(VendorBadResponse):
        make_client(base_url=vendor_stub.url).list_stocks()


def test_an_unreadable_item_is_skipped_and_reported(make_client, vendor_stub: StubVendor) -> None:
    good = {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "price": 220.67,
        "sector": "Technology",
        "change": 1.5,
        "lastUpdated": "2026-11-24T23:35:00.000Z",
    }
    broken = {**good, "symbol": "BAD", "price": "lots"}
    vendor_stub.answer(
        "GET",
        "/stocks",
        json_body={"status": 200, "data": {"items": [good, broken, {}], "nextToken": "T2=="}},
    )
    page = make_client(base_url=vendor_stub.url).list_stocks()
    assert [item.symbol for item in page.items] == ["AAPL"]
    assert [skipped.symbol for skipped in page.skipped] == ["BAD", None]
    assert page.next_token == "T2=="


def test_a_gateway_502_on_an_order_may_have_executed(make_client, vendor_stub: StubVendor) -> None:
    from service.vendorapi.errors import VendorGatewayError

    vendor_stub.answer("POST", "/stocks/AAPL/buy", 502, body="Bad Gateway")
    with pytest.raises(VendorGatewayError) as caught:
        make_client(base_url=vendor_stub.url).place_order("AAPL", Decimal(1), 1)
    assert not caught.value.retriable  # never resend the order
    assert caught.value.transient  # a read may be repeated
    assert caught.value.request_sent


def test_the_vendors_429_is_retriable_not_passed_on(make_client, vendor_stub: StubVendor) -> None:
    vendor_stub.answer("POST", "/stocks/AAPL/buy", 429, json_body={"message": "Too Many Requests"})
    with pytest.raises(VendorServerError) as caught:
        make_client(base_url=vendor_stub.url).place_order("AAPL", Decimal(1), 1)
    assert caught.value.retriable
    assert caught.value.vendor_status == 429


def test_without_redis_the_breaker_stays_closed_and_counts_the_errors(make_client) -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    before = REDIS_ERRORS.labels("breaker")._value.get()

    page = make_client(redis=dead).list_stocks()

    assert page.items  # the vendor is still called
    assert REDIS_ERRORS.labels("breaker")._value.get() > before
    dead.close()


class _RecordingConnection(redis.Connection):
    """A connection that notes the name of every command it sends."""

    commands: ClassVar[list[str]] = []

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        self.commands.append(str(args[0]).upper())
        super().send_command(*args, **kwargs)

    def pack_commands(self, commands: Any) -> list[bytes | memoryview]:
        self.commands.extend(str(command[0]).upper() for command in commands)
        return super().pack_commands(commands)


def test_a_call_reads_the_circuit_once_and_resets_only_failures_it_saw(
    make_client, simulator: Simulator, redis_url: str, redis_client: redis.Redis
) -> None:
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=_RecordingConnection)
    recording = redis.Redis(connection_pool=pool)
    sent = _RecordingConnection.commands
    client = make_client(redis=recording, fail_max=10)
    price = simulator.price("AAPL")
    client.place_order("AAPL", price, 1)  # the breaker's keys now exist
    failures = "vendor:pybreaker:fail_counter"

    sent.clear()
    client.place_order("AAPL", price, 1)
    assert sent == ["MGET"]  # state and failures read at once, nothing written

    simulator.configure(error_rate=1.0)
    with pytest.raises(VendorServerError):
        client.place_order("AAPL", price, 1)
    assert redis_client.get(failures) == b"1"
    simulator.configure(error_rate=0.0)

    sent.clear()
    client.place_order("AAPL", price, 1)
    assert sent == ["MGET", "SET"]  # the success clears the failure it saw
    assert redis_client.get(failures) == b"0"
    recording.close()


def test_requests_go_to_the_base_urls_path_in_origin_form(
    make_client, vendor_stub: StubVendor
) -> None:
    # A vendor behind a path prefix gets "GET /api/v2/stocks", never the
    # absolute URL as the target (which only proxies must take).
    vendor_stub.answer("GET", "/api/v2/stocks", json_body={"status": 200, "data": {"items": []}})

    page = make_client(base_url=vendor_stub.url + "/api/v2/").list_stocks()

    assert page.items == ()
    assert vendor_stub.calls == [("GET", "/api/v2/stocks")]


def test_a_closed_client_opens_new_connections_when_used_again(
    make_client, simulator: Simulator
) -> None:
    client = make_client()
    price = simulator.price("AAPL")
    client.place_order("AAPL", price, 1)
    client.close()
    assert client.place_order("AAPL", price, 1).quantity == 1
    assert len(simulator.orders()) == 2


@pytest.mark.parametrize("url", ["https://vendor.example", "HTTPS://vendor.example"])
def test_an_https_vendor_is_verified_against_the_ca_bundle(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.vendorapi.client import _connection_pool

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    pool = _connection_pool(url)
    assert getattr(pool, "ca_certs", None) == "/etc/ssl/certs/ca-certificates.crt"
    assert getattr(pool, "cert_reqs", None) == "CERT_REQUIRED"
