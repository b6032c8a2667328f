"""Benchmark: batched greedy generation beside batch 1, with identical outputs.

    .venv/bin/python bench/generation_bench.py [--repeats 3] [--medium] [--new-tokens 64]

Builds (offline, in a temporary folder) the ~1.5M-parameter GPT-2 of bench/bench_common.py (and
with --medium also the ~12.7M one), takes 16 prompts of 15-50 tokens (seeded) from the held-out
pydoc documents, and runs `eval_core.generation.generate` greedily for 64 new tokens with
batch_size 16 (ours: KV cache, left padding, length-sorted) and batch_size 1 (baseline), timed
round-robin. New tokens/s counts the tokens each output kept (EOS not counted; the same for both,
since the outputs must be identical). Writes bench/results/generation_bench.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_common import build_models, cpu_pressure, paired_ratio, round_robin  # noqa: E402

from eval_core.generation import GenerationConfig, generate  # noqa: E402


def make_prompts(tok, texts: list[str], n: int = 16, lo: int = 15, hi: int = 50, seed: int = 0) -> list[str]:
    """n prompts: the first words of held-out documents, lo-hi tokens long (target drawn per prompt)."""
    rng = random.Random(seed)
    prompts = []
    for text in rng.sample(texts, len(texts)):
        target = rng.randint(lo, hi)
        words = text.split()
        for k in range(1, len(words) + 1):
            prompt = " ".join(words[:k])
            if len(tok(prompt)["input_ids"]) >= target:
                break
        if lo <= len(tok(prompt)["input_ids"]) <= hi:
            prompts.append(prompt)
        if len(prompts) == n:
            break
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--medium", action="store_true", help="also the ~12.7M-parameter model")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=40, help="AdamW steps for the small model")
    args = parser.parse_args()
    pressure_start = cpu_pressure()

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    sizes = ["small", "medium"] if args.medium else ["small"]
    tmp = tempfile.TemporaryDirectory()
    models, texts, info = build_models(Path(tmp.name), sizes, train_steps=args.train_steps)
    print(f"built in {info['build_s']} s: vocab {info['vocab']}, "
          + ", ".join(f"{s} {info[f'{s}_params'] / 1e6:.2f}M params" for s in sizes))
    results = {"settings": {"repeats": args.repeats, "threads": args.threads, "new_tokens": args.new_tokens},
               "build": info, "models": {}}
    for size in sizes:
        model, tok = models[size]
        prompts = make_prompts(tok, texts)
        lens = [len(tok(p)["input_ids"]) for p in prompts]
        cfgs = {"batch16": GenerationConfig(max_new_tokens=args.new_tokens, batch_size=16),
                "batch1": GenerationConfig(max_new_tokens=args.new_tokens, batch_size=1)}
        outs: dict = {}
        generate(model, tok, prompts[:2], GenerationConfig(max_new_tokens=4))  # warm-up, not timed

        def run(key: str, outs=outs, model=model, tok=tok, prompts=prompts, cfgs=cfgs) -> None:
            outs[key] = generate(model, tok, prompts, cfgs[key])

        variants = {k: (lambda k=k: run(k)) for k in cfgs}
        times = round_robin(variants, args.repeats)
        new_tokens = sum(g.new_tokens for g in outs["batch16"])
        same = sum(a == b for a, b in zip(outs["batch16"], outs["batch1"], strict=True))
        med = {k: statistics.median(v) for k, v in times.items()}
        tps = {k: new_tokens / v for k, v in med.items()}
        ratio = paired_ratio(times, "batch1", "batch16")
        finish = {r: sum(g.finish_reason == r for g in outs["batch16"]) for r in ("length", "eos", "stop")}
        results["models"][size] = {
            "params": info[f"{size}_params"], "prompts": len(prompts), "prompt_tokens": [min(lens), max(lens)],
            "new_tokens": new_tokens, "finish_reasons": finish, "seconds": times, "seconds_median": med,
            "new_tokens_per_s": tps, "speedup_batch16_vs_batch1": ratio, "identical_outputs": same,
        }
        print(f"\n[{size}] {info[f'{size}_params'] / 1e6:.2f}M params: {len(prompts)} prompts of {min(lens)}-{max(lens)} "
              f"tokens, greedy, max {args.new_tokens} new tokens -> {new_tokens} new tokens kept ({finish})")
        for k, label in (("batch16", "ours generate batch_size=16"), ("batch1", "baseline generate batch_size=1")):
            print(f"  {label:32s} {tps[k]:8,.0f} new tok/s  median {med[k]:.2f} s (min {min(times[k]):.2f}, "
                  f"max {max(times[k]):.2f})")
        print(f"  batch 16 vs batch 1: x{ratio:.2f} (median of per-round ratios; target >= 6x); "
              f"identical outputs {same}/{len(prompts)}")
    results["cpu_pressure"] = cpu_pressure()
    results["cpu_pressure_start"] = pressure_start
    print(f"CPU pressure: start {pressure_start}; end {results['cpu_pressure']}")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "generation_bench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
