"""The baseline of the listing benchmark: a bare Flask JSON endpoint, served by
the same gunicorn configuration as the service (``tests.bench.bare_app:app``)."""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)
# The service's default MAX_REQUEST_BYTES: gunicorn's worker (the same class for
# both servers) reads bodies up to it before calling the app.
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

_PAGE = {
    "items": [
        {
            "symbol": f"S{i:03d}",
            "name": f"Company {i}",
            "price": "123.45",
            "sector": "Technology",
            "change": "-0.50",
            "lastUpdated": "2026-11-24T23:35:00.000Z",
        }
        for i in range(25)
    ],
    "nextToken": "eyJ2IjoiZXlKemVXMWliMndpT2lKYVZWRWlmUT09In0",
    "meta": {"cache": "hit", "asOf": "2026-11-24T23:35:00.000Z"},
}


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})


@app.get("/stocks")
def stocks() -> ResponseReturnValue:
    return jsonify(_PAGE)
