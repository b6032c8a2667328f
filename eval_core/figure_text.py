"""Text in Plotly figures shown literally.

Plotly draws a subset of HTML in every label it renders (`<b>`, `<i>`, `<br>`, `<span style>`,
`<a href>`): a run, checkpoint, rater or category named `<a href="https://x">y</a>` would become a
link in the chart. Every figure builder of eval_core passes its figure through `literal_figure`,
which turns `&`, `<` and `>` into entities (Plotly shows entities as the characters) in everything a
name can reach: trace names, categorical x/y values, point texts, custom data, titles, axis titles,
tick texts and annotations. Hover templates are ours and keep their markup.
"""

from __future__ import annotations

from typing import Any

_TRACE_FIELDS = ("name", "text", "hovertext", "x", "y", "customdata", "labels")


def chart_text(text: object) -> str:
    """`text` as Plotly shows it literally.

    Example:
        >>> chart_text('<a href="x">y</a> & z')
        '&lt;a href="x"&gt;y&lt;/a&gt; &amp; z'
    """
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _literal(value: Any) -> Any:
    if isinstance(value, str):
        return chart_text(value)
    if isinstance(value, tuple | list):
        return type(value)(_literal(v) for v in value)
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in ("O", "U"):  # numpy arrays of strings
        return [_literal(v) for v in value.tolist()]
    return value


def literal_figure(fig: Any) -> Any:
    """`fig` (a plotly Figure) with every name-bearing string escaped; returns the same figure."""
    for trace in fig.data:
        for field in _TRACE_FIELDS:
            if field in trace and trace[field] is not None:
                trace[field] = _literal(trace[field])
    layout = fig.layout
    if layout.title and layout.title.text:
        layout.title.text = chart_text(layout.title.text)
    for axis in [layout[k] for k in layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]:
        if axis.title and axis.title.text:
            axis.title.text = chart_text(axis.title.text)
        if axis.ticktext is not None:
            axis.ticktext = _literal(axis.ticktext)
    for note in layout.annotations or ():
        if note.text:
            note.text = chart_text(note.text)
    return fig
