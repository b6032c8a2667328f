"""The `data` command: does a held-out set leak into the training data, and how do the sets compare.

    python -m eval_core data --workspace DIR [--ngram 13] [--no-near] [--format json|table]

For every training set of the workspace (`[[training_sets]]` in ftlens.toml, or the files under
`train/`, `train_data/`, `training/`, `training_data/`) and every held-out set, runs
`data_diagnostics.diagnose_data` and prints one `ftlens.data` record per pair (docs/data-schema.md).
A row's text is what a model sees and answers: prompt and reference for generation sets, the text
for text sets, prompt and answer for probes. Registered on the main parser by `cli.build_parser`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval_core.errors import EvalCoreError

DATA_REPORT_SCHEMA = "ftlens.data_report"
DATA_REPORT_VERSION = 1
TEXT_ROLES = {"generation": ("prompt", "reference"), "text": ("text",), "probe": ("prompt", "answer")}


def text_set(root: Path, record):  # noqa: ANN001, ANN201 - a DatasetRecord -> a data_diagnostics.TextSet
    """The rows of a described dataset as a `TextSet`: ids, texts (TEXT_ROLES joined by newlines),
    categories and the should-refuse flag when the set has them."""
    from eval_core.data_diagnostics import TextSet
    from eval_core.heldout_sets import example_ids, read_heldout_set

    ds = read_heldout_set(root / record.path, kind=record.kind, columns=record.column_map)
    columns = [ds.values(role) for role in TEXT_ROLES[ds.kind] if role in ds.column_map]
    texts = ["\n".join("" if v is None else str(v) for v in values) for values in zip(*columns, strict=True)]
    categories = ds.values("category") if "category" in ds.column_map else None
    refuse = [bool(v) for v in ds.values("should_refuse")] if "should_refuse" in ds.column_map else None
    return TextSet(example_ids(ds), texts, categories, refuse)


def data_report(root: Path | str, *, ngram_n: int = 13, near_duplicates: bool = True) -> dict:
    """The `ftlens.data_report` record: one `ftlens.data` record per (training set, held-out set).

    Raises:
        EvalCoreError: the workspace has no training set or no held-out set (saying where to put them).
    """
    from eval_core.data_contamination import ContaminationConfig
    from eval_core.data_diagnostics import DiagnosticsConfig, diagnose_data
    from eval_core.workspace import discover_workspace

    root = Path(root)
    ws = discover_workspace(root)
    if not ws.training_sets:
        raise EvalCoreError("no training set: list it under [[training_sets]] in ftlens.toml, or put its "
                            ".jsonl/.csv/.parquet file in a train_data/ folder of the workspace", path=root)
    if not ws.datasets:
        raise EvalCoreError("no held-out set to compare with the training data", path=root)
    config = DiagnosticsConfig(contamination=ContaminationConfig(ngram_n=ngram_n, near_duplicates=near_duplicates))
    pairs = []
    for train in ws.training_sets:
        train_rows = text_set(root, train)
        for held in ws.datasets:
            record = diagnose_data(train_rows, text_set(root, held), config).to_dict()
            pairs.append({"training_set": train.name, "heldout_set": held.name, **record})
    return {"schema": DATA_REPORT_SCHEMA, "schema_version": DATA_REPORT_VERSION, "workspace": str(root),
            "text_roles": {k: list(v) for k, v in TEXT_ROLES.items()}, "pairs": pairs}


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
    report = data_report(args.workspace, ngram_n=args.ngram, near_duplicates=not args.no_near)
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
