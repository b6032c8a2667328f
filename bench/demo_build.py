"""Benchmark: build the demo workspace from scratch, beside a plain PyTorch training loop.

    .venv/bin/python bench/demo_build.py [--quick] [--keep DIR]

Prints seconds per stage and in total (target: under 180 s on 2 CPU cores), pretraining
throughput in tokens/s beside a plain AdamW loop over the same model, batch and data (measured in
this run), and the forgetting the run produced (Trainer's own eval losses at step 0 and at the end).
Writes bench/results/demo_build.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval_core.demo import DemoSettings, build_demo_workspace  # noqa: E402
from eval_core.demo_corpus import load_demo_data  # noqa: E402


def plain_loop_tokens_per_s(root: Path, settings: DemoSettings, steps: int = 40) -> float:
    """The same GPT-2 config, blocks and batch, trained by a bare AdamW loop (no Trainer)."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from eval_core.demo_training import _pack_blocks

    tok = AutoTokenizer.from_pretrained(root / "base_model", local_files_only=True)
    blocks = _pack_blocks(tok, load_demo_data(settings.seed).pretrain, settings.block_size)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=settings.n_positions,
                                       n_embd=settings.n_embd, n_layer=settings.n_layer, n_head=settings.n_head,
                                       bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    opt = torch.optim.AdamW(model.parameters(), lr=settings.pretrain_lr)
    model.train()
    t = time.perf_counter()
    for i in range(steps):
        batch = torch.tensor([blocks[(i * settings.pretrain_batch + j) % len(blocks)] for j in range(settings.pretrain_batch)])
        loss = model(batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return steps * settings.pretrain_batch * settings.block_size / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", type=Path, help="build here instead of a temporary folder")
    args = parser.parse_args()
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    tmp = tempfile.TemporaryDirectory()
    root = args.keep or Path(tmp.name) / "demo"

    t0 = time.perf_counter()
    record = build_demo_workspace(root, settings)
    total = time.perf_counter() - t0
    trainer_tps = settings.pretrain_steps * settings.pretrain_batch * settings.block_size / record["seconds"]["base_model"]
    plain_tps = plain_loop_tokens_per_s(root, settings)
    history = json.loads((root / "runs/support-ft/trainer_state.json").read_text())["log_history"]
    curve = lambda key: [(e["step"], e[key]) for e in history if key in e]  # noqa: E731
    support, general = curve("eval_support_loss"), curve("eval_general_loss")

    results = {
        "settings": record["settings"],
        "parameter_count": record["parameter_count"],
        "seconds": {**record["seconds"], "total_wall": round(total, 1)},
        "budget_seconds": 180,
        "pretrain_tokens_per_s": {"demo_trainer": round(trainer_tps), "baseline_plain_loop": round(plain_tps)},
        "eval_support_loss": {"base": support[0][1], "last": support[-1][1]},
        "eval_general_loss": {"base": general[0][1], "last": general[-1][1]},
        "cpu_pressure": Path("/proc/pressure/cpu").read_text().splitlines()[0] if Path("/proc/pressure/cpu").exists() else None,
    }
    print(f"demo build: {total:.1f} s total (budget 180 s) — " + ", ".join(f"{k} {v:.1f} s" for k, v in record["seconds"].items()))
    print(f"pretraining: {trainer_tps:,.0f} tokens/s with Trainer vs {plain_tps:,.0f} tokens/s plain loop (baseline, same run)")
    print(f"support eval loss {support[0][1]:.3f} -> {support[-1][1]:.3f}; general eval loss {general[0][1]:.3f} -> {general[-1][1]:.3f}")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_build.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
