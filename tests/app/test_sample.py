"""The sample rule on its own: wrong keys and other organizations Skipped, deleted rows proceed."""

from __future__ import annotations

import pytest

from hydration.manifest import Entry
from hydration.sample import (
    DEFAULT_MIN_MATCH,
    SampleFigures,
    SampleVerdict,
    judge,
    note,
    percent,
    skip_reason,
)

LEAD = Entry(
    data_source="DataverseSales",
    entity="lead",
    table="lead",
    connector="Dataverse",
    source_organization="https://contoso.crm.dynamics.com",
    primary_key="leadid",
)


@pytest.mark.parametrize(
    ("sampled", "matched", "invalid", "expected"),
    [
        (0, 0, 0, SampleVerdict.NO_ROWS),  # a typo in the source's names: nothing to link
        (200, 200, 0, SampleVerdict.PROCEEDS),
        (200, 172, 0, SampleVerdict.PROCEEDS),  # 14 % deleted: the report that raised the rule
        (200, 120, 0, SampleVerdict.PROCEEDS),  # 40 % deleted
        (200, 20, 0, SampleVerdict.PROCEEDS),  # 90 % deleted: exactly the default share
        (200, 19, 0, SampleVerdict.NO_MATCH),  # just below it
        (200, 0, 0, SampleVerdict.NO_MATCH),  # another organization's GUIDs
        (200, 0, 200, SampleVerdict.NOT_GUIDS),  # a key whose values are not GUIDs
        (200, 10, 150, SampleVerdict.NOT_GUIDS),  # mostly not GUIDs, too few match
        (200, 150, 50, SampleVerdict.PROCEEDS),  # a few odd values: the pass counts them as invalid
        (3, 1, 0, SampleVerdict.PROCEEDS),  # a tiny source: one match of three is a third
        (20, 1, 0, SampleVerdict.NO_MATCH),
    ],
)
def test_the_verdict_follows_the_share_that_names_a_row(
    sampled: int, matched: int, invalid: int, expected: SampleVerdict
) -> None:
    assert judge(SampleFigures(sampled, matched, invalid), DEFAULT_MIN_MATCH) is expected


@pytest.mark.parametrize(
    ("figures", "verdict", "expected"),
    [
        (
            SampleFigures(200, 0, 0),
            SampleVerdict.NO_MATCH,
            [
                "only 0 of 200 sampled mapping rows (0%) name an existing lead row",
                "(200 name no row, 0 are not GUIDs), below HYDRATION_SAMPLE_MIN_MATCH (10%)",
                "another Dataverse organization",
            ],
        ),
        (
            SampleFigures(200, 0, 200),
            SampleVerdict.NOT_GUIDS,
            ["(0 name no row, 200 are not GUIDs)", "HYDRATION_SAMPLE_MIN_MATCH (10%)", "primary key leadid"],
        ),
        (
            SampleFigures(0, 0, 0),
            SampleVerdict.NO_ROWS,
            ["DataverseSales/lead is skipped", "0 rows", "'DataverseSales'", "'lead'", "HYDRATION_MANIFEST"],
        ),
    ],
)
def test_a_skip_reason_names_the_figures_and_the_setting(
    figures: SampleFigures, verdict: SampleVerdict, expected: list[str]
) -> None:
    text = skip_reason(LEAD, "leadid", figures, verdict, DEFAULT_MIN_MATCH)
    for part in expected:
        assert part in text


def test_a_proceeding_sample_with_deleted_rows_says_how_many() -> None:
    text = note(LEAD, SampleFigures(200, 172, 0), DEFAULT_MIN_MATCH)
    assert text is not None
    assert "28 of 200 sampled mapping rows name no lead row" in text
    assert "172 (86%) do, at least HYDRATION_SAMPLE_MIN_MATCH (10%)" in text
    assert note(LEAD, SampleFigures(200, 200, 0), DEFAULT_MIN_MATCH) is None


@pytest.mark.parametrize(("share", "text"), [(0.1, "10%"), (0.86, "86%"), (0.015, "1.5%"), (0.0, "0%")])
def test_shares_read_as_percentages(share: float, text: str) -> None:
    assert percent(share) == text
