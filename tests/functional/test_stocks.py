"""``GET /stocks`` against the vendor simulator over HTTP and a real Redis."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.client
import redis.connection
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from service.marketdata import clock, codec, store
from service.schemas.stocks import DEFAULT_LIMIT, MAX_LIMIT
from service.vendorapi.client import LIST_ATTEMPTS
from service.vendorapi.simulator import Simulator

DEAD_REDIS = "redis://127.0.0.1:1/0"
TTL = 300  # the default CACHE_TTL_SECONDS


def _list_calls(simulator: Simulator) -> int:
    return simulator.stats()["requests"]["list"]


def _get(client: FlaskClient, **query: Any) -> dict[str, Any]:
    response = client.get("/stocks", query_string=query)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def _follow(client: FlaskClient, **query: Any) -> list[dict[str, Any]]:
    """Every page of a listing, following nextToken to the end."""
    pages = [_get(client, **query)]
    while pages[-1]["nextToken"] is not None:
        pages.append(_get(client, **query, nextToken=pages[-1]["nextToken"]))
    return pages


def _symbols(pages: list[dict[str, Any]]) -> list[str]:
    return [item["symbol"] for page in pages for item in page["items"]]


def _page_results(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "trading_cache_requests_total", {"cache": "page", "result": result}
    )
    return value or 0.0


def _page_loads() -> float:
    """Vendor pages loaded through the page cache so far, however they were got."""
    return sum(_page_results(result) for result in ("hit", "miss", "stale", "error"))


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move the service's clock forward (the simulator's prices stay put)."""

    def move(seconds: float) -> None:
        start = clock.now()
        monkeypatch.setattr(clock, "now", lambda: start + timedelta(seconds=seconds))

    return move


# --- browsing ----------------------------------------------------------------


def test_every_page_is_reachable_with_next_token(client: FlaskClient, simulator: Simulator) -> None:
    pages = _follow(client)
    assert _symbols(pages) == simulator.symbols()
    assert len(pages) == simulator.page_count()
    assert all(len(page["items"]) == DEFAULT_LIMIT for page in pages[:-1])
    tokens = [page["nextToken"] for page in pages[:-1]]
    assert len(set(tokens)) == len(tokens)
    item = pages[0]["items"][0]
    assert set(item) == {"symbol", "name", "price", "sector", "change", "lastUpdated"}
    assert Decimal(item["price"]) == simulator.price(item["symbol"])
    assert isinstance(item["price"], str)
    assert isinstance(item["change"], str)
    assert item["lastUpdated"].endswith("Z")


@pytest.mark.parametrize("limit", [1, 10, 7, 60, 100])
def test_any_limit_walks_the_whole_catalogue_in_vendor_order(
    client: FlaskClient, simulator: Simulator, limit: int
) -> None:
    pages = _follow(client, limit=limit)
    assert _symbols(pages) == simulator.symbols()
    assert all(len(page["items"]) == limit for page in pages[:-1])
    # Each vendor page is fetched once, whatever the client's page size.
    assert _list_calls(simulator) == simulator.page_count()


def test_next_token_is_stable(client: FlaskClient) -> None:
    first = _get(client, limit=10)
    again = _get(client, limit=10)
    assert first["nextToken"] == again["nextToken"]
    assert first["items"] == again["items"]
    # A token is a position: it continues with any page size.
    continued = _get(client, limit=3, nextToken=first["nextToken"])
    assert continued["items"] == _get(client, limit=13)["items"][10:]


def test_empty_next_token_is_the_first_page(client: FlaskClient) -> None:
    assert _get(client, nextToken="")["items"] == _get(client)["items"]


# --- search ------------------------------------------------------------------


def test_search_finds_stocks_on_different_vendor_pages(
    client: FlaskClient, simulator: Simulator
) -> None:
    catalogue = [item for page in _follow(client) for item in page["items"]]
    page_size = simulator.config.page_size
    word = "Holdings"
    expected = {item["symbol"] for item in catalogue if word.lower() in item["name"].lower()}
    vendor_pages = {
        index // page_size for index, item in enumerate(catalogue) if item["symbol"] in expected
    }
    assert len(expected) > 5
    assert len(vendor_pages) > 1  # the matches are spread over the catalogue

    found = [
        item for page in _follow(client, search=word.upper(), limit=3) for item in page["items"]
    ]
    assert {item["symbol"] for item in found} == expected
    assert len(found) == len(expected)  # no duplicates across result pages
    for item in found:
        assert Decimal(item["price"]) == simulator.price(item["symbol"])


def test_search_matches_symbols_first_and_names_too(client: FlaskClient) -> None:
    by_symbol = _get(client, search="aapl")["items"]
    assert by_symbol[0]["symbol"] == "AAPL"
    by_name = _get(client, search="penny mining")["items"]
    assert [item["symbol"] for item in by_name] == ["PNNY"]
    nothing = _get(client, search="no such stock anywhere")
    assert (nothing["items"], nothing["nextToken"]) == ([], None)


def test_search_before_the_first_refresh_walks_the_catalogue_once(
    client: FlaskClient, simulator: Simulator
) -> None:
    assert _get(client, search="AAPL")["items"][0]["symbol"] == "AAPL"
    assert _list_calls(simulator) == simulator.page_count()
    _get(client, search="corp")
    _get(client, search="PNNY")
    assert _list_calls(simulator) == simulator.page_count()


def test_a_symbol_the_vendor_dropped_is_walked_for_once(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    _get(client, search="AAPL")  # stores the catalogue
    stored = json.loads(redis_client.get(store.CATALOGUE_KEY))  # type: ignore[arg-type]
    stored["stocks"].append(["ZZGONE", "Gone Corp.", "Energy"])  # delisted since
    redis_client.set(store.CATALOGUE_KEY, json.dumps(stored))
    before = _page_loads()

    assert _get(client, search="zzgone")["items"] == []
    walked = _page_loads() - before
    assert _get(client, search="zzgone")["items"] == []
    assert walked > 0
    assert _page_loads() - before == walked  # the second search did not walk again


def test_search_refreshes_only_the_pages_holding_stale_matches(
    client: FlaskClient, simulator: Simulator, later: Callable[[float], None]
) -> None:
    _get(client, search="AAPL")  # builds the catalogue and the token map
    later(TTL + 1)
    before = _list_calls(simulator)
    result = _get(client, search="AAPL")
    assert result["items"][0]["symbol"] == "AAPL"
    assert result["meta"]["cache"] == "miss"
    assert _list_calls(simulator) - before == 1


def test_search_token_belongs_to_its_search(client: FlaskClient) -> None:
    token = _get(client, search="a", limit=2)["nextToken"]
    assert token is not None
    response = client.get("/stocks", query_string={"search": "b", "nextToken": token})
    assert response.status_code == 400
    assert response.json is not None
    assert "nextToken" in response.json["error"]["details"]["fields"]
    browse_token = _get(client, limit=2)["nextToken"]
    response = client.get("/stocks", query_string={"search": "a", "nextToken": browse_token})
    assert response.status_code == 400


# --- caching -----------------------------------------------------------------


def test_identical_requests_within_the_ttl_make_one_vendor_call(
    client: FlaskClient, simulator: Simulator
) -> None:
    hits_before = _page_results("hit")
    results = [_get(client)["meta"]["cache"] for _ in range(50)]
    assert _list_calls(simulator) == 1
    assert results == ["miss"] + ["hit"] * 49
    assert _page_results("hit") - hits_before == 49


def test_concurrent_cold_requests_make_one_vendor_call(
    make_app: Callable[..., Flask], simulator: Simulator
) -> None:
    simulator.configure(latency=0.3)
    pods = [make_app() for _ in range(4)]
    start = threading.Barrier(20)
    bodies: list[dict[str, Any]] = []

    def request(app: Flask) -> None:
        client = app.test_client()
        start.wait()
        bodies.append(_get(client))

    threads = [threading.Thread(target=request, args=(pods[i % 4],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bodies) == 20
    assert _list_calls(simulator) == 1
    assert all(body["items"] == bodies[0]["items"] for body in bodies)
    assert sorted(body["meta"]["cache"] for body in bodies) == ["hit"] * 19 + ["miss"]


def test_the_next_page_is_pre_cached_once_the_response_is_sent(
    client: FlaskClient, simulator: Simulator
) -> None:
    first = client.get("/stocks", buffered=True)  # buffered: the response is closed
    assert _list_calls(simulator) == 2  # the page, then the next one
    second = _get(client, nextToken=first.json["nextToken"])  # type: ignore[index]
    assert second["meta"]["cache"] == "hit"
    assert _list_calls(simulator) == 2


def test_a_cached_page_request_parses_no_page(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page this process has seen fresh is neither read from Redis nor parsed again."""
    for _ in range(3):
        client.get("/stocks", buffered=True)  # warm: this page, the next one and its claim
    reads: list[dict[str, Any]] = []
    original = codec.CachedPage.from_json

    def counted(data: dict[str, Any]) -> codec.CachedPage:
        reads.append(data)
        return original(data)

    monkeypatch.setattr(codec.CachedPage, "from_json", counted)
    response = client.get("/stocks", buffered=True)
    assert response.json["meta"]["cache"] == "hit"  # type: ignore[index]
    assert reads == []


def test_busy_cached_pages_cost_no_redis_round_trip(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once this process has seen the page and the next one fresh, a cached
    request sends Redis nothing (until the page's freshness deadline)."""
    for _ in range(3):
        client.get("/stocks", buffered=True)  # warm: this page, the next one, the claim
    sent: list[Any] = []
    original = redis.connection.Connection.send_packed_command
    requests_thread = threading.current_thread()

    def counted(self: redis.connection.Connection, command: Any, check_health: bool = True) -> None:
        # Counted here, and only the requests' (the server's stats count other
        # tests' commands too, as would the lease keepers of their apps).
        if threading.current_thread() is requests_thread:
            sent.append(command)
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    for _ in range(20):
        assert client.get("/stocks", buffered=True).json["meta"]["cache"] == "hit"  # type: ignore[index]
    assert sent == []


def test_another_pods_copy_is_served_only_until_its_own_deadline(
    make_app: Callable[..., Flask], simulator: Simulator, later: Callable[[float], None]
) -> None:
    """A pod serves its copy of a page until that copy's freshness deadline,
    then the page another pod fetched since, with its new prices."""
    one, two = make_app().test_client(), make_app().test_client()
    first = _get(one)
    assert _get(two)["meta"]["cache"] == "hit"  # from Redis: two now holds the copy too
    simulator.advance(TTL + 1)  # the vendor reprices
    later(TTL - 1)
    assert _get(two)["items"] == first["items"]  # still fresh: the same copy
    later(TTL + 1)
    fetched = _get(one)
    assert fetched["meta"]["cache"] == "miss"
    assert fetched["items"] != first["items"]
    served = _get(two)  # its copy is past the deadline: the one pod one fetched
    assert served["meta"] == {**fetched["meta"], "cache": "hit"}
    assert served["items"] == fetched["items"]


def test_a_page_expires_after_the_ttl(
    client: FlaskClient, simulator: Simulator, later: Callable[[float], None]
) -> None:
    _get(client)
    later(TTL - 1)
    assert _get(client)["meta"]["cache"] == "hit"
    later(TTL + 1)
    assert _get(client)["meta"]["cache"] == "miss"
    assert _list_calls(simulator) == 2


def test_vendor_outage_serves_the_last_good_copy_as_stale(
    client: FlaskClient, simulator: Simulator, later: Callable[[float], None]
) -> None:
    fresh = _get(client)
    later(TTL + 60)
    simulator.configure(error_rate=1.0)
    stale = _get(client)
    assert stale["items"] == fresh["items"]
    assert stale["nextToken"] == fresh["nextToken"]
    assert stale["meta"]["cache"] == "stale"
    assert stale["meta"]["asOf"] == fresh["meta"]["asOf"]
    assert stale["meta"]["ageSeconds"] >= TTL + 60


def test_requests_waiting_on_a_failing_fetch_get_the_stale_copy(
    make_app: Callable[..., Flask], simulator: Simulator, later: Callable[[float], None]
) -> None:
    app = make_app()
    fresh = _get(app.test_client())
    later(TTL + 1)
    simulator.configure(error_rate=1.0, latency=0.2)
    start = threading.Barrier(5)
    results: list[str] = []

    def request() -> None:
        client = app.test_client()
        start.wait()
        body = _get(client)
        assert body["items"] == fresh["items"]
        results.append(body["meta"]["cache"])

    threads = [threading.Thread(target=request) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["stale"] * 5
    # Only the request holding the lock asked the vendor (with its retries).
    assert _list_calls(simulator) == 1 + LIST_ATTEMPTS


def test_open_circuit_serves_stale_without_calling_the_vendor(
    make_app: Callable[..., Flask], simulator: Simulator, later: Callable[[float], None]
) -> None:
    client = make_app(vendor_circuit_fail_max=1).test_client()
    _get(client)
    later(TTL + 1)
    simulator.configure(error_rate=1.0)
    assert _get(client)["meta"]["cache"] == "stale"  # this failure opens the circuit
    calls = _list_calls(simulator)
    assert _get(client)["meta"]["cache"] == "stale"
    assert _list_calls(simulator) == calls


def test_vendor_down_and_nothing_cached_is_503_with_retry_after(
    client: FlaskClient, simulator: Simulator
) -> None:
    simulator.configure(error_rate=1.0)
    response = client.get("/stocks")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json is not None
    assert response.json["error"]["code"] == "unavailable"
    assert response.json["error"]["details"]["reason"] == "vendor_server_error"


def test_listing_works_without_redis(make_app: Callable[..., Flask], simulator: Simulator) -> None:
    errors_before = _page_results("error")
    client = make_app(redis_url=DEAD_REDIS).test_client()
    pages = _follow(client, limit=50)
    assert _symbols(pages) == simulator.symbols()
    assert {page["meta"]["cache"] for page in pages} == {"miss"}
    assert _page_results("error") > errors_before
    assert _get(client, search="AAPL")["items"][0]["symbol"] == "AAPL"


# --- bad input ---------------------------------------------------------------


def _forged(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _altered(token: str) -> str:
    """The token with one character of its payload changed."""
    flipped = "A" if token[0] != "A" else "B"
    return flipped + token[1:]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"nextToken": "x" * 5000}, "nextToken"),
        ({"limit": -1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 10**9}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"search": "x" * 10_000}, "search"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: FlaskClient, query: dict[str, Any], field: str
) -> None:
    response = client.get("/stocks", query_string=query)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["code"] == "invalid_request"
    assert list(response.json["error"]["details"]["fields"]) == [field]


@pytest.mark.parametrize(
    "forge",
    [
        lambda real: "garbage",
        lambda real: "not base64 !",
        lambda real: _forged({"o": 0, "p": "eyJzeW1ib2wiOiJaWloifQ=="}),
        lambda real: _forged({"o": 0, "p": "eyJzeW1ib2wiOiJaWloifQ=="}) + "." + real.split(".")[-1],
        _altered,
        lambda real: real[:-1] + ("A" if real[-1] != "A" else "B"),  # signature changed
    ],
    ids=[
        "garbage",
        "not-base64",
        "unsigned",
        "borrowed-signature",
        "altered",
        "bad-signature",
    ],
)
def test_forged_token_is_invalid_token_with_no_vendor_call_and_no_redis_write(
    client: FlaskClient,
    simulator: Simulator,
    redis_client: redis.Redis,
    forge: Callable[[str], str],
) -> None:
    real = _get(client, limit=2)["nextToken"]
    assert real is not None
    calls, contents = _list_calls(simulator), _contents(redis_client)

    response = client.get("/stocks", query_string={"limit": 2, "nextToken": forge(real)})

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["code"] == "invalid_token"
    assert list(response.json["error"]["details"]["fields"]) == ["nextToken"]
    assert _list_calls(simulator) == calls
    assert _contents(redis_client) == contents


def _contents(redis_client: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key of the Redis database with its serialised value."""
    return {key: redis_client.dump(key) for key in redis_client.keys("*")}  # type: ignore[misc]


def test_token_signed_with_another_secret_is_refused(
    client: FlaskClient, make_app: Callable[..., Flask]
) -> None:
    real = _get(client, limit=2)["nextToken"]
    other = make_app(token_secret="another-secret-of-some-length").test_client()
    response = other.get("/stocks", query_string={"limit": 2, "nextToken": real})
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["code"] == "invalid_token"


def test_openapi_documents_the_listing(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    assert document is not None
    operation = document["paths"]["/stocks"]["get"]
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == MAX_LIMIT
    assert limit["schema"]["default"] == DEFAULT_LIMIT
    assert {"200", "400", "503"} <= set(operation["responses"])


def test_repeated_query_strings_are_each_checked(client: FlaskClient) -> None:
    # Parsed query strings are remembered per process: a refused one is never
    # remembered, and each one answers for itself however often it comes.
    for _ in range(3):
        assert len(_get(client, limit=2)["items"]) == 2
        assert client.get("/stocks?limit=0").status_code == 400
        assert client.get("/stocks?limit=2&colour=red").status_code == 400
        assert len(_get(client, limit=3)["items"]) == 3
