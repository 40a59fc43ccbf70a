"""The npm client ``dynamics-web-api``, as shipped, against the emulator over TLS.

``dynamics_web_api.cjs`` runs the client's standard operations in one node process (trusting the
emulator's CA through ``NODE_EXTRA_CA_CERTS``) and reports each step's result; each test here checks
one group of steps against what the client reported and what the emulator stored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from dataverse_emulator import EmulatorServer
from dataverse_emulator.client import EmulatorClient, WebApi

from .conftest import CONTACTS

SCRIPT = Path(__file__).with_name("dynamics_web_api.cjs")
pytestmark = pytest.mark.xdist_group("conformance-dynamics-web-api")
"""One worker runs this module, so its TLS emulator (and its client run) start once, not once a worker."""
USER = "js-client"
NAV = "msdynci_lookupfield_customerprofile"
VALUE = f"_{NAV}_value"
Results = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def run(tls_server: EmulatorServer) -> tuple[Results, dict[str, Any]]:
    """Run the script once on a fresh scene: the steps' results and the scene they ran on."""
    node = shutil.which("node")
    assert node is not None, "node is needed (make test installs the npm packages it runs)"
    assert tls_server.tls is not None
    assert tls_server.tls.ca is not None
    control = EmulatorClient(tls_server.base_url)
    control.reset(contacts=CONTACTS, leads=5, seed=3, modes={"cid_lookup": "present"})
    control.modes(short_pages={"seed": 9})
    with control.web_api(USER) as web:
        contacts = [r["contactid"] for r in web.get("contacts?$select=contactid").json()["value"]]
        profile = web.get("msdynci_customerprofiles?$select=msdynci_customerprofileid&$top=1").json()
        lead = web.get("leads?$select=leadid&$top=1").json()["value"][0]["leadid"]
    scene = {
        "serverUrl": tls_server.base_url,
        "user": USER,
        "contacts": contacts[:2],
        "profile": profile["value"][0]["msdynci_customerprofileid"],
        "lead": lead,
        "upsertKey": str(uuid.uuid4()),
    }
    control.faults([{"kind": "throttle", "method": "GET", "path": r"^leads\(", "count": 1, "retry_after": 3}])
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(tls_server.tls.ca)}
    done = subprocess.run(  # noqa: S603 - node and a fixed script
        [node, str(SCRIPT), json.dumps(scene)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: Results = json.loads(done.stdout)
    return results, {**scene, "all_contacts": contacts, "stats": control.stats()}


def ok(results: Results, name: str) -> Any:
    """The value a step returned; the test fails with the client's error if it failed."""
    assert results[name]["ok"], (name, results[name])
    return results[name]["value"]


def stored(tls_server: EmulatorServer, path: str) -> Any:
    with WebApi(tls_server.base_url, USER) as web:
        response = web.get(path)
        assert response.status_code == 200, response.text
        return response.json()


def test_connect_and_metadata(run: tuple[Results, dict[str, Any]]) -> None:
    results, _ = run
    assert ok(results, "whoami")["UserId"]
    contact = ok(results, "entity")
    assert (contact["LogicalName"], contact["EntitySetName"]) == ("contact", "contacts")
    assert [(e["LogicalName"], e["EntitySetName"]) for e in ok(results, "entities")["value"]] == [
        ("lead", "leads")
    ]
    assert ok(results, "entityById")["LogicalName"] == "contact", "addressed by MetadataId"
    lookups = [a["LogicalName"] for a in ok(results, "lookupAttributes")["value"]]
    assert lookups == [NAV], "the enum literal AttributeTypeCode'Lookup' filters"
    assert ok(results, "picklists")["value"] == [], "a cast to a type the table has none of is empty"
    options = ok(results, "stateOptions")["OptionSet"]["Options"]
    assert [(o["Value"], o["Label"]["UserLocalizedLabel"]["Label"]) for o in options] == [
        (0, "Active"),
        (1, "Inactive"),
    ]
    relationships = ok(results, "relationships")["value"]
    assert [(r["SchemaName"], r["ReferencingEntityNavigationPropertyName"]) for r in relationships] == [
        ("msdynci_customerprofile_contact", NAV)
    ]
    assert ok(results, "relationship")["ReferencingEntity"] == "contact"


def test_queries_paging_count_and_conditional_get(
    run: tuple[Results, dict[str, Any]], tls_server: EmulatorServer
) -> None:
    """Short pages are on: retrieveAll must follow next links to get every row once."""
    results, scene = run
    assert [r["contactid"] for r in ok(results, "all")["value"]] == scene["all_contacts"]
    pages = scene["stats"]["requests"]["query"] - 3  # less top, inDoubleQuoted and countFiltered
    assert pages > CONTACTS // 9, "short pages: more pages than full ones would need"
    names = [r["fullname"] for r in ok(results, "top")["value"]]
    assert len(names) == 5
    assert names == sorted(names, key=str.lower)
    assert {r["contactid"] for r in ok(results, "inDoubleQuoted")["value"]} == set(scene["contacts"])
    assert ok(results, "get")["contactid"] == scene["contacts"][0]
    assert ok(results, "getUnchanged") is None, "the client resolves a 304 to no body"
    assert scene["stats"]["statuses"]["304"] == 1
    assert ok(results, "count") == CONTACTS
    assert ok(results, "countFiltered") == CONTACTS
    assert scene["stats"]["requests"]["count"] == 1, "count without a filter uses the /$count segment"


def test_writes_single_properties_and_bulk(
    run: tuple[Results, dict[str, Any]], tls_server: EmulatorServer
) -> None:
    results, scene = run
    created = ok(results, "create")
    assert ok(results, "update") is True
    assert ok(results, "delete") is True
    with WebApi(tls_server.base_url, USER) as web:
        assert web.get(f"contacts({created})").status_code == 404
    assert ok(results, "upsert") == scene["upsertKey"]
    assert stored(tls_server, f"contacts({scene['upsertKey']})")["fullname"] == "Upserted"
    assert ok(results, "getProperty")["value"] == "js@example.com"
    assert ok(results, "deleteProperty") is True
    assert stored(tls_server, f"contacts({scene['contacts'][0]})")["emailaddress1"] == "batched@example.com"
    ids = ok(results, "createMultiple")["Ids"]
    assert len(ids) == 2
    ok(results, "updateMultiple")
    for n, key in enumerate(ids):
        assert stored(tls_server, f"contacts({key})")["fullname"] == f"Bulk {n} Many"
    requests = scene["stats"]["requests"]
    assert (requests["property"], requests["write_property"]) == (1, 2)


def test_lookup_bind_clear_associate_and_disassociate(run: tuple[Results, dict[str, Any]]) -> None:
    results, scene = run
    profile = scene["profile"]
    assert ok(results, "afterBind") == profile
    assert ok(results, "afterClear") is None
    assert ok(results, "afterAssociateSingle") == profile, "PUT <nav>/$ref"
    assert ok(results, "afterAssociate") == profile, "POST <collection nav>/$ref from the profile"
    assert ok(results, "afterDisassociate") is None, "DELETE <collection nav>(<id>)/$ref"
    assert (scene["stats"]["requests"]["associate"], scene["stats"]["requests"]["disassociate"]) == (2, 2)


def test_batch_with_a_change_set(run: tuple[Results, dict[str, Any]], tls_server: EmulatorServer) -> None:
    results, scene = run
    read, lead, updated = ok(results, "batch")
    assert read["contactid"] == scene["contacts"][0]
    assert stored(tls_server, f"leads({lead})")["fullname"] == "Batched Lead"
    assert updated is True
    assert scene["stats"]["requests"]["batch"] == 1


def test_a_429_is_rejected_with_its_retry_after_and_not_retried(run: tuple[Results, dict[str, Any]]) -> None:
    """The client does not retry a 429: it rejects with the status, code and ``Retry-After`` header."""
    results, scene = run
    throttled = results["throttled"]
    assert (throttled["ok"], throttled["status"], throttled["code"]) == (False, 429, "0x80072322")
    assert throttled["headers"]["retry-after"] == "3"
    assert ok(results, "afterThrottle")["leadid"] == scene["lead"]
    assert scene["stats"]["faults"] == {"429": 1}
