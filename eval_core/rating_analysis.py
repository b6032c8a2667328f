"""Statistics of blind pairwise human ratings: win rates, a win matrix, Likert means and position bias
here; Bradley-Terry strengths (eval_core.rating_bradley_terry) and rater agreement
(eval_core.rating_agreement), re-exported here; all gathered into the versioned ``ftlens.ratings``
record by `summarise`.

A `Judgment` is one rater's verdict on one item: the answer of ``model_a`` was shown on the LEFT,
``model_b``'s on the right, and ``winner`` is ``model_a``, ``model_b``, ``tie`` or ``both_bad``.
Everything here is a pure function of the judgments; randomness (the bootstrap) only comes from a
recorded seed, and the judgments are put in a canonical order first, so every figure is invariant to
the order in which they were stored.

Bradley-Terry: P(i beats j) = 1 / (1 + exp(-(theta_i - theta_j))), maximum likelihood with
``scipy.optimize.minimize``, sum(theta) = 0, ``elo = 1000 + 400 * theta / ln(10)`` (FastChat's Chatbot
Arena scale), bootstrap percentile intervals over judgments taken as sacrebleu takes them.

Example:
    >>> js = [Judgment(f"q{i}", "ann", "base", "tuned", w) for i, w in enumerate(["model_b"] * 3 + ["model_a", "tie"])]
    >>> s = summarise(js, n_resamples=50)
    >>> [(w.model, w.rate) for w in s.win_rates]
    [('tuned', 0.7), ('base', 0.3)]
    >>> [st.model for st in s.bradley_terry.strengths]
    ['tuned', 'base']
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from eval_core.errors import EvalCoreError
from eval_core.rating_agreement import (
    LABELS,
    PairAgreement,
    canonical_label,
    canonical_order,
    cohen_kappa_pairs,
    fleiss_kappa,
    krippendorff_alpha,
    rating_units,
)
from eval_core.rating_bradley_terry import (
    BT_METHOD,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    BradleyTerry,
    Strength,
    bradley_terry,
    bradley_terry_by_category,
    judged_models,
)
from eval_core.records import json_safe
from eval_core.retention import wilson_interval

__all__ = [
    "DEFAULT_RESAMPLES", "DEFAULT_SEED", "LABELS", "SCHEMA", "SCHEMA_VERSION", "WINNERS", "BradleyTerry",
    "Interval", "Judgment", "LikertScore", "LikertSummary", "PairAgreement", "PositionBias", "RatingSummary",
    "Strength", "WinRate", "bradley_terry", "bradley_terry_by_category", "canonical_label", "canonical_order",
    "cohen_kappa_pairs", "fleiss_kappa", "judged_models", "krippendorff_alpha", "likert_summary", "position_bias",
    "rating_units", "share_interval", "summarise", "wilson_interval", "win_matrix", "win_rates",
]

SCHEMA = "ftlens.ratings"
SCHEMA_VERSION = 1
WINNERS = ("model_a", "model_b", "tie", "both_bad")


def _require_text(value: object, name: str, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise EvalCoreError(f"{what} {name} is empty or not text ({value!r}); give a non-empty string", field=name)


@dataclass(frozen=True)
class Judgment:
    """One rater's verdict on one item: model_a was shown on the LEFT, model_b on the right.

    Example:
        >>> Judgment("q1", "ann", "base", "tuned", "model_b").winner
        'model_b'
    """

    item_id: str
    rater: str
    model_a: str
    model_b: str
    winner: str  # one of WINNERS
    category: str | None = None

    def __post_init__(self) -> None:
        for name in ("item_id", "rater", "model_a", "model_b"):
            _require_text(getattr(self, name), name, "the judgment's")
        if self.winner not in WINNERS:
            raise EvalCoreError(f"winner {self.winner!r} of item {self.item_id!r} is not one of {', '.join(WINNERS)}; "
                                "say which side won (model_a is the left answer)", field="winner")
        if self.model_a == self.model_b:
            raise EvalCoreError(f"item {self.item_id!r} compares {self.model_a!r} with itself; a pairwise judgment "
                                "needs two different models in model_a and model_b", field="model_b")
        if self.category is not None and not isinstance(self.category, str):
            raise EvalCoreError(f"category {self.category!r} is not text; give a string or None", field="category")


@dataclass(frozen=True)
class LikertScore:
    """One rater's score of one model's answer on one criterion, on the rubric's scale (e.g. 1..5)."""

    item_id: str
    rater: str
    model: str
    criterion: str  # e.g. "helpfulness"
    score: float

    def __post_init__(self) -> None:
        for name in ("item_id", "rater", "model", "criterion"):
            _require_text(getattr(self, name), name, "the Likert score's")
        if isinstance(self.score, bool) or not isinstance(self.score, int | float) or not math.isfinite(self.score):
            raise EvalCoreError(f"score {self.score!r} of item {self.item_id!r} is not a finite number; "
                                "give the rubric value, e.g. 1 to 5", field="score")


@dataclass(frozen=True)
class Interval:
    """A value with its 95% interval; all None when there is nothing to estimate from."""

    value: float | None
    low: float | None
    high: float | None


def share_interval(successes: float, n: int) -> Interval:
    """The share successes/n with its Wilson 95% interval; all None when n is 0.

    Example:
        >>> iv = share_interval(70, 100)
        >>> (iv.value, round(iv.low, 4), round(iv.high, 4))
        (0.7, 0.6042, 0.7811)
    """
    if n <= 0:
        return Interval(None, None, None)
    low, high = wilson_interval(successes, n)
    return Interval(successes / n, low, high)


@dataclass(frozen=True)
class WinRate:
    """A model's record over every judgment it took part in (both_bad kept apart from the rate)."""

    model: str
    wins: int
    losses: int
    ties: int
    both_bad: int
    n: int  # every judgment it took part in: wins + losses + ties + both_bad
    rate: float | None  # (wins + ties / 2) / (wins + losses + ties); None when that is 0
    low: float | None
    high: float | None


def win_rates(judgments: Iterable[Judgment]) -> list[WinRate]:
    """Win rate per model, ties as half a win, with a Wilson 95% interval; best first.

    ``rate = (wins + 0.5 * ties) / (wins + losses + ties)``; ``both_bad`` verdicts are counted apart and
    left out of the rate. The Wilson interval treats the half-wins of ties as successes, an
    approximation: it is exact only without ties (and a little wide with many). Sorted by rate (None
    last), then model name.

    Example:
        >>> js = [Judgment("q1", "ann", "a", "b", "model_a"), Judgment("q2", "ann", "a", "b", "tie"),
        ...       Judgment("q3", "ann", "b", "a", "both_bad")]
        >>> [(w.model, w.wins, w.ties, w.both_bad, w.n, w.rate) for w in win_rates(js)]
        [('a', 1, 1, 1, 3, 0.75), ('b', 0, 1, 1, 3, 0.25)]
    """
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for j in judgments:
        if j.winner in ("tie", "both_bad"):
            counts[j.model_a][j.winner] += 1
            counts[j.model_b][j.winner] += 1
        else:
            winner, loser = (j.model_a, j.model_b) if j.winner == "model_a" else (j.model_b, j.model_a)
            counts[winner]["wins"] += 1
            counts[loser]["losses"] += 1
    out = []
    for model, c in counts.items():
        iv = share_interval(c["wins"] + 0.5 * c["tie"], c["wins"] + c["losses"] + c["tie"])
        out.append(WinRate(model, c["wins"], c["losses"], c["tie"], c["both_bad"], sum(c.values()),
                           iv.value, iv.low, iv.high))
    return sorted(out, key=lambda w: (w.rate is None, -(w.rate or 0.0), w.model))


def win_matrix(judgments: Iterable[Judgment]) -> dict[tuple[str, str], tuple[float | None, int]]:
    """(row model, column model) -> (row's share of wins against column, ties as half; judgments).

    Every ordered pair of distinct models that appear is present; ``n`` counts the decisive and tie
    judgments between the two (both_bad left out), and the share is None when n is 0. For n > 0,
    ``rate(a, b) + rate(b, a) == 1``.

    Example:
        >>> m = win_matrix([Judgment("q1", "ann", "a", "b", "model_a"), Judgment("q2", "ann", "b", "a", "tie")])
        >>> m[("a", "b")], m[("b", "a")]
        ((0.75, 2), (0.25, 2))
    """
    score: Counter[tuple[str, str]] = Counter()
    n: Counter[tuple[str, str]] = Counter()
    models: set[str] = set()
    for j in judgments:
        models |= {j.model_a, j.model_b}
        if j.winner == "both_bad":
            continue
        a, b = j.model_a, j.model_b
        n[(a, b)] += 1
        n[(b, a)] += 1
        if j.winner == "tie":
            score[(a, b)] += 0.5
            score[(b, a)] += 0.5
        else:
            score[(a, b) if j.winner == "model_a" else (b, a)] += 1
    return {(a, b): (score[(a, b)] / n[(a, b)] if n[(a, b)] else None, n[(a, b)])
            for a in sorted(models) for b in sorted(models) if a != b}


@dataclass(frozen=True)
class LikertSummary:
    """Mean Likert score of one model on one criterion with a Student-t 95% interval."""

    model: str
    criterion: str
    mean: float
    low: float | None  # None when n == 1: one score gives no spread to estimate from
    high: float | None
    n: int


def likert_summary(scores: Iterable[LikertScore]) -> list[LikertSummary]:
    """Mean score per (model, criterion) with the Student-t 95% interval, sorted by criterion then model.

    ``mean +/- t(0.975, n-1) * s / sqrt(n)`` (scipy.stats.t, s the sample standard deviation). Every
    score counts as one observation, even when several raters scored the same answer; with 1 score
    the interval is None rather than infinite.

    Example:
        >>> ss = [LikertScore(f"q{i}", "ann", "tuned", "helpfulness", v) for i, v in enumerate([4, 5, 3])]
        >>> [(s.mean, round(s.low, 3), round(s.high, 3), s.n) for s in likert_summary(ss)]
        [(4.0, 1.516, 6.484, 3)]
    """
    import numpy as np
    from scipy import stats

    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in scores:
        groups[(s.criterion, s.model)].append(float(s.score))
    out = []
    for (criterion, model), values in sorted(groups.items()):
        x = np.asarray(sorted(values))  # sorted so the float sums do not depend on input order
        mean, n = float(x.mean()), len(x)
        if n < 2:
            out.append(LikertSummary(model, criterion, mean, None, None, n))
            continue
        half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
        out.append(LikertSummary(model, criterion, mean, mean - half, mean + half, n))
    return out


@dataclass(frozen=True)
class PositionBias:
    """Do raters favour the LEFT answer? Share of decisive verdicts won by the left side (model_a)."""

    left_wins: int
    right_wins: int
    share_left: float | None  # None without decisive verdicts
    low: float | None
    high: float | None
    flagged: bool  # the Wilson 95% interval excludes 0.5


def position_bias(judgments: Iterable[Judgment]) -> PositionBias:
    """Share of decisive judgments won by the left answer, with a Wilson 95% interval.

    Ties and both_bad are left out. Blind assignment puts each model left half the time, so an
    interval that excludes 0.5 flags raters who pick a side rather than an answer.

    Example:
        >>> pb = position_bias([Judgment(f"q{i}", "ann", "a", "b", "model_a" if i < 70 else "model_b") for i in range(100)])
        >>> (pb.share_left, pb.flagged)
        (0.7, True)
    """
    tally = Counter(j.winner for j in judgments)
    left, right = tally["model_a"], tally["model_b"]
    iv = share_interval(left, left + right)
    flagged = iv.low is not None and iv.high is not None and (iv.low > 0.5 or iv.high < 0.5)
    return PositionBias(left, right, iv.value, iv.low, iv.high, flagged)


DEFINITIONS: dict[str, str] = {
    "win_rate": "(wins + ties/2) / (wins + losses + ties) per model; both_bad counted apart; Wilson 95% interval "
                "with half-wins as successes (an approximation when there are ties)",
    "win_matrix": "row model's share of wins against the column model, ties as half; n excludes both_bad",
    "bradley_terry": "P(i beats j) = 1/(1+exp(-(theta_i - theta_j))); " + BT_METHOD
                     + "; ties and both_bad as half a win each (ties='half')",
    "bradley_terry_ties_dropped": "the same fit with ties and both_bad left out (ties='drop')",
    "elo": "1000 + 400 * theta / ln(10) (FastChat Chatbot Arena scale)",
    "likert": "mean score per model and criterion, Student-t 95% interval; none with a single score",
    "canonical_labels": "agreement compares side-free labels per (item, sorted model pair): first, second, tie, "
                        "both_bad; a rater's repeated verdicts on a unit reduce to their most frequent label",
    "cohen_kappa": "unweighted Cohen's kappa per rater pair over shared units (statsmodels cohens_kappa)",
    "fleiss_kappa": "Fleiss' kappa over units with the most common number (>= 2) of raters (statsmodels)",
    "krippendorff_alpha": "nominal Krippendorff's alpha over units with >= 2 ratings, missing as NaN (krippendorff)",
    "position_bias": "share of decisive verdicts won by the left answer (model_a), Wilson 95%; flagged when the "
                     "interval excludes 0.5",
}


@dataclass(frozen=True)
class RatingSummary:
    """The ``ftlens.ratings`` record: every rating statistic of one campaign with its protocol."""

    campaign: str | None
    n_judgments: int
    models: list[str]
    win_rates: list[WinRate]
    win_matrix: list[dict]  # rows {"model", "opponent", "rate", "n"}
    bradley_terry: BradleyTerry
    bradley_terry_ties_dropped: BradleyTerry | None  # None: fewer than 2 models left without ties
    by_category: dict[str, BradleyTerry]
    likert: list[LikertSummary]
    cohen_kappa: list[PairAgreement]
    fleiss_kappa: float | None
    fleiss_items: int
    krippendorff_alpha: float | None
    krippendorff_items: int
    position_bias: PositionBias
    seed: int
    n_resamples: int
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    schema: str = SCHEMA
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        """A JSON-ready dict (no NaN or infinity: such values become None)."""
        return json_safe(asdict(self))


def summarise(
    judgments: Iterable[Judgment],
    likert: Iterable[LikertScore] = (),
    *,
    campaign: str | None = None,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> RatingSummary:
    """Every statistic of a campaign's judgments and Likert scores as one `RatingSummary`.

    Never fails for lack of data: with fewer than 2 models judged the Bradley-Terry fit has no
    strengths (and ``converged`` False), and 0 judgments give a valid, mostly empty summary.

    Example:
        >>> s = summarise([], campaign="empty")
        >>> (s.n_judgments, s.models, s.bradley_terry.strengths, s.position_bias.share_left, s.version)
        (0, [], [], None, 1)
    """
    js = canonical_order(judgments)
    models = sorted({m for j in js for m in (j.model_a, j.model_b)})

    def fit(ties: str) -> BradleyTerry | None:
        if len(judged_models(js, ties=ties)) < 2:
            return None
        return bradley_terry(js, ties=ties, n_resamples=n_resamples, seed=seed)

    main = fit("half") or BradleyTerry([], "half", "half", len(js), n_resamples, seed, BT_METHOD, False)
    fleiss, fleiss_items = fleiss_kappa(js)
    alpha, alpha_items = krippendorff_alpha(js)
    return RatingSummary(
        campaign=campaign, n_judgments=len(js), models=models, win_rates=win_rates(js),
        win_matrix=[{"model": a, "opponent": b, "rate": rate, "n": n} for (a, b), (rate, n) in win_matrix(js).items()],
        bradley_terry=main, bradley_terry_ties_dropped=fit("drop"),
        # Categories hold few judgments each, often all won by one side, where every refit runs to the
        # penalty's bound: a tenth of the resamples (at least 100; each record says how many) keeps a
        # summary of many categories to seconds.
        by_category=bradley_terry_by_category(js, n_resamples=min(n_resamples, max(100, n_resamples // 10)), seed=seed),
        likert=likert_summary(likert), cohen_kappa=cohen_kappa_pairs(js), fleiss_kappa=fleiss,
        fleiss_items=fleiss_items, krippendorff_alpha=alpha, krippendorff_items=alpha_items,
        position_bias=position_bias(js), seed=seed, n_resamples=n_resamples,
    )
