"""Retention of a checkpoint against its base on one probe kind: the ratio, its paired bootstrap
interval, and whether the base is above chance (eval_core.forgetting uses these per checkpoint).

- 0/1 probe metrics: ``retention = checkpoint_score / base_score``; bits per byte (lower is better):
  ``retention = base_bpb / checkpoint_bpb``. Undefined (None, with the reason) when the denominator is 0.
- Paired bootstrap: each resample draws example indices once (numpy ``default_rng(seed)``) for both
  models; sacrebleu's percentile procedure gives the 95% interval.
- Chance level of multiple choice: the Wilson 95% interval of the base's share right must lie above
  the mean 1/len(choices), else the retention is uninformative.

Example:
    >>> paired_retention("bits_per_byte", [(2.0, 1), (2.0, 1)], [(4.0, 1), (4.0, 1)]).retention
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SEED = 12345  # the project's bootstrap seed (sacrebleu's default), recorded in every record
DEFAULT_RESAMPLES = 1000
DEFAULT_THRESHOLD = 0.95  # "keeps at least 95% of what the base knew", the default

SCORE_KINDS = ("mc_acc", "mc_acc_norm", "cloze_exact", "cloze_contains")
BPB = "bits_per_byte"
KINDS = (*SCORE_KINDS, BPB)
FAMILIES: dict[str, tuple[str, ...]] = {
    "general_text": (BPB,),
    "multiple_choice": ("mc_acc", "mc_acc_norm"),
    "cloze": ("cloze_exact", "cloze_contains"),
}
MC_KINDS = FAMILIES["multiple_choice"]
WILSON_Z = 1.959963984540054  # two-sided 95%
_LN2 = math.log(2)


@dataclass(frozen=True)
class Retention:
    """Checkpoint against base on one probe kind, over the whole set (category None) or a category."""

    kind: str
    category: str | None
    base_value: float | None
    checkpoint_value: float | None
    retention: float | None  # None: undefined, see undefined_reason
    low: float | None
    high: float | None
    n: int
    n_resamples: int
    seed: int
    undefined_reason: str | None = None
    undefined_resamples: int = 0
    method: str = "paired bootstrap percentile 95% (same example indices for base and checkpoint)"
    chance: float | None = None  # multiple choice: mean 1/len(choices) of these items
    informative: bool = True  # False: the base is at chance here, see uninformative_reason
    uninformative_reason: str | None = None


def _ratio(num: Sequence[float], den: Sequence[float]) -> float | None:
    d = math.fsum(den)
    return math.fsum(num) / d if d else None


def wilson_interval(successes: float, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default).

    Example:
        >>> [round(x, 4) for x in wilson_interval(30, 100)]
        [0.2189, 0.3958]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def chance_check(base_values: Sequence[float], n_choices: Sequence[int]) -> tuple[float | None, bool, str | None]:
    """(chance level, informative, reason) of multiple-choice items from the base's 0/1 values.

    Example:
        >>> chance_check([1, 0, 0, 0] * 25, [4] * 100)[1:]   # 25% right on 4 choices: at chance
        (False, 'the base scores 25.0% (95% CI 17.5%-34.3%), not above chance 25.0% on these 100 items')
    """
    known = [k for k in n_choices if k > 0]
    if not base_values or len(known) != len(n_choices):
        return None, True, None
    chance = math.fsum(1 / k for k in known) / len(known)
    right = math.fsum(base_values)
    low, high = wilson_interval(right, len(base_values))
    if low > chance:
        return chance, True, None
    share = right / len(base_values)
    return chance, False, (f"the base scores {share:.1%} (95% CI {low:.1%}-{high:.1%}), not above chance "
                           f"{chance:.1%} on these {len(base_values)} items")


def paired_retention(
    kind: str,
    base: Sequence[float] | Sequence[tuple[float, float]],
    checkpoint: Sequence[float] | Sequence[tuple[float, float]],
    *,
    category: str | None = None,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Retention:
    """Retention of `checkpoint` against `base` on the same examples, with a paired bootstrap interval.

    Args:
        kind: one of KINDS. For the 0/1 kinds `base`/`checkpoint` are per-example values; for
            `bits_per_byte` they are per-document (nll_sum in nats, byte_count) pairs.
        base, checkpoint: aligned: element i of both is the same example.

    Example:
        >>> paired_retention("bits_per_byte", [(2.0, 1), (2.0, 1)], [(4.0, 1), (4.0, 1)]).retention
        0.5
    """
    import numpy as np

    if kind not in KINDS:
        raise ValueError(f"unknown probe kind '{kind}'; known: {', '.join(KINDS)}")
    if len(base) != len(checkpoint):
        raise ValueError(f"{kind}: base has {len(base)} examples, checkpoint {len(checkpoint)}; they must be the same examples")
    n = len(base)
    if kind == BPB:
        b = np.asarray(base, dtype="float64").reshape(n, 2)
        c = np.asarray(checkpoint, dtype="float64").reshape(n, 2)
        b_num, b_den, c_num, c_den = b[:, 0] / _LN2, b[:, 1], c[:, 0] / _LN2, c[:, 1]
    else:
        b_num, c_num = np.asarray(base, dtype="float64"), np.asarray(checkpoint, dtype="float64")
        b_den = c_den = np.ones(n)
    base_value, ckpt_value = _ratio(b_num, b_den), _ratio(c_num, c_den)

    def undefined(reason: str) -> Retention:
        return Retention(kind, category, base_value, ckpt_value, None, None, None, n, n_resamples, seed, reason)

    if n == 0:
        return undefined("no examples scored by both the base and the checkpoint")
    # Retention is the ratio good/good: score kinds ckpt/base, bits per byte base/ckpt.
    top, bottom = (base_value, ckpt_value) if kind == BPB else (ckpt_value, base_value)
    if not bottom:
        which = "checkpoint's bits per byte" if kind == BPB else "base model's score"
        return undefined(f"the {which} is 0 on these {n} examples, so a ratio to it is undefined")
    value = float(top) / float(bottom)  # type: ignore[arg-type]
    if n_resamples < 1:
        raise ValueError("the number of bootstrap resamples must be at least 1")
    idx = np.random.default_rng(seed).choice(n, size=(n_resamples, n), replace=True)
    b_res = b_num[idx].sum(1) / b_den[idx].sum(1)  # shape (n_resamples,)
    c_res = c_num[idx].sum(1) / c_den[idx].sum(1)
    top_r, bottom_r = (b_res, c_res) if kind == BPB else (c_res, b_res)
    ok = bottom_r > 0
    sampled = np.sort(top_r[ok] / bottom_r[ok])
    m = len(sampled)
    lower = m // 40
    low, high = (float(sampled[lower]), float(sampled[m - lower - 1])) if m else (None, None)
    return Retention(kind, category, base_value, ckpt_value, value, low, high, n, n_resamples, seed,
                     None, int(n_resamples - m))
