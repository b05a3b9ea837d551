"""The one place that reads the environment.

Every setting of DESIGN §2 (plus a few operational ones) is declared once in
:class:`Settings` and parsed by :meth:`Settings.from_env` with a coercer and a
default. A value that cannot be parsed raises :class:`ConfigError` whose
message names the variable, so start-up fails with one clear line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import current_app

T = TypeVar("T")

INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# The embedded defaults point at the local vendor simulator (`make run`); the
# simulator takes these too, so one environment serves both.
SIMULATOR_API_KEY = "simulator-key"
SIMULATOR_PORT = 8099
# Asymmetric algorithms only: HS256 would let anyone holding the public key sign.
AUTH_ALGORITHMS = ("RS256", "ES256")
# Signs cursors when TOKEN_SECRET is unset: fine on one machine, public to all.
DEV_TOKEN_SECRET = "development-only-token-secret"
_RATE = re.compile(r"^\s*\d+\s*(/|\s+per\s+)\s*(\d+\s+)?(second|minute|hour|day)s?\s*$", re.I)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _positive_decimal(raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError("must be a positive number")
    return value


def _tolerance(raw: str) -> Decimal:
    value = _positive_decimal(raw)
    if value >= 1:
        raise ValueError("must be a fraction between 0 and 1, e.g. 0.02")
    return value


def _delays(raw: str) -> tuple[float, ...]:
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError("expected a comma list of seconds, e.g. 1,2,3") from None
    if any(value < 0 or value != value for value in values):
        raise ValueError("delays must be non-negative numbers of seconds")
    return values


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def _rate(raw: str) -> str:
    if not _RATE.match(raw):
        raise ValueError("expected a rate such as '10/second' or '600 per minute'")
    return raw.strip()


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _optional_rate(raw: str) -> str | None:
    return _rate(raw) if raw.strip() else None


def _http_url(raw: str) -> str | None:
    url = raw.strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected a URL such as https://idp.example.com/.well-known/jwks.json")
    return url


def _public_key(raw: str) -> RSAPublicKey | EllipticCurvePublicKey | None:
    if not raw.strip():
        return None
    try:
        key = load_pem_public_key(raw.strip().encode())
    except ValueError:
        raise ValueError("expected a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey):
        raise ValueError("expected an RSA or EC public key")
    return key


def key_algorithm(key: RSAPublicKey | EllipticCurvePublicKey) -> str:
    """The one algorithm a PEM key verifies: RS256 for RSA, ES256 for EC."""
    return "RS256" if isinstance(key, RSAPublicKey) else "ES256"


def _algorithms(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip().upper() for part in raw.split(",") if part.strip())
    if not names or any(name not in AUTH_ALGORITHMS for name in names):
        raise ValueError(f"expected a comma list of {', '.join(AUTH_ALGORITHMS)}")
    return names


def _email_list(raw: str) -> tuple[str, ...]:
    addresses = tuple(part.strip() for part in raw.split(",") if part.strip())
    for address in addresses:
        if "@" not in address:
            raise ValueError(f"{address!r} is not an e-mail address")
    return addresses


def _text(raw: str) -> str:
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _token_secret(raw: str) -> str:
    secret = raw.strip()
    if len(secret) < 16:
        raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
    return secret


def _log_level(raw: str) -> str:
    return _choice("debug", "info", "warning", "error")(raw).upper()


def normalise_database_url(url: str) -> str:
    """Map the URL a provider hands out to the driver this project ships.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3; we install
    psycopg2, so ``postgres://`` and ``postgresql://`` become
    ``postgresql+psycopg2://``. Other URLs pass through unchanged.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def _database_url(raw: str) -> str:
    url = normalise_database_url(raw.strip())
    if "://" not in url:
        raise ValueError("expected a URL such as postgresql://user:pass@host:5432/db")
    return url


def _redis_url(raw: str) -> str | None:
    url = raw.strip()
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a URL such as redis://host:6379/0")
    return url


def _setting(env: str, parse: Callable[[str], Any], default: Any, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Typed, validated settings. Build with :meth:`from_env`."""

    database_url: str = _setting(
        "DATABASE_URL", _database_url, f"sqlite:///{INSTANCE_DIR / 'trading.db'}", secret=True
    )
    redis_url: str | None = _setting("REDIS_URL", _redis_url, None, secret=True)
    vendor_base_url: str = _setting("VENDOR_BASE_URL", _text, f"http://127.0.0.1:{SIMULATOR_PORT}")
    vendor_api_key: str = _setting("VENDOR_API_KEY", _text, SIMULATOR_API_KEY, secret=True)
    vendor_timeout_seconds: Decimal = _setting(
        "VENDOR_TIMEOUT_SECONDS", _positive_decimal, Decimal(5)
    )
    vendor_retry_delays: tuple[float, ...] = _setting(
        "VENDOR_RETRY_DELAYS", _delays, (1.0, 2.0, 3.0)
    )
    vendor_circuit_fail_max: int = _setting("VENDOR_CIRCUIT_FAIL_MAX", _integer(1), 5)
    vendor_circuit_reset_seconds: int = _setting("VENDOR_CIRCUIT_RESET_SECONDS", _integer(1), 30)
    price_tolerance: Decimal = _setting("PRICE_TOLERANCE", _tolerance, Decimal("0.02"))
    cache_ttl_seconds: int = _setting("CACHE_TTL_SECONDS", _integer(1), 300)
    rate_limit: str = _setting("RATE_LIMIT", _rate, "10/second")
    max_concurrent_requests: int = _setting("MAX_CONCURRENT_REQUESTS", _integer(1), 5)
    max_request_bytes: int = _setting("MAX_REQUEST_BYTES", _integer(1), 64 * 1024)
    rate_limit_enabled: bool = _setting("RATE_LIMIT_ENABLED", _boolean, True)
    rate_limit_scope: str = _setting("RATE_LIMIT_SCOPE", _choice("global", "client"), "global")
    trusted_proxies: int = _setting("TRUSTED_PROXIES", _integer(0), 0)
    smtp_host: str | None = _setting("SMTP_HOST", _optional_text, None)
    smtp_port: int = _setting("SMTP_PORT", _integer(1), 587)
    smtp_username: str | None = _setting("SMTP_USERNAME", _optional_text, None, secret=True)
    smtp_password: str | None = _setting("SMTP_PASSWORD", _optional_text, None, secret=True)
    smtp_starttls: bool = _setting("SMTP_STARTTLS", _boolean, True)
    report_from: str = _setting("REPORT_FROM", _text, "reports@localhost")
    report_recipients: tuple[str, ...] = _setting(
        "REPORT_RECIPIENTS", _email_list, ("operators@localhost",)
    )
    report_outbox_dir: str = _setting("REPORT_OUTBOX_DIR", _text, str(INSTANCE_DIR / "outbox"))
    log_level: str = _setting("LOG_LEVEL", _log_level, "INFO")
    log_format: str = _setting("LOG_FORMAT", _choice("json", "text"), "json")
    auth_mode: str = _setting("AUTH_MODE", _choice("none", "jwt"), "none")
    auth_issuer: str | None = _setting("AUTH_ISSUER", _optional_text, None)
    auth_audience: str | None = _setting("AUTH_AUDIENCE", _optional_text, None)
    auth_jwks_url: str | None = _setting("AUTH_JWKS_URL", _http_url, None)
    # Not secret, but a PEM does not fit in one log line: shown as "<set>".
    auth_jwt_public_key: RSAPublicKey | EllipticCurvePublicKey | None = _setting(
        "AUTH_JWT_PUBLIC_KEY", _public_key, None, secret=True
    )
    auth_user_claim: str = _setting("AUTH_USER_CLAIM", _text, "sub")
    auth_algorithms: tuple[str, ...] = _setting("AUTH_ALGORITHMS", _algorithms, AUTH_ALGORITHMS)
    auth_jwks_cooldown_seconds: int = _setting("AUTH_JWKS_COOLDOWN_SECONDS", _integer(0), 30)
    user_rate_limit: str | None = _setting("USER_RATE_LIMIT", _optional_rate, None)
    token_secret: str = _setting("TOKEN_SECRET", _token_secret, DEV_TOKEN_SECRET, secret=True)

    def __post_init__(self) -> None:
        # Overrides given in code get the same driver mapping as the environment.
        object.__setattr__(self, "database_url", normalise_database_url(self.database_url))
        if self.auth_mode == "jwt":
            self._check_jwt_settings()

    def _check_jwt_settings(self) -> None:
        """``AUTH_MODE=jwt`` needs an issuer, an audience, a claim and one key source.

        :raises ConfigError: naming the missing or conflicting variable.
        """
        for env, value in (
            ("AUTH_ISSUER", self.auth_issuer),
            ("AUTH_AUDIENCE", self.auth_audience),
            ("AUTH_USER_CLAIM", self.auth_user_claim),
        ):
            if not value:
                raise ConfigError(f"{env} is required when AUTH_MODE=jwt")
        if (self.auth_jwks_url is None) == (self.auth_jwt_public_key is None):
            raise ConfigError(
                "AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY (exactly one) is required when AUTH_MODE=jwt"
            )
        key = self.auth_jwt_public_key
        if key is not None and key_algorithm(key) not in self.auth_algorithms:
            raise ConfigError(
                f"AUTH_JWT_PUBLIC_KEY needs {key_algorithm(key)}, which AUTH_ALGORITHMS "
                f"({','.join(self.auth_algorithms)}) does not allow"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Parse settings from ``environ`` (default ``os.environ``).

        Unset or empty variables take their embedded default. Keyword
        ``overrides`` replace parsed values (used by tests).

        :raises ConfigError: naming the first variable whose value is unusable.
        """
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            env = spec.metadata["env"]
            raw = source.get(env)
            if raw is None or (raw.strip() == "" and spec.default is not None):
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except (ValueError, ArithmeticError) as exc:
                shown = "<hidden>" if spec.metadata["secret"] else repr(raw)
                raise ConfigError(f"{env}={shown} is invalid: {exc}") from None
        return replace(cls(**values), **overrides)

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def describe(self) -> dict[str, Any]:
        """The settings as ``{ENV_NAME: value}`` with secrets masked, for logs."""
        shown: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.metadata["secret"] and value is not None:
                value = "<set>"
            shown[spec.metadata["env"]] = value
        return shown


def current_settings() -> Settings:
    """The settings of the app handling the current request or command."""
    settings: Settings = current_app.extensions["settings"]
    return settings
