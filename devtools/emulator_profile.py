"""``python -m devtools.emulator_profile --contacts N``: the emulator's own CPU per request kind at scale.

A benchmark charges each request a modelled server time; the emulator's own work must stay well below
it, or the benchmark measures the emulator. This script seeds an emulator with N contacts (and N/5
leads), sends each kind of request the product sends at scale K times through the in-process WSGI app
(werkzeug's test client: no sockets and no server threads, so ``time.process_time`` is the emulator's
CPU plus the small share of building the request and reading the answer), and prints CPU per request
and per row, the seeding time and the peak RSS. docs/emulator-scale.md records and reads the figures.

The kinds, in the order the product's passes send them:

- ``create_lookup``: ``POST RelationshipDefinitions`` for the product's lookup on contact (a new column
  and its indexes on a table of N rows), once;
- ``mapping_page_first_pass``: 5,000 mapping rows of contact's data sources with ``modifiedon lt
  <now>`` after a key, ordered by key (a full pass: the window is every row), following the keys;
- ``in_contactid``, ``in_alternatevalue``: a ``$batch`` with one GET of ``Microsoft.Dynamics.CRM.In`` on
  1,000 contact ids, or on the 1,000 mapping values of a page with the data-source filter (a URL that
  long only fits in a batch, which is how the product sends it);
- ``read_state``: the product's read for 1,000 source rows: those two GETs and the profiles the page
  names, in one ``$batch``;
- ``linked_page_none``: the reconcile's ``_<lookup>_value ne null and contactid gt <key>`` ordered by
  key, 5,000 a page, while no row is linked yet;
- ``update_multiple``: ``UpdateMultiple`` of 500 contacts, each binding the lookup to a profile;
- ``batch_patch``: the product's fallback, a ``$batch`` of 100 PATCHes with ``If-Match: *``;
- ``patch``: one PATCH of a lookup;
- ``linked_page_most``: the reconcile's page once 95 % of contacts are linked;
- ``reunify``: ``POST /_emulator/reunify`` of 1 % (a control call);
- ``mapping_page_window``: an incremental pass: the page query with ``modifiedon ge`` and ``lt``
  around that re-unification, following the keys;
- ``mapping_page_wide_window``: the same with a window holding every row (an incremental pass after
  everything changed: the worst case, see docs/emulator-scale.md);
- ``truth``: ``GET /_emulator/links?rows=none`` (a control call).

Rows are what a request answers (rows in ``value``, across a batch's parts) or writes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from dataverse_emulator import EmulatorServer, SeedParams
from devtools.emulator_profiler import API, AUTH, Profiler, in_filter, moment, peak_rss_mb, query
from hydration.dataverse.batch import Part

LOOKUP_SCHEMA = "new_CustomerProfile"
LOOKUP = LOOKUP_SCHEMA.lower()
LOOKUP_VALUE = f"_{LOOKUP}_value"
BIND = f"{LOOKUP_SCHEMA}@odata.bind"
SOURCES = (
    "((msdynci_datasourcename eq 'DataverseSales' and msdynci_entityname eq 'contact') or "
    "(msdynci_datasourcename eq 'DataverseMarketing' and msdynci_entityname eq 'contact'))"
)
MAPPING_SELECT = "msdynci_alternatekeyid,msdynci_alternatevalue,_msdynci_lookupfield_customer_value"
_LABEL = {
    "@odata.type": "Microsoft.Dynamics.CRM.Label",
    "LocalizedLabels": [
        {
            "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
            "Label": "Customer Profile",
            "LanguageCode": 1033,
        }
    ],
}
RELATIONSHIP = {
    "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
    "SchemaName": "new_customerprofile_contact",
    "ReferencedEntity": "msdynci_customerprofile",
    "ReferencedAttribute": "msdynci_customerprofileid",
    "ReferencingEntity": "contact",
    "CascadeConfiguration": dict.fromkeys(
        ("Assign", "Delete", "Merge", "Reparent", "Share", "Unshare"), "NoCascade"
    ),
    "Lookup": {
        "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
        "AttributeType": "Lookup",
        "AttributeTypeName": {"Value": "LookupType"},
        "SchemaName": LOOKUP_SCHEMA,
        "DisplayName": _LABEL,
        "RequiredLevel": {"Value": "None"},
    },
}
"""The product's lookup from contact to the profile table, as the product creates it."""
ROW_CHANGES = ("moved", "mapped_existing", "mapped_new", "deleted", "merged_rows")
"""The re-unification counts that are mapping rows changed (the rest count profiles)."""


def mapping_pages(p: Profiler, kind: str, terms: list[str], repeat: int) -> list[dict[str, Any]]:
    """``repeat`` pages of the window ``terms``, each after the last key of the one before.

    Answers the first 1,000 rows of each page (what the ``In`` kinds read), not every row: the
    script's own lists would otherwise add tens of megabytes to the peak RSS it reports.
    """
    after: str | None = None
    rows: list[dict[str, Any]] = []
    for _ in range(repeat):
        where = [*terms, *([f"msdynci_alternatekeyid gt {after}"] if after else [])]
        url = query(
            "msdynci_alternatekeys",
            {
                "$select": MAPPING_SELECT,
                "$filter": " and ".join(where),
                "$orderby": "msdynci_alternatekeyid asc",
            },
        )
        page: list[dict[str, Any]] = []

        def send(url: str = url) -> tuple[int, int]:
            nonlocal page
            status, page = p.page(url)
            return status, len(page)

        p.measure(kind, send)
        rows += page[:1000]
        # When the window is exhausted, start it again.
        after = page[-1]["msdynci_alternatekeyid"] if len(page) == 5000 else None
    return rows


def linked_pages(p: Profiler, kind: str, repeat: int) -> None:
    """``repeat`` pages of the reconcile: linked contacts after the last key read."""
    after: str | None = None
    for _ in range(repeat):
        terms = [f"{LOOKUP_VALUE} ne null", *([f"contactid gt {after}"] if after else [])]
        url = query(
            "contacts", {"$select": "contactid", "$filter": " and ".join(terms), "$orderby": "contactid asc"}
        )
        page: list[dict[str, Any]] = []

        def send(url: str = url) -> tuple[int, int]:
            nonlocal page
            status, page = p.page(url)
            return status, len(page)

        p.measure(kind, send)
        after = page[-1]["contactid"] if len(page) == 5000 else None


def send_all(p: Profiler, repeat: int, seed: int) -> None:
    """Every request kind, ``repeat`` times (the module docstring lists them)."""
    rng = random.Random(seed)
    p.measure("create_lookup", partial(_create_lookup, p))
    end = p.org.clock.now() + 1_000_000
    mapping = mapping_pages(p, "mapping_page_first_pass", [SOURCES, f"modifiedon lt {moment(end)}"], repeat)
    contacts = p.keys("contact", "contactid", 1000 * repeat, rng)
    profiles = p.keys("msdynci_customerprofile", "msdynci_customerprofileid", 1000, rng)
    _send_reads(p, repeat, contacts, mapping)
    linked_pages(p, "linked_page_none", repeat)

    def bind() -> str:
        return f"msdynci_customerprofiles({rng.choice(profiles)})"

    _send_writes(p, repeat, contacts, bind)
    _link_most_contacts(p)
    linked_pages(p, "linked_page_most", repeat)
    p.rss_mb_after_requests = peak_rss_mb()
    _send_reunification(p, repeat, seed)


def _create_lookup(p: Profiler) -> tuple[int, int]:
    response = p.client.post(API + "RelationshipDefinitions", json=RELATIONSHIP, headers=AUTH)
    return response.status_code, 0


def _send_reads(p: Profiler, repeat: int, contacts: list[str], mapping: list[dict[str, Any]]) -> None:
    """The product's reads for 1,000 source rows: by contact id, by mapping value, and all three at once."""
    for i in range(repeat):
        ids = contacts[1000 * i : 1000 * (i + 1)]
        source = Part(
            "GET",
            query(
                "contacts",
                {"$select": f"contactid,{LOOKUP_VALUE},{LOOKUP}pid", "$filter": in_filter("contactid", ids)},
            ),
        )
        p.measure("in_contactid", partial(p.batch, [source]))
        page = mapping[1000 * i : 1000 * (i + 1)] or mapping[:1000]  # a page's first 1,000 rows
        rows = _mapping_rows_named(page)
        p.measure("in_alternatevalue", partial(p.batch, [rows]))
        p.measure("read_state", partial(p.batch, [source, rows, _profiles_named(page)]))


def _mapping_rows_named(page: list[dict[str, Any]]) -> Part:
    """The GET of the mapping rows whose values a page names, with the data-source filter."""
    named = [r["msdynci_alternatevalue"] for r in page]
    select = "msdynci_alternatekeyid,msdynci_alternatevalue,_msdynci_lookupfield_customer_value,modifiedon"
    return Part(
        "GET",
        query(
            "msdynci_alternatekeys",
            {"$select": select, "$filter": f"{SOURCES} and {in_filter('msdynci_alternatevalue', named)}"},
        ),
    )


def _profiles_named(page: list[dict[str, Any]]) -> Part:
    """The GET of the profiles a page's mapping rows name."""
    likely = sorted({r["_msdynci_lookupfield_customer_value"] for r in page})
    return Part(
        "GET",
        query(
            "msdynci_customerprofiles",
            {
                "$select": "msdynci_customerprofileid,partitionid",
                "$filter": in_filter("msdynci_customerprofileid", likely),
            },
        ),
    )


def _send_writes(p: Profiler, repeat: int, contacts: list[str], bind: Callable[[], str]) -> None:
    """The lookup written three ways: ``UpdateMultiple`` of 500, a ``$batch`` of 100 PATCHes, one PATCH."""
    for i in range(repeat):
        targets = [
            {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c, BIND: bind()}
            for c in contacts[500 * i : 500 * (i + 1)]
        ]
        p.measure("update_multiple", partial(_update_multiple, p, targets))
    for i in range(repeat):
        patches = [
            Part("PATCH", f"contacts({c})", {BIND: bind()}, {"If-Match": "*"})
            for c in contacts[100 * i : 100 * (i + 1)]
        ]
        p.measure("batch_patch", partial(p.batch, patches))
    for i in range(repeat):
        p.measure("patch", partial(_patch, p, contacts[-1 - i], {BIND: bind()}))


def _update_multiple(p: Profiler, targets: list[dict[str, str]]) -> tuple[int, int]:
    response = p.client.post(
        API + "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": targets}, headers=AUTH
    )
    return response.status_code, len(targets)


def _patch(p: Profiler, contact: str, payload: dict[str, str]) -> tuple[int, int]:
    response = p.client.patch(API + f"contacts({contact})", json=payload, headers={**AUTH, "If-Match": "*"})
    return response.status_code, 1


def _link_most_contacts(p: Profiler) -> None:
    """Link 95 % of contacts, as after a full pass.

    Written straight to the store, since a million writes through the API would take the run's whole
    time and measure nothing the kinds above miss.
    """
    store = p.org.store
    with store.transaction():
        store.execute(
            f"UPDATE contact SET {LOOKUP} = (SELECT msdynci_customerprofileid FROM msdynci_customerprofile "
            "WHERE rowid = 1 + contact.rowid % (SELECT MAX(rowid) FROM msdynci_customerprofile)) "
            "WHERE rowid % 20 != 0"
        )


def _send_reunification(p: Profiler, repeat: int, seed: int) -> None:
    """A 1 % re-unification, the incremental passes' pages around it, and the truth of the links."""
    org = p.org
    started = org.clock.now()

    def reunify() -> tuple[int, int]:
        response = p.client.post("/_emulator/reunify", json={"fraction": 0.01, "seed": seed})
        changes = response.get_json()["changes"]
        return response.status_code, sum(changes[k] for k in ROW_CHANGES)

    p.measure("reunify", reunify)
    org.clock.advance(1)
    end = org.clock.now()
    window = [SOURCES, f"modifiedon lt {moment(end)}", f"modifiedon ge {moment(started - 1_000_000)}"]
    mapping_pages(p, "mapping_page_window", window, repeat)
    wide = [
        SOURCES,
        f"modifiedon lt {moment(end)}",
        f"modifiedon ge {moment(started - 3 * 365 * 86_400_000_000)}",
    ]
    mapping_pages(p, "mapping_page_wide_window", wide, max(1, repeat // 4))

    def truth() -> tuple[int, int]:
        response = p.client.get(f"/_emulator/links?table=contact&rows=none&lookup={LOOKUP}")
        return response.status_code, int(response.get_json()["summary"]["rows"])

    p.measure("truth", truth)


def run(contacts: int, leads: int, repeat: int, seed: int) -> dict[str, Any]:
    """Seed an emulator, send every kind ``repeat`` times, and answer the figures."""
    result: dict[str, Any] = {
        "contacts": contacts,
        "leads": leads,
        "repeat": repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rss_mb_before_seeding": peak_rss_mb(),
    }
    wall, cpu = time.perf_counter(), time.process_time()
    server = EmulatorServer(seed=SeedParams(contacts=contacts, leads=leads, seed=seed))
    result["seed_wall_s"] = time.perf_counter() - wall
    result["seed_cpu_s"] = time.process_time() - cpu
    result["rss_mb_after_seeding"] = peak_rss_mb()
    try:
        profiler = Profiler(server)
        org = server.org
        tables = ("contact", "lead", "msdynci_customerprofile", "msdynci_alternatekey")
        result["seeded"] = {t: org.store.count(org.entity(t)) for t in tables}
        send_all(profiler, repeat, seed)
        result["kinds"] = [k.summary() for k in profiler.kinds.values()]
        result["rss_mb_after_requests"] = profiler.rss_mb_after_requests
        result["rss_mb_peak"] = peak_rss_mb()
    finally:
        server.stop()
    return result


def report(result: dict[str, Any]) -> str:
    """The figures as Markdown."""
    lines = [
        f"{result['contacts']:,} contacts, {result['leads']:,} leads; {result['machine']}",
        f"seeded {result['seeded']} in {result['seed_wall_s']:.1f} s ({result['seed_cpu_s']:.1f} s CPU)",
        f"peak RSS: {result['rss_mb_before_seeding']:.0f} MB before seeding, "
        f"{result['rss_mb_after_seeding']:.0f} MB after, {result['rss_mb_after_requests']:.0f} MB after the "
        f"requests, {result['rss_mb_peak']:.0f} MB after the control calls",
        "",
        "| kind | requests | CPU ms per request: mean, median, max | rows per request | CPU µs per row "
        "| status |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for k in result["kinds"]:
        per_row = f"{k['cpu_us_per_row']:.0f}" if k["cpu_us_per_row"] is not None else "–"
        lines.append(
            f"| {k['kind']} | {k['requests']} | {k['cpu_ms_mean']:.1f}, {k['cpu_ms_median']:.1f}, "
            f"{k['cpu_ms_max']:.1f} | {k['rows_per_request']:.0f} | {per_row} | "
            f"{', '.join(map(str, k['statuses']))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print the figures (and write them as JSON)."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.emulator_profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--contacts", type=int, required=True, help="contacts to seed")
    parser.add_argument("--leads", type=int, help="leads to seed (default: a fifth of the contacts)")
    parser.add_argument("--repeat", type=int, default=20, help="requests of each kind (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.contacts < 1000 or args.repeat < 1:
        parser.error("--contacts must be at least 1000 and --repeat at least 1")
    leads = args.contacts // 5 if args.leads is None else args.leads
    result = run(args.contacts, leads, args.repeat, args.seed)
    result["measured_at"] = datetime.now(tz=UTC).isoformat(timespec="seconds")
    print(report(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
