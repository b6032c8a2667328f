"""Reference-based text metrics: BLEU, chrF, ROUGE and exact match, computed by the reference libraries.

Nothing here re-implements a metric. Each example's *sufficient statistics* come from the library
that defines the metric, and every value is derived from them:
- `bleu`, `chrf`: sacrebleu's own segment statistics (`Metric._extract_corpus_statistics`); the
  corpus value is sacrebleu's score of the summed statistics (what `corpus_score` returns), the
  per-example value is sacrebleu's sentence score (BLEU with `effective_order=True`, as
  `sacrebleu.sentence_bleu`; chrF as `sacrebleu.sentence_chrf`). Scores are on sacrebleu's 0-100 scale.
- `rouge1`, `rouge2`, `rougeL`, `rougeLsum`: `rouge_score.RougeScorer` per example, (precision,
  recall, F1) kept; the value is F1 on rouge-score's 0-1 scale and the corpus value is the mean F1.
  `rougeLsum` splits summaries into sentences on newlines ("\\n"), as rouge-score does; text
  without newlines is one sentence, so it equals `rougeL` there. Tokenizer (recorded): `"unicode"`
  (default) is rouge-score's made Unicode-aware, since rouge-score's keeps only [a-z0-9] and scores
  identical Chinese or Russian text 0 (huggingface/evaluate#256): NFC, lowercase, anything but
  letters/digits/marks separates, each Han/kana character is a token, the Porter stemmer stems ASCII
  tokens longer than 3; on ASCII text its tokens are exactly rouge-score's. `"rouge-score"`: unchanged.
- `exact_match`: 1.0 when prediction and reference are equal after `normalize_answer` (Unicode NFKC,
  case folding, punctuation removed, English articles a/an/the removed, whitespace collapsed: the
  SQuAD normalisation, made Unicode-aware), else 0.0; the corpus value is the mean.

Empty predictions or references get whatever the libraries give them (BLEU 0, ROUGE 0, chrF 0;
exact match is 1.0 for two empty strings); nothing here replaces a value with a made-up 0.

Speed: the statistics of all metrics are computed in one pass per example (sentence and corpus
values both come from them), Porter stems are memoised per process (stemming dominates ROUGE), and
large inputs are split over worker processes (bench/text_metrics_bench.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from eval_core.errors import EvalCoreError

TEXT_METRICS_PROTOCOL_VERSION = 2  # 2: ROUGE tokenizer recorded; Unicode-aware by default
ALL_METRICS: tuple[str, ...] = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match")
ROUGE_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
SACREBLEU_METRICS = ("bleu", "chrf")
PROBE_OUTCOMES = ("mc_acc", "mc_acc_norm", "cloze_exact", "cloze_contains")  # eval_core.probe_scoring
HIGHER_IS_BETTER = dict.fromkeys((*ALL_METRICS, *PROBE_OUTCOMES), True)
SCALE = {"bleu": 100.0, "chrf": 100.0, **dict.fromkeys((*ROUGE_METRICS, "exact_match", *PROBE_OUTCOMES), 1.0)}
"""The top of each metric's range, in the units of its reference library."""

BLEU_TOKENIZERS: tuple[str, ...] = ("13a", "intl", "zh", "char", "none")
"""sacrebleu's tokenizers that work offline with no extra package (spm/flores download a model;
ja-mecab and ko-mecab need extra packages)."""

PROPORTION_METRICS: tuple[str, ...] = ("exact_match", *PROBE_OUTCOMES)
"""Per-example 0/1 outcomes whose first statistic is that outcome: the corpus value is its mean (the
probe metrics are computed by eval_core.probe_scoring and stored beside the text metrics)."""

ROUGE_TOKENIZERS: tuple[str, ...] = ("unicode", "rouge-score")  # see the module docstring

PARALLEL_MIN_PAIRS = 400
"""Below this many pairs, worker start-up costs more than it saves."""


@dataclass(frozen=True)
class TextMetricConfig:
    """Which metrics, with which options. `config_hash` covers whatever changes a per-example value."""

    metrics: tuple[str, ...] = ALL_METRICS
    bleu_tokenize: str = "13a"
    lowercase: bool = False
    rouge_stemmer: bool = True
    rouge_tokenizer: str = "unicode"

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in ALL_METRICS]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], ALL_METRICS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise EvalCoreError(f"unknown text metric '{unknown[0]}'.{hint} Known: {', '.join(ALL_METRICS)}", field="metrics")
        if not self.metrics:
            raise EvalCoreError("no text metric chosen; pick from " + ", ".join(ALL_METRICS), field="metrics")
        if self.bleu_tokenize not in BLEU_TOKENIZERS:
            raise EvalCoreError(f"BLEU tokenizer '{self.bleu_tokenize}' is not available here (offline, no extra "
                                f"packages); use one of {', '.join(BLEU_TOKENIZERS)}", field="bleu_tokenize")
        if self.rouge_tokenizer not in ROUGE_TOKENIZERS:
            raise EvalCoreError(f"ROUGE tokenizer '{self.rouge_tokenizer}' is unknown; use one of "
                                f"{', '.join(ROUGE_TOKENIZERS)}", field="rouge_tokenizer")

    def to_dict(self) -> dict:
        return {"protocol_version": TEXT_METRICS_PROTOCOL_VERSION, **asdict(self), "metrics": list(self.metrics)}

    def config_hash(self) -> str:
        key = {k: v for k, v in self.to_dict().items() if k != "metrics"}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PairScores:
    """One (prediction, reference) pair: per-metric value and sufficient statistics."""

    values: dict[str, float] = field(default_factory=dict)
    stats: dict[str, tuple[float, ...]] = field(default_factory=dict)


# --- exact match ---------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


class _PunctuationToSpace(dict):
    """A `str.translate` table mapping Unicode punctuation (category P*) and ASCII punctuation to a space.

    Filled on first sight of each character, so translating runs in C after the first few texts
    (a per-character generator was the slowest part of exact match).
    """

    def __missing__(self, code: int) -> int:
        ch = chr(code)
        value = 32 if unicodedata.category(ch).startswith("P") or ch in string.punctuation else code
        self[code] = value
        return value


_PUNCTUATION_TO_SPACE = _PunctuationToSpace()


def normalize_answer(text: str) -> str:
    """The exact-match normalisation (see the module docstring).

    Example:
        >>> normalize_answer("  The Café, NOT a bar! ")
        'café not bar'
    """
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCTUATION_TO_SPACE)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


# --- the libraries' objects, one set per process ------------------------------------------------------


class _MemoStemmer:
    """nltk's Porter stemmer (rouge-score's) with its results memoised: same stems, far fewer calls."""

    def __init__(self, stemmer) -> None:
        self.stem = lru_cache(maxsize=200_000)(stemmer.stem)


class _SeparatorsToSpace(dict):
    """A `str.translate` table: characters that are not letters, digits or marks become a space, and
    each Han or kana character is set apart by spaces (filled on first sight, like _PunctuationToSpace)."""

    def __missing__(self, code: int) -> int | str:
        ch = chr(code)
        if (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
                or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F):
            value: int | str = f" {ch} "
        else:
            value = code if unicodedata.category(ch)[0] in "LNM" else 32
        self[code] = value
        return value


_SEPARATORS_TO_SPACE = _SeparatorsToSpace()


class UnicodeRougeTokenizer:
    """rouge-score's tokenizer for every script (module docstring); pass it to `RougeScorer(tokenizer=...)`.

    Example:
        >>> UnicodeRougeTokenizer(use_stemmer=True).tokenize("Running cats, 東京 и Москва!")
        ['run', 'cat', '東', '京', 'и', 'москва']
    """

    name = "unicode-v1"

    def __init__(self, use_stemmer: bool = False) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer() if use_stemmer else None  # rouge-score's stemmer

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFC", text).lower().translate(_SEPARATORS_TO_SPACE)
        tokens = text.split()
        if self._stemmer is not None:
            # rouge-score stems tokens longer than 3 characters; Porter is only right for English words.
            tokens = [self._stemmer.stem(t) if len(t) > 3 and t.isascii() else t for t in tokens]
        return [t for t in tokens if t]


@lru_cache(maxsize=8)
def _sacrebleu_metric(name: str, tokenize: str, lowercase: bool, sentence: bool = False):
    from sacrebleu.metrics import BLEU, CHRF

    if name == "bleu":
        return BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=sentence)
    return CHRF(lowercase=lowercase)


@lru_cache(maxsize=4)
def _rouge_scorer(types: tuple[str, ...], stemmer: bool, tokenizer_name: str = "unicode"):
    from rouge_score import rouge_scorer

    custom = UnicodeRougeTokenizer(stemmer) if tokenizer_name == "unicode" else None
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=stemmer, tokenizer=custom)
    tokenizer = getattr(scorer, "_tokenizer", None)
    if stemmer and getattr(tokenizer, "_stemmer", None) is not None:
        tokenizer._stemmer = _MemoStemmer(tokenizer._stemmer)  # golden tests prove the scores unchanged
    return scorer


def _check_texts(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise EvalCoreError(
            f"{len(predictions)} predictions but {len(references)} references: give one reference per "
            "prediction, in the same order"
        )
    for what, texts in (("prediction", predictions), ("reference", references)):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise EvalCoreError(f"{what} {i + 1} is {type(t).__name__}, not text", line=i + 1, field=what)


def _score_chunk(args: tuple) -> list[PairScores]:
    predictions, references, config = args
    out = [PairScores() for _ in predictions]
    for name in SACREBLEU_METRICS:
        if name not in config.metrics:
            continue
        corpus = _sacrebleu_metric(name, config.bleu_tokenize, config.lowercase)
        stats = corpus._extract_corpus_statistics(predictions, [references])
        sentence = _sacrebleu_metric(name, config.bleu_tokenize, config.lowercase, sentence=True)
        for ps, s in zip(out, stats, strict=True):
            ps.stats[name] = tuple(float(v) for v in s)
            ps.values[name] = float(sentence._compute_score_from_stats(s).score)
    rouge_types = tuple(m for m in ROUGE_METRICS if m in config.metrics)
    if rouge_types:
        scorer = _rouge_scorer(rouge_types, config.rouge_stemmer, config.rouge_tokenizer)
        # rougeLsum of one-line texts is rougeL: one sentence each side, so the union LCS is the LCS
        # and its hits are the LCS length (golden tests check it against a fresh scorer). Scoring
        # those pairs as rougeL skips a second tokenisation and a second LCS table.
        one_line = None
        if "rougeLsum" in rouge_types:
            one_line = _rouge_scorer(tuple(m for m in ROUGE_METRICS if m in rouge_types and m != "rougeLsum")
                                     + (("rougeL",) if "rougeL" not in rouge_types else ()), config.rouge_stemmer,
                                     config.rouge_tokenizer)
        for ps, p, r in zip(out, predictions, references, strict=True):
            if one_line is not None and "\n" not in p and "\n" not in r:
                scores = one_line.score(r, p)
                scores["rougeLsum"] = scores["rougeL"]
            else:
                scores = scorer.score(r, p)  # rouge-score's order: (target, prediction)
            for m in rouge_types:
                s = scores[m]
                ps.stats[m] = (float(s.precision), float(s.recall), float(s.fmeasure))
                ps.values[m] = float(s.fmeasure)
    if "exact_match" in config.metrics:
        for ps, p, r in zip(out, predictions, references, strict=True):
            v = 1.0 if normalize_answer(p) == normalize_answer(r) else 0.0
            ps.stats["exact_match"] = (v,)
            ps.values["exact_match"] = v
    return out


# Imported once by the fork server, so that each worker forked from it starts with them loaded
# instead of importing sacrebleu, rouge-score and nltk itself (about a second per worker per call).
_FORKSERVER_PRELOAD = ("eval_core.text_metrics", "sacrebleu.metrics.bleu", "sacrebleu.metrics.chrf",
                       "rouge_score.rouge_scorer")


def _preload_forkserver(context) -> None:  # noqa: ANN001 (multiprocessing's private context type)
    """Add our modules to the fork server's preload list, unless the server already runs.

    The server is one per process: '__main__' (multiprocessing's default preload) and whatever
    another caller asked for are kept; once it runs, preloading can no longer change.
    """
    from multiprocessing import forkserver

    server = forkserver._forkserver
    if getattr(server, "_forkserver_pid", None) is not None:
        return
    current = list(getattr(server, "_preload_modules", ["__main__"]))
    context.set_forkserver_preload(current + [m for m in _FORKSERVER_PRELOAD if m not in current])


def score_pairs(
    predictions: Sequence[str],
    references: Sequence[str],
    config: TextMetricConfig = TextMetricConfig(),
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[PairScores]:
    """Per-pair values and statistics of every metric in `config`, in input order.

    `workers` (default: the usable cores) processes share large inputs; results do not depend on it.

    Example:
        >>> scores = score_pairs(["the cat sat"], ["the cat sat down"])
        >>> round(scores[0].values["rouge1"], 3)
        0.857
    """
    _check_texts(predictions, references)
    predictions, references = list(predictions), list(references)
    n = len(predictions)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers <= 1 or n < PARALLEL_MIN_PAIRS:
        step = max(1, min(500, n))
        out: list[PairScores] = []
        for start in range(0, n, step):
            out.extend(_score_chunk((predictions[start : start + step], references[start : start + step], config)))
            if progress is not None:
                progress(min(step, n - start))
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver, not fork: the app and torch run threads, and forking a threaded process can hang.
    context = multiprocessing.get_context("forkserver")
    _preload_forkserver(context)
    chunks = max(workers * 4, -(-n // 2000))
    size = -(-n // chunks)
    jobs = [(predictions[s : s + size], references[s : s + size], config) for s in range(0, n, size)]
    results: list[list[PairScores]] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for chunk in pool.map(_score_chunk, jobs):
            results.append(chunk)
            if progress is not None:
                progress(len(chunk))
    return [ps for chunk in results for ps in chunk]


# --- corpus values from statistics (pure) ------------------------------------------------------------


def _value_column(metric: str) -> int:
    """The statistic averaged over examples: F1 for ROUGE, the 0/1 outcome of PROPORTION_METRICS
    (and, as before, the first statistic of anything else)."""
    return 2 if metric in ROUGE_METRICS else 0


def corpus_value(metric: str, stats: Sequence[Sequence[float]], config: TextMetricConfig = TextMetricConfig()) -> float:
    """The corpus-level value of `metric` from per-example statistics: sacrebleu's score of the summed
    statistics for BLEU/chrF, mean F1 for ROUGE, the share of 1s for PROPORTION_METRICS."""
    if not stats:
        raise EvalCoreError(f"{metric} of an empty set is undefined: the set has no examples")
    if metric in SACREBLEU_METRICS:
        m = _sacrebleu_metric(metric, config.bleu_tokenize, config.lowercase)
        summed = [sum(col) for col in zip(*stats, strict=True)]
        return float(m._compute_score_from_stats(summed).score)
    column = _value_column(metric)
    return sum(s[column] for s in stats) / len(stats)


def corpus_values_of_resamples(metric: str, stats, resamples, config: TextMetricConfig = TextMetricConfig()):
    """Corpus values of bootstrap resamples: `resamples` is an (n_resamples, n) index array."""
    import numpy as np

    if metric in SACREBLEU_METRICS:
        m = _sacrebleu_metric(metric, config.bleu_tokenize, config.lowercase)
        arr = np.asarray(stats, dtype="float32")  # float32 sums, as sacrebleu's own bootstrap
        return np.array([m._compute_score_from_stats(arr[idx].sum(0)).score for idx in resamples])
    column = _value_column(metric)
    values = np.asarray([s[column] for s in stats], dtype="float64")
    return values[resamples].mean(axis=1)


def signature(metric: str, config: TextMetricConfig = TextMetricConfig()) -> str:
    """How the value was computed, in the reference library's words where it has them."""
    if metric in SACREBLEU_METRICS:
        m = _sacrebleu_metric(metric, config.bleu_tokenize, config.lowercase)
        m._extract_corpus_statistics(["x"], [["x"]])  # sacrebleu resolves nrefs when it sees references
        return m.get_signature().format()
    if metric in ROUGE_METRICS:
        from importlib.metadata import version

        split = "|lsum-split:newline" if metric == "rougeLsum" else ""
        tok = UnicodeRougeTokenizer.name if config.rouge_tokenizer == "unicode" else "rouge-score-default"
        return (f"rouge-score:{version('rouge-score')}|type:{metric}|stemmer:{'porter' if config.rouge_stemmer else 'no'}"
                f"|tok:{tok}|value:f1-mean{split}")
    if metric == "exact_match":
        return "exact_match|norm:nfkc+casefold+punct+articles+ws|v1"
    raise EvalCoreError(f"unknown text metric '{metric}'")


def example_signature(metric: str, config: TextMetricConfig = TextMetricConfig()) -> str:
    """How each example's own value was computed: BLEU/chrF per example are sacrebleu's smoothed
    sentence scores (effective order: a short exact match is 100, not 0), not the corpus value."""
    if metric in SACREBLEU_METRICS:
        m = _sacrebleu_metric(metric, config.bleu_tokenize, config.lowercase, sentence=True)
        m._extract_corpus_statistics(["x"], [["x"]])
        return "sentence-level (smoothed; not the corpus value)|" + m.get_signature().format()
    return "per-example|" + signature(metric, config)
