"""The simulated catalogue: seeded stocks in page order, and the page tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

SECTORS = (
    "Technology",
    "Healthcare",
    "Financials",
    "Energy",
    "Consumer",
    "Industrials",
    "Utilities",
    "Materials",
    "Real Estate",
    "Communication",
)

CENT = Decimal("0.01")

_MIN_BASE_PRICE = 0.25
_MAX_BASE_PRICE = 2000.0
_NAME_PREFIXES = (
    "Apex",
    "Atlas",
    "Blue Ridge",
    "Cobalt",
    "Crescent",
    "Evergreen",
    "Granite",
    "Harbor",
    "Horizon",
    "Keystone",
    "Liberty",
    "Meridian",
    "Northwind",
    "Orion",
    "Pioneer",
    "Redwood",
    "Silverline",
    "Sterling",
    "Summit",
    "Vantage",
)
_SECTOR_WORDS = {
    "Technology": ("Software", "Systems", "Semiconductor", "Networks", "Data"),
    "Healthcare": ("Therapeutics", "Biosciences", "Medical", "Health", "Pharma"),
    "Financials": ("Financial", "Capital", "Bancorp", "Insurance", "Trust"),
    "Energy": ("Energy", "Petroleum", "Solar", "Resources", "Pipeline"),
    "Consumer": ("Brands", "Foods", "Retail", "Apparel", "Beverage"),
    "Industrials": ("Industries", "Aerospace", "Machinery", "Logistics", "Rail"),
    "Utilities": ("Power", "Water", "Electric", "Gas", "Utilities"),
    "Materials": ("Chemicals", "Metals", "Mining", "Materials", "Paper"),
    "Real Estate": ("Realty", "Properties", "REIT", "Land", "Housing"),
    "Communication": ("Media", "Telecom", "Broadcasting", "Wireless", "Entertainment"),
}
_NAME_SUFFIXES = ("Inc.", "Corp.", "Holdings", "Group", "Ltd.", "plc", "Co.")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SYMBOL_LENGTHS = (1, 2, 3, 4, 5)
_SYMBOL_LENGTH_WEIGHTS = (2, 8, 35, 45, 10)
_DOTTED_SYMBOL_SHARE = 0.04


@dataclass(frozen=True)
class Stock:
    """One listed stock; its price moves around ``base`` (see ``market``)."""

    symbol: str
    name: str
    sector: str
    base: Decimal
    phase_key: int  # the stock reprices at phase_key % cycle_ms inside each cycle


def hash64(*parts: object) -> int:
    """A stable 64-bit hash of ``parts`` (independent of PYTHONHASHSEED)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def build_catalogue(stocks: int, seed: int) -> tuple[Stock, ...]:
    """``stocks`` seeded stocks in page order, always with AAPL and (from 10 on) PNNY.

    Base prices are log-uniform in [0.25, 2000]; the page order is a seeded
    shuffle that is never alphabetical when there are two stocks or more.
    """
    rng = random.Random(seed)
    fixed = [
        _new_stock(seed, "AAPL", "Apple Inc.", "Technology", Decimal("220.67")),
        _new_stock(seed, "PNNY", "Penny Mining Corp.", "Materials", Decimal("0.25")),
    ]
    catalogue = fixed[: 1 if stocks < 10 else 2]
    taken = {stock.symbol for stock in catalogue}
    while len(catalogue) < stocks:
        symbol = _random_symbol(rng)
        if symbol in taken:
            continue
        taken.add(symbol)
        sector = rng.choice(SECTORS)
        words = (_NAME_PREFIXES, _SECTOR_WORDS[sector], _NAME_SUFFIXES)
        name = " ".join(rng.choice(choices) for choices in words)
        price = math.exp(rng.uniform(math.log(_MIN_BASE_PRICE), math.log(_MAX_BASE_PRICE)))
        base = Decimal(price).quantize(CENT, ROUND_HALF_UP)
        catalogue.append(_new_stock(seed, symbol, name, sector, base))
    rng.shuffle(catalogue)
    if len(catalogue) > 1 and [stock.symbol for stock in catalogue] == sorted(taken):
        catalogue.reverse()
    return tuple(catalogue)


def _new_stock(seed: int, symbol: str, name: str, sector: str, base: Decimal) -> Stock:
    return Stock(symbol, name, sector, base, hash64(seed, symbol, "phase"))


def _random_symbol(rng: random.Random) -> str:
    """1-5 uppercase letters, or now and then a class share such as ``BRK.B``."""
    if rng.random() < _DOTTED_SYMBOL_SHARE:
        return "".join(rng.choices(_LETTERS, k=3)) + "." + rng.choice("AB")
    (length,) = rng.choices(_SYMBOL_LENGTHS, weights=_SYMBOL_LENGTH_WEIGHTS)
    return "".join(rng.choices(_LETTERS, k=length))


def encode_token(symbol: str) -> str:
    """The page token that continues after ``symbol``: base64 of compact JSON."""
    compact = json.dumps({"symbol": symbol}, separators=(",", ":"))
    return base64.b64encode(compact.encode()).decode("ascii")


def decode_token(token: str) -> str | None:
    """The symbol a token names, or None when it is not base64 JSON of one."""
    try:
        decoded = json.loads(base64.b64decode(token, validate=True))
    except ValueError:  # covers binascii.Error, UnicodeDecodeError, JSONDecodeError
        return None
    symbol = decoded.get("symbol") if isinstance(decoded, dict) else None
    return symbol if isinstance(symbol, str) else None
