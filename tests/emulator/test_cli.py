"""``python -m dataverse_emulator``: how benchmarks and people start the emulator outside of pytest.

The first line of stdout is the organization URL; the server answers there until SIGINT or SIGTERM,
then exits 0. Bad arguments fail at once with a message on stderr.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from dataverse_emulator.client import EmulatorClient
from dataverse_emulator.tls import generate

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dataverse_emulator", *args]


def read_first_line(process: subprocess.Popen[str]) -> str:
    """The first stdout line, waiting at most ``START_TIMEOUT`` seconds for it."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    assert ready, "the emulator printed nothing"
    return process.stdout.readline().strip()


@contextmanager
def running(*args: str, hash_seed: str = "random") -> Iterator[tuple[subprocess.Popen[str], str]]:
    """An emulator process and the URL it printed; killed if the test leaves it running."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        command(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process, read_first_line(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_serves_the_printed_url_and_stops_cleanly_on_sigint() -> None:
    with running("--port", "0", "--contacts", "50", "--leads", "20", "--seed", "3") as (process, url):
        parts = urlsplit(url)
        assert parts.scheme == "http"
        assert parts.hostname == "127.0.0.1"
        assert parts.port is not None
        assert parts.port > 0
        assert url == f"http://127.0.0.1:{parts.port}"

        health = requests.get(f"{url}/_emulator/health", timeout=10)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}

        api = EmulatorClient(url).web_api("cli-user")
        response = api.get("contacts?$select=contactid", headers={"Prefer": "odata.maxpagesize=30"})
        assert response.status_code == 200
        assert response.url.startswith(f"{url}/api/data/v9.2/")
        assert len(response.json()["value"]) == 30
        assert response.json()["@odata.nextLink"].startswith(f"{url}/api/data/v9.2/contacts?")
        leads = api.get("leads?$select=leadid").json()["value"]
        assert len(leads) == 20
        no_token = requests.get(f"{url}/api/data/v9.2/contacts", timeout=10)
        assert no_token.status_code == 401

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert process.stdout.read() == "", "only the URL goes to stdout"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/_emulator/health", timeout=5)


def test_the_seed_gives_the_same_data_in_every_process() -> None:
    """Separate processes (different string hashing) seed the same rows from the same seed."""
    with (
        running("--contacts", "40", "--leads", "10", "--seed", "3", hash_seed="1") as first,
        running("--contacts", "40", "--leads", "10", "--seed", "3", hash_seed="2") as second,
    ):
        scenes = []
        for process, url in (first, second):
            scenes.append((read_scene(url), EmulatorClient(url).reunify(0.2, seed=4), read_scene(url)))
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
    assert all(scenes[0][0].values())
    assert scenes[0][2] != scenes[0][0]
    assert scenes[0] == scenes[1]


def read_scene(url: str) -> dict[str, list[tuple[tuple[str, object], ...]]]:
    """The seeded rows without times or versions, each as sorted items, sorted."""
    api = EmulatorClient(url).web_api()
    tables = (
        ("contacts", "contactid,fullname,emailaddress1"),
        ("leads", "leadid,fullname"),
        ("msdynci_customerprofiles", "msdynci_customerprofileid,msdynci_customerid"),
        (
            "msdynci_alternatekeys",
            "msdynci_alternatekeyid,msdynci_identifier,_msdynci_lookupfield_customer_value",
        ),
    )
    scene = {}
    for entity_set, columns in tables:
        response = api.get(f"{entity_set}?$select={columns}")
        assert response.status_code == 200, response.text
        rows = [{k: v for k, v in row.items() if k != "@odata.etag"} for row in response.json()["value"]]
        scene[entity_set] = sorted(tuple(sorted(row.items())) for row in rows)
    return scene


def test_modes_and_a_database_file_are_used_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    database = tmp_path / "org.sqlite3"
    args = ("--contacts", "3", "--leads", "0", "--database", str(database), "--modes", '{"paging": "offset"}')
    with running(*args) as (process, url):
        assert EmulatorClient(url).modes()["paging"] == "offset"
        assert database.exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert process.stderr.read() == ""


def read_line(process: subprocess.Popen[str]) -> str:
    """The next stdout line: printed with the first, so it is already read into the stream's buffer."""
    assert process.stdout is not None
    return process.stdout.readline().strip()


def https_get(url: str, ca: str) -> requests.Response:
    return requests.get(url, headers={"Authorization": "Bearer cli-user"}, verify=ca, timeout=10)


def test_tls_serves_https_with_a_certificate_made_at_start() -> None:
    """The second line names the CA; answers' absolute URLs carry the scheme and the host the client used."""
    with running("--tls", "--contacts", "5", "--leads", "0") as (process, url):
        ca = read_line(process)
        assert ca.startswith("CA file: ")
        ca = ca.removeprefix("CA file: ")
        port = urlsplit(url).port
        assert url == f"https://127.0.0.1:{port}"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/_emulator/health", timeout=10)
        for host in ("127.0.0.1", "localhost"):
            origin = f"https://{host}:{port}"
            response = https_get(f"{origin}/api/data/v9.2/contacts?$select=fullname&$top=2", ca)
            assert response.status_code == 200, response.text
            assert response.json()["@odata.context"] == f"{origin}/api/data/v9.2/$metadata#contacts(fullname)"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


def test_tls_with_a_given_certificate_and_key(tmp_path: Path) -> None:
    files = generate(tmp_path, "127.0.0.1")
    with running("--cert", str(files.cert), "--key", str(files.key), "--contacts", "2", "--leads", "0") as (
        process,
        url,
    ):
        assert url.startswith("https://127.0.0.1:")
        response = https_get(f"{url}/api/data/v9.2/WhoAmI", str(files.ca))
        assert response.status_code == 200
        assert response.json()["@odata.context"].startswith(f"{url}/api/data/v9.2/$metadata#")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert process.stdout.read() == "", "a given certificate has no CA file to print"


BAD_ARGUMENTS = [
    (("--cert", "cert.pem"), "--cert and --key go together"),
    (("--cert", "missing.pem", "--key", "missing.pem"), "cannot serve https with --cert and --key"),
    (("--contacts", "-1"), "--contacts and --leads must be >= 0"),
    (("--seed", "-2"), "--seed must be >= 0"),
    (("--port", "70000"), "--port must be from 0 to 65535"),
    (("--modes", "[1]"), "error: --modes must be a JSON object"),
    (("--modes", "{paging"), "error: --modes is not JSON: "),
    (("--modes", '{"paging":"x"}'), "error: mode 'paging' must be one of keyset, offset, snapshot"),
]


def test_bad_arguments_fail_with_a_message() -> None:
    processes = [
        subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            command("--contacts", "1", "--leads", "0", *args),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, _ in BAD_ARGUMENTS
    ]
    for process, (args, message) in zip(processes, BAD_ARGUMENTS, strict=True):
        stdout, stderr = process.communicate(timeout=START_TIMEOUT)
        assert process.returncode == 2, args
        assert stdout == "", args
        assert message in stderr, (args, stderr)


def test_a_port_in_use_fails_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            command("--port", port, "--contacts", "1", "--leads", "0"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
