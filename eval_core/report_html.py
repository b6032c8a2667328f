"""The report as one self-contained HTML file (charts interactive, no network), and as PDF.

`to_html` writes every text through `html.escape` (prompts, outputs, comments and names are data,
never markup) and inlines plotly.js once in a `<script>` element, so the file opens offline, years
later: no CDN script, no external stylesheet, no font or image URL. Charts are drawn from the
record itself: the training curves (best steps, onsets, the recommended checkpoint and general
retention), each metric by step with intervals, the forgetting frontier and retention by step, and
each campaign's ranking.
`to_pdf` prints that HTML with Debian's Chromium in headless mode (`--print-to-pdf`), after giving
the charts time to draw; no browser is downloaded.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

from eval_core.errors import EvalCoreError
from eval_core.report_model import Report

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "chromium-browser", "google-chrome")
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.text{white-space:pre-wrap;max-width:28em}
.rec{background:#eef8ee;border-left:4px solid #2ca02c;padding:0.6em 1em}.note{color:#666;font-size:0.9em}"""


def _e(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value), quote=True)


def _table(headers: list[str], rows: list[list[object]], text_cols: tuple[int, ...] = ()) -> str:
    if not rows:
        return "<p class='note'>(none)</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{' class=text' if i in text_cols else ''}>{_e(c)}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _curves_figure(d: dict):  # noqa: ANN202
    """The training curves from the record's points, best steps and onsets marked, the recommended
    checkpoint as a line and general retention on the right axis (as the Training curves page)."""
    from dataclasses import fields

    from eval_core.curve_analysis import MetricSummary
    from eval_core.curve_figures import ScoreOverlay, StepMarker, training_curves_figure
    from eval_core.training_logs import CurvePoint, CurveTable

    table = CurveTable(tuple(CurvePoint(p["run"], "report", p["step"], p["epoch"], None, p["metric"], p["value"])
                             for p in d["curve_points"]))
    names = {f.name for f in fields(MetricSummary)}
    summaries = []
    for c in d["curves"]:
        try:
            summaries.append(MetricSummary(**{k: c.get(k) for k in names}))
        except TypeError:
            continue
    runs = table.runs()
    steps = {r: [c["step"] for c in d["workspace"]["checkpoints"] if c["run"] == r and c["step"] is not None] for r in runs}
    overlays, markers = [], []
    f = d.get("forgetting")
    if f:
        for run in runs:
            pts = sorted((c["step"], c["general_retention"]) for c in f["checkpoints"]
                         if c["run"] == run and c["step"] is not None and c["general_retention"] is not None)
            if pts:
                overlays.append(ScoreOverlay("general retention", run, tuple(s for s, _ in pts), tuple(v for _, v in pts),
                                             unit="retention vs base", colour="#2ca02c", percent=True))
        rec = next((c for c in f["checkpoints"] if c["label"] == f["recommendation"]["checkpoint"]), None)
        if rec is not None and rec["run"] in runs and rec["step"] is not None:
            markers.append(StepMarker(rec["run"], rec["step"], f"recommended: {rec['label']}"))
    metrics = sorted({p["metric"] for p in d["curve_points"]})
    return training_curves_figure(table, runs, metrics, summaries=summaries, checkpoint_steps=steps, overlays=overlays,
                                  markers=markers)


def _metric_step_figures(d: dict) -> list[tuple[str, object]]:
    """Per generation set: each metric's whole-set value by training step, with its 95% interval."""
    import plotly.graph_objects as go

    out = []
    by_set: dict[str, dict[str, list[dict]]] = {}
    for m in d["metrics"]:
        if m["category"] is None and m["value"] is not None and m["step"] is not None:
            by_set.setdefault(m["dataset"], {}).setdefault(m["metric"], []).append(m)
    for name, metrics in by_set.items():
        fig = go.Figure()
        for metric, rows in metrics.items():
            rows.sort(key=lambda r: r["step"])
            fig.add_trace(go.Scatter(x=[r["step"] for r in rows], y=[r["value"] for r in rows], mode="lines+markers",
                                     name=metric, error_y={"type": "data", "symmetric": False,
                                                           "array": [r["high"] - r["value"] for r in rows],
                                                           "arrayminus": [r["value"] - r["low"] for r in rows]},
                                     visible=True if metric in ("chrf", "bleu", "rougeL") else "legendonly"))
        fig.update_layout(xaxis_title="training step", yaxis_title="value (95% bootstrap interval)", margin={"t": 30})
        out.append((f"Metrics by step: {name} (click the legend to show others)", fig))
    return out


def _figure_inputs(d: dict) -> dict:
    """The parts of a report dict the charts draw, limited to the chosen sections."""
    return {**{k: d[k] for k in ("forgetting", "ratings", "metrics") if k in d["sections"]},
            "workspace": d["workspace"], "curves": d["curves"],
            "curve_points": d["curve_points"] if "curves" in d["sections"] else []}


def _figures(d: dict) -> list[tuple[str, object]]:
    figs = []
    if d.get("curve_points"):
        figs.append(("Training curves", _curves_figure(d)))
    if d.get("metrics"):
        figs += _metric_step_figures(d)
    if d.get("forgetting"):
        from eval_core.forgetting import BPB, ForgettingReport
        from eval_core.forgetting_figures import frontier_figure, retention_step_figure

        fr = ForgettingReport.from_dict(d["forgetting"])
        kinds = {r.kind for c in fr.checkpoints for r in c.retention}
        if kinds:
            kind = BPB if BPB in kinds else sorted(kinds)[0]
            figs.append((f"Retention by step ({kind}) and domain gain", retention_step_figure(fr, kind)))
        figs.append(("Domain gain vs general retention", frontier_figure(fr)))
    for r in d.get("ratings", []):
        if r["bradley_terry"]["strengths"]:
            from eval_core.rating_figures import ranking_figure

            bt = SimpleNamespace(strengths=[SimpleNamespace(**s) for s in r["bradley_terry"]["strengths"]])
            figs.append((f"Ranking: campaign {r['campaign']}", ranking_figure(bt)))
    return figs


def to_html(report: Report, *, charts: bool = True) -> str:
    """One HTML document holding the whole report (plotly.js inlined when `charts`)."""
    d = report.to_dict()
    ws = d["workspace"]
    parts = [f"<h1>Evaluation report: {_e(ws['name'])}</h1>",
             f"<p class='note'>Fine-Tune Lens {_e(d['app_version'])} · created {_e(d['created_at'])} · bootstrap 95% "
             f"intervals, {d['n_resamples']} resamples, seed {d['seed']}</p>"]
    if "summary" in d["sections"]:
        s = d["summary"]
        parts += ["<h2>Summary</h2>", f"<p class='rec'><b>Recommended checkpoint: {_e(s['recommended_checkpoint'] or 'none')}</b>"
                  f"<br>{_e(s['recommendation_reason'])}</p>", "<h3>Top-rated by people</h3>",
                  _table(["campaign", "checkpoint", "Elo", "judgments"],
                         [[t["campaign"], t["checkpoint"], round(t["elo"]), t["judgments"]] for t in s["top_rated"]]),
                  "<h3>Best checkpoint per metric</h3>",
                  _table(["set · metric", "checkpoint", "value", "95% CI"],
                         [[k, b["checkpoint"], b["value"], f"[{b['low']:.4g}, {b['high']:.4g}]"] for k, b in s["best_by_metric"].items()])]
    if "curves" in d["sections"]:
        parts += ["<h2>Training curves</h2>",
                  _table(["run", "metric", "best step", "best value", "overfitting from step", "early stop at step"],
                         [[c["run"], c["metric"], c["best_step"], c["best_value"], c["overfit_onset_step"], c["early_stop_step"]]
                          for c in d["curves"]])]
    if "metrics" in d["sections"]:
        parts += ["<h2>Metrics</h2>",
                  _table(["set", "checkpoint", "metric", "category", "value", "95% CI", "n", "signature"],
                         [[m["dataset"], m["checkpoint"], m["metric"], m["category"] or "(all)", m["value"],
                           f"[{m['low']:.4g}, {m['high']:.4g}]", m["n"], m["signature"]]
                          for m in d["metrics"] if m["value"] is not None])]
    if "forgetting" in d["sections"] and d["forgetting"]:
        f = d["forgetting"]
        parts += ["<h2>Forgetting</h2>", f"<p class='rec'>Recommended: <b>{_e(f['recommendation']['checkpoint'] or 'none')}</b>: "
                  f"{_e(f['recommendation']['reason'])}</p>",
                  _table(["checkpoint", "step", "general retention", "domain gain", "on frontier"],
                         [[c["label"], c["step"], _pct(c["general_retention"]),
                           "–" if c["domain_gain"] is None else f"{c['domain_gain']:+.1%}", "yes" if c["on_frontier"] else ""]
                          for c in f["checkpoints"]]),
                  "<h3>Flipped items of the last checkpoint (right at base, wrong now)</h3>",
                  _table(["kind", "id", "prompt", "answer", "base answer", "checkpoint answer"],
                         [[x["kind"], x["id"], x["prompt"], x["answer"], x["base_answer"], x["checkpoint_answer"]]
                          for x in (f["checkpoints"][-1]["flips"] if f["checkpoints"] else []) if x["direction"] == "lost"][:20],
                         text_cols=(2, 3, 4, 5))]
    if "ratings" in d["sections"]:
        parts.append("<h2>Human ratings</h2>")
        for r in d["ratings"]:
            pb = r["position_bias"]
            parts += [f"<h3>Campaign {_e(r['campaign'])} ({r['n_judgments']} judgments)</h3>",
                      _table(["rank", "checkpoint", "Elo", "95% CI", "judgments"],
                             [[s["rank"], s["model"], round(s["elo"]), f"[{s['elo_low']:.0f}, {s['elo_high']:.0f}]", s["n"]]
                              for s in r["bradley_terry"]["strengths"]]),
                      f"<p>Fleiss' kappa {_e(r['fleiss_kappa'])}; Krippendorff's alpha {_e(r['krippendorff_alpha'])}; "
                      f"left wins {_pct(pb['share_left'])} [{_pct(pb['low'])}, {_pct(pb['high'])}]"
                      + (" <b>(position bias flagged)</b>" if pb["flagged"] else "") + "</p>"]
    if "examples" in d["sections"]:
        parts += ["<h2>Representative examples</h2>",
                  _table(["set", "checkpoint", "kind", "metric", "value", "prompt", "reference", "output"],
                         [[e["dataset"], e["checkpoint"], e["kind"], e["metric"], e["value"], e["prompt"], e["reference"],
                           e["output"]] for e in d["examples"]], text_cols=(5, 6, 7))]
    if charts:
        figs = _figures(_figure_inputs(d))
        if figs:
            parts.append("<h2>Charts</h2>")
            parts += [f"<h3>{_e(title)}</h3>" + fig.to_html(full_html=False, include_plotlyjs=False,  # type: ignore[attr-defined]
                                                             config={"displaylogo": False})
                      for title, fig in figs]
    parts += ["<h2>Workspace</h2>", _table(["checkpoint", "run", "step", "fingerprint"],
                                           [[c["name"], c["run"], c["step"], c["fingerprint"]] for c in ws["checkpoints"]]),
              _table(["held-out set", "kind", "rows", "fingerprint"],
                     [[x["name"], x["kind"], x["rows"], x["fingerprint"]] for x in ws["datasets"]])]
    if d["notes"]:
        parts += ["<h2>Notes</h2><ul>", *[f"<li>{_e(n)}</li>" for n in d["notes"]], "</ul>"]
    script = ""
    if charts:
        from plotly.offline import get_plotlyjs

        script = f"<script>{get_plotlyjs()}</script>"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' "
            "'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:\">"
            f"<title>{_e('Evaluation report: ' + ws['name'])}</title><style>{_CSS}</style>{script}</head><body>"
            + "\n".join(parts) + "</body></html>\n")


def write_markdown(report: Report, out: Path, *, charts: bool = False) -> list[Path]:
    """Write the Markdown report to `out`; with `charts`, the charts as PNG files in `<stem>_charts/`
    beside it (kaleido with the system Chromium), linked from the report. The files written."""
    from eval_core.report_render import to_markdown

    written: list[Path] = []
    pairs: list[tuple[str, str]] = []
    if charts:
        import os

        figs = _figures(_figure_inputs(report.to_dict()))
        if figs:
            os.environ.setdefault("BROWSER_PATH", find_chromium())
            import kaleido

            folder = out.parent / f"{out.stem}_charts"
            folder.mkdir(parents=True, exist_ok=True)
            paths = [folder / f"chart-{i + 1}.png" for i in range(len(figs))]
            try:
                kaleido.start_sync_server(silence_warnings=True)
                for (_, fig), path in zip(figs, paths, strict=True):
                    fig.write_image(str(path), format="png", width=1100, height=550)  # type: ignore[attr-defined]
            except Exception as exc:  # kaleido/choreographer raise their own types
                raise EvalCoreError(f"could not draw the charts as PNG with Chromium ({type(exc).__name__}: {exc}); "
                                    "write the report without --charts, or as html") from exc
            finally:
                try:
                    kaleido.stop_sync_server(silence_warnings=True)
                except Exception:  # noqa: BLE001 - already stopped
                    pass
            written += paths
            pairs = [(title, f"{folder.name}/{p.name}") for (title, _), p in zip(figs, paths, strict=True)]
    out.write_text(to_markdown(report, pairs), encoding="utf-8")
    return [out, *written]


def find_chromium() -> str:
    """The Chromium executable (Debian's /usr/bin/chromium first)."""
    for c in CHROMIUM_CANDIDATES:
        path = c if c.startswith("/") and Path(c).exists() else shutil.which(c)
        if path:
            return path
    raise EvalCoreError("PDF needs Chromium: install Debian's `chromium` package (apt install chromium); "
                        "or write --format html and print it from a browser")


def to_pdf(report: Report, timeout: float = 120) -> bytes:
    """The HTML report printed to PDF by headless Chromium (charts drawn before printing)."""
    chromium = find_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        page, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(to_html(report), encoding="utf-8")
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp}/profile", "--no-pdf-header-footer",
               "--virtual-time-budget=15000", f"--print-to-pdf={pdf}", page.as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise EvalCoreError(f"Chromium did not print the report within {timeout:.0f} s") from exc
        if not pdf.is_file() or pdf.stat().st_size == 0:
            raise EvalCoreError(f"Chromium could not print the report (exit {done.returncode}): "
                                f"{done.stderr.decode(errors='replace')[-300:]}")
        return pdf.read_bytes()
