"""Simulator of the external stock vendor API (DESIGN.md section 3).

A real HTTP server (standard library only) that answers exactly like the
vendor, so that tests, benchmarks and ``make run`` never need the real one:

- every route needs the header ``x-api-key``; a missing or wrong key gets
  ``403 {"message": "Forbidden"}``, an unknown route ``404 {"message": "Not Found"}``;
- ``GET /stocks[?nextToken=T]`` serves the catalogue page by page in a fixed,
  seeded, non-alphabetical order.  A token is standard base64 (with ``=``
  padding, so it must be URL-encoded) of ``{"symbol":"<last symbol of the
  previous page>"}``; the last page has no ``nextToken`` key at all;
- ``POST /stocks/{symbol}/buy`` with ``{"price": 220.67, "quantity": 1}``
  executes an order at the requested price when it lies within 2 % of the
  current price (inclusive band), else answers 400; unknown symbols get 404;
- every stock reprices once per ``reprice_seconds``, each at its own seeded
  phase inside the cycle, so the catalogue changes item by item;
- money is ``Decimal`` end to end and is written as exact JSON numbers;
- knobs inject latency, jitter, 5xx answers, slow answers, dropped
  connections and executed orders whose answer is lost.

Admin routes (key required, never delayed or faulty) let a test or benchmark
steer a simulator running in another process: ``GET /_sim/orders``,
``GET /_sim/stats``, ``GET|POST /_sim/config``, ``POST /_sim/advance``
(``{"seconds": 300}``) and ``POST /_sim/reset``.

One module per job: ``config`` (knobs), ``catalogue`` (stocks and page
tokens), ``market`` (pricing), ``faults`` (failure injection), ``vendor``
(state and answers), ``http`` (the server, ``serve``) and ``__main__`` (the
command line).  Run it with ``python -m service.vendorapi.simulator --help``.
"""

from service.config import SIMULATOR_API_KEY
from service.vendorapi.simulator.catalogue import SECTORS
from service.vendorapi.simulator.config import OPERATIONS, SimulatorConfig
from service.vendorapi.simulator.http import SimulatorServer, serve
from service.vendorapi.simulator.market import PRICE_TOLERANCE
from service.vendorapi.simulator.vendor import Order, Simulator

__all__ = [
    "OPERATIONS",
    "PRICE_TOLERANCE",
    "SECTORS",
    "SIMULATOR_API_KEY",
    "Order",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "serve",
]
