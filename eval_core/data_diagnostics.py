"""Data diagnostics of a training set and a held-out set: one versioned `DataDiagnostics` record.

It gathers the contamination check (`eval_core.data_contamination`), duplicates within each set,
category balance and coverage, length distributions, lexical diversity and the share of negative
(`should_refuse`) examples. Everything is pure Python over `TextSet`s; nothing reads files.

Definitions:
- lengths: tokens are whitespace words of the raw text (`text.split()`), characters are `len(text)`;
  the median is `statistics.median`, p90 interpolates linearly between order statistics (numpy's
  default, Hyndman & Fan type 7).
- distinct-n (Li et al., 2016): distinct word n-grams / all word n-grams of the set, n-grams taken
  within each item over the normalised words of `data_contamination.normalized_words`.
- a category is *rare* in training when its share of training rows is below `rare_share` (1 %).
  Rows without a category are counted under `UNCATEGORISED`.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from eval_core.data_contamination import (
    ContaminationConfig,
    ContaminationReport,
    DuplicateGroup,
    check_contamination,
    check_ids,
    duplicate_groups,
    normalized_words,
    word_ngrams,
)
from eval_core.errors import DatasetError
from eval_core.records import Record, json_safe

DATA_SCHEMA = "ftlens.data"
DATA_SCHEMA_VERSION = 1
UNCATEGORISED = "(none)"

SetName = Literal["train", "heldout"]


@dataclass(frozen=True)
class TextSet:
    """One data set as plain columns: ids, texts, and optionally a category and a should-refuse flag
    per row (None when the set has no such column)."""

    ids: Sequence[str]
    texts: Sequence[str]
    categories: Sequence[str | None] | None = None
    should_refuse: Sequence[bool] | None = None

    def __post_init__(self) -> None:
        check_ids(self.ids, self.texts, "set")
        for name in ("categories", "should_refuse"):
            col = getattr(self, name)
            if col is not None and len(col) != len(self.ids):
                raise DatasetError(f"{len(self.ids)} ids but {len(col)} values; give one per row", field=name)

    def category_of(self, i: int) -> str:
        c = self.categories[i] if self.categories is not None else None
        return UNCATEGORISED if c is None or c == "" else str(c)


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Settings of `diagnose_data`."""

    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)
    rare_share: float = 0.01  # below 1 % of training rows a category is too thin to learn from


@dataclass(frozen=True)
class CategoryBalance(Record):
    """Rows of one category in each set, and its share of that set's rows."""

    category: str
    train_rows: int
    heldout_rows: int
    train_share: float
    heldout_share: float


@dataclass(frozen=True)
class CoverageGap(Record):
    """A held-out category that training lacks (`missing`) or has below `rare_share` (`rare`)."""

    category: str
    status: Literal["missing", "rare"]
    heldout_rows: int
    train_rows: int
    train_share: float


@dataclass(frozen=True)
class LengthStats(Record):
    """Length distribution of one set (category None: the whole set), in `unit`."""

    set: SetName
    category: str | None
    unit: Literal["tokens", "chars"]
    rows: int
    min: int
    median: float
    p90: float
    max: int


@dataclass(frozen=True)
class Diversity(Record):
    """distinct-1 and distinct-2 of one set (NaN, exported as null, when it has no n-gram)."""

    set: SetName
    unigrams: int
    bigrams: int
    distinct_1: float
    distinct_2: float


@dataclass(frozen=True)
class NegativeShare(Record):
    """Share of rows with should_refuse true, for one set (category None) or one category."""

    set: SetName
    category: str | None
    rows: int
    negatives: int
    share: float


@dataclass(frozen=True)
class DataDiagnostics(Record):
    """Everything `diagnose_data` found, with its protocol (`contamination.protocol`, `rare_share`)."""

    train_rows: int
    heldout_rows: int
    contamination: ContaminationReport
    train_duplicates: tuple[DuplicateGroup, ...]
    heldout_duplicates: tuple[DuplicateGroup, ...]
    balance: tuple[CategoryBalance, ...]
    coverage_gaps: tuple[CoverageGap, ...]
    lengths: tuple[LengthStats, ...]
    diversity: tuple[Diversity, ...]
    negatives: tuple[NegativeShare, ...]
    rare_share: float
    schema: str = DATA_SCHEMA
    schema_version: int = DATA_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict (NaN -> None, tuples -> lists)."""
        return json_safe(super().to_dict())


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of a non-empty sequence.

    Example:
        >>> quantile([1, 2, 3, 4], 0.9)
        3.7
    """
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def length_stats(lengths: Sequence[int], set_name: SetName, unit: Literal["tokens", "chars"],
                 category: str | None = None) -> LengthStats:
    """min / median / p90 / max of non-empty `lengths`.

    Example:
        >>> s = length_stats([1, 2, 3, 10], "train", "tokens")
        >>> (s.min, s.median, round(s.p90, 6), s.max)
        (1, 2.5, 7.9, 10)
    """
    return LengthStats(set_name, category, unit, len(lengths), min(lengths), statistics.median(lengths),
                       quantile(lengths, 0.9), max(lengths))


def distinct_n(texts: Sequence[str], n: int) -> tuple[int, float]:
    """(total word n-grams, distinct / total) over the normalised words of `texts`; NaN when none.

    A text shorter than n words contributes no n-gram.

    Example:
        >>> distinct_n(["the cat", "the dog"], 1)
        (4, 0.75)
    """
    total, seen = 0, set()
    for t in texts:
        words = normalized_words(t)
        if len(words) >= n:
            grams = word_ngrams(words, n)
            total += len(grams)
            seen.update(grams)
    return total, (len(seen) / total if total else math.nan)


def category_balance(train: TextSet, heldout: TextSet, rare_share: float = 0.01
                     ) -> tuple[tuple[CategoryBalance, ...], tuple[CoverageGap, ...]]:
    """Rows per category in both sets, and the held-out categories missing or rare in training.

    Empty when neither set has categories. Sorted by category.

    Example:
        >>> tr = TextSet(["1", "2"], ["a", "b"], ["billing", "billing"])
        >>> ho = TextSet(["3"], ["c"], ["refunds"])
        >>> [(g.category, g.status) for g in category_balance(tr, ho)[1]]
        [('refunds', 'missing')]
    """
    if train.categories is None and heldout.categories is None:
        return (), ()
    tr = Counter(train.category_of(i) for i in range(len(train.ids)))
    ho = Counter(heldout.category_of(i) for i in range(len(heldout.ids)))
    n_tr, n_ho = max(len(train.ids), 1), max(len(heldout.ids), 1)
    balance, gaps = [], []
    for c in sorted(tr.keys() | ho.keys()):
        share = tr[c] / n_tr
        balance.append(CategoryBalance(c, tr[c], ho[c], share, ho[c] / n_ho))
        if ho[c] and (tr[c] == 0 or share < rare_share):
            gaps.append(CoverageGap(c, "missing" if tr[c] == 0 else "rare", ho[c], tr[c], share))
    return tuple(balance), tuple(gaps)


def _by_category(ts: TextSet) -> dict[str | None, list[int]]:
    groups: dict[str | None, list[int]] = {None: list(range(len(ts.ids)))}
    if ts.categories is not None:
        for i in range(len(ts.ids)):
            groups.setdefault(ts.category_of(i), []).append(i)
    return groups


def set_lengths(ts: TextSet, set_name: SetName) -> tuple[LengthStats, ...]:
    """Token and character length stats of the whole set, then of each category (sorted)."""
    tokens = [len(t.split()) for t in ts.texts]
    chars = [len(t) for t in ts.texts]
    out = []
    groups = _by_category(ts)
    for cat in [None, *sorted(c for c in groups if c is not None)]:
        rows = groups[cat]
        if rows:
            out.append(length_stats([tokens[i] for i in rows], set_name, "tokens", cat))
            out.append(length_stats([chars[i] for i in rows], set_name, "chars", cat))
    return tuple(out)


def negative_shares(ts: TextSet, set_name: SetName) -> tuple[NegativeShare, ...]:
    """Share of should_refuse rows, whole set then per category; empty when the flag is absent.

    Example:
        >>> ts = TextSet(["1", "2", "3"], ["a", "b", "c"], should_refuse=[True, False, False])
        >>> negative_shares(ts, "train")[0].negatives
        1
    """
    if ts.should_refuse is None:
        return ()
    out = []
    groups = _by_category(ts)
    for cat in [None, *sorted(c for c in groups if c is not None)]:
        rows = groups[cat]
        neg = sum(bool(ts.should_refuse[i]) for i in rows)
        out.append(NegativeShare(set_name, cat, len(rows), neg, neg / len(rows) if rows else math.nan))
    return tuple(out)


def diagnose_data(train: TextSet, heldout: TextSet, config: DiagnosticsConfig = DiagnosticsConfig(),
                  progress: Callable[[float, str], None] | None = None) -> DataDiagnostics:
    """All data diagnostics of a training set and a held-out set.

    `progress(fraction, step)` is called before each step (contamination, then duplicates within
    each set: the slow parts on large sets).

    Example:
        >>> tr = TextSet(["t1", "t2"], ["How do I reset my password?", "Where is my order?"])
        >>> ho = TextSet(["h1"], ["how do i reset my password"])
        >>> d = diagnose_data(tr, ho)
        >>> d.contamination.contaminated_ids, d.schema
        (('h1',), 'ftlens.data')
    """
    cc = config.contamination

    def step(fraction: float, what: str) -> None:
        if progress is not None:
            progress(fraction, what)

    step(0.0, "contamination")
    contamination = check_contamination(train.ids, train.texts, heldout.ids, heldout.texts, cc)
    step(0.45, "duplicates within the training set")
    train_duplicates = duplicate_groups(train.ids, train.texts, cc)
    step(0.85, "duplicates within the held-out set")
    heldout_duplicates = duplicate_groups(heldout.ids, heldout.texts, cc)
    step(0.95, "balance, lengths, diversity")
    balance, gaps = category_balance(train, heldout, config.rare_share)
    diversity = []
    for name, ts in (("train", train), ("heldout", heldout)):
        uni, d1 = distinct_n(ts.texts, 1)
        bi, d2 = distinct_n(ts.texts, 2)
        diversity.append(Diversity(name, uni, bi, d1, d2))  # type: ignore[arg-type]
    return DataDiagnostics(
        train_rows=len(train.ids),
        heldout_rows=len(heldout.ids),
        contamination=contamination,
        train_duplicates=train_duplicates,
        heldout_duplicates=heldout_duplicates,
        balance=balance,
        coverage_gaps=gaps,
        lengths=set_lengths(train, "train") + set_lengths(heldout, "heldout"),
        diversity=tuple(diversity),
        negatives=negative_shares(train, "train") + negative_shares(heldout, "heldout"),
        rare_share=config.rare_share,
    )
