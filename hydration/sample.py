"""The sample rule: does a source's mapping name rows of its Dataverse table? A pure decision.

Before a table is enqueued, each of its sources' newest mapping rows (``HYDRATION_SAMPLE_SIZE``) is
looked up in the table. The sample exists to catch two mistakes the manifest cannot show: the key
used in unification is not the table's primary key, or the data came from another organization.
Ordinary deletions must not stop a table. The figures tell them apart:

- A wrong key or another organization's data names rows that are not there. A value that is not a
  GUID cannot be a Dataverse primary key at all, and two random GUIDs (122 random bits) coincide with
  a chance of about 2**-122, so the share that matches is 0, not merely low. (A sandbox copied from
  the other organization shares its GUIDs; no sample can tell that apart.)
- A deleted source row leaves its mapping row behind until the next unification removes it, so a
  sample of recent rows holds the rows deleted since: 14 % of leads in the report that raised this,
  far more after a clean-up. Those are GUIDs that name no row, and the rest match.

So the default ``DEFAULT_MIN_MATCH`` is 10 %: at a sample of 200, at least 20 rows must name a row,
which no wrong key or foreign organization reaches by chance, while a table whose sampled rows were up
to 90 % deleted proceeds. Sampling noise is small beside that margin: a table whose recent rows are
80 % deleted (20 % live) draws fewer than 20 live rows of 200 with a chance of 1 in 20,000 (binomial).
Proceeding costs nothing for the deleted rows: each pass counts them "without a source row" and
writes nothing for them. The setting is validated within ``MIN_MATCH_RANGE``: 0 would let a sample
that matches nothing proceed (turn the sample off with a size of 0 instead), and above one half a
table would stop when half its recent rows were deleted, which a clean-up does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .manifest import Entry  # annotations only: settings import this module's bounds

DEFAULT_MIN_MATCH = 0.1
"""The default of ``HYDRATION_SAMPLE_MIN_MATCH`` (the module's docstring says why)."""
MIN_MATCH_RANGE = (0.01, 0.5)
"""The values ``HYDRATION_SAMPLE_MIN_MATCH`` accepts."""
SETTING = "HYDRATION_SAMPLE_MIN_MATCH"


class SampleVerdict(StrEnum):
    """What the sample says about one source."""

    PROCEEDS = "proceeds"
    """Enough rows match; those that do not are counted by the pass."""
    NO_ROWS = "no mapping rows"
    """The mapping has no row for the source: a typo in its names, or not unified yet."""
    NOT_GUIDS = "values are not GUIDs"
    """Too few match, and most of those that do not are not GUIDs: the key is not the primary key."""
    NO_MATCH = "too few match"
    """Too few match, and most of those that do not are GUIDs naming no row: another organization's
    data, or a key whose values are GUIDs of other rows."""


@dataclass(frozen=True)
class SampleFigures:
    """What the sample of one source found."""

    sampled: int
    """Mapping rows read."""
    matched: int
    """Of those, the rows whose value names an existing row of the table."""
    invalid: int
    """Of those, the rows whose value is not a GUID."""

    @property
    def orphans(self) -> int:
        """GUID-shaped values that name no row: mostly rows deleted since the last unification."""
        return self.sampled - self.matched - self.invalid

    @property
    def share(self) -> float:
        """The share of sampled rows that name an existing row."""
        return self.matched / self.sampled if self.sampled else 0.0


def judge(figures: SampleFigures, min_match: float) -> SampleVerdict:
    """The verdict on one source's sample, given the share that must match."""
    if figures.sampled == 0:
        return SampleVerdict.NO_ROWS
    if figures.share >= min_match:
        return SampleVerdict.PROCEEDS
    return SampleVerdict.NOT_GUIDS if figures.invalid > figures.orphans else SampleVerdict.NO_MATCH


def percent(share: float) -> str:
    """A share as people read it: ``86%``, ``1.5%``."""
    return f"{share * 100:.3g}%"


def skip_reason(
    entry: Entry, primary_id: str, figures: SampleFigures, verdict: SampleVerdict, min_match: float
) -> str:
    """Why a source is Skipped: the figures, the setting that decided, and what to check."""
    name = f"{entry.data_source}/{entry.entity}"
    if verdict is SampleVerdict.NO_ROWS:
        return (
            f"{name} is skipped because the mapping table (msdynci_alternatekey) has no rows for it: 0 rows "
            f"with msdynci_datasourcename {entry.data_source!r} and msdynci_entityname {entry.entity!r}. "
            "Check both names in HYDRATION_MANIFEST against `python -m hydration discover`, or wait "
            "until Customer Insights has unified it."
        )
    figures_text = (
        f"only {figures.matched} of {figures.sampled} sampled mapping rows ({percent(figures.share)}) "
        f"name an existing {entry.table} row ({figures.orphans} name no row, {figures.invalid} are not "
        f"GUIDs), below {SETTING} ({percent(min_match)})"
    )
    if verdict is SampleVerdict.NOT_GUIDS:
        cause = (
            f"values that are not GUIDs cannot be the table's primary key {primary_id}: the primary key "
            "used in unification may not be the table's primary key."
        )
    else:
        cause = (
            "the data was ingested from another Dataverse organization, or the primary key used in "
            "unification may not be the table's primary key."
        )
    return f"{name} is skipped because {figures_text}: {cause}"


def note(entry: Entry, figures: SampleFigures, min_match: float) -> str | None:
    """What a proceeding source's sample found, when not every row matched (None when all did)."""
    if figures.matched == figures.sampled:
        return None
    invalid = f" and {figures.invalid} are not GUIDs" if figures.invalid else ""
    return (
        f"{entry.data_source}/{entry.entity}: {figures.orphans} of {figures.sampled} sampled mapping rows "
        f"name no {entry.table} row (deleted rows; each pass counts them as without a source row)"
        f"{invalid}; it proceeds because {figures.matched} ({percent(figures.share)}) do, at least "
        f"{SETTING} ({percent(min_match)})."
    )
