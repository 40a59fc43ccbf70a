"""``python -m dataverse_emulator --port PORT [--contacts N] [--leads N] [--seed S]``.

Prints the organization URL on the first line, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .organization import SeedParams
from .server import EmulatorServer


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
    try:
        modes = json.loads(args.modes)
        if not isinstance(modes, dict):
            raise ValueError("--modes must be a JSON object")
        server = EmulatorServer(
            host=args.host,
            port=args.port,
            seed=SeedParams(contacts=args.contacts, leads=args.leads, seed=args.seed),
            database=args.database,
            modes=modes,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(server.base_url, flush=True)
    logging.basicConfig(level=logging.WARNING)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
