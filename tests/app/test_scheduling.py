"""The timer's pure parts: sources grouped to keep each query's URL short, configuration fingerprints."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

import pytest

from hydration.dataverse.organization_url import OrganizationUrl
from hydration.mapping import sources_filter
from hydration.scheduling import FILTER_BUDGET, configuration_fingerprint, source_groups
from hydration.settings import Settings

LONG = "Regional source with a long name ".ljust(100, "x")


@pytest.mark.parametrize(
    ("sources", "groups"),
    [
        ([], 0),
        ([("DataverseSales", "contact")], 1),
        ([(f"S{n}", "contact") for n in range(100)], 1),
        ([(f"S{n}", "contact") for n in range(200)], 2),
        ([(f"{LONG[:-3]}{n:03d}", "contact") for n in range(200)], 3),  # 200 long names: 36 KB in one
        ([(f"{LONG[:-3]}{n:03d}", LONG) for n in range(200)], 5),
    ],
)
def test_sources_are_grouped_within_the_budget_in_order(sources: list[tuple[str, str]], groups: int) -> None:
    found = source_groups(sources)
    assert len(found) == groups
    assert [s for group in found for s in group] == sources
    assert all(len(quote(sources_filter(group))) <= FILTER_BUDGET for group in found)


def test_the_configuration_fingerprint_follows_the_organization_and_the_manifest() -> None:
    settings = Settings.from_env(
        {"DATAVERSE_URL": "https://contoso.crm.dynamics.com", "HYDRATION_MANIFEST": '{"version": 1}'}
    )
    same = replace(settings, settle=settings.settle * 2)
    assert configuration_fingerprint(same) == configuration_fingerprint(settings)
    for changed in (
        replace(settings, organization_url=OrganizationUrl.parse("https://fabrikam.crm.dynamics.com")),
        replace(settings, manifest_text='{"version": 1, "tables": []}'),
    ):
        assert configuration_fingerprint(changed) != configuration_fingerprint(settings)
