"""Unique ids without a system call each: request ids and concurrency-slot holders.

``uuid.uuid4()`` reads the kernel's random source on every call, 30 µs on
this service's machines, twice per request (issue 17). An id here is 32
lowercase hex digits like a ``uuid4().hex``: 16 random ones drawn once per
process (again in a forked child) and a 16-digit counter.
"""

from __future__ import annotations

import itertools
import os
import secrets


def _start() -> None:
    global _prefix, _counter
    _prefix = secrets.token_hex(8)
    _counter = itertools.count()


_prefix: str
_counter: itertools.count[int]
_start()
os.register_at_fork(after_in_child=_start)


def new_id() -> str:
    """An id no other call in any process makes (``next`` on a count is atomic
    under the GIL)."""
    return f"{_prefix}{next(_counter):016x}"
