"""AUTH_MODE=jwt over HTTP: real RSA and EC keys, a JWKS served over local HTTP,
tokens minted with PyJWT; and AUTH_MODE=none left open as before."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.vendorapi.simulator import Simulator
from tests.buys_support import STEADY_REPRICE_SECONDS, ledger, vendor_buys
from tests.identity import (
    AUDIENCE,
    ISSUER,
    IdentityProvider,
    ec_key,
    hmac_with,
    public_pem,
    rsa_key,
    sign,
    unsigned,
)

REFUSED = {
    "error": {
        "code": "unauthenticated",
        "message": "A valid bearer token is required.",
        "details": {},
    }
}


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def rsa_1() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def ec_1() -> ec.EllipticCurvePrivateKey:
    return ec_key()


@pytest.fixture
def jwt_client(
    client_with: Callable[..., FlaskClient],
    idp: IdentityProvider,
    rsa_1: rsa.RSAPrivateKey,
    ec_1: ec.EllipticCurvePrivateKey,
) -> Callable[..., FlaskClient]:
    """``jwt_client(**settings)``: a client of an app in jwt mode trusting ``idp``,
    which publishes ``rsa-1`` and ``ec-1``. No refetch cooldown, so a test sees
    each rotation at once."""
    idp.publish("rsa-1", rsa_1)
    idp.publish("ec-1", ec_1)

    def build(**overrides: Any) -> FlaskClient:
        settings: dict[str, Any] = {
            "auth_mode": "jwt",
            "auth_issuer": ISSUER,
            "auth_audience": AUDIENCE,
            "auth_jwks_url": idp.url,
            "auth_jwks_cooldown_seconds": 0,
            **overrides,
        }
        return client_with(**settings)

    return build


@pytest.fixture(autouse=True)
def steady_prices(simulator: Simulator) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)


def _get(client: FlaskClient, path: str, token: str | None = None, **headers: str) -> TestResponse:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(path, headers=headers)


def _buy(client: FlaskClient, token: str, body: dict[str, Any]) -> TestResponse:
    return client.post("/stocks/AAPL/buy", json=body, headers={"Authorization": f"Bearer {token}"})


def test_rsa_and_ec_tokens_give_their_user_access(
    jwt_client: Callable[..., FlaskClient],
    rsa_1: rsa.RSAPrivateKey,
    ec_1: ec.EllipticCurvePrivateKey,
) -> None:
    client = jwt_client()
    for token in (sign(rsa_1, "rsa-1"), sign(ec_1, "ec-1")):
        response = _get(client, "/users/alice/portfolios", token)
        assert response.status_code == 200, response.json
        assert response.json == {"userId": "alice", "items": []}


def test_clock_skew_within_the_leeway_is_tolerated(
    jwt_client: Callable[..., FlaskClient], rsa_1: rsa.RSAPrivateKey
) -> None:
    token = sign(rsa_1, "rsa-1", exp=int(time.time()) - 10)
    assert _get(jwt_client(), "/users/alice/portfolios", token).status_code == 200


def test_a_request_without_a_token_gets_a_bare_bearer_challenge(
    jwt_client: Callable[..., FlaskClient],
) -> None:
    client = jwt_client()
    for response in (
        _get(client, "/users/alice/portfolios"),
        _get(client, "/stocks?limit=1"),
        client.post("/stocks/AAPL/buy", json={"userId": "alice", "price": 1, "quantity": 1}),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json == REFUSED


BAD_TOKENS: dict[str, Callable[[rsa.RSAPrivateKey], str]] = {
    "malformed": lambda _key: "Bearer not.a.jwt",
    "another scheme": lambda _key: "Basic YWxpY2U6c2VjcmV0",
    "bearer without a token": lambda _key: "Bearer ",
    "expired": lambda key: "Bearer " + sign(key, "rsa-1", exp=int(time.time()) - 120),
    "no expiry": lambda key: "Bearer " + sign(key, "rsa-1", exp=None),
    "wrong issuer": lambda key: "Bearer " + sign(key, "rsa-1", iss="https://evil.test"),
    "wrong audience": lambda key: "Bearer " + sign(key, "rsa-1", aud="another-api"),
    "bad signature": lambda _key: "Bearer " + sign(rsa_key(), "rsa-1"),
    "unknown key": lambda _key: "Bearer " + sign(rsa_key(), "rsa-unpublished"),
    "no key id": lambda key: "Bearer " + sign(key, None),
    "another key type under the key id": lambda _key: "Bearer " + sign(ec_key(), "rsa-1"),
    "alg none": lambda _key: "Bearer " + unsigned("rsa-1"),
    "HS256 keyed with the public key": lambda key: (
        "Bearer " + hmac_with(public_pem(key).encode(), "rsa-1")
    ),
    "user claim not a user id": lambda key: "Bearer " + sign(key, "rsa-1", sub="auth0|42"),
}


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_every_bad_token_is_refused_alike(
    jwt_client: Callable[..., FlaskClient],
    rsa_1: rsa.RSAPrivateKey,
    simulator: Simulator,
    case: str,
) -> None:
    client = jwt_client()
    authorization = BAD_TOKENS[case](rsa_1)
    response = client.post(
        "/stocks/AAPL/buy",
        json={"userId": "alice", "price": str(simulator.price("AAPL")), "quantity": 1},
        headers={"Authorization": authorization},
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json == REFUSED  # the same words whatever failed: no hint for forgers
    assert ledger() == []
    assert vendor_buys(simulator) == 0


def test_probes_metrics_and_docs_need_no_token(
    jwt_client: Callable[..., FlaskClient],
) -> None:
    client = jwt_client()
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_the_api_document_declares_the_bearer_scheme_only_in_jwt_mode(
    jwt_client: Callable[..., FlaskClient], client_with: Callable[..., FlaskClient]
) -> None:
    document = jwt_client().get("/openapi.json").json
    assert document is not None
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert document["security"] == [{"bearerAuth": []}]

    open_document = client_with().get("/openapi.json").json
    assert open_document is not None
    assert "security" not in open_document
    assert "securitySchemes" not in open_document.get("components", {})


@pytest.mark.parametrize("path", ["portfolios", "transactions", "transactions/1"])
def test_another_users_path_is_forbidden(
    jwt_client: Callable[..., FlaskClient], rsa_1: rsa.RSAPrivateKey, path: str
) -> None:
    client = jwt_client()
    response = _get(client, f"/users/bob/{path}", sign(rsa_1, "rsa-1"))
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["error"]["code"] == "forbidden"
    own = _get(client, f"/users/alice/{path}", sign(rsa_1, "rsa-1"))
    assert own.status_code == (404 if path == "transactions/1" else 200)


def test_buying_for_another_user_is_forbidden_and_records_nothing(
    jwt_client: Callable[..., FlaskClient], rsa_1: rsa.RSAPrivateKey, simulator: Simulator
) -> None:
    price = str(simulator.price("AAPL"))
    response = _buy(
        jwt_client(), sign(rsa_1, "rsa-1"), {"userId": "bob", "price": price, "quantity": 1}
    )
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["error"]["code"] == "forbidden"
    assert ledger() == []
    assert vendor_buys(simulator) == 0


def test_a_buy_without_user_id_is_the_token_users(
    jwt_client: Callable[..., FlaskClient], ec_1: ec.EllipticCurvePrivateKey, simulator: Simulator
) -> None:
    client = jwt_client()
    token = sign(ec_1, "ec-1", user="carol")
    price = str(simulator.price("AAPL"))
    first = _buy(client, token, {"price": price, "quantity": 1})
    named = _buy(client, token, {"userId": "carol", "price": price, "quantity": 2})
    assert (first.status_code, named.status_code) == (201, 201), (first.json, named.json)
    assert [(row.user_id, row.quantity) for row in ledger()] == [("carol", 1), ("carol", 2)]
    portfolios = _get(client, "/users/carol/portfolios", token).json
    assert portfolios is not None
    assert portfolios["items"][0]["holdings"][0]["quantity"] == 3


def test_auth_mode_none_stays_open_and_still_needs_the_user_id(
    client_with: Callable[..., FlaskClient], simulator: Simulator
) -> None:
    client = client_with()
    assert client.get("/users/bob/portfolios").status_code == 200
    junk = _get(client, "/users/bob/portfolios", Authorization="Bearer whatever")
    assert junk.status_code == 200
    response = client.post(
        "/stocks/AAPL/buy", json={"price": str(simulator.price("AAPL")), "quantity": 1}
    )
    assert response.status_code == 400
    assert response.json is not None
    assert "userId" in response.json["error"]["details"]["fields"]
    assert ledger() == []


def test_a_rotated_key_is_used_without_a_restart(
    jwt_client: Callable[..., FlaskClient], idp: IdentityProvider, rsa_1: rsa.RSAPrivateKey
) -> None:
    client = jwt_client()
    assert _get(client, "/users/alice/portfolios", sign(rsa_1, "rsa-1")).status_code == 200
    rsa_2 = rsa_key()
    idp.publish("rsa-2", rsa_2)
    response = _get(client, "/users/alice/portfolios", sign(rsa_2, "rsa-2"))
    assert response.status_code == 200
    assert idp.fetches == 2  # once at the first request, once for the new kid


def test_jwks_host_down_refuses_only_keys_it_never_saw(
    jwt_client: Callable[..., FlaskClient],
    idp: IdentityProvider,
    rsa_1: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The cached key set expires at once, so every request asks the host again:
    # what still works while it is down comes from the keys already seen.
    monkeypatch.setattr("service.auth.JWKS_LIFESPAN_SECONDS", 1e-9)
    client = jwt_client()
    known = sign(rsa_1, "rsa-1")
    assert _get(client, "/users/alice/portfolios", known).status_code == 200

    idp.stop()
    rsa_2 = rsa_key()
    idp.publish("rsa-2", rsa_2)
    assert _get(client, "/users/alice/portfolios", known).status_code == 200
    unknown = _get(client, "/users/alice/portfolios", sign(rsa_2, "rsa-2"))
    assert unknown.status_code == 503
    assert unknown.json is not None
    assert unknown.json["error"]["code"] == "identity_provider_unavailable"
    assert int(unknown.headers["Retry-After"]) > 0

    idp.start()
    assert _get(client, "/users/alice/portfolios", sign(rsa_2, "rsa-2")).status_code == 200


def test_a_pem_key_verifies_without_a_jwks(
    client_with: Callable[..., FlaskClient],
    ec_1: ec.EllipticCurvePrivateKey,
    rsa_1: rsa.RSAPrivateKey,
) -> None:
    client = client_with(
        auth_mode="jwt",
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
        auth_jwt_public_key=ec_1.public_key(),
    )
    assert _get(client, "/users/alice/portfolios", sign(ec_1, None)).status_code == 200
    assert _get(client, "/users/alice/portfolios", sign(ec_key(), None)).status_code == 401
    assert _get(client, "/users/alice/portfolios", sign(rsa_1, None)).status_code == 401


def test_a_flooding_user_is_limited_while_another_user_is_served(
    jwt_client: Callable[..., FlaskClient], rsa_1: rsa.RSAPrivateKey
) -> None:
    client = jwt_client(rate_limit_enabled=True, rate_limit="6/minute", user_rate_limit="3/minute")
    alice, bob = sign(rsa_1, "rsa-1"), sign(rsa_1, "rsa-1", user="bob")

    flood = [_get(client, "/users/alice/portfolios", alice) for _ in range(10)]
    assert [response.status_code for response in flood] == [200] * 3 + [429] * 7
    # The headers describe the tighter of the two windows: alice's own.
    assert (flood[0].headers["RateLimit-Limit"], flood[0].headers["RateLimit-Remaining"]) == (
        "3",
        "2",
    )
    refused = flood[-1]
    assert refused.json is not None
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.json["error"]["details"] == {"limit": "3 per 1 minute", "scope": "user"}
    assert int(refused.headers["Retry-After"]) > 0

    # Alice's refused requests took nothing from the global budget (6): bob gets the other 3.
    served = [_get(client, "/users/bob/portfolios", bob).status_code for _ in range(3)]
    assert served == [200, 200, 200]
    over = _get(client, "/users/carol/portfolios", sign(rsa_1, "rsa-1", user="carol"))
    assert over.status_code == 429
    assert over.json is not None
    assert over.json["error"]["details"] == {"limit": "6 per 1 minute", "scope": "global"}


def test_unknown_key_ids_do_not_hammer_the_identity_provider(
    jwt_client: Callable[..., FlaskClient], idp: IdentityProvider, rsa_1: rsa.RSAPrivateKey
) -> None:
    client = jwt_client(auth_jwks_cooldown_seconds=30)
    assert _get(client, "/users/alice/portfolios", sign(rsa_1, "rsa-1")).status_code == 200
    for n in range(5):
        forged = sign(rsa_key(), f"made-up-{n}")
        assert _get(client, "/users/alice/portfolios", forged).status_code == 401
    assert idp.fetches == 1  # within the cooldown no made-up kid causes a fetch
