"""Client cursors (``nextToken``): signed, opaque to clients and stable.

A cursor is a small JSON object signed with ``TOKEN_SECRET`` by itsdangerous
(:class:`~itsdangerous.URLSafeSerializer`, one salt per kind of cursor), so
the same position always gives the same cursor and a cursor issued for one
listing cannot be replayed on another. The signature is checked before the
payload is even parsed: a forged or altered cursor costs no vendor call and
no Redis write, and the only vendor tokens ever sent on are those the service
itself put in a cursor.

Kinds issued here:

- ``browse``, ``{"o": offset, "p": vendor token or null}``: the position
  ``offset`` inside the vendor page that ``p`` names (null: the first page);
- ``search``, ``{"o": offset, "q": fingerprint of the search}``: the position
  in the ranked matches of that search.

Other use cases issue their own kinds through :func:`issue` and :func:`read`.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from service.config import current_settings
from service.errors import InvalidToken

NOT_OURS = "Not a token this service issued for this listing."


def issue(kind: str, payload: dict[str, Any]) -> str:
    """A signed cursor of ``kind`` carrying ``payload`` (JSON-serialisable)."""
    return _serializer(current_settings().token_secret, kind).dumps(payload)


def read(kind: str, cursor: str, keys: set[str]) -> dict[str, Any]:
    """The payload of a cursor of ``kind`` this service signed, with exactly ``keys``.

    :raises InvalidToken: forged, altered, or of another kind (the API's
        schemas bound its length first: ``NEXT_TOKEN_MAX_LENGTH``).
    """
    try:
        payload = _serializer(current_settings().token_secret, kind).loads(cursor)
    except BadData:
        raise invalid_token(NOT_OURS) from None
    if not isinstance(payload, dict) or set(payload) != keys:
        raise invalid_token(NOT_OURS)
    return payload


def browse_cursor(vendor_token: str | None, offset: int) -> str:
    """The cursor of position ``offset`` in the vendor page ``vendor_token`` names."""
    return _browse_cursor(current_settings().token_secret, vendor_token, offset)


@lru_cache(maxsize=1024)
def _browse_cursor(secret: str, vendor_token: str | None, offset: int) -> str:
    # Signed once per position and process: every cached listing hit issues one,
    # and the same position always gives the same cursor.
    return _serializer(secret, "browse").dumps({"o": offset, "p": vendor_token})


def browse_position(cursor: str | None) -> tuple[str | None, int]:
    """The vendor token and offset a browsing cursor names (none: the start).

    :raises InvalidToken: not a browsing cursor this service issued.
    """
    if not cursor:
        return None, 0
    payload = read("browse", cursor, {"o", "p"})
    return payload["p"], _offset(payload)


def search_cursor(term: str, offset: int) -> str:
    """The cursor of position ``offset`` in the matches of the search ``term``."""
    return issue("search", {"o": offset, "q": _fingerprint(term)})


def search_offset(cursor: str | None, term: str) -> int:
    """The offset a search cursor names (none: the start).

    :raises InvalidToken: not a cursor this service issued for this search.
    """
    if not cursor:
        return 0
    payload = read("search", cursor, {"o", "q"})
    if payload["q"] != _fingerprint(term):
        raise invalid_token("This token belongs to another search.")
    return _offset(payload)


def invalid_token(message: str) -> InvalidToken:
    """The error of a cursor that cannot be followed, naming the field."""
    return InvalidToken(message, details={"fields": {"nextToken": [message]}})


@lru_cache(maxsize=16)
def _serializer(secret: str, kind: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=f"nextToken:{kind}")


def _offset(payload: dict[str, Any]) -> int:
    offset: int = payload["o"]  # signed by this service: the offset it wrote
    return offset


def _fingerprint(term: str) -> str:
    return hashlib.sha256(term.casefold().encode()).hexdigest()[:16]
