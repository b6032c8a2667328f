"""Uncertainty of text-metric values: bootstrap intervals and paired tests between two checkpoints.

Pure functions over per-example statistics (eval_core.text_metrics), seeded and reproducible:
- `bootstrap_interval`: the 95% interval of the corpus value over `n_resamples` resamples of the
  examples, taken exactly as sacrebleu's `corpus_score(n_bootstrap=...)` takes it (sorted resampled
  scores, indices n//40 and n - n//40 - 1; numpy `default_rng(seed)`), so for BLEU and chrF it equals
  sacrebleu's own interval with `SACREBLEU_SEED=seed`.
- `paired_test`: sacrebleu's paired bootstrap resampling test (the Moses
  `bootstrap-hypothesis-difference-significance.pl` procedure: both systems resampled with the same
  indices, p = (#{|resampled difference| - mean > |observed difference|} + 1) / (n + 1)); for BLEU
  and chrF it equals `sacrebleu.significance.PairedTest(test_type="bs")`. For the per-example metrics
  (ROUGE, exact match) the same procedure runs over mean values, and a two-sided exact sign test
  over per-example wins and losses (ties dropped) is reported beside it.
  One deliberate departure: when every resampled difference is exactly 0 and so is the observed one
  (two identical systems), the p-value is 1.0. sacrebleu's formula, which counts only differences
  strictly above the observed one, gives 1/(n_resamples + 1) there, i.e. "significant" for a system
  compared with itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from eval_core.errors import EvalCoreError
from eval_core.text_metrics import TextMetricConfig, corpus_value, corpus_values_of_resamples

DEFAULT_SEED = 12345  # sacrebleu's default SACREBLEU_SEED, so default figures match its CLI
DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    """A corpus value with its bootstrap 95% interval."""

    metric: str
    value: float
    low: float
    high: float
    n: int
    n_resamples: int
    seed: int
    method: str = "bootstrap percentile 95% (sacrebleu's procedure)"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedResult:
    """Checkpoint B against checkpoint A on the same examples."""

    metric: str
    value_a: float
    value_b: float
    delta: float  # value_b - value_a
    p_value: float
    n: int
    n_resamples: int
    seed: int
    method: str
    b_better: int  # examples where B's per-example value is higher
    a_better: int
    ties: int
    sign_test_p: float | None  # per-example metrics only

    def to_dict(self) -> dict:
        return asdict(self)


def _resample_indices(n: int, n_resamples: int, seed: int):
    import numpy as np

    if n_resamples < 1:
        raise EvalCoreError("the number of bootstrap resamples must be at least 1")
    return np.random.default_rng(seed).choice(n, size=(n_resamples, n), replace=True)


def bootstrap_interval(
    metric: str,
    stats: Sequence[Sequence[float]],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    config: TextMetricConfig = TextMetricConfig(),
) -> Interval:
    """The corpus value of `metric` and its bootstrap 95% interval.

    Example:
        >>> iv = bootstrap_interval("exact_match", [(1.0,), (0.0,), (1.0,), (1.0,)], seed=1)
        >>> (iv.value, iv.low <= iv.value <= iv.high)
        (0.75, True)
    """
    import numpy as np

    value = corpus_value(metric, stats, config)
    scores = np.sort(corpus_values_of_resamples(metric, stats, _resample_indices(len(stats), n_resamples, seed), config))
    lower = len(scores) // 40
    return Interval(metric, value, float(scores[lower]), float(scores[len(scores) - lower - 1]), len(stats), n_resamples, seed)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p-value of `wins` vs `losses` under p = 1/2 (ties left out).

    Example:
        >>> sign_test(0, 5), sign_test(5, 5), sign_test(0, 0)
        (0.0625, 1.0, 1.0)
    """
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_test(
    metric: str,
    stats_a: Sequence[Sequence[float]],
    stats_b: Sequence[Sequence[float]],
    values_a: Sequence[float],
    values_b: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    config: TextMetricConfig = TextMetricConfig(),
) -> PairedResult:
    """Is B's value different from A's on the same examples? (see the module docstring).

    Example:
        >>> a, b = [(1.0,), (0.0,), (0.0,), (1.0,)], [(1.0,), (1.0,), (0.0,), (1.0,)]
        >>> r = paired_test("exact_match", a, b, [s[0] for s in a], [s[0] for s in b], seed=1)
        >>> (r.delta, r.b_better, r.a_better, r.sign_test_p)
        (0.25, 1, 0, 1.0)
    """
    import numpy as np

    n = len(stats_a)
    if n != len(stats_b) or n != len(values_a) or n != len(values_b):
        raise EvalCoreError("a paired test needs the same examples for both checkpoints; the counts differ")
    if n == 0:
        raise EvalCoreError("a paired test of an empty set is undefined: no shared examples")
    value_a, value_b = corpus_value(metric, stats_a, config), corpus_value(metric, stats_b, config)
    idx = _resample_indices(n, n_resamples, seed)
    scores_a = corpus_values_of_resamples(metric, stats_a, idx, config)
    scores_b = corpus_values_of_resamples(metric, stats_b, idx, config)
    sample_diffs = np.abs(scores_b - scores_a)
    centred = sample_diffs - sample_diffs.mean()
    if value_b == value_a and not np.any(sample_diffs):
        p = 1.0  # no resample tells the systems apart: no evidence of a difference (module docstring)
    else:
        p = (int(np.sum(centred > abs(value_b - value_a))) + 1) / (n_resamples + 1)
    b_better = sum(1 for a, b in zip(values_a, values_b, strict=True) if b > a)
    a_better = sum(1 for a, b in zip(values_a, values_b, strict=True) if a > b)
    per_example = metric not in ("bleu", "chrf")
    return PairedResult(
        metric=metric, value_a=value_a, value_b=value_b, delta=value_b - value_a, p_value=p, n=n,
        n_resamples=n_resamples, seed=seed,
        method="paired bootstrap (sacrebleu/Moses)" + (" + exact sign test" if per_example else ""),
        b_better=b_better, a_better=a_better, ties=n - b_better - a_better,
        sign_test_p=sign_test(b_better, a_better) if per_example else None,
    )
