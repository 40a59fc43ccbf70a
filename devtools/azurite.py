"""Start and stop a real Azurite (from the repo's ``node_modules``) for integration tests.

Any test folder can use it::

    with Azurite() as azurite:
        tables = AzureStateTables.from_connection_string(azurite.connection_string)

Ports are picked free on loopback so parallel sessions and a developer's own Azurite on 10000-10002 do
not collide. ``stop()`` and ``start()`` restart the same process arguments on the same ports and data
folder, which is how the fault tests simulate a storage outage.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "devstoreaccount1"
# The well-known development key, published by Microsoft for the storage emulators: not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"


class AzuriteError(RuntimeError):
    """Azurite is missing, or did not start in time."""


def azurite_executable() -> Path:
    """The Azurite launcher installed by ``npm ci``; ``AZURITE_BIN`` may point elsewhere."""
    override = os.environ.get("AZURITE_BIN")
    path = Path(override) if override else REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise AzuriteError(
            f"Azurite not found at {path}. Run `npm ci` in {REPO_ROOT} "
            "(package-lock.json pins azurite 3.35.0)."
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class Azurite:
    """One Azurite process on free loopback ports with its data in a temporary folder.

    The process is killed on ``__exit__``, on ``close()`` and, as a last resort, at interpreter exit, so a
    failing test session never leaves a stray Azurite holding ports.
    """

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self._executable = azurite_executable()
        self._startup_timeout = startup_timeout
        self._workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
        self.location = self._workdir / "data"
        self.location.mkdir()
        self._log_path = self._workdir / "azurite.log"
        self.blob_port, self.queue_port, self.table_port = _free_port(), _free_port(), _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    @property
    def connection_string(self) -> str:
        """A full connection string with explicit endpoints (needed for non-default ports)."""
        base = f"http://{HOST}"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    @property
    def pid(self) -> int | None:
        """The process id while Azurite runs (for CPU accounting), else None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart) Azurite on the same ports and data folder; returns once both ports accept."""
        if self.running:
            return
        command = [
            str(self._executable),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--location",
            str(self.location),
            "--blobHost",
            HOST,
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            HOST,
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            HOST,
            "--tablePort",
            str(self.table_port),
        ]
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own executable
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self._workdir
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AzuriteError(f"Azurite exited with {self._process.returncode}:\n{self._log()}")
            if _accepts(self.queue_port) and _accepts(self.table_port):
                return
            time.sleep(0.05)
        self.stop()
        raise AzuriteError(f"Azurite did not open its ports within {self._startup_timeout} s:\n{self._log()}")

    def _log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no output)"

    def stop(self) -> None:
        """Stop the process (gracefully, so it saves its data) and wait until the ports are closed."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        deadline = time.monotonic() + 5
        while (_accepts(self.queue_port) or _accepts(self.table_port)) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the process and remove the data folder."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
