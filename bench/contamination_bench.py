"""Benchmark: held-out contamination by 13-gram overlap, ours beside a plain set intersection.

    .venv/bin/python bench/contamination_bench.py [--train 100000] [--heldout 5000] [--repeats 3] [--no-near]

Builds (seeded, offline) `--train` training and `--heldout` held-out texts of 10-80 words drawn
Zipf-like from a 20,000-word synthetic vocabulary, with mixed case and punctuation, and plants leaks
in the held-out set (from training texts of >= 30 words): 20 verbatim copies, 20 training passages of 13-20 words
embedded in longer texts, 20 copies with case and punctuation changed, 20 copies with 2 words
changed. Timed round-robin:

  (a) ours: `eval_core.data_contamination.find_ngram_overlap` (lookup of hashed held-out n-grams,
      training streamed past it);
  (b) plain: every training 13-gram tuple (same normalisation) in one Python set, then
      `set(heldout_grams) & train_set` per held-out item.

Both must flag the same held-out ids (the script exits 1 otherwise). It prints rows/s (training +
held-out rows per second) and seconds side by side, then times the full `check_contamination`
(with exact and MinHash near duplicates) once, and writes bench/results/contamination_bench.json
with the CPU pressure at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_common import cpu_pressure, paired_ratio, round_robin  # noqa: E402

from eval_core.data_contamination import (  # noqa: E402
    ContaminationConfig,
    check_contamination,
    find_ngram_overlap,
    normalized_words,
)

N = 13


def synthetic_sets(n_train: int, n_heldout: int, seed: int = 0):
    """(train_ids, train_texts, heldout_ids, heldout_texts, planted heldout ids)."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(20000)]
    weights = [1 / (r + 1) for r in range(len(vocab))]  # Zipf: common words are shared widely

    def text(lo: int = 10, hi: int = 80) -> list[str]:
        words = rng.choices(vocab, weights, k=rng.randint(lo, hi))
        return [w.capitalize() if rng.random() < 0.05 else w + ("," if rng.random() < 0.05 else "") for w in words]

    train = [" ".join(text()) for _ in range(n_train)]
    heldout = [" ".join(text()) for _ in range(n_heldout)]
    planted = rng.sample(range(n_heldout), 80)
    long_train = [t for t in train if len(t.split()) >= 30]  # every planted leak has >= 13 shared words
    for k, h in enumerate(planted):
        src = rng.choice(long_train)
        words = src.split()
        if k < 20:  # verbatim
            heldout[h] = src
        elif k < 40:  # a 13-20 word passage embedded in a longer text
            start = rng.randrange(len(words) - 19)
            heldout[h] = " ".join(text(5, 20) + words[start : start + rng.randint(13, 20)] + text(5, 20))
        elif k < 60:  # case and punctuation changed
            heldout[h] = " ".join(w.upper() + "!" if i % 3 == 0 else w for i, w in enumerate(words))
        else:  # two words changed
            for i in rng.sample(range(len(words)), 2):
                words[i] = "zzz" + words[i]
            heldout[h] = " ".join(words)
    return ([f"t{i}" for i in range(n_train)], train, [f"h{i}" for i in range(n_heldout)], heldout,
            sorted(f"h{i}" for i in planted))


def plain_overlap(train_texts: list[str], heldout_ids: list[str], heldout_texts: list[str]) -> list[str]:
    """Baseline: a set of all training n-gram tuples, intersected with each held-out item's."""
    train_set: set[tuple[str, ...]] = set()
    for t in train_texts:
        w = normalized_words(t)
        train_set.update(tuple(w[i : i + N]) for i in range(len(w) - N + 1)) if len(w) >= N else train_set.add(tuple(w))
    out = []
    for hid, t in zip(heldout_ids, heldout_texts, strict=True):
        w = normalized_words(t)
        grams = {tuple(w[i : i + N]) for i in range(len(w) - N + 1)} if len(w) >= N else {tuple(w)}
        if grams & train_set:
            out.append(hid)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--heldout", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-near", action="store_true", help="skip the one full check with MinHash near duplicates")
    args = parser.parse_args()
    pressure_start = cpu_pressure()
    tids, train, hids, held, planted = synthetic_sets(args.train, args.heldout)
    results: dict[str, list[str]] = {}
    times = round_robin({
        "ours": lambda: results.__setitem__("ours", [o.heldout_id for o in find_ngram_overlap(tids, train, hids, held, N)]),
        "plain": lambda: results.__setitem__("plain", plain_overlap(train, hids, held)),
    }, args.repeats)
    rows = args.train + args.heldout
    med = {k: statistics.median(v) for k, v in times.items()}
    same = results["ours"] == results["plain"]
    found_planted = sorted(set(planted) & set(results["ours"]))
    print(f"{args.train:,} train x {args.heldout:,} held-out rows, {N}-grams, {args.repeats} rounds (medians)")
    print(f"  ours  {rows / med['ours']:>10,.0f} rows/s  {med['ours']:.2f} s")
    print(f"  plain {rows / med['plain']:>10,.0f} rows/s  {med['plain']:.2f} s")
    print(f"  speed-up x{paired_ratio(times, 'plain', 'ours'):.2f}; contaminated: ours {len(results['ours'])}, "
          f"plain {len(results['plain'])}, identical: {same}; planted found {len(found_planted)}/{len(planted)}")
    res = {"train": args.train, "heldout": args.heldout, "n": N, "times": times, "median_s": med,
           "rows_per_s": {k: rows / v for k, v in med.items()}, "speedup": paired_ratio(times, "plain", "ours"),
           "contaminated": len(results["ours"]), "identical": same, "planted": len(planted),
           "planted_found": len(found_planted)}
    if not args.no_near:
        t = time.perf_counter()
        report = check_contamination(tids, train, hids, held, ContaminationConfig())
        full_s = time.perf_counter() - t
        print(f"  full check_contamination (overlap + exact + MinHash near, once): {full_s:.1f} s, "
              f"{len(report.contaminated_ids)} contaminated ({len(report.exact)} exact, {len(report.near)} near)")
        res.update(full_s=full_s, full_contaminated=len(report.contaminated_ids), exact=len(report.exact),
                   near=len(report.near))
    res["cpu_pressure"] = {"start": pressure_start, "end": cpu_pressure()}
    print(f"  CPU pressure: start {pressure_start}; end {res['cpu_pressure']['end']}")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "contamination_bench.json").write_text(json.dumps(res, indent=2))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
