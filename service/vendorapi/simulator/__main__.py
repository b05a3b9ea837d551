"""``python -m service.vendorapi.simulator``: run the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from service.config import SIMULATOR_API_KEY, SIMULATOR_PORT
from service.vendorapi.simulator.config import SimulatorConfig
from service.vendorapi.simulator.http import serve
from service.vendorapi.simulator.vendor import Simulator

# Every knob but the key (which comes from VENDOR_API_KEY) is an option named
# after it (page_size -> --page-size), typed and defaulted by SimulatorConfig.
_KNOB_HELP = {
    "stocks": "number of stocks in the catalogue",
    "page_size": "items per GET /stocks page",
    "seed": "seed of the catalogue, prices and faults",
    "reprice_seconds": "length of a repricing cycle",
    "latency": "seconds added before every answer",
    "jitter": "extra random 0..JITTER seconds per answer",
    "error_rate": "share of 500 answers (nothing executed)",
    "timeout_rate": "share of slow answers (still executed)",
    "slow_seconds": "how long a slow answer takes",
    "drop_rate": "share of connections closed unanswered",
    "lost_rate": "share of buys executed but left unanswered",
    "fault_operations": "comma list of operations (list,buy) the fault knobs apply to",
    "float_band": "check the 2%% band in binary floating point, as a JavaScript vendor would "
    "(at 0.25 it refuses 0.245 and 0.255)",
}


def _operations_arg(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parser() -> argparse.ArgumentParser:
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m service.vendorapi.simulator",
        description="Simulated stock vendor API (DESIGN.md section 3). Accepts the key in "
        f"VENDOR_API_KEY, else {SIMULATOR_API_KEY!r}. Admin routes: /_sim/orders, /_sim/stats, "
        "/_sim/config, /_sim/advance, /_sim/reset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--port", type=int, default=SIMULATOR_PORT, help="port to listen on (0 picks a free one)"
    )
    for knob, help_text in _KNOB_HELP.items():
        default = getattr(defaults, knob)
        option = "--" + knob.replace("_", "-")
        if isinstance(default, bool):
            action = argparse.BooleanOptionalAction
            parser.add_argument(option, action=action, default=default, help=help_text)
            continue
        parser.add_argument(
            option,
            type=_operations_arg if knob == "fault_operations" else type(default),
            default=default,
            help=help_text,
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT or SIGTERM; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    api_key = os.environ.get("VENDOR_API_KEY") or SIMULATOR_API_KEY
    try:
        config = SimulatorConfig(
            **{knob: getattr(args, knob) for knob in _KNOB_HELP}, api_key=api_key
        )
    except ValueError as error:
        parser.error(str(error))
    # The stop signals wait in the main thread's sigwait, not in a handler: a
    # handler that sets an Event can deadlock when a second signal (make run's
    # Ctrl-C, then its TERM) lands while the main thread holds the Event's lock.
    # Blocked before serve(), so the server's thread inherits the mask.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        server = serve(Simulator(config), args.host, args.port)
    except OSError as error:
        where = f"{args.host}:{args.port}"
        print(f"vendor simulator: cannot listen on {where}: {error.strerror}", file=sys.stderr)
        return 1
    shape = f"{config.stocks} stocks, {config.page_size} per page, seed {config.seed}"
    print(f"vendor simulator on {server.url} ({shape})", flush=True)
    signal.sigwait(stop_signals)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
