"""The listing's client cursors (``nextToken``), opaque to clients and stable.

A cursor is base64url of a small JSON object (the same position always gives
the same cursor):

- browsing, ``{"o": offset, "p": vendor token or null}``: the position
  ``offset`` inside the vendor page that ``p`` names (null: the first page);
- searching, ``{"o": offset, "q": fingerprint of the search}``: the position in
  the ranked matches of that search, so a cursor cannot drift into another one.

Every cursor a client sends is read here, and a bad one is an
:class:`InvalidInput` naming the ``nextToken`` field.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from service.errors import InvalidInput

MAX_OFFSET = 1_000_000
MAX_VENDOR_TOKEN_LENGTH = 512


def browse_cursor(vendor_token: str | None, offset: int) -> str:
    """The cursor of position ``offset`` in the vendor page ``vendor_token`` names."""
    return _encode({"o": offset, "p": vendor_token})


def browse_position(cursor: str | None) -> tuple[str | None, int]:
    """The vendor token and offset a browsing cursor names (none: the start).

    :raises InvalidInput: not a browsing cursor this service issued.
    """
    if not cursor:
        return None, 0
    payload = _decode(cursor, {"o", "p"})
    vendor_token = payload["p"]
    if vendor_token is not None and (
        not isinstance(vendor_token, str) or not 0 < len(vendor_token) <= MAX_VENDOR_TOKEN_LENGTH
    ):
        raise bad_cursor("Not a token this service issued.")
    return vendor_token, payload["o"]


def search_cursor(term: str, offset: int) -> str:
    """The cursor of position ``offset`` in the matches of the search ``term``."""
    return _encode({"o": offset, "q": _fingerprint(term)})


def search_offset(cursor: str | None, term: str) -> int:
    """The offset a search cursor names (none: the start).

    :raises InvalidInput: not a cursor this service issued for this search.
    """
    if not cursor:
        return 0
    payload = _decode(cursor, {"o", "q"})
    if payload["q"] != _fingerprint(term):
        raise bad_cursor("This token belongs to another search.")
    offset: int = payload["o"]
    return offset


def bad_cursor(message: str) -> InvalidInput:
    """The error of a cursor that cannot be followed, naming the field."""
    return InvalidInput(message, details={"fields": {"nextToken": [message]}})


def _encode(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(cursor: str, keys: set[str]) -> dict[str, Any]:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except ValueError:  # binascii.Error, UnicodeDecodeError, JSONDecodeError
        raise bad_cursor("Not a token this service issued.") from None
    if not isinstance(payload, dict) or set(payload) != keys:
        raise bad_cursor("Not a token this service issued for this listing.")
    offset = payload["o"]
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise bad_cursor("Not a token this service issued.")
    return payload


def _fingerprint(term: str) -> str:
    return hashlib.sha256(term.casefold().encode()).hexdigest()[:16]
