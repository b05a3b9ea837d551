"""Only ``service/marketdata/`` names the ``stocks:*`` Redis keys."""

from __future__ import annotations

import re
from pathlib import Path

import service

SERVICE = Path(service.__file__).parent
MARKETDATA = SERVICE / "marketdata"
# A string literal (plain, f-, r- or b-string) that starts a stocks:* key.
KEY_LITERAL = re.compile(r"""(?<![\w`])[rRbBfFuU]{0,2}["']stocks:""")


def _key_literals(inside_marketdata: bool) -> list[str]:
    return [
        f"{path.relative_to(SERVICE.parent)}:{number}"
        for path in sorted(SERVICE.rglob("*.py"))
        if (MARKETDATA in path.parents) == inside_marketdata
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if KEY_LITERAL.search(line)
    ]


def test_only_marketdata_names_stocks_keys() -> None:
    assert _key_literals(inside_marketdata=False) == []
    # The check sees the keys where they are named.
    assert any("marketdata/store.py" in hit for hit in _key_literals(inside_marketdata=True))
