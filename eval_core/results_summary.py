"""Read the results store back as records: per-cell aggregates with their protocol, and examples.

This is what `python -m eval_core results` prints and what the pages read: every number is
recomputed from the stored sufficient statistics (never stored pre-aggregated), next to the
protocol it was computed with. Schema `ftlens.results`, version 1 (docs/results-schema.md).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterator

from eval_core.errors import EvalCoreError
from eval_core.perplexity import NllStats, summarize, total
from eval_core.probe_scoring import PROBE_METRICS
from eval_core.records import defuse
from eval_core.results_store import (
    ResultsStore,
    checkpoints,
    datasets,
    generations,
    newest_per_example,
    nll_scores,
    redact,
    text_scores,
)
from eval_core.significance import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_interval
from eval_core.version import __version__

RESULTS_SCHEMA = "ftlens.results"
RESULTS_SCHEMA_VERSION = 1


def collect_results(store: ResultsStore, include_examples: bool = True) -> dict:
    """Every stored cell: checkpoint, dataset, metric, aggregate figures, protocol, examples."""
    ckpts = {r["fingerprint"]: r for r in store.read(checkpoints)}
    sets = {r["name"]: r for r in store.read(datasets)}
    protos = store.protocols()
    cells = _latest_per_example(store.read(nll_scores), sets, lambda r: r["metric"])
    gens = _latest_per_example(store.read(generations), sets, lambda r: "generation")
    texts = _latest_per_example(store.read(text_scores), sets, lambda r: r["metric"])

    def head(key: tuple) -> dict:
        c, d = ckpts.get(key[0], {}), sets.get(key[1], {})
        return {
            "checkpoint": c.get("name"), "run": c.get("run"), "step": c.get("step"), "checkpoint_path": c.get("path"),
            "checkpoint_fingerprint": key[0], "dataset": key[1], "dataset_fingerprint": d.get("fingerprint"),
            "metric": key[2], "config_hash": key[3], "protocol": protos.get(key[3]),
        }

    out = []
    for key, rows in sorted(cells.items(), key=lambda kv: _order(kv[0], ckpts, sets)):
        stats = [NllStats(r["nll_sum"], r["token_count"], r["byte_count"], r["word_count"]) for r in rows]
        agg = total(stats)
        entry = {**head(key), "examples": len(rows)}
        try:
            entry.update(summarize(agg))
        except EvalCoreError as exc:  # every example empty: say so instead of NaN
            entry.update({"error": exc.message, "tokens": agg.token_count, "bytes": agg.byte_count})
        if include_examples:
            entry["per_example"] = [
                {"id": r["example_id"], "nll_sum": r["nll_sum"], "tokens": r["token_count"], "bytes": r["byte_count"]}
                for r in sorted(rows, key=lambda r: r["example_id"])
            ]
        out.append(entry)
    for key, rows in sorted(gens.items(), key=lambda kv: _order(kv[0], ckpts, sets)):
        entry = {**head(key), "examples": len(rows)}
        if include_examples:
            entry["per_example"] = [
                {"id": r["example_id"], "text": r["text"], "new_tokens": r["new_tokens"], "finish_reason": r["finish_reason"]}
                for r in sorted(rows, key=lambda r: r["example_id"])
            ]
        out.append(entry)
    for key, rows in sorted(texts.items(), key=lambda kv: _order(kv[0], ckpts, sets)):
        rows = sorted(rows, key=lambda r: r["example_id"])
        iv = bootstrap_interval(key[2], [json.loads(r["stats"]) for r in rows], n_resamples=DEFAULT_RESAMPLES, seed=DEFAULT_SEED)
        proto = protos.get(key[3]) or {}
        entry = {**head(key), "examples": len(rows), "value": iv.value, "ci_low": iv.low, "ci_high": iv.high,
                 "ci_method": iv.method, "seed": iv.seed, "n_resamples": iv.n_resamples,
                 "signature": (proto.get("config") or {}).get("signature")}
        if include_examples:
            entry["per_example"] = [
                # Probe statistics say which choice was picked (docs/probe-suites.md).
                {"id": r["example_id"], "value": r["value"], **({"stats": json.loads(r["stats"])} if key[2] in PROBE_METRICS else {})}
                for r in rows
            ]
        out.append(entry)
    return {"schema": RESULTS_SCHEMA, "schema_version": RESULTS_SCHEMA_VERSION, "app_version": __version__,
            "database": redact(store.url), "results": out}


def _latest_per_example(rows: list[dict], sets: dict, metric_of) -> dict[tuple, list[dict]]:
    """Rows grouped by cell, keeping per example id its newest row, for ids the dataset still has."""
    kept = [r for r in rows if r["dataset"] not in sets or r["example_id"] in _ids(sets[r["dataset"]])]
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in newest_per_example(kept):
        cells[(r["checkpoint_fp"], r["dataset"], metric_of(r), r["config_hash"])].append(r)
    return cells


def _ids(dataset_row: dict) -> set[str]:
    if "_ids" not in dataset_row:
        dataset_row["_ids"] = set(json.loads(dataset_row["example_ids"]))
    return dataset_row["_ids"]


def _order(key: tuple, ckpts: dict, sets: dict) -> tuple:
    c = ckpts.get(key[0], {})
    step = c.get("step")
    return (c.get("run") or "", -1 if step is None else step, key[1], key[2], key[3])


CSV_FIELDS = ["run", "checkpoint", "step", "dataset", "metric", "examples", "perplexity", "bits_per_byte",
              "word_perplexity", "byte_perplexity", "nll_sum", "tokens", "bytes", "words", "value", "ci_low",
              "ci_high", "signature", "seed", "config_hash", "checkpoint_fingerprint", "dataset_fingerprint"]


def iter_results_csv(record: dict) -> Iterator[str]:
    """The per-cell aggregates as CSV (protocols are referenced by config_hash)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for entry in record["results"]:
        writer.writerow({k: defuse(v) for k, v in entry.items()})  # dataset and checkpoint names come from files
    yield buf.getvalue()
