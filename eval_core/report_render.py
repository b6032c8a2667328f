"""Render an `ftlens.report` record as JSON, Markdown or a zip of CSV tables.

Every untrusted text (prompts, references, model outputs, comments, names from files) is escaped:
in Markdown, characters that would start markup or HTML (`<`, `>`, `&`, `|`, `` ` ``, `*`, `_`, `[`,
`]`, `#`, `!`, `~`, `$`, backslash) are escaped and line breaks become spaces in table cells, so a
payload such as ``<script>`` shows as text in any Markdown viewer; in CSV, cells starting with
= + - @ (or tab / carriage return) are defused for spreadsheets (eval_core.records.defuse).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

from eval_core.records import defuse
from eval_core.report_model import Report

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#!|<>~&$])")


def md_text(value: object) -> str:
    """A table-safe, markup-free Markdown rendering of untrusted text.

    Example:
        >>> md_text("<b>x</b> | *y*")
        '\\\\<b\\\\>x\\\\</b\\\\> \\\\| \\\\*y\\\\*'
    """
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = " ".join(str(value).split())  # a table cell is one line
    return _MD_SPECIAL.sub(r"\\\1", text)


def _table(headers: list[str], rows: list[list[object]]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    out = ["| " + " | ".join(md_text(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def to_markdown(report: Report, charts: list[tuple[str, str]] | None = None) -> str:
    """The report as Markdown (tables; no HTML). `charts`: (title, relative PNG path) pairs to show
    as images (eval_core.report_html.write_markdown writes them)."""
    d = report.to_dict()
    ws = d["workspace"]
    lines = [f"# Evaluation report: {md_text(ws['name'])}", "",
             f"Fine-Tune Lens {md_text(d['app_version'])} · created {md_text(d['created_at'])} · bootstrap 95% "
             f"intervals, {d['n_resamples']} resamples, seed {d['seed']}", ""]
    if "summary" in d["sections"]:
        s = d["summary"]
        lines += ["## Summary", "", f"**Recommended checkpoint:** {md_text(s['recommended_checkpoint'] or 'none')}. "
                  f"{md_text(s['recommendation_reason'])}", ""]
        lines += ["### Top-rated by people", ""]
        lines += _table(["campaign", "top-rated checkpoint", "Elo", "judgments"],
                        [[t["campaign"], t["checkpoint"], round(t["elo"]), t["judgments"]] for t in s["top_rated"]])
        lines += ["### Best checkpoint per metric", ""]
        lines += _table(["set · metric", "best checkpoint", "value", "95% CI"],
                        [[k, b["checkpoint"], b["value"], f"[{b['low']:.4g}, {b['high']:.4g}]"] for k, b in s["best_by_metric"].items()])
    if "curves" in d["sections"]:
        lines += ["## Training curves", ""]
        lines += _table(["run", "metric", "best step", "best value", "overfitting from step", "early stop at step"],
                        [[c["run"], c["metric"], c["best_step"], c["best_value"], c["overfit_onset_step"], c["early_stop_step"]]
                         for c in d["curves"]])
    if "metrics" in d["sections"]:
        lines += ["## Metrics (whole sets)", ""]
        lines += _table(["set", "checkpoint", "metric", "value", "95% CI", "n", "signature"],
                        [[m["dataset"], m["checkpoint"], m["metric"], m["value"], f"[{m['low']:.4g}, {m['high']:.4g}]", m["n"],
                          m["signature"]] for m in d["metrics"] if m["category"] is None and m["value"] is not None])
    if "forgetting" in d["sections"]:
        lines += ["## Forgetting", ""]
        f = d["forgetting"]
        if f is None:
            lines += ["(no forgetting analysis: evaluate the base model and checkpoints on the probe suites)", ""]
        else:
            lines += [f"Recommended: **{md_text(f['recommendation']['checkpoint'] or 'none')}**: "
                      f"{md_text(f['recommendation']['reason'])}", ""]
            lines += _table(["checkpoint", "step", "general retention", "forgetting index", "domain gain", "on frontier", "lost", "gained"],
                            [[c["label"], c["step"], _pct(c["general_retention"]),
                              "–" if c["forgetting_index"] is None else f"{c['forgetting_index']:.3f}",
                              "–" if c["domain_gain"] is None else f"{c['domain_gain']:+.1%}", "yes" if c["on_frontier"] else "",
                              sum(x["direction"] == "lost" for x in c["flips"]), sum(x["direction"] == "gained" for x in c["flips"])]
                             for c in f["checkpoints"]])
    if "ratings" in d["sections"]:
        lines += ["## Human ratings", ""]
        for r in d["ratings"]:
            pb = r["position_bias"]
            lines += [f"### Campaign {md_text(r['campaign'])} ({r['n_judgments']} judgments)", ""]
            lines += _table(["rank", "checkpoint", "Elo", "95% CI", "judgments"],
                            [[s["rank"], s["model"], round(s["elo"]), f"[{s['elo_low']:.0f}, {s['elo_high']:.0f}]", s["n"]]
                             for s in r["bradley_terry"]["strengths"]])
            kappa = "; ".join(f"{p['rater_1']}/{p['rater_2']} {p['kappa']:.3f}" for p in r["cohen_kappa"] if p["kappa"] is not None)
            lines += [f"Agreement: Cohen's kappa {md_text(kappa or '–')}; Fleiss' kappa {md_text(r['fleiss_kappa'])}; "
                      f"Krippendorff's alpha {md_text(r['krippendorff_alpha'])}. Position bias: left wins "
                      f"{_pct(pb['share_left'])} [{_pct(pb['low'])}, {_pct(pb['high'])}]" + (" (flagged)" if pb["flagged"] else "") + ".", ""]
    if "examples" in d["sections"]:
        lines += ["## Representative examples", ""]
        lines += _table(["set", "checkpoint", "kind", "metric", "value", "id", "prompt", "reference", "output"],
                        [[e["dataset"], e["checkpoint"], e["kind"], e["metric"], e["value"], e["id"], e["prompt"],
                          e["reference"], e["output"]] for e in d["examples"]])
    if charts:
        lines += ["## Charts", ""]
        for title, rel in charts:
            safe = "/".join(part for part in rel.split("/") if part not in ("", ".", ".."))  # our own file names
            lines += [f"### {md_text(title)}", "", f"![{md_text(title)}]({safe})", ""]
    lines += ["## Workspace", ""]
    lines += _table(["checkpoint", "run", "step", "fingerprint"], [[c["name"], c["run"], c["step"], c["fingerprint"]]
                                                                  for c in ws["checkpoints"]])
    lines += _table(["held-out set", "kind", "rows", "fingerprint"], [[x["name"], x["kind"], x["rows"], x["fingerprint"]]
                                                                      for x in ws["datasets"]])
    if d["notes"]:
        lines += ["## Notes", "", *[f"- {md_text(n)}" for n in d["notes"]], ""]
    return "\n".join(lines)


def _csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    cols = list(rows[0])
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow([defuse(json.dumps(r[c], ensure_ascii=False) if isinstance(r[c], dict | list) else r[c]) for c in cols])
    return buf.getvalue()


def to_csv_zip(report: Report) -> bytes:
    """A zip of one CSV per table: metrics, curves, forgetting, ratings rankings, examples, workspace."""
    d = report.to_dict()
    tables = {
        "metrics.csv": d["metrics"],
        "curves.csv": d["curves"],
        "forgetting.csv": [{k: v for k, v in c.items() if k not in ("retention", "by_category", "flips", "family_retention")}
                           for c in (d["forgetting"] or {}).get("checkpoints", [])],
        "ratings.csv": [{"campaign": r["campaign"], **s} for r in d["ratings"] for s in r["bradley_terry"]["strengths"]],
        "examples.csv": d["examples"],
        "checkpoints.csv": d["workspace"]["checkpoints"],
        "datasets.csv": d["workspace"]["datasets"],
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, rows in tables.items():
            if rows:
                z.writestr(name, _csv(rows))
        z.writestr("report.json", to_json(report))
    return out.getvalue()
