"""Render untrusted text (file names, dataset values, error messages) as plain text.

Streamlit interprets Markdown (with its own directives: `:red[…]` colours, `$…$` LaTeX, emoji
shortcodes) in st.markdown/st.caption/st.title and alerts, and also in widget labels, radio
options, metric labels, progress texts and every st.table cell. A crafted file, run, rater or
category name could turn into a link, a remote image or styled text there. Every such string goes
through `plain` first (`plain_frame` for st.table). Never pass untrusted text with
`unsafe_allow_html=True`: a test forbids any non-literal argument there.
"""

from __future__ import annotations

import re

import pandas as pd

from eval_core.figure_text import chart_text  # noqa: F401 - pages drawing their own charts use it

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+!|<>~$&])")
# Block markers only count at the start of a line: a list item ("- x", "1. x") or a setext heading
# underline ("===", "---") would otherwise restructure the text.
_LINE_START_MARKERS = re.compile(r"(?m)^([ \t]*)(-|=|\d+(?=[.)]))")


def plain(text: object) -> str:
    """Escape Markdown (HTML, links, images, LaTeX `$`, Streamlit's `:colour[…]`) so `text` shows
    exactly as written; line breaks stay line breaks.

    Example:
        >>> plain(":red[x] **b** $$y$$")
        ':red\\\\[x\\\\] \\\\*\\\\*b\\\\*\\\\* \\\\$\\\\$y\\\\$\\\\$'
    """
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))
    escaped = _LINE_START_MARKERS.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(2) in "-=" else
                                      f"{m.group(1)}{m.group(2)}\\", escaped)
    return escaped.replace("\n", "  \n")


def plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` for st.table, whose cells, index and headers are Markdown: every text escaped."""
    def esc(v: object) -> object:
        return plain(v) if isinstance(v, str) else v

    out = frame.map(esc)
    out.index = out.index.map(esc)
    out.columns = out.columns.map(esc)
    out.index.name = esc(frame.index.name)
    return out


def problem_text(message: str, path: str | None, line: int | None, field: str | None) -> str:
    """'file:line, field x: message', escaped."""
    where = ":".join(str(x) for x in (path, line) if x is not None)
    if field:
        where = f"{where}, field '{field}'" if where else f"field '{field}'"
    return plain(f"{where}: {message}" if where else message)
