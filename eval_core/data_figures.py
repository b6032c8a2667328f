"""Plotly figures of a data diagnostics record (`ftlens.data`, as `DataDiagnostics.to_dict()`).

`balance_figure` sets each category's share of the training set beside its share of the held-out
set, so a category the model is tested on but barely trained on stands out; `length_figure` draws
each set's length range per category (min to max as a thin bar, median to p90 as a thick one).
"""

from __future__ import annotations

import plotly.graph_objects as go

from eval_core.figure_text import literal_figure

SET_LABELS = {"train": "training set", "heldout": "held-out set"}
SET_COLOURS = {"train": "#636EFA", "heldout": "#EF553B"}


def _category(name: str | None) -> str:
    return "(none)" if name is None else name


def balance_figure(record: dict, *, train_name: str = "training", heldout_name: str = "held-out") -> go.Figure:
    """Share of rows per category in each set (categories in held-out order, then training-only ones).

    Example:
        >>> balance_figure(diagnose_data(train, heldout).to_dict())  # doctest: +SKIP
    """
    rows = record["balance"]
    cats = [_category(r["category"]) for r in rows]
    fig = go.Figure()
    for key, label, name in (("train", "train_share", train_name), ("heldout", "heldout_share", heldout_name)):
        fig.add_trace(go.Bar(
            x=cats, y=[r[label] for r in rows], name=name, marker={"color": SET_COLOURS[key]},
            customdata=[[r[f"{key}_rows"]] for r in rows],
            hovertemplate="%{x}: %{y:.1%} (%{customdata[0]} rows)<extra>" + SET_LABELS[key] + "</extra>",
        ))
    fig.update_layout(
        barmode="group", title={"text": "Category balance: share of each set's rows"},
        xaxis={"title": {"text": "category"}}, yaxis={"title": {"text": "share of rows"}, "tickformat": ".0%"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.25}, margin={"t": 60},
    )
    return literal_figure(fig)  # category names come from the user's files


def length_figure(record: dict, *, unit: str = "tokens", train_name: str = "training",
                  heldout_name: str = "held-out") -> go.Figure:
    """Length ranges per category and set in `unit` ("tokens" are whitespace words, "chars" characters)."""
    fig = go.Figure()
    for key, name in (("train", train_name), ("heldout", heldout_name)):
        stats = [s for s in record["lengths"] if s["set"] == key and s["unit"] == unit]
        labels = [_category(s["category"]) if s["category"] is not None else "(all)" for s in stats]
        colour = SET_COLOURS[key]
        fig.add_trace(go.Bar(  # min..max, thin
            y=labels, x=[s["max"] - s["min"] for s in stats], base=[s["min"] for s in stats], orientation="h",
            name=f"{name}: min–max", marker={"color": colour, "opacity": 0.3}, width=0.35,
            offsetgroup=key, customdata=[[s["min"], s["max"], s["rows"]] for s in stats],
            hovertemplate="%{y}: %{customdata[0]}–%{customdata[1]} (%{customdata[2]} rows)<extra>" + name + "</extra>",
        ))
        fig.add_trace(go.Scatter(  # median and p90
            y=labels, x=[s["median"] for s in stats], mode="markers", name=f"{name}: median",
            marker={"color": colour, "symbol": "line-ns-open", "size": 14, "line": {"width": 3}},
            customdata=[[s["median"], s["p90"]] for s in stats],
            hovertemplate="%{y}: median %{customdata[0]}, p90 %{customdata[1]}<extra>" + name + "</extra>",
        ))
    fig.update_layout(
        barmode="group", title={"text": f"Lengths in {unit} (bars: min to max; ticks: median)"},
        xaxis={"title": {"text": unit}}, yaxis={"title": {"text": "category"}, "autorange": "reversed"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2}, margin={"t": 60},
        height=max(320, 60 + 36 * len({s["category"] for s in record["lengths"]})),
    )
    return literal_figure(fig)
