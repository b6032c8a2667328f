"""Render untrusted text (file names, dataset values, error messages) as plain text.

Streamlit's st.error/st.info/st.caption interpret Markdown: a crafted file name could turn into a
link or a remote image. Every such string goes through `plain` first.
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+!|<>~$])")


def plain(text: object) -> str:
    """Escape Markdown (and LaTeX `$`) so `text` shows exactly as written."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", str(text)).replace("\n", "  \n")


def problem_text(message: str, path: str | None, line: int | None, field: str | None) -> str:
    """'file:line, field x: message', escaped."""
    where = ":".join(str(x) for x in (path, line) if x is not None)
    if field:
        where = f"{where}, field '{field}'" if where else f"field '{field}'"
    return plain(f"{where}: {message}" if where else message)
