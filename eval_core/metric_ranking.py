"""Ranking and formatting of metric rows: directions, best checkpoints, weakest categories.

Pure functions over `eval_core.metric_tables.MetricRow`s, shared by the Metrics page, its figures
and reports, so every view ranks and prints a value the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from eval_core.metric_tables import MetricRow
from eval_core.significance import Interval
from eval_core.text_metrics import HIGHER_IS_BETTER, SCALE


def higher_is_better(metric: str) -> bool:
    """A metric's direction: the text metrics go up, completion perplexity goes down."""
    return HIGHER_IS_BETTER.get(metric, False)


def direction_arrow(metric: str) -> str:
    """'↑' when higher is better, '↓' when lower is (perplexity).

    Example:
        >>> direction_arrow("bleu"), direction_arrow("completion_perplexity")
        ('↑', '↓')
    """
    return "↑" if higher_is_better(metric) else "↓"


def format_value(metric: str, value: float) -> str:
    """A value at the precision its scale supports: BLEU/chrF/perplexity 2 decimals, 0-1 metrics 3.

    Example:
        >>> format_value("bleu", 23.4567), format_value("rougeL", 0.41234)
        ('23.46', '0.412')
    """
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3f}" if SCALE.get(metric) == 1.0 else f"{value:.2f}"


def format_interval(interval: Interval) -> str:
    """'value [low, high]' of a 95% interval.

    Example:
        >>> format_interval(Interval("bleu", 23.4, 20.1, 26.9, 64, 1000, 12345))
        '23.40 [20.10, 26.90]'
    """
    m = interval.metric
    return f"{format_value(m, interval.value)} [{format_value(m, interval.low)}, {format_value(m, interval.high)}]"


def _sort_key(row: MetricRow) -> tuple[bool, float]:
    """Best first; NaN last."""
    v = row.interval.value
    return (not math.isfinite(v), -v if row.higher_is_better else v)


def ranked_checkpoints(rows: Sequence[MetricRow], metric: str) -> list[str]:
    """Checkpoint labels, best first by `metric` over the whole set (ties keep the table's order);
    checkpoints without a value of `metric` come last, in their order."""
    ranked = [r.checkpoint for r in sorted((r for r in rows if r.category is None and r.metric == metric), key=_sort_key)]
    rest = [c for c in dict.fromkeys(r.checkpoint for r in rows) if c not in ranked]
    return ranked + rest


def best_by_metric(rows: Sequence[MetricRow]) -> dict[str, str]:
    """The best checkpoint of each metric over the whole set (a tie goes to the earlier checkpoint)."""
    metrics = dict.fromkeys(r.metric for r in rows if r.category is None and math.isfinite(r.interval.value))
    return {m: ranked_checkpoints(rows, m)[0] for m in metrics}


def categories_worst_first(rows: Sequence[MetricRow], metric: str, checkpoint: str) -> list[MetricRow]:
    """One checkpoint's per-category rows of `metric` (from `metric_table(..., by_category=True)`),
    weakest category first (lowest score, highest perplexity; ties by category name)."""
    cats = [r for r in rows if r.metric == metric and r.checkpoint == checkpoint and r.category is not None
            and math.isfinite(r.interval.value)]
    return sorted(cats, key=lambda r: (-_sort_key(r)[1], r.category))


def weakest_categories(rows: Sequence[MetricRow], metric: str) -> dict[str, str]:
    """Per checkpoint, its weakest category by `metric` (see categories_worst_first)."""
    out = {}
    for checkpoint in dict.fromkeys(r.checkpoint for r in rows):
        worst = categories_worst_first(rows, metric, checkpoint)
        if worst:
            out[checkpoint] = worst[0].category
    return out
