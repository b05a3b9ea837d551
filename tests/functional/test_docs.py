"""``/docs``: the API's browsable page, with every file served by the service
itself, proven in a real browser (headless Chromium) against a running service."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from flask.testing import FlaskClient
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.functional.servers import Gunicorn

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
# Generous: the machine may be busy, and Swagger UI parses a 1 MB bundle.
PAGE_SECONDS = 30


def operations(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in HTTP_METHODS
    }


def test_the_document_has_the_rate_limits_and_the_probes(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    assert document is not None

    listed = operations(document)
    assert {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")} <= listed
    assert {
        ("GET", "/stocks/{symbol}"),
        ("GET", "/users/{userId}/transactions"),
        ("GET", "/users/{userId}/transactions/{id}"),
    } <= listed
    for method, path in listed:
        responses = document["paths"][path][method.lower()]["responses"]
        if path in ("/healthz", "/readyz", "/metrics"):
            assert "429" not in responses, path  # probes are never limited
        else:
            assert "Retry-After" in responses["429"]["headers"], (method, path)
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_the_page_loads_only_the_services_own_files(client: FlaskClient) -> None:
    page = client.get("/docs").get_data(as_text=True)

    assert "//" not in page.replace("<!DOCTYPE", "")  # no scheme-relative or absolute URL
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f'"/docs/assets/{asset}"' in page
        with client.get(f"/docs/assets/{asset}") as response:
            assert response.status_code == 200


def _operation(browser: webdriver.Chrome, method: str, path: str) -> WebElement:
    return browser.find_element(
        By.XPATH,
        f"//div[contains(@class, 'opblock-{method.lower()}')]"
        f"[.//*[contains(@class, 'opblock-summary-path') and @data-path='{path}']]",
    )


def test_the_docs_page_lists_every_operation_and_tries_one_out(
    gunicorn: Callable[..., Gunicorn], browser: webdriver.Chrome
) -> None:
    server = gunicorn()
    document = requests.get(server.url + "/openapi.json", timeout=10).json()
    wait = WebDriverWait(browser, PAGE_SECONDS)

    browser.get(server.url + "/docs")
    wait.until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary"))
    )

    shown = {
        (
            summary.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
            summary.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
                "data-path"
            ),
        )
        for summary in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary")
    }
    assert shown == operations(document)

    listing = _operation(browser, "GET", "/stocks")
    listing.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda _: listing.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    listing.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    wait.until(lambda _: listing.find_elements(By.CSS_SELECTOR, ".execute"))
    listing.find_element(By.CSS_SELECTOR, ".execute").click()
    answer = wait.until(
        lambda _: listing.find_elements(By.CSS_SELECTOR, ".live-responses-table tr.response")
    )[0]
    assert answer.find_element(By.CSS_SELECTOR, ".response-col_status").text == "200"
    body = answer.find_element(By.CSS_SELECTOR, ".response-col_description .highlight-code pre")
    listed = json.loads(body.text)
    assert listed["items"]
    assert {"symbol", "name", "price"} <= set(listed["items"][0])

    origin = urlsplit(server.url).netloc
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert any(name.endswith("/docs/assets/swagger-ui-bundle.js") for name in loaded)
    assert any("/stocks" in name for name in loaded)  # the request "Execute" made
    assert {urlsplit(name).netloc for name in loaded} == {origin}


def test_the_documented_symbol_pattern_admits_what_the_service_accepts(
    client: FlaskClient,
) -> None:
    """Symbols are accepted in any case, so the document's pattern says so: a
    client validating against it never refuses what the service takes."""
    document = client.get("/openapi.json").json
    assert document is not None
    [symbol] = [
        p
        for p in document["paths"]["/stocks/{symbol}"]["get"]["parameters"]
        if p["name"] == "symbol"
    ]
    pattern = re.compile(symbol["schema"]["pattern"])
    for accepted in ("aapl", "AAPL", "brk.b"):
        assert pattern.fullmatch(accepted)
        assert client.get(f"/stocks/{accepted}").status_code in (200, 404)
    for refused in (".", "..", "-", "AAPL."):
        assert not pattern.fullmatch(refused)
        assert client.get(f"/stocks/{refused}").status_code == 400
