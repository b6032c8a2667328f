"""One evaluation task: a loaded model, one dataset, one metric, the examples still missing.

Examples are processed in chunks; each chunk's results are written in one transaction before the
next chunk starts, so an interrupted run loses at most the chunk in flight and never leaves a
half-written result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from eval_core.generation import GenerationConfig, generate
from eval_core.heldout_sets import HeldoutSet
from eval_core.model_loading import LoadedModel
from eval_core.nll_scoring import PerplexityConfig, score_completions, score_texts
from eval_core.results_store import ResultsStore


def run_task(
    store: ResultsStore,
    lm: LoadedModel,
    ds: HeldoutSet,
    all_ids: Sequence[str],
    missing: Sequence[tuple[str, str]],
    metric: str,
    config: PerplexityConfig | GenerationConfig,
    config_hash: str,
    checkpoint_fp: str,
    dataset: str,
    chunk_size: int,
    cell,  # CellResult, counts what was computed
    advance: Callable[[int], None] | None = None,
) -> None:
    index = {eid: i for i, eid in enumerate(all_ids)}
    rows = [ds.rows[index[eid]] for eid, _ in missing]
    cols = ds.column_map
    for start in range(0, len(rows), chunk_size):
        chunk_keys = list(missing[start : start + chunk_size])
        chunk = rows[start : start + chunk_size]
        key = {"checkpoint_fp": checkpoint_fp, "dataset": dataset, "config_hash": config_hash}
        if metric == "generation":
            assert isinstance(config, GenerationConfig)
            outs = generate(lm.model, lm.tokenizer, [r[cols["prompt"]] for r in chunk], config)
            store.add_generations([
                {**key, "example_id": eid, "example_hash": eh, "text": g.text, "new_tokens": g.new_tokens,
                 "finish_reason": g.finish_reason}
                for (eid, eh), g in zip(chunk_keys, outs, strict=True)
            ])
        else:
            assert isinstance(config, PerplexityConfig)
            if metric == "perplexity":
                stats = score_texts(lm.model, lm.tokenizer, [r[cols["text"]] for r in chunk], config)
            else:
                answer = cols["reference"] if "reference" in cols else cols["answer"]
                stats = score_completions(lm.model, lm.tokenizer, [r[cols["prompt"]] for r in chunk],
                                          [str(r[answer]) for r in chunk], config)
            store.add_nll([
                {**key, "example_id": eid, "example_hash": eh, "metric": metric, "nll_sum": s.nll_sum,
                 "token_count": s.token_count, "byte_count": s.byte_count, "word_count": s.word_count}
                for (eid, eh), s in zip(chunk_keys, stats, strict=True)
            ])
        cell.computed += len(chunk)
        if advance is not None:
            advance(len(chunk))
