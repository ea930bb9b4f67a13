"""A viewer's scope (the regions they may see) is part of the filters: parsed once, in every key,
refused outside it without naming the regions beyond it. (Figures under a scope are checked
against pandas with every analysis in tests/test_analytics.py.)"""

from __future__ import annotations

import pytest

from data_layer.filters import Filters, FilterError, OutOfScopeError, parse_filters

KNOWN = {"region": ["East", "North", "South", "West"], "segment": ["Bulk"], "category": [], "product": []}


def test_the_scope_goes_into_the_filters_and_their_key() -> None:
    scoped = parse_filters({"segment": ["Bulk"]}, known_values=KNOWN, scope=["North", "East"])
    assert scoped == Filters(segments=("Bulk",), scope=("East", "North"))
    unscoped = parse_filters({"segment": ["Bulk"]}, known_values=KNOWN)
    assert unscoped.scope == () and scoped.cache_key() != unscoped.cache_key()
    assert "scope" not in dict(scoped.to_query())  # never a URL parameter


def test_a_region_outside_the_scope_is_forbidden_without_naming_the_others() -> None:
    with pytest.raises(OutOfScopeError) as refused:
        parse_filters({"region": ["North", "South"]}, known_values=KNOWN, scope=["North"])
    assert refused.value.status == 403 and refused.value.parameter == "region"
    assert "'South' is not among the regions you may see" in refused.value.message
    assert "East" not in refused.value.message and "West" not in refused.value.message


def test_an_unknown_region_lists_only_the_regions_in_scope() -> None:
    with pytest.raises(FilterError) as unknown:
        parse_filters({"region": ["Atlantis"]}, known_values=KNOWN, scope=["North", "Atlantis"])
    assert unknown.value.status == 400
    assert unknown.value.message == "unknown region 'Atlantis'; known: 'North'"


def test_filter_options_list_only_the_regions_in_scope(app) -> None:  # noqa: ANN001 - the demo app
    from bi_app import service

    with app.server.test_request_context():
        everything = service.known_values()
        scoped = service.known_values(["North", "Nowhere"])
    assert set(everything["region"]) >= {"North", "East"} and scoped["region"] == ["North"]
    assert scoped["product"] == everything["product"]


def test_a_page_drops_only_the_unknown_or_forbidden_values_of_a_list_filter(app) -> None:  # noqa: ANN001
    """``region=Atlantis&region=West`` on a page keeps West (and says Atlantis was not used); a scoped viewer's
    region outside the scope is dropped alone the same way; a list left with no good value is dropped."""
    from bi_app import service

    with app.server.test_request_context():
        known = service.known_values()
        filters, notices = service.parse_leniently({"region": ["Atlantis", "West"], "segment": [known["segment"][0]],
                                                    "product": ["Nothing", "Nowhere"]})
        scoped, scoped_notices = service.parse_leniently({"region": ["North", "South"]}, scope=["North"])
    assert filters.regions == ("West",) and filters.segments == (known["segment"][0],) and filters.products == ()
    assert len(notices) == 2 and notices[0].startswith("region: unknown region 'Atlantis'")
    assert notices[1].startswith("product: unknown product 'Nothing'")
    assert scoped.regions == ("North",) and scoped.scope == ("North",)
    assert scoped_notices == ["region: 'South' is not among the regions you may see"]
