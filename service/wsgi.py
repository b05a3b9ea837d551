"""Entry point: ``service.wsgi:app`` for gunicorn and ``flask --app service.wsgi``.

An unusable setting stops start-up with one line naming the variable.
"""

from __future__ import annotations

import sys

from service.app import create_app
from service.config import ConfigError, Settings
from service.logging import configure_logging

try:
    settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

configure_logging(settings.log_level, settings.log_format)
app = create_app(settings)
