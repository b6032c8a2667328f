"""Export: the evaluation report as one file to take to the meeting.

- Choose the sections (summary, curves, metrics, forgetting, ratings, examples) and the format:
  self-contained HTML (charts inlined, opens offline), Markdown, JSON, a zip of CSV tables, or PDF
  (printed by headless Chromium).
- "Build the report" builds it from stored results only (no model runs), with progress, then offers
  the download and a Markdown preview of the same record (untrusted text escaped).
- The same files as `python -m eval_core report`.
"""

from __future__ import annotations

import streamlit as st

from eval_core import EvalCoreError
from eval_core.report_model import SECTIONS
from pages._render import plain, problem_text
from pages._session import page_workspace

FORMATS = {"html": ("HTML (self-contained)", "text/html"), "md": ("Markdown", "text/markdown"),
           "json": ("JSON", "application/json"), "csv": ("CSV tables (zip)", "application/zip"),
           "pdf": ("PDF", "application/pdf")}
EXTENSIONS = {"html": "html", "md": "md", "json": "json", "csv": "zip", "pdf": "pdf"}

root = page_workspace("Export")
c1, c2, c3 = st.columns([3, 2, 1])
sections = c1.multiselect("Sections", list(SECTIONS), default=list(SECTIONS), key="export_sections")
fmt = c2.radio("Format", list(FORMATS), format_func=lambda f: FORMATS[f][0], horizontal=True, key="export_format")
resamples = int(c3.number_input("Resamples", 50, 10_000, 1000, step=50, key="export_resamples",
                                help="bootstrap resamples of the metric intervals and rating rankings"))

if st.button("Build the report", type="primary", key="export_build", disabled=not sections):
    from eval_core.report_html import to_html, to_pdf
    from eval_core.report_model import build_report
    from eval_core.report_render import to_csv_zip, to_json, to_markdown

    with st.status("Building the report from stored results…", expanded=True) as status:
        try:
            st.write("Reading logs, results, forgetting analysis and ratings")
            report = build_report(root, sections, n_resamples=resamples)
            st.write(f"Rendering {FORMATS[fmt][0]}")
            render = {"csv": to_csv_zip, "pdf": to_pdf, "json": lambda r: to_json(r).encode("utf-8"),
                      "md": lambda r: to_markdown(r).encode("utf-8"), "html": lambda r: to_html(r).encode("utf-8")}
            data = render[fmt](report)
        except EvalCoreError as exc:
            status.update(label="The report could not be built", state="error")
            st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
            st.stop()
        status.update(label=f"Report built: {len(data):,} bytes", state="complete", expanded=False)
    st.session_state["export_result"] = (fmt, data, to_markdown(report), report.workspace["name"])

result = st.session_state.get("export_result")
if result is not None:
    built_fmt, data, preview, name = result
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-") or "report"
    st.download_button(f"Download {FORMATS[built_fmt][0]}", data, f"{safe}-report.{EXTENSIONS[built_fmt]}",
                       FORMATS[built_fmt][1], key="export_download", type="primary")
    with st.expander("Preview (Markdown)", expanded=True):
        st.markdown(preview)  # md_text escaped every untrusted text: it shows as written
    st.caption(plain("Built from stored results only; the same file as `python -m eval_core report`."))
