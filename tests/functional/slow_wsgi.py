"""``service.wsgi:app`` plus a test-only route that keeps a request in flight,
for gunicorn tests of the concurrency limit (run as ``tests.functional.slow_wsgi:app``)."""

from __future__ import annotations

import os
import time

from flask import request

from service.wsgi import app


@app.get("/test/sleep")
def sleep() -> dict[str, float]:
    """Sleep ``?seconds=`` (default 0); answer the worker's pid and when the view ran."""
    started = time.time()
    time.sleep(float(request.args.get("seconds", "0")))
    return {"pid": os.getpid(), "at": started}
