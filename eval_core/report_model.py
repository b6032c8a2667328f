"""The evaluation report: one typed, versioned record of a workspace's stored results.

`build_report` reads only what is already computed and stored (training logs, the results store's
per-example rows, the cached forgetting analysis, the ratings) and runs no model. Sections
(`SECTIONS`), each optional:

- `summary`: the recommended checkpoint (forgetting), the top-ranked checkpoint of each rating
  campaign, the best checkpoint per text metric;
- `curves`: per run and eval metric, the best step, overfitting onset, early-stopping step and
  generalisation gap (eval_core.curve_analysis), and the logged points of the loss and eval metrics
  (`curve_points`) so the HTML report can draw the curves;
- `metrics`: per generation set, setting, checkpoint, metric and category (None: whole set), the
  value with its bootstrap 95% interval and signature (eval_core.metric_tables);
- `forgetting`: the `ftlens.forgetting` record (eval_core.forgetting_results);
- `ratings`: the `ftlens.ratings` record of every campaign (eval_core.rating_setup);
- `examples`: per generation set, the best and worst examples of the last checkpoint on chrF (or
  the first metric), with prompt, reference and output as text; and per rating campaign, items
  whose raters disagreed, with each rater's pick;
- every number's protocol travels with it (signatures, seeds, resamples), and `workspace` holds the
  fingerprints of every checkpoint and held-out set, with the app version.
Renderers (eval_core.report_render) turn the record into JSON, Markdown and a zip of CSV tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from eval_core.errors import EvalCoreError
from eval_core.records import json_safe
from eval_core.version import __version__

SCHEMA = "ftlens.report"
SCHEMA_VERSION = 1
SECTIONS: tuple[str, ...] = ("summary", "curves", "metrics", "forgetting", "ratings", "examples")
DEFAULT_SEED = 12345
DEFAULT_RESAMPLES = 1000
EXAMPLES_PER_SIDE = 3


@dataclass
class Report:
    workspace: dict
    sections: list[str]
    created_at: str
    seed: int
    n_resamples: int
    summary: dict = field(default_factory=dict)
    curves: list[dict] = field(default_factory=list)
    curve_points: list[dict] = field(default_factory=list)  # run, step, epoch, metric, value: loss and eval metrics
    metrics: list[dict] = field(default_factory=list)
    forgetting: dict | None = None
    ratings: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a section could not include, and why
    app_version: str = __version__
    schema: str = SCHEMA
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


def _workspace_record(ws) -> dict:  # noqa: ANN001 - a WorkspaceSummary
    models = ([ws.base_model] if ws.base_model else []) + list(ws.checkpoints)
    return {"name": ws.name, "root": ws.root,
            "checkpoints": [{"run": c.run, "name": c.name, "step": c.step, "fingerprint": c.fingerprint} for c in models],
            "datasets": [{"name": d.name, "kind": d.kind, "rows": d.rows, "fingerprint": d.fingerprint} for d in ws.datasets]}


def _curves(root: Path, ws, notes: list[str], points: list[dict]) -> list[dict]:  # noqa: ANN001
    from eval_core.curve_analysis import is_eval_metric, summarize_curves
    from eval_core.training_logs import read_run_logs

    out = []
    for run in ws.runs:
        if not run.log_files:
            continue
        try:
            table = read_run_logs(root / run.path, run=run.name, root=root)
        except EvalCoreError as exc:
            notes.append(f"curves of {run.name}: {exc}")
            continue
        out += summarize_curves(table)["metrics"]
        points += [{"run": p.run, "step": p.step, "epoch": p.epoch, "metric": p.metric, "value": p.value}
                   for p in table.points if (p.metric == "loss" or is_eval_metric(p.metric)) and math.isfinite(p.value)
                   and not p.metric.endswith(("_runtime", "_per_second"))]
    return out


def _metrics(results, seed: int, n_resamples: int) -> list[dict]:  # noqa: ANN001
    from eval_core.metric_tables import metric_table

    rows = []
    for r in results:
        for by_category in (False, True):
            for m in metric_table(r, by_category=by_category, seed=seed, n_resamples=n_resamples):
                rows.append({"dataset": r.name, "generation_hash": r.generation_hash, "checkpoint": m.checkpoint,
                             "run": m.run, "step": m.step, "metric": m.metric, "category": m.category,
                             "value": m.interval.value, "low": m.interval.low, "high": m.interval.high, "n": m.interval.n,
                             "higher_is_better": m.higher_is_better, "signature": m.signature,
                             "interval": f"bootstrap 95%, {n_resamples} resamples, seed {seed}"})
    return rows


def _examples(results) -> list[dict]:  # noqa: ANN001
    from eval_core.metric_tables import worst_examples

    out = []
    for r in results:
        last = next((c for c in reversed(r.checkpoints) if c.outputs), None)
        metrics = r.metrics
        if last is None or not metrics:
            continue
        metric = "chrf" if "chrf" in metrics else metrics[0]
        ranked = worst_examples(r, last.label, metric, k=len(r.examples))
        for kind, chosen in (("worst", ranked[:EXAMPLES_PER_SIDE]), ("best", list(reversed(ranked))[:EXAMPLES_PER_SIDE])):
            for ex, output, value in chosen:
                out.append({"dataset": r.name, "checkpoint": last.label, "kind": kind, "metric": metric, "value": value,
                            "id": ex.id, "category": ex.category, "prompt": ex.prompt, "reference": ex.reference,
                            "output": output})
    return out


def _disagreements(root: Path, k: int = EXAMPLES_PER_SIDE) -> list[dict]:
    """Per app campaign, up to `k` items whose raters picked differently, with every rater's verdict."""
    from eval_core.rating_setup import open_rating_store

    out = []
    with open_rating_store(root) as store:
        for spec in store.campaigns():
            if spec.imported:
                continue
            items = store.items(spec.name)
            by_item: dict[str, list[dict]] = {}
            for r in store.ratings_of(spec.name):
                by_item.setdefault(r["item_id"], []).append(r)
            picks = {i: {r["rater"]: (r["model_left"] if r["verdict"] == "left" else r["model_right"] if r["verdict"] == "right"
                                      else r["verdict"]) for r in rs} for i, rs in by_item.items()}
            split = [i for i in sorted(picks) if len(set(picks[i].values())) > 1 and i in items][:k]
            for i in split:
                it, first = items[i], by_item[i][0]
                pair = sorted((first["model_left"], first["model_right"]))
                out.append({"dataset": spec.dataset, "checkpoint": " vs ".join(pair), "kind": f"disagreement ({spec.name})",
                            "metric": "rating", "value": None, "id": i, "category": it.category or "", "prompt": it.prompt,
                            "reference": it.reference or "",
                            "output": "; ".join(f"{rater}: {pick}" for rater, pick in sorted(picks[i].items()))})
    return out


def _summary(report: Report) -> dict:
    best: dict[str, dict] = {}
    for m in report.metrics:
        if m["category"] is not None or m["value"] is None:
            continue
        key = f"{m['dataset']} · {m['metric']}"
        cur = best.get(key)
        if cur is None or (m["value"] > cur["value"] if m["higher_is_better"] else m["value"] < cur["value"]):
            best[key] = {"checkpoint": m["checkpoint"], "value": m["value"], "low": m["low"], "high": m["high"]}
    rec = (report.forgetting or {}).get("recommendation")
    top = [{"campaign": r["campaign"], "checkpoint": r["bradley_terry"]["strengths"][0]["model"],
            "elo": r["bradley_terry"]["strengths"][0]["elo"], "judgments": r["n_judgments"]}
           for r in report.ratings if r["bradley_terry"]["strengths"]]
    return {"recommended_checkpoint": rec["checkpoint"] if rec else None,
            "recommendation_reason": rec["reason"] if rec else "no forgetting analysis (evaluate the probe suites)",
            "top_rated": top, "best_by_metric": best}


def build_report(root: Path | str, sections: Sequence[str] = SECTIONS, *, seed: int = DEFAULT_SEED,
                 n_resamples: int = DEFAULT_RESAMPLES) -> Report:
    """The workspace's report from stored results only (see the module doc).

    Raises:
        EvalCoreError: an unknown section, or a workspace that cannot be read.

    Example:
        >>> build_report(".demo_workspace", ["summary", "metrics"]).summary["recommended_checkpoint"]  # doctest: +SKIP
        'checkpoint-5'
    """
    from eval_core.workspace import discover_workspace

    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise EvalCoreError(f"unknown report section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}",
                            field="sections")
    root = Path(root)
    ws = discover_workspace(root)
    chosen = [s for s in SECTIONS if s in sections]
    report = Report(_workspace_record(ws), chosen, datetime.now(UTC).isoformat(timespec="seconds"), seed, n_resamples)
    if "curves" in chosen:
        report.curves = _curves(root, ws, report.notes, report.curve_points)
    results = []
    if {"metrics", "examples", "summary"} & set(chosen):
        from eval_core.metric_tables import load_dataset_results, results_version

        results = load_dataset_results(root) if results_version(root) is not None else []
    if {"metrics", "summary"} & set(chosen):
        report.metrics = _metrics(results, seed, n_resamples)
    if "examples" in chosen:
        report.examples = _examples(results) + _disagreements(root)
    if {"forgetting", "summary"} & set(chosen):
        from eval_core.forgetting_results import forgetting_report

        try:
            got = forgetting_report(root)
            if any(c.retention for c in got.report.checkpoints):
                report.forgetting = got.report.to_dict()
            else:
                report.notes.append("forgetting: no probe or general-text results are stored")
        except EvalCoreError as exc:
            report.notes.append(f"forgetting: {exc.message}")
    if {"ratings", "summary"} & set(chosen):
        from eval_core.rating_setup import campaign_summary, open_rating_store

        with open_rating_store(root) as store:
            names = [c.name for c in store.campaigns()]
        report.ratings = [campaign_summary(root, n, seed=seed, n_resamples=n_resamples).to_dict() for n in names]
    if "summary" in chosen:
        report.summary = _summary(report)
    # Sections asked only for the summary are not repeated in the record.
    for name in ("metrics", "ratings"):
        if name not in chosen:
            setattr(report, name, [])
    if "forgetting" not in chosen:
        report.forgetting = None
    return report
