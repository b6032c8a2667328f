"""Perplexity and bits-per-byte: pure functions over negative log-likelihood statistics.

The model layer (`nll_scoring.py`) turns texts into `NllStats`; everything here is arithmetic on
them, so the definitions are visible and testable without a model:

- token perplexity  = exp(sum NLL / scored tokens)       (token-weighted over the whole set,
  not a mean of per-document perplexities; matches lm-evaluation-harness's corpus-level value)
- bits per byte     = sum NLL / UTF-8 bytes / ln 2       (tokenizer-independent)
- word perplexity   = exp(sum NLL / words), words = len(re.split(r"\\s+", text)) as in
  lm-evaluation-harness's wikitext task
- byte perplexity   = exp(sum NLL / bytes)

NLL is in nats (natural log, `LOG_BASE`), summed in float64. An example with no scored token (an
empty text, or a single token with nothing before it to predict it from) is *not scorable*: it adds
nothing to the sums, and `example_perplexities` gives it no value but a reason, never NaN or inf.
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

LOG_BASE = "e"  # NLL in nats; bits per byte divides by ln 2
DEFINITIONS: dict[str, str] = {
    "perplexity": "corpus, token-weighted: exp(sum NLL / scored tokens) over all examples",
    "per_example_perplexity": "one example's own exp(nll_sum / tokens); reported separately, never averaged into the corpus value",
    "bits_per_byte": "sum NLL / UTF-8 bytes / ln 2",
    "word_perplexity": "exp(sum NLL / words), words split on whitespace",
    "not_scorable": "an example with no scored token adds nothing to the sums and has no per-example value",
    "log_base": LOG_BASE,
}
"""What each figure means, recorded with the protocol of every stored perplexity number."""


@dataclass(frozen=True)
class ExamplePerplexity:
    """Per-sample perplexity of one example (not the corpus value), or why it has none."""

    perplexity: float | None
    tokens: int
    not_scorable: str | None = None  # the reason when `perplexity` is None


def not_scorable_reason(stats: NllStats) -> str | None:
    """Why an example has no perplexity (None when it has scored tokens).

    Example:
        >>> not_scorable_reason(NllStats(0.0, 0, 0, 0))
        'empty text: there is no token to score'
    """
    if stats.token_count > 0:
        return None
    if stats.byte_count == 0:
        return "empty text: there is no token to score"
    return "fewer than 2 tokens (after the BOS policy): the only token has no context to be predicted from"


def example_perplexities(stats: Iterable[NllStats]) -> list[ExamplePerplexity]:
    """Each example's own perplexity, labelled as such; not scorable examples carry the reason.

    Example:
        >>> [e.perplexity for e in example_perplexities([NllStats(2 * math.log(3), 2, 4, 1), ZERO])]
        [3.0000000000000004, None]
    """
    out = []
    for s in stats:
        reason = not_scorable_reason(s)
        out.append(ExamplePerplexity(None if reason else math.exp(s.nll_sum / s.token_count), s.token_count, reason))
    return out


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
