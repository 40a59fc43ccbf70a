"""``python -m dataverse_emulator --port PORT [--contacts N] [--leads N] [--seed S] [--tls]``.

Prints the organization URL on the first line (with ``--tls``, the CA file to trust on the second:
``CA file: PATH``), then serves until interrupted (Ctrl+C or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import ssl
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from .organization import SeedParams
from .server import EmulatorServer
from .tls import TlsFiles


def _stop(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM and SIGINT into one orderly stop, so the database and temp files are closed.

    SIGINT is handled explicitly too: a process started from a non-interactive shell's background job
    inherits SIGINT ignored, and Python then never raises ``KeyboardInterrupt`` for it.
    """
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dataverse_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--contacts", type=int, default=1000, help="contacts to seed (default 1000)")
    parser.add_argument("--leads", type=int, default=500, help="leads to seed (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--database", help="SQLite file to keep the data in (default: a temporary file)")
    parser.add_argument("--modes", default="{}", help='JSON object of modes, e.g. \'{"paging": "offset"}\'')
    parser.add_argument("--tls", action="store_true", help="serve https with a certificate made at start")
    parser.add_argument("--cert", help="PEM certificate (chain) to serve https with; needs --key")
    parser.add_argument("--key", help="PEM private key of --cert")
    return parser


def _tls(args: argparse.Namespace, parser: argparse.ArgumentParser) -> bool | TlsFiles:
    """What to serve https with: given files (checked now, so a bad one fails before seeding), or not."""
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    if args.cert is None:
        return bool(args.tls)
    files = TlsFiles(Path(args.cert), Path(args.key))
    try:
        files.context()
    except (OSError, ssl.SSLError) as exc:
        parser.error(f"cannot serve https with --cert and --key: {exc}")
    return files


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground."""
    parser = _parser()
    args = parser.parse_args(argv)
    tls = _tls(args, parser)
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
            tls=tls,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        print(server.base_url, flush=True)
        if server.tls is not None and server.tls.ca is not None:
            print(f"CA file: {server.tls.ca}", flush=True)
        logging.basicConfig(level=logging.WARNING)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
