"""Configuration: defaults, parsing, and start-up failures that name the variable."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from service.config import ConfigError, Settings
from tests.identity import AUDIENCE, ISSUER, ec_key, public_pem
from tests.processes import run_python


def test_defaults_are_the_embedded_ones() -> None:
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.redis_url is None
    assert settings.vendor_retry_delays == (1.0, 2.0, 3.0)
    assert settings.price_tolerance == Decimal("0.02")
    assert settings.cache_ttl_seconds == 300
    assert settings.rate_limit == "10/second"
    assert settings.max_concurrent_requests == 5


def test_values_are_parsed_into_types() -> None:
    settings = Settings.from_env(
        {
            "VENDOR_RETRY_DELAYS": "0.5, 1,2",
            "PRICE_TOLERANCE": "0.015",
            "REPORT_RECIPIENTS": "a@example.com, b@example.com",
            "SMTP_STARTTLS": "false",
            "RATE_LIMIT": "600 per minute",
        }
    )
    assert settings.vendor_retry_delays == (0.5, 1.0, 2.0)
    assert settings.price_tolerance == Decimal("0.015")
    assert settings.report_recipients == ("a@example.com", "b@example.com")
    assert settings.smtp_starttls is False
    assert settings.rate_limit == "600 per minute"


@pytest.mark.parametrize("url", ["postgres://u:p@db:5432/x", "postgresql://u:p@db:5432/x"])
def test_provider_postgres_urls_use_psycopg2(url: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": url})
    assert settings.database_url == "postgresql+psycopg2://u:p@db:5432/x"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CACHE_TTL_SECONDS", "abc"),
        ("CACHE_TTL_SECONDS", "0"),
        ("PRICE_TOLERANCE", "-1"),
        ("PRICE_TOLERANCE", "2"),
        ("VENDOR_RETRY_DELAYS", "1,x"),
        ("VENDOR_TIMEOUT_SECONDS", "nan"),
        ("RATE_LIMIT", "lots"),
        ("MAX_CONCURRENT_REQUESTS", "-3"),
        ("SMTP_STARTTLS", "maybe"),
        ("REDIS_URL", "localhost:6379"),
        ("REPORT_RECIPIENTS", "not-an-address"),
        ("RATE_LIMIT_SCOPE", "everyone"),
        ("AUTH_MODE", "basic"),
        ("AUTH_JWKS_URL", "file:///etc/passwd"),
        ("AUTH_JWT_PUBLIC_KEY", "not a key"),
        ("AUTH_ALGORITHMS", "HS256"),
        ("AUTH_ALGORITHMS", "RS256,none"),
        ("USER_RATE_LIMIT", "lots"),
        ("TOKEN_SECRET", "short"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}="):
        Settings.from_env({variable: value})


def test_secrets_are_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DATABASE_URL": "no-scheme-secret-password"})
    assert "secret-password" not in str(caught.value)
    described = Settings.from_env({"VENDOR_API_KEY": "top-secret"}).describe()
    assert described["VENDOR_API_KEY"] == "<set>"
    assert "top-secret" not in repr(described)


def test_start_up_fails_with_one_line_naming_the_variable() -> None:
    env = {**os.environ, "CACHE_TTL_SECONDS": "abc"}
    result = run_python("-c", "import service.wsgi", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "configuration error: CACHE_TTL_SECONDS='abc' is invalid: expected a whole number"
    ]


def _start_up_log(env: dict[str, str]) -> str:
    result = run_python(
        "-c", "import service.wsgi", env={**os.environ, "LOG_FORMAT": "text", **env}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_unset_token_secret_is_a_warning_at_start_up() -> None:
    environ = {key: value for key, value in os.environ.items() if key != "TOKEN_SECRET"}
    assert "TOKEN_SECRET is not set" in _start_up_log({**environ, "TOKEN_SECRET": ""})
    secret = "a-production-secret-of-enough-length"
    assert "TOKEN_SECRET" not in _start_up_log({"TOKEN_SECRET": secret})
    assert Settings.from_env({"TOKEN_SECRET": secret}).describe()["TOKEN_SECRET"] == "<set>"


JWT_BASE = {
    "AUTH_MODE": "jwt",
    "AUTH_ISSUER": ISSUER,
    "AUTH_AUDIENCE": AUDIENCE,
    "AUTH_JWKS_URL": "https://idp.test/jwks.json",
}


def test_jwt_mode_reads_its_settings() -> None:
    settings = Settings.from_env(
        {**JWT_BASE, "AUTH_USER_CLAIM": "preferred_username", "USER_RATE_LIMIT": "5/second"}
    )
    assert (settings.auth_issuer, settings.auth_audience) == (ISSUER, AUDIENCE)
    assert settings.auth_algorithms == ("RS256", "ES256")
    assert settings.auth_user_claim == "preferred_username"
    assert settings.user_rate_limit == "5/second"
    pem = Settings.from_env(
        {**JWT_BASE, "AUTH_JWKS_URL": "", "AUTH_JWT_PUBLIC_KEY": public_pem(ec_key())}
    )
    assert pem.auth_jwt_public_key is not None
    assert pem.describe()["AUTH_JWT_PUBLIC_KEY"] == "<set>"


def test_auth_is_off_by_default_and_needs_nothing() -> None:
    settings = Settings.from_env({"AUTH_ISSUER": "", "USER_RATE_LIMIT": ""})
    assert settings.auth_mode == "none"
    assert settings.user_rate_limit is None


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"AUTH_ISSUER": ""}, "AUTH_ISSUER"),
        ({"AUTH_AUDIENCE": ""}, "AUTH_AUDIENCE"),
        ({"AUTH_JWKS_URL": ""}, "AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY"),
        ({"AUTH_JWT_PUBLIC_KEY": "PEM"}, "AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY"),
        (
            {"AUTH_JWKS_URL": "", "AUTH_JWT_PUBLIC_KEY": "PEM", "AUTH_ALGORITHMS": "RS256"},
            "AUTH_JWT_PUBLIC_KEY",
        ),
    ],
)
def test_jwt_mode_without_a_required_setting_names_it(
    changes: dict[str, str], variable: str
) -> None:
    pem = public_pem(ec_key())
    env = {**JWT_BASE, **{name: pem if v == "PEM" else v for name, v in changes.items()}}
    with pytest.raises(ConfigError, match=rf"^{variable} "):
        Settings.from_env(env)


def test_start_up_in_jwt_mode_without_an_issuer_fails_naming_it() -> None:
    env = {**os.environ, **JWT_BASE, "AUTH_ISSUER": ""}
    result = run_python("-c", "import service.wsgi", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "configuration error: AUTH_ISSUER is required when AUTH_MODE=jwt"
    ]


def test_start_up_leaves_what_it_built_out_of_the_collector_s_full_passes() -> None:
    result = run_python(
        "-c", "import gc, service.wsgi; print(gc.get_freeze_count())", env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip().splitlines()[-1]) > 50_000  # the app, its libraries
