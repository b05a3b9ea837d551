"""Entry point: ``service.wsgi:app`` for gunicorn and ``flask --app service.wsgi``.

An unusable setting stops start-up with one line naming the variable; an unset
``TOKEN_SECRET`` is a warning (cursors signed with the public development key).
"""

from __future__ import annotations

import gc
import logging
import sys

from service.app import create_app
from service.config import DEV_TOKEN_SECRET, ConfigError, Settings
from service.logging import configure_logging

try:
    settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

configure_logging(settings.log_level, settings.log_format)
if settings.token_secret == DEV_TOKEN_SECRET:
    logging.getLogger(__name__).warning(
        "TOKEN_SECRET is not set: nextToken cursors are signed with the public development key"
    )
app = create_app(settings)
# What start-up built lives as long as the process: out of the collector's
# full passes, which took ~90 ms over its ~135,000 objects (issue 17: a buy's
# p99). Each gunicorn worker imports this module itself, so each freezes its own.
gc.freeze()
