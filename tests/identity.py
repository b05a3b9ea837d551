"""A local identity provider for the tests: real RSA and EC keys (``cryptography``),
tokens minted with PyJWT, and the public keys served as a JWKS over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.test/realms/trading"
AUDIENCE = "stock-trading"
LIFETIME_SECONDS = 300
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(user: str = "alice", **overrides: Any) -> dict[str, Any]:
    """Valid claims for ``user``; an override of ``None`` leaves that claim out."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user,
        "iat": now,
        "exp": now + LIFETIME_SECONDS,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(key: PrivateKey, kid: str | None, user: str = "alice", **overrides: Any) -> str:
    """A token for ``user`` signed with ``key`` (RS256 for RSA, ES256 for EC)."""
    algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(user, **overrides), key, algorithm=algorithm, headers=headers)


def unsigned(kid: str, user: str = "alice") -> str:
    """An ``alg: none`` token (no signature at all)."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(claims(user)).encode())}."


def hmac_with(secret: bytes, kid: str, user: str = "alice") -> str:
    """An HS256 token keyed with ``secret`` (e.g. the public key's PEM): the
    algorithm-confusion forgery. Built by hand: PyJWT refuses to make one."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims(user)).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


class IdentityProvider:
    """Publishes JWKS at ``url`` from a thread on 127.0.0.1. ``publish`` adds a
    key (rotation), ``stop``/``start`` take the host down and back up on the
    same port, and ``fetches`` counts the JWKS downloads."""

    def __init__(self) -> None:
        self._keys: dict[str, PrivateKey] = {}
        self.fetches = 0
        server = self._bind(0)
        self.port = int(server.server_address[1])
        self._server: ThreadingHTTPServer | None = server
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        self._thread: threading.Thread | None = None

    def _bind(self, port: int) -> ThreadingHTTPServer:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                body = json.dumps(provider.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def publish(self, kid: str, key: PrivateKey) -> None:
        self._keys[kid] = key

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._keys.items():
            algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
            jwk = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": algorithm})
        return {"keys": keys}

    def start(self) -> None:
        if self._server is None:
            self._server = self._bind(self.port)
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Take the host down: connections are refused until :meth:`start`."""
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._server = None
