"""The `forgetting` command: what each checkpoint lost against its base, and which checkpoint to ship.

    python -m eval_core forgetting --workspace DIR [--threshold 0.95] [--seed N] [--resamples N]
                                   [--domain-set NAME] --format json|table

Reads the stored probe, general-text and domain results (`python -m eval_core evaluate` fills them)
(the analysis itself is cached in the store: `forgetting_results`) and prints the `ftlens.forgetting` v2 record (docs/forgetting-schema.md) or a table. Registered on
the main parser by `cli.build_parser`; errors are `EvalCoreError`s printed as one line by `cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval_core.errors import EvalCoreError
from eval_core.forgetting import DEFAULT_RESAMPLES, DEFAULT_SEED, DEFAULT_THRESHOLD, KINDS, ForgettingReport


def _fmt(x: float | None, pct: bool = True, signed: bool = False) -> str:
    if x is None:
        return "undefined"
    return f"{x:+.1%}" if signed else f"{x:.1%}" if pct else f"{x:.3f}"


def format_forgetting_table(report: ForgettingReport) -> str:
    """The `forgetting --format table` text: one row per checkpoint, then the recommendation."""
    from eval_core.cli import _table

    kinds = [k for k in KINDS if any(r.kind == k for c in report.checkpoints for r in c.retention)]
    headers = ["checkpoint", "step", "general retention", "forgetting index", "domain gain", "frontier",
               *[f"{k} [95% CI]" for k in kinds], "lost", "gained"]
    rows = []
    for c in report.checkpoints:
        by_kind = {r.kind: r for r in c.retention}
        cells = []
        for k in kinds:
            r = by_kind.get(k)
            cell = ("-" if r is None else _fmt(r.retention) if r.retention is None or r.low is None
                    else f"{_fmt(r.retention)} [{_fmt(r.low)}, {_fmt(r.high)}]")
            cells.append(cell + (" (chance)" if r is not None and not r.informative else ""))
        rows.append([c.label + (" (blocked)" if c.blocked else ""), c.step, _fmt(c.general_retention), _fmt(c.forgetting_index, pct=False),
                     _fmt(c.domain_gain, signed=True), "yes" if c.on_frontier else "", *cells,
                     sum(f.direction == "lost" for f in c.flips), sum(f.direction == "gained" for f in c.flips)])
    rec = report.recommendation
    return "\n".join([
        *[f"WARNING: {w}" for w in report.warnings],  # before any number: these rows are not comparable
        f"Forgetting against {report.base}  (domain set: {report.domain_dataset or 'none'}; probes: "
        f"{', '.join(report.probe_datasets) or 'none'}; general text: {', '.join(report.general_text_datasets) or 'none'})",
        f"paired bootstrap 95% intervals, {report.n_resamples} resamples, seed {report.seed}",
        "",
        _table(headers, rows),
        "",
        *_chance_notes(report),
        f"Recommended: {rec.checkpoint or 'none'} — {rec.reason}",
    ])


def _chance_notes(report: ForgettingReport) -> list[str]:
    """One line per probe kind left out of the general retention because the base is at chance."""
    seen = {}
    for c in report.checkpoints:
        for r in c.retention:
            if not r.informative and r.kind not in seen:
                seen[r.kind] = r.uninformative_reason
    return [f"(chance) {kind}: {why}; left out of the general retention" for kind, why in seen.items()]


def _cmd_forgetting(args: argparse.Namespace) -> int:
    from eval_core.forgetting_results import forgetting_report

    if not 0 < args.threshold <= 2:
        raise EvalCoreError(f"--threshold {args.threshold}: give a retention between 0 and 2, e.g. 0.95 for 95%")
    if args.resamples < 1:
        raise EvalCoreError(f"--resamples {args.resamples}: give at least 1")
    if not args.workspace.is_dir():
        raise EvalCoreError(f"{args.workspace}: not a folder; give the workspace folder with --workspace")
    got = forgetting_report(args.workspace, threshold=args.threshold, seed=args.seed, n_resamples=args.resamples,
                            domain_dataset=args.domain_set)
    report = got.report
    for warning in report.warnings:  # also on stderr, so a --format json reader still sees it
        print(f"warning: {warning}", file=sys.stderr)
    print(f"forgetting analysis {'read from' if got.cached else 'computed and stored in'} the results store "
          f"(inputs digest {got.inputs_digest[:12]})", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=1, ensure_ascii=False, allow_nan=False))
    else:
        print(format_forgetting_table(report))
    return 0


def add_forgetting_commands(sub: argparse._SubParsersAction) -> None:
    """Register `forgetting` on the main parser's subcommands."""
    p = sub.add_parser(
        "forgetting",
        help="retention of each checkpoint against its base, forgetting index, flipped items, recommendation",
        description="From stored results: per checkpoint, retention against the base model per probe kind "
        "and category (checkpoint/base score, base/checkpoint bits per byte) with paired bootstrap 95%% "
        "intervals, a forgetting index, the probe items that flipped, the domain gain, the Pareto frontier "
        "of (domain gain, general retention) and the recommended checkpoint with its reason. Schema: "
        "docs/forgetting-schema.md.",
    )
    p.add_argument("--workspace", required=True, type=Path, help="the workspace folder")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="least general retention a recommended checkpoint keeps (default 0.95, i.e. 95%%)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})")
    p.add_argument("--domain-set", default=None, help="the domain set (default: the first generation set with completion_perplexity)")
    p.add_argument("--format", choices=("json", "table"), default="table")
    p.set_defaults(func=_cmd_forgetting)
