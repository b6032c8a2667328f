"""Agreement between raters of blind pairwise judgments: Cohen's kappa per rater pair, Fleiss' kappa,
Krippendorff's alpha (nominal).

A *unit* is one item shown with one pair of models: ``(item_id, first model, second model)``, the two
model names sorted. Each rater's verdict on a unit becomes one of four canonical labels, so that two
raters who saw the answers on opposite sides are compared on what they meant, not where they clicked:

- ``first``: the alphabetically first model of the pair was better,
- ``second``: the other model was better,
- ``tie`` and ``both_bad``: as given.

A rater who judged the same unit more than once contributes their most frequent label there (ties
broken in the order of LABELS), so every statistic here is invariant to the order of the judgments.

The statistics come from the reference implementations, not from formulas written here:
``statsmodels.stats.inter_rater.cohens_kappa``, ``fleiss_kappa`` and ``aggregate_raters``, and the
``krippendorff`` package's ``alpha``. A value that is undefined (every rating in one category, so
chance agreement is 1, or fewer than 2 units) is None, never NaN.

Example:
    >>> from eval_core.rating_analysis import Judgment
    >>> js = [Judgment("q1", "ann", "x", "y", "model_a"), Judgment("q1", "bob", "y", "x", "model_b"),
    ...       Judgment("q2", "ann", "x", "y", "tie"), Judgment("q2", "bob", "x", "y", "tie")]
    >>> [(p.rater_1, p.rater_2, p.n_items, p.observed_agreement) for p in cohen_kappa_pairs(js)]
    [('ann', 'bob', 2, 1.0)]
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: rating_analysis imports this module at run time
    from eval_core.rating_analysis import Judgment

LABELS = ("first", "second", "tie", "both_bad")
Unit = tuple[str, str, str]  # (item_id, alphabetically first model, second model)


@dataclass(frozen=True)
class PairAgreement:
    """Cohen's kappa of two raters over the units both of them judged (rater_1 < rater_2)."""

    rater_1: str
    rater_2: str
    n_items: int
    kappa: float | None  # None: fewer than 2 shared units, or undefined (one label only)
    observed_agreement: float | None  # share of shared units with the same canonical label


def canonical_order(judgments: Iterable[Judgment]) -> list[Judgment]:
    """The judgments sorted by every field, so seeded resampling does not depend on storage order.

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> [j.item_id for j in canonical_order([Judgment("q2", "ann", "x", "y", "tie"), Judgment("q1", "ann", "x", "y", "tie")])]
        ['q1', 'q2']
    """
    return sorted(judgments, key=lambda j: (j.item_id, j.rater, j.model_a, j.model_b, j.winner, j.category or ""))


def canonical_label(judgment: Judgment) -> tuple[Unit, str]:
    """The unit a judgment is about and its side-free label (see the module docstring).

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> canonical_label(Judgment("q1", "ann", "zeta", "alpha", "model_a"))
        (('q1', 'alpha', 'zeta'), 'second')
    """
    first, second = sorted((judgment.model_a, judgment.model_b))
    if judgment.winner in ("tie", "both_bad"):
        label = judgment.winner
    else:
        better = judgment.model_a if judgment.winner == "model_a" else judgment.model_b
        label = "first" if better == first else "second"
    return (judgment.item_id, first, second), label


def rating_units(judgments: Iterable[Judgment]) -> dict[Unit, dict[str, str]]:
    """unit -> {rater: canonical label}, units and raters in sorted order.

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> rating_units([Judgment("q1", "ann", "x", "y", "tie")])
        {('q1', 'x', 'y'): {'ann': 'tie'}}
    """
    seen: dict[Unit, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for j in judgments:
        unit, label = canonical_label(j)
        seen[unit][j.rater][label] += 1
    # The modal label per rater, ties broken by LABELS order, keeps the result order-free.
    return {
        unit: {rater: max(LABELS, key=lambda lab, c=counts: (c[lab], -LABELS.index(lab)))
               for rater, counts in sorted(raters.items())}
        for unit, raters in sorted(seen.items())
    }


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def cohen_kappa_pairs(judgments: Iterable[Judgment]) -> list[PairAgreement]:
    """Cohen's kappa (unweighted, four canonical labels) for every pair of raters sharing a unit.

    Computed by ``statsmodels.stats.inter_rater.cohens_kappa`` on the 4x4 contingency table of the
    units both raters judged. Pairs that share no unit are left out; kappa is None with fewer than 2
    shared units or when chance agreement is 1 (both raters used one and the same label throughout).

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> js = [Judgment(q, r, "x", "y", w) for q, r, w in [("q1", "ann", "model_a"), ("q1", "bob", "model_a"),
        ...       ("q2", "ann", "model_b"), ("q2", "bob", "model_b")]]
        >>> cohen_kappa_pairs(js)[0].kappa
        1.0
    """
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa

    tables: dict[tuple[str, str], np.ndarray] = {}
    for raters in rating_units(judgments).values():
        for r1, r2 in combinations(raters, 2):  # raters are sorted, so r1 < r2
            table = tables.setdefault((r1, r2), np.zeros((len(LABELS), len(LABELS))))
            table[LABELS.index(raters[r1]), LABELS.index(raters[r2])] += 1
    out = []
    for (r1, r2), table in sorted(tables.items()):
        n = int(table.sum())
        kappa = None
        if n >= 2:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when chance agreement is 1
                kappa = _finite(cohens_kappa(table, return_results=False))
        out.append(PairAgreement(r1, r2, n, kappa, float(np.trace(table)) / n))
    return out


def fleiss_kappa(judgments: Iterable[Judgment]) -> tuple[float | None, int]:
    """Fleiss' kappa over the units rated by the most common number of raters; (kappa, units used).

    Fleiss' kappa needs the same number of ratings on every unit, so it is computed on the units whose
    rater count is the most common count of 2 or more (on a tie, the larger count: more raters per
    unit); the other units are left out and the count returned says how many were used. Uses
    ``statsmodels`` ``aggregate_raters`` and ``fleiss_kappa(method="fleiss")``. None when fewer than
    2 units qualify or when every rating is in one category.

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> js = [Judgment(q, r, "x", "y", w) for q, w in [("q1", "model_a"), ("q2", "model_b")]
        ...       for r in ("ann", "bob", "cy")]
        >>> fleiss_kappa(js)
        (1.0, 2)
    """
    import numpy as np
    from statsmodels.stats import inter_rater

    units = [raters for raters in rating_units(judgments).values() if len(raters) >= 2]
    if not units:
        return None, 0
    counts = Counter(len(raters) for raters in units)
    m = max(counts, key=lambda k: (counts[k], k))
    used = [raters for raters in units if len(raters) == m]
    if len(used) < 2:
        return None, len(used)
    data = np.array([[LABELS.index(label) for label in raters.values()] for raters in used])  # (units, m)
    table, _ = inter_rater.aggregate_raters(data, n_cat=len(LABELS))  # (units, 4) counts per label
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when every rating has one label
        return _finite(inter_rater.fleiss_kappa(table, method="fleiss")), len(used)


def krippendorff_alpha(judgments: Iterable[Judgment]) -> tuple[float | None, int]:
    """Krippendorff's alpha (nominal) over every unit with 2 or more ratings; (alpha, units used).

    Unlike Fleiss' kappa it allows any number of raters per unit: missing ratings are NaN in the
    raters x units reliability matrix given to ``krippendorff.alpha(level_of_measurement="nominal")``.
    The value domain is the four canonical labels. None when no unit has 2 ratings or every rating
    has one label (expected disagreement 0).

    Example:
        >>> from eval_core.rating_analysis import Judgment
        >>> js = [Judgment(q, r, "x", "y", w) for q, r, w in [("q1", "ann", "model_a"), ("q1", "bob", "model_a"),
        ...       ("q2", "ann", "model_b"), ("q2", "bob", "model_b"), ("q3", "ann", "model_a"), ("q3", "bob", "model_b")]]
        >>> round(krippendorff_alpha(js)[0], 4)   # 1 - (2/6) / (18/30) = 4/9
        0.4444
    """
    import krippendorff
    import numpy as np

    units = [raters for raters in rating_units(judgments).values() if len(raters) >= 2]
    if not units:
        return None, 0
    raters = sorted({r for unit in units for r in unit})
    row = {r: i for i, r in enumerate(raters)}
    data = np.full((len(raters), len(units)), np.nan)  # (raters, units); NaN: this rater skipped it
    for col, unit in enumerate(units):
        for rater, label in unit.items():
            data[row[rater], col] = LABELS.index(label)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when every rating has one label
        alpha = krippendorff.alpha(reliability_data=data, value_domain=list(range(len(LABELS))),
                                   level_of_measurement="nominal")
    return _finite(alpha), len(units)
