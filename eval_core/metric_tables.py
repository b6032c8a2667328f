"""What the Metrics page shows: checkpoint x metric tables with intervals, categories, A vs B.

Reads the results store and the held-out files (for prompts, references and categories); every
value is computed here from stored per-example statistics, with its interval, seed and signature.

- Text metrics (BLEU, chrF, ROUGE, exact match) come from `text_scores`, grouped by the generation
  settings that produced the outputs (`generation_hash`): numbers made from different outputs are
  never mixed in one table.
- `completion_perplexity` (of the references given the prompts) comes from `nll_scores`, its
  interval from the same bootstrap of examples (token-weighted in every resample).
- A vs B: sacrebleu's paired bootstrap test on the same examples (eval_core.significance), and the
  examples split by outcome. An example is "wrong" for a checkpoint when its value of the chosen
  metric is below `wrong_below` (default: 1.0 for exact match, i.e. not an exact match, and half
  the metric's range for the others); the page lets the user move it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eval_core.errors import EvalCoreError, WorkspaceError
from eval_core.heldout_sets import example_hashes, example_ids, read_heldout_set
from eval_core.results_store import (
    ResultsStore,
    checkpoints,
    database_url,
    datasets,
    generations,
    newest_per_example,
    nll_scores,
    text_scores,
)
from eval_core.significance import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Interval,
    PairedResult,
    bootstrap_interval,
    paired_test,
)
from eval_core.text_metrics import ALL_METRICS, HIGHER_IS_BETTER, SCALE
from eval_core.workspace import load_config

PERPLEXITY = "completion_perplexity"
OUTCOMES = ("all", "b_better", "a_better", "tie", "both_wrong", "only_a_wrong", "only_b_wrong")


@dataclass(frozen=True)
class Example:
    id: str
    category: str
    prompt: str
    reference: str


@dataclass
class CheckpointResults:
    """One checkpoint's stored results on one generation set under one generation setting."""

    label: str
    run: str | None
    name: str
    step: int | None
    fingerprint: str
    outputs: dict[str, str] = field(default_factory=dict)
    # metric -> example id -> (per-example value, sufficient statistics)
    scores: dict[str, dict[str, tuple[float, list[float]]]] = field(default_factory=dict)
    signatures: dict[str, str] = field(default_factory=dict)


@dataclass
class DatasetResults:
    name: str
    generation_hash: str
    generation_protocol: dict
    examples: dict[str, Example]
    checkpoints: list[CheckpointResults]

    @property
    def metrics(self) -> list[str]:
        found = {m for c in self.checkpoints for m in c.scores}
        return [m for m in (*ALL_METRICS, PERPLEXITY) if m in found]

    def checkpoint(self, label: str) -> CheckpointResults:
        for c in self.checkpoints:
            if c.label == label:
                return c
        raise EvalCoreError(f"no results for checkpoint '{label}' on {self.name}; known: "
                            + ", ".join(c.label for c in self.checkpoints))


@dataclass(frozen=True)
class MetricRow:
    checkpoint: str
    step: int | None
    metric: str
    category: str | None  # None: the whole set
    interval: Interval
    higher_is_better: bool
    signature: str
    run: str | None = None  # the checkpoint's training run (None: the base model)


@dataclass(frozen=True)
class ExampleComparison:
    example: Example
    output_a: str
    output_b: str
    value_a: float
    value_b: float
    outcome: str  # "a_better", "b_better" or "tie"
    a_wrong: bool
    b_wrong: bool


@dataclass(frozen=True)
class Comparison:
    dataset: str
    a: str
    b: str
    metric: str
    wrong_below: float
    paired: PairedResult
    examples: list[ExampleComparison]

    def filter(self, outcome: str) -> list[ExampleComparison]:
        """Examples with one of OUTCOMES ("only_a_wrong": A wrong and B not)."""
        tests = {
            "all": lambda e: True,
            "b_better": lambda e: e.outcome == "b_better",
            "a_better": lambda e: e.outcome == "a_better",
            "tie": lambda e: e.outcome == "tie",
            "both_wrong": lambda e: e.a_wrong and e.b_wrong,
            "only_a_wrong": lambda e: e.a_wrong and not e.b_wrong,
            "only_b_wrong": lambda e: e.b_wrong and not e.a_wrong,
        }
        if outcome not in tests:
            raise EvalCoreError(f"unknown filter '{outcome}'; use one of {', '.join(OUTCOMES)}")
        return [e for e in self.examples if tests[outcome](e)]


def default_wrong_below(metric: str) -> float:
    return 1.0 if metric == "exact_match" else SCALE.get(metric, 1.0) / 2


def load_dataset_results(root: Path | str, url: str | None = None) -> list[DatasetResults]:
    """Every generation set with stored text metrics, once per generation setting (newest first)."""
    root = Path(root)
    store = ResultsStore(url or database_url(root, load_config(root).database_url))
    try:
        ckpts = {r["fingerprint"]: r for r in store.read(checkpoints)}
        sets = {r["name"]: r for r in store.read(datasets)}
        protos = store.protocols()
        text_rows = newest_per_example(store.read(text_scores))
        gen_rows = newest_per_example(store.read(generations))
        nll_rows = newest_per_example((r for r in store.read(nll_scores) if r["metric"] == PERPLEXITY), by_config=False)
    finally:
        store.close()
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (dataset, generation hash)
    newest: dict[tuple[str, str], float] = {}
    for r in text_rows:
        gen_hash = (protos.get(r["config_hash"], {}).get("config") or {}).get("generation_config_hash")
        if gen_hash is None:
            continue
        by_cell[(r["dataset"], gen_hash)].append(r)
        newest[(r["dataset"], gen_hash)] = max(newest.get((r["dataset"], gen_hash), 0.0), r["created_at"])
    out = []
    for (name, gen_hash), rows in sorted(by_cell.items(), key=lambda kv: (kv[0][0], -newest[kv[0]])):
        if name not in sets:
            continue
        examples, hashes = _examples(root, sets[name])
        # Only rows computed for the example as it is now: an example edited since the last
        # evaluation keeps its id, and its old output or score must not sit beside the new text.
        rows = [r for r in rows if hashes.get(r["example_id"]) == r["example_hash"]]
        if not rows:
            continue  # every stored row is for texts the set no longer has
        per_ckpt: dict[str, CheckpointResults] = {}
        for r in rows:
            if r["example_id"] not in examples:
                continue  # an example no longer in the set
            c = per_ckpt.setdefault(r["checkpoint_fp"], _checkpoint(ckpts.get(r["checkpoint_fp"], {}), r["checkpoint_fp"]))
            c.scores.setdefault(r["metric"], {})[r["example_id"]] = (r["value"], json.loads(r["stats"]))
            c.signatures[r["metric"]] = (protos.get(r["config_hash"], {}).get("config") or {}).get("signature", "")
        for r in gen_rows:
            c = per_ckpt.get(r["checkpoint_fp"])
            if (c is not None and r["dataset"] == name and r["config_hash"] == gen_hash
                    and hashes.get(r["example_id"]) == r["example_hash"]):
                c.outputs[r["example_id"]] = r["text"]
        for r in nll_rows:
            c = per_ckpt.get(r["checkpoint_fp"])
            if c is not None and r["dataset"] == name and hashes.get(r["example_id"]) == r["example_hash"]:
                c.scores.setdefault(PERPLEXITY, {})[r["example_id"]] = (
                    math.exp(r["nll_sum"] / r["token_count"]) if r["token_count"] else float("nan"),
                    [r["nll_sum"], float(r["token_count"])])
                c.signatures[PERPLEXITY] = "token-weighted exp(sum NLL / sum tokens); protocol " + r["config_hash"]
        label_names = _labels(list(per_ckpt.values()))
        ordered = sorted(per_ckpt.values(), key=lambda c: (c.run is not None, c.run or "", c.step if c.step is not None else -1))
        for c in ordered:
            c.label = label_names[c.fingerprint]
        generation = (protos.get(next(iter(rows))["config_hash"], {}).get("config") or {}).get("generation", {})
        out.append(DatasetResults(name, gen_hash, generation, examples, ordered))
    return out


def _examples(root: Path, dataset_row: dict) -> tuple[dict[str, Example], dict[str, str]]:
    """The set's examples as they are now, and each one's example hash (what stored rows carry)."""
    ds = read_heldout_set(root / dataset_row["path"], kind=dataset_row.get("kind") or None)
    ids = example_ids(ds)
    hashes = dict(zip(ids, example_hashes(ds), strict=True))
    cats = ds.values("category") if "category" in ds.column_map else [None] * len(ids)
    prompts = ds.values("prompt") if "prompt" in ds.column_map else [""] * len(ids)
    refs = ds.values("reference") if "reference" in ds.column_map else [""] * len(ids)
    return ({i: Example(i, "" if c is None else str(c), str(p or ""), str(r or ""))
             for i, c, p, r in zip(ids, cats, prompts, refs, strict=True)}, hashes)


def _checkpoint(row: dict, fp: str) -> CheckpointResults:
    return CheckpointResults(label="", run=row.get("run"), name=row.get("name") or fp[:12], step=row.get("step"), fingerprint=fp)


def _labels(ckpts: Sequence[CheckpointResults]) -> dict[str, str]:
    runs = {c.run for c in ckpts if c.run is not None}
    return {c.fingerprint: ("base" if c.run is None and c.name == "base" else
                            c.name if c.run is None or len(runs) <= 1 else f"{c.run}/{c.name}") for c in ckpts}


def _interval(metric: str, stats: list[list[float]], seed: int, n_resamples: int) -> Interval:
    if metric != PERPLEXITY:
        return bootstrap_interval(metric, stats, n_resamples=n_resamples, seed=seed)
    import numpy as np

    arr = np.asarray(stats, dtype="float64")
    if not len(arr) or arr[:, 1].sum() == 0:
        raise EvalCoreError("perplexity of a set without tokens is undefined")
    value = math.exp(arr[:, 0].sum() / arr[:, 1].sum())
    idx = np.random.default_rng(seed).choice(len(arr), size=(n_resamples, len(arr)), replace=True)
    sampled = np.sort(np.exp(arr[idx, 0].sum(1) / np.maximum(arr[idx, 1].sum(1), 1)))
    lower = n_resamples // 40
    return Interval(metric, value, float(sampled[lower]), float(sampled[n_resamples - lower - 1]), len(arr), n_resamples, seed,
                    "bootstrap percentile 95% over examples, token-weighted")


def metric_table(results: DatasetResults, metrics: Sequence[str] | None = None, *, by_category: bool = False,
                 seed: int = DEFAULT_SEED, n_resamples: int = DEFAULT_RESAMPLES) -> list[MetricRow]:
    """Per checkpoint and metric, the corpus value with its 95% interval: first over the whole set
    (category None), then, with `by_category`, over each category's examples."""
    rows = []
    for c in results.checkpoints:
        for metric in metrics or results.metrics:
            cells = c.scores.get(metric)
            if not cells:
                continue
            groups: dict[str | None, list[str]] = defaultdict(list, {None: list(cells)})
            if by_category:
                for eid in cells:
                    groups[results.examples[eid].category].append(eid)
            for category, ids in sorted(groups.items(), key=lambda kv: (kv[0] is not None, kv[0] or "")):
                iv = _interval(metric, [cells[i][1] for i in sorted(ids)], seed, n_resamples)
                rows.append(MetricRow(c.label, c.step, metric, category, iv, HIGHER_IS_BETTER.get(metric, False),
                                      c.signatures.get(metric, ""), c.run))
    return rows


def compare(results: DatasetResults, a: str, b: str, metric: str, *, wrong_below: float | None = None,
            seed: int = DEFAULT_SEED, n_resamples: int = DEFAULT_RESAMPLES) -> Comparison:
    """Checkpoint B against A on the examples both have, with the paired test and per-example outcomes."""
    ca, cb = results.checkpoint(a), results.checkpoint(b)
    sa, sb = ca.scores.get(metric, {}), cb.scores.get(metric, {})
    shared = sorted(set(sa) & set(sb))
    if not shared:
        raise EvalCoreError(f"{a} and {b} have no {metric} results on the same examples of {results.name}; evaluate both")
    if metric == PERPLEXITY:
        raise EvalCoreError("A vs B compares text metrics of outputs; pick bleu, chrf, rouge or exact_match")
    threshold = default_wrong_below(metric) if wrong_below is None else wrong_below
    paired = paired_test(metric, [sa[i][1] for i in shared], [sb[i][1] for i in shared],
                         [sa[i][0] for i in shared], [sb[i][0] for i in shared], n_resamples=n_resamples, seed=seed)
    examples = []
    for i in shared:
        va, vb = sa[i][0], sb[i][0]
        examples.append(ExampleComparison(
            results.examples[i], ca.outputs.get(i, ""), cb.outputs.get(i, ""), va, vb,
            "b_better" if vb > va else "a_better" if va > vb else "tie", va < threshold, vb < threshold))
    return Comparison(results.name, a, b, metric, threshold, paired, examples)


def worst_examples(results: DatasetResults, checkpoint: str, metric: str, k: int = 10) -> list[tuple[Example, str, float]]:
    """The k examples with the lowest value (highest for perplexity): (example, output, value)."""
    c = results.checkpoint(checkpoint)
    cells = c.scores.get(metric, {})
    reverse = not HIGHER_IS_BETTER.get(metric, False)
    ranked = sorted(cells.items(), key=lambda kv: (kv[1][0], kv[0]), reverse=reverse)[:k]
    return [(results.examples[i], c.outputs.get(i, ""), v) for i, (v, _) in ranked]


def metric_by_step(results: DatasetResults, metric: str, *, seed: int = DEFAULT_SEED,
                   n_resamples: int = DEFAULT_RESAMPLES) -> list[MetricRow]:
    """The metric of each checkpoint that has a training step, in step order (for step charts)."""
    rows = [r for r in metric_table(results, [metric], seed=seed, n_resamples=n_resamples) if r.step is not None]
    return sorted(rows, key=lambda r: r.step)


def example_scores(results: DatasetResults, checkpoint: str, example_id: str) -> dict[str, float]:
    """Every stored per-example value of one example for one checkpoint, by metric."""
    c = results.checkpoint(checkpoint)
    return {m: c.scores[m][example_id][0] for m in results.metrics if example_id in c.scores.get(m, {})}


def describe_generation(protocol: dict) -> str:
    """One line from a stored generation protocol (GenerationConfig.to_dict()).

    Example:
        >>> describe_generation({"max_new_tokens": 6, "do_sample": False, "stop": [], "use_chat_template": True})
        'greedy decoding, at most 6 new tokens, chat template'
    """
    if protocol.get("do_sample"):
        parts = [f"sampling (temperature {protocol.get('temperature')}, top_p {protocol.get('top_p')}, "
                 f"seed {protocol.get('seed')})"]
    else:
        parts = ["greedy decoding"]
    if "max_new_tokens" in protocol:
        parts.append(f"at most {protocol['max_new_tokens']} new tokens")
    if protocol.get("stop"):
        parts.append("stop at " + ", ".join(repr(s) for s in protocol["stop"]))
    if "use_chat_template" in protocol:
        parts.append("chat template" if protocol["use_chat_template"] else "no chat template")
    return ", ".join(parts)


def results_version(root: Path | str, url: str | None = None) -> tuple | None:
    """A key that changes whenever results are written, for caches; None when no database exists yet.

    SQLite: size and modification time of the database file and its write-ahead log. A database
    server: the URL and the current half minute, so a cache of it is re-read at most every 30 s.
    """
    import time

    root = Path(root)
    if url is None:
        try:
            url = database_url(root, load_config(root).database_url)
        except WorkspaceError:  # not a workspace: no database is made there, so none exists
            return None
    if not url.startswith("sqlite:///"):
        return (url, int(time.time() // 30))
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    version: list = [str(path)]
    for f in (path, path.with_name(path.name + "-wal")):
        try:
            st = f.stat()
            version += [st.st_size, st.st_mtime_ns]
        except OSError:
            version += [None, None]
    return tuple(version)
