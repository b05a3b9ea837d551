"""Opt-in bearer-token authentication (``AUTH_MODE=jwt``, DESIGN §4).

With ``AUTH_MODE=none`` (the default) nothing here is registered and the API
is open, as it always was. With ``jwt`` every request to a feature endpoint
(everything outside :data:`service.api.OPEN_BLUEPRINTS`: probes, metrics and
the API docs stay open) must carry ``Authorization: Bearer <JWT>``:

* signed with RS256 or ES256 only (``AUTH_ALGORITHMS``; ``none`` and HMAC are
  never accepted, so a token "signed" with the public key is refused), by a key
  from the issuer's JWKS (``AUTH_JWKS_URL``, through PyJWT's ``PyJWKClient``)
  or the PEM key in ``AUTH_JWT_PUBLIC_KEY``;
* with ``exp`` (required), ``iss`` = ``AUTH_ISSUER``, ``aud`` containing
  ``AUTH_AUDIENCE``, :data:`LEEWAY_SECONDS` of clock skew allowed;
* naming its user in ``AUTH_USER_CLAIM`` (default ``sub``), a valid user id.

The verified user is ``g.user_id`` for the rest of the request (the API layer's
checks, the per-user rate limit, request logs). A path ``userId`` of another
user is refused here (403); the buy body's ``userId`` is bound to the token's
user by :func:`bind_user` in its schema. Use cases never see any of this: they
get a user id like any other argument.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import jwt
from flask import Flask, g, has_app_context, request
from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError, PyJWTError

from service.api import OPEN_BLUEPRINTS
from service.config import Settings, key_algorithm
from service.errors import (
    Forbidden,
    IdentityProviderUnavailable,
    InvalidCredentials,
    Unauthenticated,
)
from service.schemas.fields import USER_ID_PATTERN

log = logging.getLogger(__name__)

# Clock skew tolerated on exp/nbf/iat between the identity provider and us.
LEEWAY_SECONDS = 30
# Cached key sets are refetched after this; keys already seen outlive it while
# the identity provider is down (see JwksKeys).
JWKS_LIFESPAN_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5
JWKS_RETRY_AFTER_SECONDS = 5
_BEARER = re.compile(r"^Bearer +(\S+)\s*$", re.I)
_USER_ID = re.compile(USER_ID_PATTERN)


class JwksKeys:
    """Signing keys from the identity provider's JWKS, by ``kid``.

    ``PyJWKClient`` caches the key set for :data:`JWKS_LIFESPAN_SECONDS` and
    refetches it on an unknown ``kid`` (at most once per ``cooldown_seconds``),
    so a rotated key is picked up without a restart. On top of it, a key that
    verified a token before keeps working while the JWKS host is down (its
    cached set may have expired by then); a key never seen cannot be checked
    then, which is :class:`IdentityProviderUnavailable`. After a failed fetch
    the host is left alone for ``cooldown_seconds``, so an outage does not make
    every request wait for a timeout.
    """

    def __init__(self, url: str, cooldown_seconds: int) -> None:
        self._client = PyJWKClient(
            url,
            lifespan=JWKS_LIFESPAN_SECONDS,
            timeout=JWKS_TIMEOUT_SECONDS,
            cooldown_duration=cooldown_seconds,
        )
        self._cooldown_seconds = cooldown_seconds
        self._seen: dict[str, PyJWK] = {}
        self._down_until = 0.0

    def key(self, kid: str) -> PyJWK:
        """The key named ``kid``.

        :raises PyJWKClientError: the key set has no such key (an unknown key).
        :raises IdentityProviderUnavailable: the key set cannot be fetched and
            the key was never seen.
        """
        if time.monotonic() >= self._down_until:
            try:
                key = self._client.get_signing_key(kid)
            except PyJWKClientConnectionError as exc:
                log.warning("JWKS fetch failed", extra={"error": str(exc)})
                self._down_until = time.monotonic() + self._cooldown_seconds
            else:
                self._seen[kid] = key
                return key
        known = self._seen.get(kid)
        if known is None:
            raise IdentityProviderUnavailable(retry_after=JWKS_RETRY_AFTER_SECONDS)
        return known


class TokenVerifier:
    """Turns a bearer token into the user it names, or refuses it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._jwks = (
            JwksKeys(settings.auth_jwks_url, settings.auth_jwks_cooldown_seconds)
            if settings.auth_jwks_url
            else None
        )
        # A PEM key serves one algorithm: a token claiming the other one is
        # refused before PyJWT would try an RSA key as an EC key.
        key = settings.auth_jwt_public_key
        self._algorithms = [key_algorithm(key)] if key else list(settings.auth_algorithms)

    def user_of(self, token: str) -> str:
        """The user id in ``AUTH_USER_CLAIM`` of a valid ``token``.

        :raises InvalidCredentials: for any token that fails a check (the reason
            is logged, never answered).
        :raises IdentityProviderUnavailable: when its key cannot be fetched.
        """
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=self._algorithms,
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except PyJWTError as exc:
            log.info("bearer token refused", extra={"reason": type(exc).__name__})
            raise InvalidCredentials() from None
        user = claims.get(settings.auth_user_claim)
        if not isinstance(user, str) or _USER_ID.fullmatch(user) is None:
            log.info("bearer token refused", extra={"reason": "unusable user claim"})
            raise InvalidCredentials()
        return user

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._settings.auth_jwt_public_key
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str):
            raise PyJWKClientError("the token names no key")
        return self._jwks.key(kid)


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    :raises Unauthenticated: no header.
    :raises InvalidCredentials: another scheme, or no token after ``Bearer``.
    """
    if not header:
        raise Unauthenticated()
    match = _BEARER.match(header)
    if match is None:
        raise InvalidCredentials()
    return match.group(1)


def authenticated_user() -> str | None:
    """The verified user of the current request; ``None`` with ``AUTH_MODE=none``."""
    return g.get("user_id") if has_app_context() else None


def check_acting_as(user_id: object) -> None:
    """Refuse a request that names a user other than its token's.

    :raises Forbidden: a token's user is known and ``user_id`` is not it.
    """
    user = authenticated_user()
    if user is not None and user_id != user:
        raise Forbidden()


def bind_user(data: Any, field: str) -> Any:
    """Bind a request body's ``field`` (a user id) to the token's user: filled
    in when absent, checked when present. Unchanged with ``AUTH_MODE=none``.

    :raises Forbidden: the body names another user.
    """
    user = authenticated_user()
    if user is None or not isinstance(data, Mapping):
        return data
    if field in data:
        check_acting_as(data[field])
        return data
    return {**data, field: user}


def register_auth(app: Flask, settings: Settings) -> None:
    """With ``AUTH_MODE=jwt``, authenticate every feature request.

    Register before the rate limits: the per-user limit needs ``g.user_id``.
    """
    if settings.auth_mode != "jwt":
        return
    verifier = TokenVerifier(settings)

    def authenticate() -> None:
        if request.endpoint is None or request.blueprint in OPEN_BLUEPRINTS:
            return
        g.user_id = verifier.user_of(bearer_token(request.headers.get("Authorization")))
        if request.view_args and "userId" in request.view_args:
            check_acting_as(request.view_args["userId"])

    app.before_request(authenticate)
