"""Pure analysis of training curves: smoothing, best step, overfitting onset, early stopping.

All functions take plain (step, value) sequences; they never read files. Summaries are computed on
the raw values (smoothing is for display only), and each records the protocol it used (direction,
patience, the train metric paired with the eval metric).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from eval_core.training_logs import CURVES_SCHEMA, CURVES_SCHEMA_VERSION, CurveTable, json_float

Direction = Literal["lower", "higher"]
DEFAULT_PATIENCE = 3  # evaluations without improvement, as in HF's EarlyStoppingCallback usage

# Matched against whole name tokens, so "answer" does not read as "wer".
_LOWER_TOKENS = {"loss", "perplexity", "ppl", "error", "err", "wer", "cer", "bpb", "nll", "bits"}
_HIGHER_PREFIXES = ("acc", "bleu", "rouge", "chrf", "exact", "retention", "precision", "recall")
_HIGHER_TOKENS = {"f1", "em", "score", "win"}
_TIMING = ("_runtime", "_samples_per_second", "_steps_per_second")
_EVAL_PREFIXES = ("eval_", "eval/", "val_", "val/", "valid_", "validation_", "test_")


def smooth_tensorboard(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average (its smoothing slider).

    Matches `tensorboard/webapp/widgets/line_chart_v2/data_transformer.ts`: non-finite values and
    constant series pass through unchanged; otherwise
    last = last * w + (1 - w) * v and smoothed = last / (1 - w ** n), n counting finite values.

    Example:
        >>> smooth_tensorboard([1.0, 2.0, 3.0], 0.5)
        [1.0, 1.6666666666666667, 2.4285714285714284]
    """
    if not 0.0 <= weight <= 0.999:
        raise ValueError(f"smoothing weight must be in [0, 0.999], got {weight}")
    if not values:
        return []
    if all(v == values[0] for v in values):
        return list(values)
    last, n, out = 0.0, 0, []
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        out.append(last / (1 - weight**n))
    return out


def metric_direction(metric: str) -> Direction:
    """Whether lower or higher is better, from the metric's name (loss down, accuracy up)."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", metric.lower()) if t]
    if any(t in _LOWER_TOKENS or t.endswith("loss") for t in tokens):
        return "lower"
    if any(t.startswith(_HIGHER_PREFIXES) or t in _HIGHER_TOKENS for t in tokens):
        return "higher"
    return "lower"


def is_eval_metric(metric: str) -> bool:
    """Evaluation metrics (not timings such as eval_runtime)."""
    return metric.lower().startswith(_EVAL_PREFIXES) and not metric.endswith(_TIMING)


def best_index(values: Sequence[float], direction: Direction) -> int | None:
    """Index of the best finite value (the earliest on ties); None when none is finite."""
    best = None
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        if best is None or (v < values[best] if direction == "lower" else v > values[best]):
            best = i
    return best


def early_stop_index(values: Sequence[float], direction: Direction, patience: int) -> int | None:
    """Where HF's EarlyStoppingCallback(patience, threshold 0) would stop; None if never."""
    best, waited = None, 0
    for i, v in enumerate(values):
        improved = math.isfinite(v) and (best is None or (v < best if direction == "lower" else v > best))
        if improved:
            best, waited = v, 0
        elif i > 0:  # HF resets the counter at the first evaluation whatever it is (best_metric None)
            waited += 1
            if waited >= patience:
                return i
    return None


def _mean_train_between(train: Sequence[tuple[int, float]], lo: int, hi: int) -> float | None:
    """Mean train value logged in (lo, hi]; else the last one logged at or before hi; else the
    first one logged at all (an evaluation at step 0 comes before any training step)."""
    finite = [(s, v) for s, v in train if math.isfinite(v)]
    inside = [v for s, v in finite if lo < s <= hi]
    if inside:
        return sum(inside) / len(inside)
    before = [v for s, v in finite if s <= hi]
    if before:
        return before[-1]
    return finite[0][1] if finite else None


def overfit_onset_index(
    evals: Sequence[tuple[int, float]], train: Sequence[tuple[int, float]], patience: int
) -> int | None:
    """First eval after which eval loss rises for `patience` evaluations while train loss falls.

    Returns the index j of the first worse evaluation: evals j..j+patience-1 all stay above the
    best value seen before j, the last of them is higher than eval j-1, and the train loss logged
    up to that last evaluation is lower than the train loss logged up to eval j-1.
    """
    values = [v for _, v in evals]
    for j in range(1, len(evals) - patience + 1):
        before = [v for v in values[:j] if math.isfinite(v)]
        if not before:
            continue
        best_before = min(before)
        window = values[j : j + patience]
        if not all(math.isfinite(v) and v > best_before for v in window):
            continue
        if not window[-1] > values[j - 1]:
            continue
        end_step, start_step = evals[j + patience - 1][0], evals[j - 1][0]
        prev_step = evals[j - 2][0] if j >= 2 else -1
        train_end = _mean_train_between(train, evals[j + patience - 2][0], end_step)
        train_start = _mean_train_between(train, prev_step, start_step)
        if train_end is not None and train_start is not None and train_end < train_start:
            return j
    return None


@dataclass(frozen=True)
class MetricSummary:
    """What a curve says about one eval metric of one run."""

    run: str
    metric: str
    direction: Direction
    evaluations: int
    best_step: int | None
    best_value: float | None
    last_step: int | None
    last_value: float | None
    overfit_onset_step: int | None
    early_stop_step: int | None
    recommended_stop_step: int | None
    patience: int
    train_metric: str | None
    generalization_gap_at_best: float | None
    generalization_gap_at_last: float | None


def _train_metric(table: CurveTable, run: str) -> str | None:
    for name in ("loss", "train_loss", "train/loss"):
        if len(table.series(name, run)) > 1:
            return name
    return None


def summarize_metric(table: CurveTable, run: str, metric: str, patience: int = DEFAULT_PATIENCE) -> MetricSummary:
    """Best step, overfitting onset and early stopping for one eval metric of one run.

    The recommended stop step is where early stopping with `patience` would have halted training,
    or the last evaluation when it would not have; the checkpoint to keep is `best_step`.
    """
    if patience < 1:
        raise ValueError("patience must be at least 1 evaluation")
    evals = [(p.step, p.value) for p in table.series(metric, run)]
    direction = metric_direction(metric)
    values = [v for _, v in evals]
    b = best_index(values, direction)
    stop = early_stop_index(values, direction, patience)
    train_name = _train_metric(table, run)
    train = [(p.step, p.value) for p in table.series(train_name, run)] if train_name else []
    onset = None
    if direction == "lower" and train:
        j = overfit_onset_index(evals, train, patience)
        onset = evals[j][0] if j is not None else None

    def gap(i: int | None) -> float | None:
        if i is None or not train or direction != "lower":
            return None
        prev = evals[i - 1][0] if i > 0 else -1
        t = _mean_train_between(train, prev, evals[i][0])
        return None if t is None else values[i] - t

    last = len(evals) - 1 if evals else None
    return MetricSummary(
        run=run,
        metric=metric,
        direction=direction,
        evaluations=len(evals),
        best_step=evals[b][0] if b is not None else None,
        best_value=values[b] if b is not None else None,
        last_step=evals[last][0] if last is not None else None,
        last_value=values[last] if last is not None else None,
        overfit_onset_step=onset,
        early_stop_step=evals[stop][0] if stop is not None else None,
        recommended_stop_step=evals[stop][0] if stop is not None else (evals[last][0] if last is not None else None),
        patience=patience,
        train_metric=train_name,
        generalization_gap_at_best=gap(b),
        generalization_gap_at_last=gap(last),
    )


def summarize_curves(table: CurveTable, patience: int = DEFAULT_PATIENCE) -> dict:
    """The `curves --summary` record: one MetricSummary per (run, eval metric)."""
    if patience < 1:
        raise ValueError("patience must be at least 1 evaluation")
    summaries = [
        summarize_metric(table, run, metric, patience)
        for run in table.runs()
        for metric in table.metrics()
        if is_eval_metric(metric) and table.series(metric, run)
    ]
    return {
        "schema": f"{CURVES_SCHEMA}.summary",
        "schema_version": CURVES_SCHEMA_VERSION,
        "patience": patience,
        # a diverged run ends on NaN: written as the rows write it ("NaN"), so the record is strict JSON
        "metrics": [
            {k: json_float(v) if isinstance(v, float) else v for k, v in asdict(s).items()} for s in summaries
        ],
        "warnings": list(table.warnings),
    }
