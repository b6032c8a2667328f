"""Benchmark: workspace discovery with a cold and a warm fingerprint cache.

    .venv/bin/python bench/workspace_scan.py DIR [--repeats 5]

The cold scan hashes every weight, config, tokenizer and dataset file (the baseline a naive
implementation pays on every page load); the warm scan reuses digests whose size and mtime are
unchanged. Both are measured in this run, alternating. Writes bench/results/workspace_scan.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from eval_core.workspace import STATE_DIR, discover_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cache = args.workspace / STATE_DIR / "fingerprints.json"
    cold, warm = [], []
    for _ in range(args.repeats):
        cache.unlink(missing_ok=True)
        t = time.perf_counter()
        ws = discover_workspace(args.workspace)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        discover_workspace(args.workspace)
        warm.append(time.perf_counter() - t)
    mb = sum(c.size_bytes for c in [ws.base_model, *ws.checkpoints] if c) / 1e6
    res = {"checkpoints": len(ws.checkpoints), "weights_mb": round(mb, 1),
           "cold_s_median": statistics.median(cold), "warm_s_median": statistics.median(warm)}
    print(f"{len(ws.checkpoints)} checkpoints, {mb:.0f} MB of weights: cold scan (baseline) "
          f"{res['cold_s_median'] * 1e3:.0f} ms, warm scan {res['warm_s_median'] * 1e3:.0f} ms "
          f"(x{res['cold_s_median'] / res['warm_s_median']:.1f})")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "workspace_scan.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
