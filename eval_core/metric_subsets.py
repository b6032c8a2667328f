"""Scores on a subset of a held-out set: leave out examples (e.g. those that leak from training) and
see how far every number moves.

`without_examples` drops examples from stored results, so every table, interval and paired test
computed from the result (metric_tables) covers only the rest; `metric_shifts` sets the whole-set
rows beside the subset's rows. Corpus metrics are recomputed from the remaining examples'
sufficient statistics, not averaged, so the subset's BLEU is the BLEU sacrebleu gives on those
examples alone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from eval_core.errors import EvalCoreError
from eval_core.metric_tables import CheckpointResults, DatasetResults, MetricRow


@dataclass(frozen=True)
class MetricShift:
    """One checkpoint and metric over all examples and over the kept ones."""

    checkpoint: str
    metric: str
    all_value: float
    kept_value: float
    change: float  # kept_value - all_value
    all_examples: int
    kept_examples: int


def without_examples(results: DatasetResults, exclude: Collection[str]) -> DatasetResults:
    """`results` without the examples whose id is in `exclude` (ids it does not hold are ignored).

    Raises:
        EvalCoreError: nothing would be left to score.

    Example:
        >>> clean = without_examples(results, {"sup1-0086"})  # doctest: +SKIP
    """
    drop = set(exclude)
    if not drop & set(results.examples):
        return results
    kept = {i: e for i, e in results.examples.items() if i not in drop}
    if not kept:
        raise EvalCoreError(f"all {len(results.examples)} examples of {results.name} are excluded; "
                            "nothing is left to score")

    def trim(c: CheckpointResults) -> CheckpointResults:
        return replace(c, outputs={i: o for i, o in c.outputs.items() if i not in drop},
                       scores={m: {i: v for i, v in cells.items() if i not in drop} for m, cells in c.scores.items()})

    return replace(results, examples=kept, checkpoints=[trim(c) for c in results.checkpoints])


def metric_shifts(all_rows: Sequence[MetricRow], kept_rows: Sequence[MetricRow]) -> list[MetricShift]:
    """Whole-set rows (category None) of the full and the reduced results, matched by checkpoint and metric."""
    kept = {(r.checkpoint, r.metric): r for r in kept_rows if r.category is None}
    out = []
    for r in all_rows:
        k = kept.get((r.checkpoint, r.metric))
        if r.category is None and k is not None:
            out.append(MetricShift(r.checkpoint, r.metric, r.interval.value, k.interval.value,
                                   k.interval.value - r.interval.value, r.interval.n, k.interval.n))
    return out
