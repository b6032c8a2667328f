"""Plotly figures of a rating summary: the Bradley–Terry ranking with intervals, the win-rate matrix.

`ranking_figure` draws each checkpoint's Elo-scale strength (1000 + 400·θ/ln 10) with its bootstrap
95% interval as error bars, best at the top. `win_matrix_figure` is a heatmap of the share of
judgments the row checkpoint won against the column checkpoint (ties as half), with the counts.
"""

from __future__ import annotations

import plotly.graph_objects as go

from eval_core.figure_text import literal_figure


def ranking_figure(bt, title: str = "Bradley–Terry ranking (Elo scale, 95% bootstrap intervals)") -> go.Figure:  # noqa: ANN001
    """Horizontal points with error bars, one row per checkpoint, best first."""
    rows = list(reversed(bt.strengths))  # plotly draws the first category at the bottom
    fig = go.Figure(go.Scatter(
        x=[s.elo for s in rows], y=[s.model for s in rows], mode="markers",
        marker={"size": 12, "color": "#1f77b4"},
        error_x={"type": "data", "symmetric": False, "array": [s.elo_high - s.elo for s in rows],
                 "arrayminus": [s.elo - s.elo_low for s in rows]},
        customdata=[[s.rank, s.elo_low, s.elo_high, s.n] for s in rows],
        hovertemplate="%{y}: %{x:.0f} [%{customdata[1]:.0f}, %{customdata[2]:.0f}]<br>rank %{customdata[0]}, "
                      "%{customdata[3]} judgments<extra></extra>"))
    fig.update_layout(title={"text": title}, xaxis_title="strength (Elo scale)", yaxis={"type": "category"},
                      height=max(260, 70 * len(rows) + 120), margin={"t": 50})
    return literal_figure(fig)  # names from files are shown as written, never as markup


def win_matrix_figure(summary) -> go.Figure:  # noqa: ANN001
    """Row checkpoint's share of wins against the column checkpoint (ties as half)."""
    models = [s.model for s in summary.bradley_terry.strengths] or list(summary.models)
    cells = {(r["model"], r["opponent"]): (r["rate"], r["n"]) for r in summary.win_matrix}
    z, text = [], []
    for a in models:
        z.append([cells.get((a, b), (None, 0))[0] if a != b else None for b in models])
        text.append(["" if a == b or cells.get((a, b), (None, 0))[0] is None else
                     f"{cells[(a, b)][0]:.0%} (n={cells[(a, b)][1]})" for b in models])
    fig = go.Figure(go.Heatmap(z=z, x=models, y=models, text=text, texttemplate="%{text}", zmin=0, zmax=1,
                               colorscale="RdBu", colorbar={"title": {"text": "win share"}, "tickformat": ".0%"},
                               hovertemplate="%{y} vs %{x}: %{z:.1%}<extra></extra>"))
    fig.update_layout(title={"text": "Win rate of row vs column (ties count half)"}, xaxis_title="opponent",
                      yaxis={"title": "checkpoint", "autorange": "reversed"}, margin={"t": 50})
    return literal_figure(fig)  # names from files are shown as written, never as markup
