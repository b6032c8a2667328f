"""Perplexity and bits-per-byte: pure functions over negative log-likelihood statistics.

The model layer (`nll_scoring.py`) turns texts into `NllStats`; everything here is arithmetic on
them, so the definitions are visible and testable without a model:

- token perplexity  = exp(sum NLL / scored tokens)       (token-weighted over the whole set,
  not a mean of per-document perplexities; matches lm-evaluation-harness's corpus-level value)
- bits per byte     = sum NLL / UTF-8 bytes / ln 2       (tokenizer-independent)
- word perplexity   = exp(sum NLL / words), words = len(re.split(r"\\s+", text)) as in
  lm-evaluation-harness's wikitext task
- byte perplexity   = exp(sum NLL / bytes)

NLL is in nats, summed in float64.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from eval_core.errors import EvalCoreError


@dataclass(frozen=True)
class NllStats:
    """Sufficient statistics of a perplexity computation (one example or a whole set)."""

    nll_sum: float
    token_count: int
    byte_count: int
    word_count: int

    def __add__(self, other: NllStats) -> NllStats:
        return NllStats(
            self.nll_sum + other.nll_sum,
            self.token_count + other.token_count,
            self.byte_count + other.byte_count,
            self.word_count + other.word_count,
        )


ZERO = NllStats(0.0, 0, 0, 0)


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them for word perplexity."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def total(stats: Iterable[NllStats]) -> NllStats:
    """Sum statistics over examples (the corpus-level, token-weighted aggregate)."""
    out = ZERO
    for s in stats:
        out = out + s
    return out


def _need(count: int, what: str) -> None:
    if count <= 0:
        raise EvalCoreError(
            f"no {what} were scored, so the value is undefined (not NaN); the texts are empty or "
            "shorter than one token after the BOS token"
        )


def perplexity_per_token(stats: NllStats) -> float:
    """exp(sum NLL / scored tokens).

    Example:
        >>> perplexity_per_token(NllStats(nll_sum=2 * math.log(4), token_count=2, byte_count=8, word_count=2))
        4.0
    """
    _need(stats.token_count, "tokens")
    return math.exp(stats.nll_sum / stats.token_count)


def bits_per_byte(stats: NllStats) -> float:
    """sum NLL / UTF-8 bytes / ln 2.

    Example:
        >>> round(bits_per_byte(NllStats(nll_sum=8 * math.log(2), token_count=2, byte_count=8, word_count=2)), 6)
        1.0
    """
    _need(stats.byte_count, "bytes")
    return stats.nll_sum / stats.byte_count / math.log(2)


def byte_perplexity(stats: NllStats) -> float:
    """exp(sum NLL / UTF-8 bytes)."""
    _need(stats.byte_count, "bytes")
    return math.exp(stats.nll_sum / stats.byte_count)


def word_perplexity(stats: NllStats) -> float:
    """exp(sum NLL / words).

    Example:
        >>> word_perplexity(NllStats(nll_sum=math.log(9), token_count=3, byte_count=5, word_count=1))
        9.000000000000002
    """
    _need(stats.word_count, "words")
    return math.exp(stats.nll_sum / stats.word_count)


def summarize(stats: NllStats) -> dict[str, float | int]:
    """All perplexity figures of one aggregate, with the statistics they came from."""
    return {
        "perplexity": perplexity_per_token(stats),
        "bits_per_byte": bits_per_byte(stats),
        "byte_perplexity": byte_perplexity(stats),
        "word_perplexity": word_perplexity(stats),
        "nll_sum": stats.nll_sum,
        "tokens": stats.token_count,
        "bytes": stats.byte_count,
        "words": stats.word_count,
    }
