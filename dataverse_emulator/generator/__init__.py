"""Deterministic data shaped like Customer Insights - Data's unification output, and re-unification.

``seed_organization`` fills contacts, leads, profiles and mapping rows from a seed: several source rows
merged into one profile, source rows with no mapping, mapping rows whose source row was deleted, two
Dataverse data sources feeding ``contact`` (some naming different profiles: conflicts), a source that is
not Dataverse, a few keys in upper case and a few that are not GUIDs; on request (``orphans``), a chosen
share of a table's mapped rows deleted after unification. ``reunify`` changes a fraction of
the mapping as a new unification would: moves, new mapped rows, deleted mapping rows, and profiles
merged away and deleted, each with a new ``modifiedon``.
"""

from .orphans import ORPHAN_TABLES, orphan, orphan_shares
from .ranked import _Ranked
from .reunification import CHANGES, publish_deferred, reunify
from .rows import SOURCES, DataSource
from .scene import seed_organization, sync_message_filters

__all__ = [
    "CHANGES",
    "ORPHAN_TABLES",
    "SOURCES",
    "DataSource",
    "_Ranked",
    "orphan",
    "orphan_shares",
    "publish_deferred",
    "reunify",
    "seed_organization",
    "sync_message_filters",
]
