"""The reconcile's reads against the emulator: what a page's check costs, and what it finds.

A reconcile page looks its rows' mapping rows up by bare GUID. Rows it would clear are looked up once
more by their keys' other forms (``{guid}``, hyphen-less), so a link is never cleared while a mapping
row the first lookup could not find names its row; a page with no such row sends nothing more.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dataverse_emulator.client import EmulatorClient
from hydration.checkpoints import Checkpoint, Phase
from hydration.decision import LinkColumns, PageKind, Snapshot, decide
from hydration.mapping import MAPPING_KEY, MAPPING_VALUE, Queries, Target
from hydration.readers import PageReads, ReconcileReader
from hydration.writers import WritePool

from .harness import CONTACT_SOURCES, Harness

pytestmark = pytest.mark.integration


@pytest.fixture
def linked(emulator: EmulatorClient) -> Harness:
    """A small scene, hydrated: every mapped contact has its link."""
    emulator.reset(contacts=80, leads=0, seed=5)
    harness = Harness(emulator, None, full_pages=True)
    harness.run()
    return harness


def _reader(harness: Harness) -> tuple[ReconcileReader, LinkColumns]:
    metadata = harness.metadata
    lookup = metadata.ensure_lookup("contact", harness.settings.lookup, allow_create=False)
    target = Target(metadata.table("contact"), lookup, tuple(CONTACT_SOURCES), update_multiple=False)
    reads = PageReads(harness.client, WritePool([harness.client]), Queries(target, 1000, 1000))
    return ReconcileReader(reads, read_ahead=False), LinkColumns(target.link_column)


def _checked(harness: Harness) -> tuple[list[str], Snapshot, dict[str, Any]]:
    """A reconcile page's rows, its snapshot and the requests reading that snapshot made."""
    reader, _ = _reader(harness)
    page = reader.read(Checkpoint("contact", phase=Phase.RECONCILE), None)
    assert page.check is not None
    harness.em.reset_stats()
    snapshot = page.check()
    return page.source_ids, snapshot, harness.em.stats()


def _rewrite_keys(emulator: EmulatorClient, contact: str, value: str) -> None:
    """Every mapping row naming ``contact`` now names it as ``value``, as a source might write it."""
    with emulator.web_api("cid-user") as api:
        rows = api.get(
            f"msdynci_alternatekeys?$select={MAPPING_KEY}&$filter={MAPPING_VALUE} eq '{contact}'"
        ).json()["value"]
        assert rows
        for row in rows:
            answer = api.patch(
                f"msdynci_alternatekeys({row[MAPPING_KEY]})",
                json={MAPPING_VALUE: value},
                headers={"If-Match": "*"},
            )
            assert answer.status_code == 204, answer.text


def test_a_reconcile_page_with_no_stale_candidate_makes_no_extra_request(linked: Harness) -> None:
    ids, snapshot, stats = _checked(linked)
    assert ids
    assert stats["requests"] == {"batch": 1}
    assert snapshot.unparsed == frozenset()
    decision = decide(PageKind.RECONCILE, ids, snapshot, _reader(linked)[1])
    assert decision.clears == ()


def test_a_reconcile_page_reads_its_stale_candidates_other_forms_once_and_clears_only_the_stale(
    linked: Harness,
) -> None:
    ids, _, _ = _checked(linked)
    braced, bare, stale = ids[0], ids[1], ids[2]
    _rewrite_keys(linked.em, braced, "{" + braced.upper() + "}")
    _rewrite_keys(linked.em, bare, bare.replace("-", ""))
    _rewrite_keys(linked.em, stale, str(uuid.UUID(int=7)))  # now names a row that does not exist

    ids, snapshot, stats = _checked(linked)

    assert stats["requests"] == {"batch": 2}  # the page's batch, and one for its three candidates
    assert snapshot.unparsed == frozenset({braced, bare})
    decision = decide(PageKind.RECONCILE, ids, snapshot, _reader(linked)[1])
    assert decision.clears == (stale,)
    assert decision.counters.invalid_keys == 2
