"""Benchmark: incremental re-evaluation after new held-out rows, beside a full evaluation.

    .venv/bin/python bench/incremental_bench.py [--workspace DIR] [--repeats 3]

Builds the quick demo workspace (`build_demo_workspace(dir, DemoSettings.quick())`: base model plus
6 checkpoints) in a temporary folder (or in `--keep DIR`, reused when already built there), or takes
`--workspace DIR`; either way it works on a copy, so the source is never modified. Each round, on a
fresh SQLite results store (FTLENS_DATABASE_URL points into the temporary folder) and the original
held-out files:

  1. full: `evaluate_workspace(ws, metric_names=["perplexity", "completion_perplexity"])`, all
     cells computed (the baseline);
  2. 10% new rows (new unique ids, text recombined from existing rows) are appended to
     heldout/general_text.jsonl and heldout/support_test.jsonl;
  3. incremental: the same call again; only the new rows should be computed;
  4. unchanged: the same call once more; everything is cached.

torch and transformers are imported before any timing, so neither run pays for the imports.
Prints medians over rounds and the incremental / full ratio (target <= 15%).
Writes bench/results/incremental_bench.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from bench_common import cpu_pressure  # noqa: E402

from eval_core.demo import DemoSettings, build_demo_workspace  # noqa: E402
from eval_core.evaluation import evaluate_workspace  # noqa: E402
from eval_core.workspace import STATE_DIR  # noqa: E402

METRICS = ["perplexity", "completion_perplexity"]
GROWN = ("heldout/general_text.jsonl", "heldout/support_test.jsonl")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def new_rows(rows: list[dict], fraction: float, tag: str, rng: random.Random) -> list[dict]:
    """ceil(fraction * len(rows)) plausible new rows: fields recombined from two existing rows."""
    ids = {str(r.get("id")) for r in rows}
    out = []
    for k in range(math.ceil(fraction * len(rows))):
        a, b = rng.sample(rows, 2)
        row = dict(a)
        row["id"] = f"{a.get('id', 'row')}-{tag}-{k}"
        assert row["id"] not in ids
        if "text" in a:
            sa, sb = _sentences(a["text"]), _sentences(b["text"])
            row["text"] = " ".join(sa[: max(1, len(sa) // 2)] + sb[len(sb) // 2 :])
        if "prompt" in a:
            second = b["prompt"].strip()
            row["prompt"] = f"{a['prompt'].strip()} Also, {second[:1].lower()}{second[1:]}"
        out.append(row)
    return out


def append_rows(path: Path, fraction: float, tag: str, seed: int) -> int:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    rows = new_rows([json.loads(ln) for ln in lines], fraction, tag, random.Random(seed))
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)


def timed(root: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    summary = evaluate_workspace(root, metric_names=METRICS)
    return time.perf_counter() - t, {"computed": summary.computed, "cached": summary.cached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, help="copy this workspace instead of building the quick demo")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of full / incremental / unchanged")
    parser.add_argument("--fraction", type=float, default=0.10)
    parser.add_argument("--keep", type=Path, help="build the quick demo here (kept, reused next time; copied before use)")
    args = parser.parse_args()
    pressure_start = cpu_pressure()

    import torch
    import transformers  # noqa: F401  (imported before timing)
    from transformers import AutoModelForCausalLM  # noqa: F401

    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name) / "ws"
    build_s = None
    source = args.workspace
    if source is None:
        source = args.keep or Path(tmp.name) / "demo"
        t = time.perf_counter()
        build_demo_workspace(source, DemoSettings.quick())  # returns at once when already built there
        build_s = time.perf_counter() - t
        print(f"quick demo workspace ready in {build_s:.1f} s")
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("results.sqlite*"))
    torch.set_num_threads(2)
    originals = {p: (root / p).read_bytes() for p in GROWN}
    sizes = {p: sum(1 for ln in originals[p].decode().splitlines() if ln.strip()) for p in GROWN}

    rounds = []
    for r in range(args.repeats):
        for p, data in originals.items():
            (root / p).write_bytes(data)
        os.environ["FTLENS_DATABASE_URL"] = f"sqlite:///{Path(tmp.name) / f'results-{r}.sqlite'}"
        (root / STATE_DIR / "fingerprints.json").unlink(missing_ok=True)  # a cold scan in every full run
        full_s, full = timed(root)
        added = {p: append_rows(root / p, args.fraction, f"bench{r}", seed=r) for p in GROWN}
        incr_s, incr = timed(root)
        same_s, same = timed(root)
        rounds.append({"full_s": full_s, "full": full, "added": added, "incremental_s": incr_s,
                       "incremental": incr, "unchanged_s": same_s, "unchanged": same,
                       "ratio": incr_s / full_s})
        print(f"round {r + 1}: full {full_s:.2f} s ({full['computed']} computed), "
              f"+{sum(added.values())} rows -> incremental {incr_s:.2f} s ({incr['computed']} computed, "
              f"{incr['cached']} cached), unchanged {same_s:.2f} s ({same['computed']} computed)")
    os.environ.pop("FTLENS_DATABASE_URL")

    med = {k: statistics.median(x[k] for x in rounds) for k in ("full_s", "incremental_s", "unchanged_s", "ratio")}
    last = rounds[-1]
    results = {"workspace": str(args.workspace) if args.workspace else "quick demo",
               "build_s": build_s, "rows_before": sizes, "metrics": METRICS, "rounds": rounds,
               "median": med, "target_ratio": 0.15, "cpu_pressure": cpu_pressure(), "cpu_pressure_start": pressure_start}
    print(f"\nrows before: {sizes}; added per round: {last['added']}")
    print(f"full evaluation (baseline): {med['full_s']:.2f} s, {last['full']['computed']} examples computed")
    print(f"incremental: {med['incremental_s']:.2f} s, {last['incremental']['computed']} computed, "
          f"{last['incremental']['cached']} cached")
    print(f"incremental / full: {med['ratio']:.1%} (median of per-round ratios; target <= 15%)")
    print(f"unchanged re-run: {med['unchanged_s']:.2f} s ({last['unchanged']['cached']} cached)")
    print(f"CPU pressure: start {pressure_start}; end {results['cpu_pressure']}")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "incremental_bench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
