"""The `data` command: does a held-out set leak into the training data, and how do the sets compare.

    python -m eval_core data --workspace DIR [--ngram 13] [--no-near] [--format json|table]

Prints `data_report.data_report` (docs/data-schema.md): one `ftlens.data` record per training set
and held-out set, read from the results store when the rows have not changed, with a tqdm bar on
stderr while it computes. Registered on the main parser by `cli.build_parser`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval_core.data_report import data_report
from eval_core.errors import EvalCoreError

def format_data_table(report: dict) -> str:
    """One line per (training set, held-out set): contaminated items and how they were found."""
    from eval_core.cli import _table

    rows = []
    for p in report["pairs"]:
        c = p["contamination"]
        rows.append([p["training_set"], p["heldout_set"], p["heldout_rows"], len(c["contaminated_ids"]),
                     len(c["overlaps"]), len(c["exact"]), len(c["near"]), len(p["coverage_gaps"]),
                     ", ".join(c["contaminated_ids"][:5]) + (" ..." if len(c["contaminated_ids"]) > 5 else "")])
    return _table(["training set", "held-out set", "rows", "contaminated", "n-gram", "exact", "near",
                   "coverage gaps", "contaminated ids"], rows)


def _cmd_data(args: argparse.Namespace) -> int:
    if args.ngram < 1:
        raise EvalCoreError(f"--ngram {args.ngram}: give at least 1 (13 is lm-evaluation-harness's)", field="ngram")
    import sys

    from tqdm.auto import tqdm

    with tqdm(total=100, desc="data diagnostics", unit="%", file=sys.stderr) as bar:
        def progress(fraction: float, what: str) -> None:
            bar.set_postfix_str(what, refresh=False)
            bar.update(round(100 * fraction) - bar.n)

        report = data_report(args.workspace, ngram_n=args.ngram, near_duplicates=not args.no_near, progress=progress)
    if args.format == "json":
        print(json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False))
    else:
        print(format_data_table(report))
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Register `data` on the main parser's subparsers."""
    p = sub.add_parser("data", help="contamination of held-out sets by the training data, duplicates, balance, "
                       "lengths, diversity",
                       description="Compare every training set of the workspace with every held-out set.")
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("--ngram", type=int, default=13, help="n of the word n-grams (default 13, as lm-evaluation-harness)")
    p.add_argument("--no-near", action="store_true", help="skip MinHash near duplicates (the slow part)")
    p.add_argument("--format", choices=("json", "table"), default="json")
    p.set_defaults(func=_cmd_data)
