"""Fixtures of the HTTP-level tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from flask import Flask
from flask.testing import FlaskClient


@pytest.fixture
def client_with(make_app: Callable[..., Flask]) -> Iterator[Callable[..., FlaskClient]]:
    """``client_with(**settings)``: a test client of an app with those settings,
    whose app context stays pushed for the test (to read the database)."""
    with ExitStack() as contexts:

        def build(**overrides: object) -> FlaskClient:
            app = make_app(**overrides)
            contexts.enter_context(app.app_context())
            return app.test_client()

        yield build
