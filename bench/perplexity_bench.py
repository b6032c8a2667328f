"""Benchmark: perplexity scoring throughput and agreement, beside a per-document baseline.

    .venv/bin/python bench/perplexity_bench.py [--repeats 3] [--docs 200] [--sizes small,medium]

Builds (offline, in a temporary folder) a byte-level BPE tokenizer and two GPT-2 models on the text
of `pydoc_data.topics` (see bench/bench_common.py), and a held-out set of `--docs` documents
(80-4000 characters). For each model it measures scored tokens/s, timed round-robin, of:

  (a) ours: `eval_core.nll_scoring.score_texts` with the default PerplexityConfig (fp32, batch 16,
      windows sorted by length and packed into batches of at most 2,048 positions, max_length 512 =
      the model's context, stride 512: the same windows as lm-evaluation-harness);
  (b) baseline: one forward per window, summed cross-entropy of its scored tokens, same windows as
      (a): [EOS] + tokens, cut into windows that each feed up to 512 tokens and score up to 512 new
      ones; the last window of a long document feeds 512 tokens, the earlier ones only context;
  (c) lm-evaluation-harness `HFLM(...).loglikelihood_rolling` (batch 16, max_length 512), only
      when `import lm_eval` works. It is not a dependency of the project: install it in a separate
      environment (bench/README.md) and run this script with that environment's python.

It checks that corpus perplexity of (a) matches (b) (and (c)), measures the fp32 matmul peak
(`torch.mm`, n=1024, 2 threads, before and after the runs; the higher median is the peak) and
reports (a) as a fraction of it, using forward FLOPs per scored token of
2*(12 d^2 L + d V) + 4 d L ctx_avg (ctx_avg: mean attention context of a scored token); the
figure counting every computed position (context-only positions included) is printed beside it.
Writes bench/results/perplexity_bench.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_common import (  # noqa: E402
    build_models,
    cpu_pressure,
    matmul_peak_gflops,
    paired_ratio,
    round_robin,
)

from eval_core.nll_scoring import PerplexityConfig, _windows, resolve_window, score_texts, text_docs  # noqa: E402


def windows_of(model, tok, texts: list[str], config: PerplexityConfig) -> list[list[tuple[int, list[int], int]]]:
    """Per document, its (doc, ids, first scored index) windows exactly as score_texts cuts them."""
    max_length, stride = resolve_window(model, config)
    return [_windows(i, d, max_length, stride) for i, d in enumerate(text_docs(tok, texts, config))]


def baseline_nll(model, windows: list[list[tuple[int, list[int], int]]]) -> list[float]:
    """(b): one forward per window over ids[:-1], summed cross-entropy of the scored tokens ids[first:]."""
    import torch

    out = []
    with torch.inference_mode():
        for doc in windows:
            s = 0.0
            for _, ids, first in doc:
                logits = model(torch.tensor([ids[:-1]])).logits[0, first - 1 :]
                s += float(torch.nn.functional.cross_entropy(logits.float(), torch.tensor(ids[first:]), reduction="sum"))
            out.append(s)
    return out


def lm_eval_nll(folder: Path, texts: list[str]) -> list[float] | None:
    """(c): lm-eval's rolling loglikelihood (sum of log-probs per document), negated."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(folder), batch_size=16, max_length=512, device="cpu")
    reqs = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i) for i, t in enumerate(texts)]
    return [-float(r[0] if isinstance(r, tuple) else r) for r in lm.loglikelihood_rolling(reqs, disable_tqdm=True)]


def flops(model, windows) -> tuple[float, float, float]:
    """(forward FLOPs per scored token, mean attention context of a scored token, FLOPs computed in all).

    Per scored token: 2 (12 d^2 L + d V) + 4 d L ctx, ctx = its position in the window + 1, averaged
    over the scored tokens. "Computed" also counts the positions that are only context (the [EOS]
    and the earlier tokens a document's last, full-length window repeats): both (a) and (b) compute
    them, so the speed ratio is unaffected.
    """
    c = model.config
    d, L, V = c.n_embd, c.n_layer, c.vocab_size
    dense = 2 * (12 * d * d * L + d * V)
    computed, ctx, scored = 0.0, 0.0, 0
    for doc in windows:
        for _, ids, first in doc:
            n = len(ids) - 1  # positions fed to the model
            computed += n * dense + 4 * d * L * n * (n + 1) / 2
            ctx += sum(range(first, len(ids)))  # the token at index t is predicted from t positions
            scored += len(ids) - first
    ctx_avg = ctx / scored
    return dense + 4 * d * L * ctx_avg, ctx_avg, computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--docs", type=int, default=200, help="held-out documents")
    parser.add_argument("--sizes", default="small,medium")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=40, help="AdamW steps for the small model")
    args = parser.parse_args()
    pressure_start = cpu_pressure()

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    try:
        import lm_eval  # noqa: F401

        have_lm_eval = True
    except ImportError:
        have_lm_eval = False
        print("lm_eval not installed: skipped")

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    models, texts, info = build_models(folder, sizes, args.docs, args.train_steps)
    print(f"built in {info['build_s']} s: {info['documents']} documents, {info['heldout_docs']} held out, "
          f"vocab {info['vocab']}, " + ", ".join(f"{s} {info[f'{s}_params'] / 1e6:.2f}M params" for s in sizes))
    peak_before = matmul_peak_gflops(1024, args.threads)
    print(f"fp32 matmul peak (torch.mm n=1024, {args.threads} threads): {peak_before['median']:.0f} GFLOP/s "
          f"(min {peak_before['min']:.0f}, max {peak_before['max']:.0f})")

    config = PerplexityConfig()
    results = {"settings": {"repeats": args.repeats, "threads": args.threads, "config": config.to_dict(),
                            "lm_eval": have_lm_eval}, "build": info, "models": {}}
    for size in sizes:
        model, tok = models[size]
        wins = windows_of(model, tok, texts, config)
        scored = sum(len(ids) - first for doc in wins for _, ids, first in doc)
        n_windows = sum(len(doc) for doc in wins)
        fpt, ctx_avg, computed_flops = flops(model, wins)
        positions = sum(len(ids) - 1 for doc in wins for _, ids, _ in doc)
        max_length, stride = resolve_window(model, config)

        out: dict[str, list[float]] = {}

        def ours(out=out, model=model, tok=tok):
            out["ours"] = [s.nll_sum for s in score_texts(model, tok, texts, config)]

        def baseline(out=out, model=model, wins=wins):
            out["baseline"] = baseline_nll(model, wins)

        variants = {"ours": ours, "baseline": baseline}
        if have_lm_eval:
            def lm_eval_run(out=out, size=size):
                out["lm_eval"] = lm_eval_nll(folder / size, texts)

            variants["lm_eval"] = lm_eval_run
        # warm-up (oneDNN primitives, allocator) on a few documents, not timed
        score_texts(model, tok, texts[:8], config)
        baseline_nll(model, wins[:8])
        times = round_robin(variants, args.repeats)

        base = out["baseline"]
        corpus = {k: math.exp(sum(v) / scored) for k, v in out.items()}
        rel = {k: abs(corpus[k] - corpus["baseline"]) / corpus["baseline"] for k in out if k != "baseline"}
        worst_doc = {k: max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(v, base, strict=True))
                     for k, v in out.items() if k != "baseline"}
        med = {k: statistics.median(v) for k, v in times.items()}
        tps = {k: scored / v for k, v in med.items()}
        row = {
            "params": info[f"{size}_params"], "docs": len(texts), "scored_tokens": scored, "windows": n_windows,
            "docs_windowed": sum(len(doc) > 1 for doc in wins), "mean_context": round(ctx_avg, 1),
            "positions_computed": positions, "flops_per_scored_token": fpt,
            "flops_computed_per_scored_token": computed_flops / scored,
            "seconds": times, "seconds_median": med, "tokens_per_s": tps,
            "ratio_ours_vs_baseline": paired_ratio(times, "baseline", "ours"),
            "gflops_ours": tps["ours"] * fpt / 1e9, "gflops_baseline": tps["baseline"] * fpt / 1e9,
            "gflops_computed_ours": computed_flops / med["ours"] / 1e9,
            "gflops_computed_baseline": computed_flops / med["baseline"] / 1e9,
            "corpus_ppl": corpus, "corpus_ppl_rel_diff_vs_baseline": rel, "worst_doc_nll_rel_diff": worst_doc,
        }
        if have_lm_eval:
            row["ratio_ours_vs_lm_eval"] = paired_ratio(times, "lm_eval", "ours")
        results["models"][size] = row
        print(f"\n[{size}] {row['params'] / 1e6:.2f}M params: {len(texts)} docs, {scored:,} scored tokens, "
              f"{n_windows} windows ({row['docs_windowed']} docs windowed at max_length {max_length}, stride {stride}), "
              f"{fpt / 1e6:.2f} MFLOP per scored token (mean context {ctx_avg:.0f}); {positions:,} positions "
              f"computed ({computed_flops / scored / 1e6:.2f} MFLOP per scored token counting those)")
        for k in variants:
            label = {"ours": "(a) ours score_texts B=16", "baseline": "(b) baseline 1 window/forward",
                     "lm_eval": "(c) lm-eval loglikelihood_rolling"}[k]
            print(f"  {label:36s} {tps[k]:9,.0f} tok/s  median {med[k]:.2f} s  "
                  f"(min {min(times[k]):.2f}, max {max(times[k]):.2f})  {tps[k] * fpt / 1e9:6.1f} GFLOP/s")
        print(f"  ours vs baseline: x{row['ratio_ours_vs_baseline']:.2f} (median of per-round ratios)"
              + (f"; ours vs lm-eval: x{row['ratio_ours_vs_lm_eval']:.2f}" if have_lm_eval else ""))
        print("  corpus ppl: " + ", ".join(f"{k} {v:.4f}" for k, v in corpus.items())
              + "; rel. diff vs baseline: " + ", ".join(f"{k} {v:.1e}" for k, v in rel.items())
              + "; worst doc NLL rel. diff: " + ", ".join(f"{k} {v:.1e}" for k, v in worst_doc.items()))

    peak_after = matmul_peak_gflops(1024, args.threads)
    peak = max(peak_before["median"], peak_after["median"])  # the higher one: never flatters us
    results["matmul_peak_gflops"] = {"before": peak_before, "after": peak_after, "used": peak}
    print(f"\nfp32 matmul peak: {peak_before['median']:.0f} GFLOP/s before, {peak_after['median']:.0f} after; "
          f"using {peak:.0f}")
    for size, row in results["models"].items():
        row["ours_fraction_of_peak"] = row["gflops_ours"] / peak
        row["baseline_fraction_of_peak"] = row["gflops_baseline"] / peak
        row["ours_computed_fraction_of_peak"] = row["gflops_computed_ours"] / peak
        print(f"  [{size}] ours {row['gflops_ours']:.0f} GFLOP/s = {row['ours_fraction_of_peak']:.0%} of peak "
              f"(target >= 60% on the larger model; {row['ours_computed_fraction_of_peak']:.0%} counting every "
              f"computed position); baseline {row['gflops_baseline']:.0f} GFLOP/s = "
              f"{row['baseline_fraction_of_peak']:.0%}")
    results["cpu_pressure"] = cpu_pressure()
    results["cpu_pressure_start"] = pressure_start
    print(f"CPU pressure: start {pressure_start}; end {results['cpu_pressure']}")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "perplexity_bench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
