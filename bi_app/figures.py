"""Figures as pure functions: small results in, ``go.Figure`` out. No data access here."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from bi_app.money import DEFAULT_FORMAT, MoneyFormat

#: The height of a chart, in pixels (pages hold this much room for one before it draws).
HEIGHT = 320
PALETTE = ["#2c3e50", "#18bc9c", "#3498db", "#f39c12", "#e74c3c", "#8e44ad", "#16a085", "#7f8c8d"]
_LAYOUT = dict(
    margin=dict(l=10, r=10, t=40, b=10),
    height=HEIGHT,
    # Expanded once: figures are built unvalidated (15x faster), which leaves a template name unresolved.
    template=pio.templates["plotly_white"].to_plotly_json(),
    colorway=PALETTE,
    font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif", size=12),
    legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
    # The template widens the margins for tick labels in every direction. A label overhanging the plot's
    # end then moves the ticks, which moves the margin again: up to ~10 redraws (200 ms for one
    # histogram). Margins grow for the labels' depth only; a label past the figure's edge is hidden.
    xaxis=dict(automargin="height"),
    yaxis=dict(automargin="width"),
)


#: A legend on its own line under the title (beside it, it covers the title on a phone).
LEGEND_UNDER_TITLE: dict[str, Any] = dict(legend=dict(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom"),
                          margin=dict(l=10, r=10, t=80, b=10))


def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters with ``<br>`` (plotly does not wrap)."""
    return "<br>".join(textwrap.wrap(text, width)) or text


def _figure(title: str, subtitle: str = "", traces: Sequence[dict[str, Any]] = (), *,
            xaxis: dict[str, Any] | None = None, yaxis: dict[str, Any] | None = None, **layout: Any) -> go.Figure:
    """A figure of ``traces`` (plain dicts with their ``type``) with our layout, ``xaxis`` and ``yaxis``
    settings added to our axes'. Made in one go without plotly's per-property validation: its
    ``add_*`` and ``update_*`` methods parse and check every property (~3 ms a chart, ~15 ms a page).

    The title sits at the top edge, so a legend or the ``subtitle`` (lines broken with ``<br>``; the
    top margin grows with them) never covers it."""
    heading: dict[str, Any] = {"text": title, "yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 10}}
    if subtitle:
        heading["subtitle"] = {"text": subtitle}
        top = 40 + 16 * (heading["subtitle"]["text"].count("<br>") + 1)
        layout["margin"] = {**layout.get("margin", _LAYOUT["margin"]), "t": top}
    axes = {"xaxis": {**_LAYOUT["xaxis"], **(xaxis or {})}, "yaxis": {**_LAYOUT["yaxis"], **(yaxis or {})}}
    return go.Figure(data=list(traces), layout={**_LAYOUT, "title": heading, **axes, **layout}, _validate=False)


def empty(title: str, message: str = "No orders match these filters") -> go.Figure:
    """A blank figure that says why it is blank."""
    return _figure(title, xaxis={"visible": False}, yaxis={"visible": False}, annotations=[
        dict(text=wrap(message, 36), showarrow=False, font=dict(size=14, color="#7f8c8d"))])


def trend(monthly: pd.DataFrame, money: MoneyFormat = DEFAULT_FORMAT, *,
          last_year: pd.DataFrame | None = None) -> go.Figure:
    """Monthly net revenue bars (a partial month hatched and named so), the 3-month moving average,
    and month-over-month growth on hover; with ``last_year`` (the same months a year earlier, each
    under the month it is drawn beside), a line of those months' revenue in place of the average."""
    if monthly.empty:
        return empty("Monthly net revenue")
    partial = monthly["partial"].astype(bool) if "partial" in monthly else pd.Series(False, index=monthly.index)
    notes = [("partial month: the data or the filters cover only part of it" if part else
              f"vs previous month: {g:+.1%}" if pd.notna(g) else "vs previous month: —")
             for part, g in zip(partial, monthly["growth"], strict=True)]
    traces = [dict(
        type="bar", x=monthly["month"], y=monthly["revenue"], name="Net revenue", customdata=notes,
        marker=dict(pattern=dict(shape=["/" if part else "" for part in partial]),
                    opacity=[0.55 if part else 1.0 for part in partial]),
        hovertemplate=f"%{{x}}<br>{money.hover('y')}<br>%{{customdata}}<extra></extra>",
    )]
    if last_year is not None:
        earlier = monthly[["month"]].merge(last_year[["month", "revenue"]], on="month", how="left")
        traces.append(dict(
            type="scatter", x=earlier["month"], y=earlier["revenue"], name="Same month last year",
            mode="lines+markers", line=dict(dash="dot", color=PALETTE[3]),
            hovertemplate=f"%{{x}} a year earlier<br>{money.hover('y')}<extra></extra>",
        ))
    elif monthly["moving_average_3"].notna().any():
        traces.append(dict(
            type="scatter", x=monthly["month"], y=monthly["moving_average_3"], name="3-month average (whole months)",
            mode="lines", hovertemplate=f"%{{x}}<br>3-month average {money.hover('y')}<extra></extra>",
        ))
    # Months as categories: a time axis of one month's bar would tick hours ("23:59:59.9996"). Their
    # labels, turned when they crowd, may reach past the plot's right end: the margin grows for them
    # (categories keep their places whatever the width: one more draw at most, never a loop).
    return _figure("Monthly net revenue", "", traces, xaxis={"type": "category", "automargin": True},
                   yaxis=money.axis(),
                   separators=money.separators, **LEGEND_UNDER_TITLE)


#: Bars a chart draws, largest first, before the rest go into one "Other" bar: at the chart's
#: height each keeps a label of its own.
TOP_BARS = 12
#: Characters of a bar's label; longer names end in an ellipsis and are whole on hover.
LABEL_CHARS = 24


def shorten(name: str, limit: int = LABEL_CHARS) -> str:
    """``name``, or its first characters and an ellipsis when it is longer than ``limit``."""
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def only_one(title: str, category: str, name: object) -> go.Figure:
    """What a breakdown shows when every order falls in one group: a note, not a single bar or slice."""
    return empty(title, f"All of these orders have one {category.replace('_', ' ')}: "
                        f"{shorten(str(name), 40)}. Nothing to break down.")


def bars(frame: pd.DataFrame, category: str, value: str, title: str, *,
         money: MoneyFormat | None = DEFAULT_FORMAT, additive: bool = True, see_all: str | None = None,
         top: int = TOP_BARS) -> go.Figure:
    """Horizontal bars of ``value`` per ``category``, largest on top (click one to drill down).

    At most ``top`` bars; an ``additive`` measure (revenue, counts) gathers the rest in one
    "Other (k more)" bar, and the subtitle says how many are left out, with a link to ``see_all``
    (the whole table) when given. Labels are shortened to :data:`LABEL_CHARS`, whole on hover.
    ``money`` writes the values in a currency (None: counts).
    """
    if frame.empty:
        return empty(title)
    if len(frame) == 1:
        return only_one(title, category, frame[category].iloc[0])
    ranked = frame.dropna(subset=[value])
    if additive and ranked[category].duplicated().any():  # e.g. a product sold under two categories: one bar
        ranked = ranked.groupby(category, as_index=False, sort=False)[value].sum()
    if ranked.empty:  # e.g. revenue per customer where every order is a guest's
        return empty(title, "No figure to draw for these orders")
    if len(ranked) == 1:
        return only_one(title, category, ranked[category].iloc[0])
    ranked = ranked.sort_values(value, ascending=False, kind="stable")
    shown, rest = ranked.iloc[:top], ranked.iloc[top:]
    names = [str(name) for name in shown[category]]
    values = [float(v) for v in shown[value]]
    keys: list[str | None] = list(names)
    subtitle = ""
    if len(rest):
        if additive:
            names.append(f"Other ({len(rest):,} more)")
            values.append(float(rest[value].sum()))
            keys.append(None)
        link = f' · <a href="{see_all}">all {len(ranked):,} as CSV</a>' if see_all else ""
        subtitle = f"top {len(shown)} of {len(ranked):,}{link}"
    bar: dict[str, Any] = dict(
        type="bar", x=values[::-1], y=names[::-1], orientation="h", customdata=keys[::-1], hovertext=names[::-1],
        hovertemplate=(f"%{{hovertext}}<br>{money.hover('x')}<extra></extra>" if money
                       else "%{hovertext}<br>%{x:,}<extra></extra>"),
    )
    xaxis: dict[str, Any] = money.axis() if money else {"separatethousands": True}
    largest = max(values[: len(shown)])
    annotations = []
    if len(values) > len(shown) and values[-1] > 1.5 * largest > 0:
        # An "Other" bar far longer than the top bars would flatten them: the axis stops past the
        # largest of them and the Other bar, cut there, carries its value at the cut.
        xaxis["range"] = [0, largest * 1.25]
        annotations.append(dict(x=largest * 1.25, y=names[-1], xref="x", yref="y", xanchor="right", showarrow=False,
                                text=(money(values[-1], whole=True) if money else f"{values[-1]:,.0f}") + " ▸",
                                font=dict(color="white"), name="other-value"))
    return _figure(title, subtitle, [bar], xaxis=xaxis,
                   yaxis=dict(type="category", tickmode="array", tickvals=names, ticktext=[shorten(n) for n in names]),
                   annotations=annotations, **({"separators": money.separators} if money else {}))


def share_pie(frame: pd.DataFrame, category: str, value: str, title: str, money: MoneyFormat = DEFAULT_FORMAT
              ) -> go.Figure:
    """A donut of ``value`` shares per ``category`` (click a slice to drill down)."""
    if frame.empty:
        return empty(title)
    if len(frame) == 1:
        return only_one(title, category, frame[category].iloc[0])
    pie = dict(type="pie", labels=frame[category], values=frame[value], hole=0.45, customdata=frame[category],
               hovertemplate=f"%{{label}}<br>{money.hover('value')} (%{{percent}})<extra></extra>", sort=False,
               texttemplate="%{percent:.1%}")  # plotly's own shows 3 digits: 57.8%, 13%, 4.63%
    # The legend at the chart's foot, placed in the container's terms: placed under the plot area, it kept
    # its first place when the page resized the chart, and a second row covered the donut's bottom.
    return _figure(title, "", [pie], legend=dict(orientation="h", yref="container", yanchor="bottom", y=0.02,
                                                  xanchor="center", x=0.5),
                   separators=money.separators)


def histogram(bins: list[dict[str, Any]], stats: dict[str, Any], money: MoneyFormat = DEFAULT_FORMAT) -> go.Figure:
    """Order-value histogram with the median and mean marked; the orders above the 99th percentile,
    when the analysis put them in an overflow bin, drawn as one last bar named so."""
    if not bins:
        return empty("Order values")
    regular = [b for b in bins if not b.get("overflow")]
    over = [b for b in bins if b.get("overflow")]
    width = regular[0]["bin_end"] - regular[0]["bin_start"]
    subtitle = ""
    if over:
        subtitle = wrap(f"last bar: the {int(over[0]['orders']):,} orders over "
                        f"{money(float(over[0]['bin_start']), whole=True)} (the 99th percentile)", 52)
    traces: list[dict[str, Any]] = [dict(
        type="bar", x=[(b["bin_start"] + b["bin_end"]) / 2 for b in regular], y=[b["orders"] for b in regular],
        width=width * 0.95, name="Orders", showlegend=False,
        customdata=[[b["bin_start"], b["bin_end"]] for b in regular],
        hovertemplate=f"{money.hover('customdata[0]', 0)}–{money.hover('customdata[1]', 0)}<br>%{{y:,}} orders"
                      "<extra></extra>",
    )]
    right = float(max(b["bin_end"] for b in regular))
    if over:
        start, end = float(over[0]["bin_start"]), float(over[0]["bin_end"])
        traces.append(dict(type="bar", x=[right + width / 2], y=[over[0]["orders"]], width=width * 0.95,
                           showlegend=False, marker=dict(color=PALETTE[7], pattern=dict(shape="/")),
                           hovertemplate=f"over {money(start, whole=True)} (up to {money(end, whole=True)})"
                                         "<br>%{y:,} orders<extra></extra>"))
        right += width
    # The median and mean as vertical lines named in the legend (labels beside the lines overlap
    # each other, or the plot's edge, in a skewed distribution).
    top = float(max(b["orders"] for b in bins)) * 1.05
    for name, dash, color in (("median", "dash", PALETTE[4]), ("mean", "dot", PALETTE[3])):
        if stats.get(name) is not None and stats[name] <= right:
            traces.append(dict(type="scatter", x=[stats[name], stats[name]], y=[0, top], mode="lines",
                               name=f"{name} {money(stats[name], whole=True)}",
                               line=dict(dash=dash, color=color, width=2), hoverinfo="skip"))
    # The legend (median and mean) goes under the plot: beside the title it covers it in a narrow chart.
    return _figure("Order values", subtitle, traces,
                   xaxis={**money.axis(), "range": [float(min(b["bin_start"] for b in regular)), right]},
                   legend=dict(orientation="h", x=0, xanchor="left", y=-0.12, yanchor="top"),
                   margin=dict(l=10, r=10, t=40, b=40), separators=money.separators)


def cohort_heatmap(cohorts: pd.DataFrame) -> go.Figure:
    """Retention by first-order month (rows) and months since (columns)."""
    if cohorts.empty:
        return empty("Cohort retention")
    matrix = cohorts.pivot(index="cohort", columns="months_since_first", values="retention")
    heatmap = dict(type="heatmap", z=matrix.values, x=matrix.columns, y=matrix.index, colorscale="Teal",
                   hovertemplate="cohort %{y}, month +%{x}: %{z:.1%}<extra></extra>", zmin=0, zmax=0.5)
    return _figure("Cohort retention", "", [heatmap], yaxis={"autorange": "reversed"}, height=420)


def silhouette_by_k(scores: pd.DataFrame, chosen: int) -> go.Figure:
    """Silhouette score for each k tried, the chosen k marked."""
    best = scores[scores["k"] == chosen]
    traces = [
        dict(type="scatter", x=scores["k"], y=scores["silhouette"], mode="lines+markers", name="silhouette",
             hovertemplate="k = %{x}: %{y:.3f}<extra></extra>"),
        dict(type="scatter", x=best["k"], y=best["silhouette"], mode="markers", name=f"chosen k = {chosen}",
             marker=dict(size=14, color=PALETTE[4]), hovertemplate="chosen k = %{x}: %{y:.3f}<extra></extra>"),
    ]
    return _figure("Silhouette by number of clusters", "", traces, xaxis={"dtick": 1, "title": {"text": "k"}},
                   **LEGEND_UNDER_TITLE)


def importance(frame: pd.DataFrame) -> go.Figure:
    """Share of each feature's variance the clusters explain (normalised to 100%)."""
    ordered = frame.sort_values("importance")
    bar = dict(type="bar", x=ordered["importance"], y=ordered["label"], orientation="h",
               hovertemplate="%{y}: %{x:.1%}<extra></extra>")
    return _figure("What separates the clusters", "", [bar], xaxis={"tickformat": ".0%"})


def projection(points: pd.DataFrame) -> go.Figure:
    """Customers on the first two principal components, coloured by cluster."""
    if points.empty:
        return empty("Customers in two dimensions (PCA)")
    traces = [dict(type="scatter", x=group["pc1"], y=group["pc2"], mode="markers", name=str(name),
                   marker=dict(size=5, opacity=0.6), customdata=group["customer_id"],
                   hovertemplate="%{customdata}<extra>" + str(name) + "</extra>")
              for name, group in points.groupby("cluster_name", sort=True)]
    return _figure("Customers in two dimensions (PCA)", "", traces, xaxis={"title": {"text": "PC 1"}},
                   yaxis={"title": {"text": "PC 2"}}, **LEGEND_UNDER_TITLE)


def forecast(result: dict[str, Any], money: MoneyFormat = DEFAULT_FORMAT) -> go.Figure:
    """Revenue history, the forecast and its 80% and 95% intervals."""
    history, ahead = result["history"], result["forecast"]
    traces: list[dict[str, Any]] = []
    for level, colour in ((95, "rgba(52,152,219,0.15)"), (80, "rgba(52,152,219,0.3)")):
        traces += [dict(type="scatter", x=ahead["month"], y=ahead[f"upper_{level}"], mode="lines", line=dict(width=0),
                        showlegend=False, hoverinfo="skip"),
                   dict(type="scatter", x=ahead["month"], y=ahead[f"lower_{level}"], mode="lines", line=dict(width=0),
                        fill="tonexty", fillcolor=colour, name=f"{level}% interval", hoverinfo="skip")]
    traces += [dict(type="scatter", x=history["month"], y=history["revenue"], mode="lines+markers", name="Revenue",
                    hovertemplate=f"%{{x}}: {money.hover('y', 0)}<extra></extra>"),
               dict(type="scatter", x=ahead["month"], y=ahead["revenue"], mode="lines+markers", name="Forecast",
                    line=dict(dash="dash"), hovertemplate=f"%{{x}}: {money.hover('y', 0)} forecast<extra></extra>")]
    return _figure("Revenue forecast", "", traces, yaxis=money.axis(), separators=money.separators,
                   **LEGEND_UNDER_TITLE)


def columns(frame: pd.DataFrame, category: str, value: str, title: str) -> go.Figure:
    """Vertical bars of ``value`` per ``category`` in the frame's order (for ordered bands)."""
    if frame.empty:
        return empty(title)
    return _figure(title, "", [dict(type="bar", x=frame[category], y=frame[value],
                                    hovertemplate="%{x}: %{y:,}<extra></extra>")])
