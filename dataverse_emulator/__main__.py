"""``python -m dataverse_emulator --port PORT [--contacts N] [--leads N] [--seed S]``.

Prints the organization URL on the first line, then serves until interrupted (Ctrl+C or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from types import FrameType
from typing import Any

from .organization import SeedParams
from .server import EmulatorServer


def _stop(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into the same orderly stop as Ctrl+C, so the database and temp files are closed."""
    raise KeyboardInterrupt


def _modes(text: str) -> dict[str, Any]:
    """The ``--modes`` JSON object; a ``ValueError`` names what is wrong."""
    try:
        modes = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--modes is not JSON: {exc}") from exc
    if not isinstance(modes, dict):
        raise ValueError("--modes must be a JSON object")
    return modes


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m dataverse_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--contacts", type=int, default=1000, help="contacts to seed (default 1000)")
    parser.add_argument("--leads", type=int, default=500, help="leads to seed (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--database", help="SQLite file to keep the data in (default: a temporary file)")
    parser.add_argument("--modes", default="{}", help='JSON object of modes, e.g. \'{"paging": "offset"}\'')
    args = parser.parse_args(argv)
    if args.contacts < 0 or args.leads < 0:
        parser.error("--contacts and --leads must be >= 0")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be from 0 to 65535")
    try:
        server = EmulatorServer(
            host=args.host,
            port=args.port,
            seed=SeedParams(contacts=args.contacts, leads=args.leads, seed=args.seed),
            database=args.database,
            modes=_modes(args.modes),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    try:
        print(server.base_url, flush=True)
        logging.basicConfig(level=logging.WARNING)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
