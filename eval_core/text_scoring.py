"""Text metrics of stored generations: the evaluation task that needs no model.

A checkpoint's outputs for a `generation` set are scored against the set's references with
`eval_core.text_metrics`. Each (example, metric) row is keyed by a hash of the generation settings
that produced the output and the metric's options, so changing either computes again, and a new
checkpoint or new examples compute only what is missing. Rows are written in chunks, one
transaction each, like every other result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eval_core.generation import GenerationConfig
from eval_core.heldout_sets import HeldoutSet
from eval_core.results_store import ResultsStore
from eval_core.text_metrics import TextMetricConfig, example_signature, score_pairs, signature


@dataclass(frozen=True)
class TextScoreConfig:
    """One text metric over the outputs of one generation configuration."""

    metric: str
    generation: GenerationConfig
    text: TextMetricConfig = TextMetricConfig()

    def to_dict(self) -> dict:
        # The corpus value's signature, and the per-example values' own (sentence BLEU is smoothed).
        return {"metric": self.metric, "signature": signature(self.metric, self.text),
                "example_signature": example_signature(self.metric, self.text), "text_metrics": self.text.to_dict(),
                "generation_config_hash": self.generation.config_hash(), "generation": self.generation.to_dict()}

    def config_hash(self) -> str:
        key = {"metric": self.metric, "text": self.text.config_hash(), "generation": self.generation.config_hash()}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def text_libraries() -> dict[str, str]:
    from importlib.metadata import version

    return {"sacrebleu": version("sacrebleu"), "rouge-score": version("rouge-score"), "nltk": version("nltk")}


@dataclass
class TextTask:
    """The missing (example id, example hash) keys of one metric, and the cell that counts them."""

    config: TextScoreConfig
    missing: list[tuple[str, str]]
    cell: object  # evaluation.CellResult


def run_text_tasks(
    store: ResultsStore,
    ds: HeldoutSet,
    all_ids: Sequence[str],
    tasks: Sequence[TextTask],
    checkpoint_fp: str,
    dataset: str,
    chunk_size: int = 512,
    advance: Callable[[int], None] | None = None,
) -> None:
    """Score the stored outputs of the missing examples of every task (all metrics in one pass)."""
    if not tasks:
        return
    gen_config = tasks[0].config.generation
    outputs = store.generations_of(checkpoint_fp, dataset, gen_config.config_hash())
    index = {eid: i for i, eid in enumerate(all_ids)}
    references = ds.values("reference")
    wanted = sorted({k for t in tasks for k in t.missing if k in outputs}, key=lambda k: index[k[0]])
    metrics = tuple(t.config.metric for t in tasks)
    text_config = TextMetricConfig(**{**tasks[0].config.text.__dict__, "metrics": metrics})
    for start in range(0, len(wanted), chunk_size):
        keys = wanted[start : start + chunk_size]
        scores = score_pairs([outputs[k] for k in keys], [str(references[index[k[0]]] or "") for k in keys], text_config)
        rows = []
        for t in tasks:
            todo = set(t.missing)
            h = t.config.config_hash()
            for k, s in zip(keys, scores, strict=True):
                if k in todo:
                    rows.append({"checkpoint_fp": checkpoint_fp, "dataset": dataset, "example_id": k[0],
                                 "example_hash": k[1], "metric": t.config.metric, "config_hash": h,
                                 "value": s.values[t.config.metric], "stats": json.dumps(s.stats[t.config.metric])})
                    t.cell.computed += 1
        store.add_text_scores(rows)
        if advance is not None:
            advance(len(keys))
