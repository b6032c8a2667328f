"""Benchmark: every text metric over 10,000 pairs, ours beside the plain per-pair library calls.

    .venv/bin/python bench/text_metrics_bench.py [--pairs 10000] [--repeats 3] [--workers N]

Builds (offline, seeded) `--pairs` prediction/reference pairs of English-like text: references
are runs of 5-60 words (uniform) starting at a sentence of the stdlib `pydoc_data.topics` prose,
with 15 % of the sentence breaks inside them written as newlines (so `rougeLsum` differs from
`rougeL`); predictions are seeded perturbations of their reference (word drops, swaps,
substitutions from the corpus vocabulary, inflection changes for the stemmer, case and punctuation
changes, truncation, a few identical copies and a few empty outputs). It measures, timed
round-robin, all seven metrics (bleu, chrf, rouge1, rouge2, rougeL, rougeLsum, exact_match), per
pair and for the corpus:

  (a) ours: `eval_core.text_metrics.score_pairs` (default workers: the usable cores) and
      `corpus_value` of every metric from the per-pair statistics;
  (a1) the same with `workers=1`, to separate what one core gains from what the second adds;
  (b) plain: a per-pair loop calling `sacrebleu.sentence_bleu(p, [r])`, `sacrebleu.sentence_chrf(p,
      [r])`, `RougeScorer([...4 types], use_stemmer=True).score(r, p)` (one scorer for the whole
      run, without our memoised stemmer) and `normalize_answer` for exact match, then
      `sacrebleu.corpus_bleu` / `corpus_chrf` and the mean F1 / mean exact match for the corpus.

Every per-pair value and every corpus value of (a) must equal (b) exactly (==, not approximately);
the script exits 1 when one differs. It prints pairs/s of both and the speed-up (median of the
per-round time ratios) and writes bench/results/text_metrics_bench.json with the CPU pressure at the
start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_common import cpu_pressure, paired_ratio, round_robin  # noqa: E402

from eval_core.text_metrics import (  # noqa: E402
    ALL_METRICS,
    ROUGE_METRICS,
    TextMetricConfig,
    corpus_value,
    normalize_answer,
    score_pairs,
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(])")
# Suffix swaps that keep the Porter stem busy (runs/running/ran) without changing the word's stem
# every time: the stemmer and its memo both matter for ROUGE speed.
_INFLECT = (("s", ""), ("", "s"), ("ing", "ed"), ("ed", "ing"), ("", "ing"), ("ion", "ions"), ("y", "ies"))


def corpus_sentences(lo: int = 5, hi: int = 60) -> list[str]:
    """Sentences of lo-hi words from pydoc_data.topics prose (code blocks and tables skipped)."""
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            lines = [x.strip() for x in para.splitlines()]
            if not lines or any(x.startswith((">>>", "...", "+", "=", "|")) for x in lines) or para.startswith("   "):
                continue
            pending = ""
            for sent in _SENTENCE_END.split(" ".join(lines)):
                sent = f"{pending} {sent}".strip() if pending else sent
                words = sent.split()
                if len(words) < lo:
                    pending = sent
                    continue
                pending = ""
                out.append(" ".join(words[:hi]))
    return out


def perturb(ref: str, vocab: list[str], rng: random.Random) -> str:
    """A seeded, plausible model output for `ref` (see the module docstring)."""
    roll = rng.random()
    if roll < 0.03:
        return ""
    if roll < 0.10:
        return ref
    lines = []
    for line in ref.split("\n"):
        words = line.split()
        rate = rng.uniform(0.05, 0.5)
        out = []
        for w in words:
            r = rng.random()
            if r < rate * 0.3:
                continue  # dropped
            if r < rate * 0.6:
                out.append(rng.choice(vocab))  # substituted
            elif r < rate * 0.8:
                core = w.rstrip(".,;:")
                for old, new in rng.sample(_INFLECT, len(_INFLECT)):
                    if core.endswith(old) and len(core) > len(old) + 2:
                        w = core[: len(core) - len(old)] + new + w[len(core) :]
                        break
                out.append(w)
            elif r < rate:
                out.append(w)
                out.append(rng.choice(vocab))  # inserted
            else:
                out.append(w)
        if len(out) > 3 and rng.random() < 0.3:
            i = rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
        if out and rng.random() < 0.2:
            out = out[: rng.randint(max(1, len(out) // 2), len(out))]  # truncated
        text = " ".join(out)
        if rng.random() < 0.1:
            text = text.lower()
        if rng.random() < 0.1:
            text = text.rstrip(".!?") + rng.choice(("", "!", "?", "..."))
        lines.append(text)
    return "\n".join(lines)


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n (prediction, reference) pairs; references are mostly distinct, as in a real test set.

    A reference starts at a random sentence and runs on through the following ones to a target of
    5-60 words (uniform), cut there; 15 % of sentence breaks inside it are newlines.
    """
    rng = random.Random(seed)
    sentences = corpus_sentences()
    vocab = sorted({w.strip(".,;:()`'\"") for s in sentences for w in s.split()} - {""})
    refs = []
    for _ in range(n):
        i, target = rng.randrange(len(sentences)), rng.randint(5, 60)
        words: list[str] = []
        while len(words) < target:
            if words:
                words[-1] += "\n" if rng.random() < 0.15 else ""
            words += sentences[i % len(sentences)].split()
            i += 1
        refs.append(" ".join(words[:target]).replace("\n ", "\n").strip())
    preds = [perturb(r, vocab, rng) for r in refs]
    return preds, refs


def ours(preds: list[str], refs: list[str], workers: int | None) -> tuple[list[dict], dict]:
    """(a): score_pairs + corpus_value; (per-pair values, corpus values)."""
    config = TextMetricConfig()
    scores = score_pairs(preds, refs, config, workers=workers)
    corpus = {m: corpus_value(m, [s.stats[m] for s in scores], config) for m in ALL_METRICS}
    return [s.values for s in scores], corpus


def plain(preds: list[str], refs: list[str]) -> tuple[list[dict], dict]:
    """(b): the reference libraries called the usual way, one pair at a time."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_METRICS), use_stemmer=True)
    per_pair = []
    for p, r in zip(preds, refs, strict=True):
        values = {"bleu": sacrebleu.sentence_bleu(p, [r]).score, "chrf": sacrebleu.sentence_chrf(p, [r]).score}
        rouge = scorer.score(r, p)
        values.update({m: rouge[m].fmeasure for m in ROUGE_METRICS})
        values["exact_match"] = 1.0 if normalize_answer(p) == normalize_answer(r) else 0.0
        per_pair.append(values)
    corpus = {"bleu": sacrebleu.corpus_bleu(preds, [refs]).score, "chrf": sacrebleu.corpus_chrf(preds, [refs]).score}
    corpus.update({m: sum(v[m] for v in per_pair) / len(per_pair) for m in (*ROUGE_METRICS, "exact_match")})
    return per_pair, corpus


def compare(a: tuple[list[dict], dict], b: tuple[list[dict], dict]) -> dict:
    """Counts of per-pair values that differ, per metric, and the corpus values that differ."""
    per_pair = {m: sum(x[m] != y[m] for x, y in zip(a[0], b[0], strict=True)) for m in ALL_METRICS}
    corpus = {m: [a[1][m], b[1][m]] for m in ALL_METRICS if a[1][m] != b[1][m]}
    return {"per_pair_differences": per_pair, "corpus_differences": corpus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="score_pairs workers (default: usable cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pressure_start = cpu_pressure()

    t = time.perf_counter()
    preds, refs = make_pairs(args.pairs, args.seed)
    build_s = time.perf_counter() - t
    words = [len(r.split()) for r in refs]
    info = {
        "pairs": len(preds), "build_s": round(build_s, 2), "distinct_references": len(set(refs)),
        "reference_words": {"min": min(words), "median": statistics.median(words), "max": max(words)},
        "multi_line_references": sum("\n" in r for r in refs), "empty_predictions": sum(not p for p in preds),
        "identical_pairs": sum(p == r for p, r in zip(preds, refs, strict=True)),
    }
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{info['pairs']:,} pairs built in {build_s:.1f} s: reference words {info['reference_words']}, "
          f"{info['distinct_references']:,} distinct references, {info['multi_line_references']} multi-line, "
          f"{info['empty_predictions']} empty predictions, {info['identical_pairs']} identical; {cores} usable cores")

    out: dict[str, tuple[list[dict], dict]] = {}
    variants = {
        "ours": lambda: out.__setitem__("ours", ours(preds, refs, args.workers)),
        "ours_1_worker": lambda: out.__setitem__("ours_1_worker", ours(preds, refs, 1)),
        "plain": lambda: out.__setitem__("plain", plain(preds, refs)),
    }
    # warm-up (imports, sacrebleu's tokenizer objects), not timed
    ours(preds[:50], refs[:50], 1)
    plain(preds[:50], refs[:50])
    times = round_robin(variants, args.repeats)

    check = compare(out["ours"], out["plain"])
    check_1 = compare(out["ours_1_worker"], out["plain"])
    identical = all(not any(c["per_pair_differences"].values()) and not c["corpus_differences"]
                    for c in (check, check_1))
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: len(preds) / v for k, v in med.items()}
    ratio = paired_ratio(times, "plain", "ours")
    ratio_1 = paired_ratio(times, "plain", "ours_1_worker")
    labels = {"ours": f"(a) ours, workers={args.workers or cores}", "ours_1_worker": "(a1) ours, workers=1",
              "plain": "(b) plain per-pair library calls"}
    for k, label in labels.items():
        print(f"  {label:34s} {rate[k]:9,.0f} pairs/s  median {med[k]:.2f} s  (min {min(times[k]):.2f}, "
              f"max {max(times[k]):.2f})")
    print(f"  speed-up: x{ratio:.2f} (workers={args.workers or cores}), x{ratio_1:.2f} (workers=1); medians of "
          "per-round ratios; target >= 2x with identical scores")
    print("  corpus values: " + ", ".join(f"{m} {out['ours'][1][m]:.4f}" for m in ALL_METRICS))
    print("  identical per-pair and corpus values: " + ("yes" if identical else f"NO: {check}"))

    results = {
        "settings": {"pairs": args.pairs, "repeats": args.repeats, "workers": args.workers, "usable_cores": cores,
                     "seed": args.seed, "config": TextMetricConfig().to_dict()},
        "data": info, "seconds": times, "seconds_median": med, "pairs_per_s": rate,
        "ratio_ours_vs_plain": ratio, "ratio_ours_1_worker_vs_plain": ratio_1, "identical": identical, **check,
        "differences_1_worker": check_1,
        "corpus_values": out["ours"][1], "cpu_pressure_start": pressure_start, "cpu_pressure": cpu_pressure(),
    }
    print(f"CPU pressure: start {pressure_start}; end {results['cpu_pressure']}")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "text_metrics_bench.json").write_text(json.dumps(results, indent=2))
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
