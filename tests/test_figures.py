"""Charts readable at any cardinality: top bars and one "Other", labels shortened but whole on hover,
an overflow bin for a few huge orders, a note instead of a one-group breakdown, month axes without hours."""

from __future__ import annotations

import pandas as pd
import pytest

from bi_app import figures


@pytest.fixture
def products() -> pd.DataFrame:
    names = [f"Hand-painted ceramic teapot with bamboo handle, model {i:04d}" for i in range(1500)]
    return pd.DataFrame({"product": names, "revenue": [float((i * 7919) % 10007) for i in range(1500)]})


def test_many_products_are_the_top_bars_and_one_other_bar_with_the_rest(products: pd.DataFrame) -> None:
    figure = figures.bars(products, "product", "revenue", "Revenue by product", see_all="/export/products.csv")
    bar = figure.data[0]
    ranked = products.sort_values("revenue", ascending=False)
    top = ranked.head(figures.TOP_BARS)
    # Largest on top: plotly draws the first y at the bottom.
    assert list(bar.y[::-1]) == [*top["product"], "Other (1,488 more)"]
    assert list(bar.x[::-1]) == pytest.approx([*top["revenue"], ranked["revenue"].iloc[figures.TOP_BARS:].sum()])
    assert list(bar.customdata[::-1]) == [*top["product"], None]  # "Other" drills nowhere
    axis = figure.layout.yaxis
    assert list(axis.tickvals) == [*top["product"], "Other (1,488 more)"]  # a label for every drawn bar
    assert all(len(label) <= figures.LABEL_CHARS for label in axis.ticktext)
    assert all(label.endswith("…") for label in axis.ticktext[:-1])
    assert list(bar.hovertext[::-1]) == [*top["product"], "Other (1,488 more)"]  # whole names on hover
    assert "%{hovertext}" in bar.hovertemplate
    # "Other" holds far more than any top bar: the axis stops past the largest, Other carries its value.
    other = ranked["revenue"].iloc[figures.TOP_BARS:].sum()
    assert list(figure.layout.xaxis.range) == pytest.approx([0, top["revenue"].iloc[0] * 1.25])
    [value] = figure.layout.annotations
    assert (value.text, value.y, value.x) == (f"${other:,.0f} ▸", "Other (1,488 more)", figure.layout.xaxis.range[1])
    assert "top 12 of 1,500" in figure.layout.title.subtitle.text
    assert 'href="/export/products.csv"' in figure.layout.title.subtitle.text


def test_a_measure_that_does_not_add_up_gets_no_other_bar(products: pd.DataFrame) -> None:
    figure = figures.bars(products, "product", "revenue", "Revenue per customer", additive=False)
    assert len(figure.data[0].y) == figures.TOP_BARS
    assert "top 12 of 1,500" in figure.layout.title.subtitle.text


def test_few_bars_are_all_drawn_with_their_names_whole() -> None:
    frame = pd.DataFrame({"region": ["North", "South", "East"], "revenue": [3.0, 1.0, 2.0]})
    figure = figures.bars(frame, "region", "revenue", "Revenue by region")
    assert list(figure.data[0].y) == ["South", "East", "North"]
    assert list(figure.layout.yaxis.ticktext) == ["North", "East", "South"]
    assert figure.layout.title.subtitle.text is None


@pytest.mark.parametrize("draw", [
    lambda f: figures.bars(f, "segment", "revenue", "Revenue by segment"),
    lambda f: figures.share_pie(f, "segment", "revenue", "Revenue by segment"),
])
def test_a_breakdown_with_one_group_is_a_note(draw) -> None:  # noqa: ANN001
    figure = draw(pd.DataFrame({"segment": ["Unknown"], "revenue": [100.0]}))
    assert len(figure.data) == 0
    assert "one segment: Unknown" in figure.layout.annotations[0].text.replace("<br>", " ")


def test_the_overflow_bin_is_its_own_bar_and_named_in_the_subtitle() -> None:
    bins = [{"bin_start": 10.0 * i, "bin_end": 10.0 * (i + 1), "orders": 5, "overflow": False} for i in range(20)]
    bins.append({"bin_start": 200.0, "bin_end": 50_000.0, "orders": 3, "overflow": True})
    figure = figures.histogram(bins, {"median": 95.0, "mean": 700.0})
    regular, overflow = figure.data[0], figure.data[1]
    assert list(regular.y) == [5] * 20 and list(overflow.y) == [3]
    assert overflow.x[0] > 200.0 and list(figure.layout.xaxis.range) == [0.0, 210.0]
    assert "the 3 orders over $200" in figure.layout.title.subtitle.text.replace("<br>", " ")
    names = [trace.name for trace in figure.data if trace.name]
    assert "median $95" in names and not any(name.startswith("mean") for name in names)  # the mean is off the axis


def test_one_month_trend_has_a_month_axis_not_hours() -> None:
    monthly = pd.DataFrame({"month": ["2024-03"], "revenue": [10.0], "orders": [1], "partial": [False],
                            "growth": [None], "moving_average_3": [None]})
    assert figures.trend(monthly).layout.xaxis.type == "category"


def test_a_product_sold_under_two_categories_is_one_bar() -> None:
    frame = pd.DataFrame({"product": ["Mug", "Mug", "Cup", "Jug"], "category": ["Kitchen", "Gifts", "Kitchen", "Gifts"],
                          "revenue": [30.0, 40.0, 50.0, 10.0]})
    bar = figures.bars(frame, "product", "revenue", "Revenue by product").data[0]
    assert list(bar.y[::-1]) == ["Mug", "Cup", "Jug"] and list(bar.x[::-1]) == [70.0, 50.0, 10.0]


def test_a_measure_undefined_everywhere_is_a_note() -> None:
    """Revenue per customer where every order is a guest's: no value to draw, no error."""
    frame = pd.DataFrame({"region": ["North", "South"], "revenue_per_customer": [float("nan"), float("nan")]})
    figure = figures.bars(frame, "region", "revenue_per_customer", "Revenue per customer", additive=False)
    assert len(figure.data) == 0 and "No figure" in figure.layout.annotations[0].text
