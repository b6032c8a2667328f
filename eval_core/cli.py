"""The command line: `python -m eval_core <command>`.

Commands print results on stdout (JSON for machines, tables for people) and errors on stderr as
one line naming file, line and field, exiting 2 for bad input. Long work shows tqdm bars.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from eval_core.cli_data import add_data_commands
from eval_core.cli_forgetting import add_forgetting_commands
from eval_core.cli_ratings import add_ratings_commands
from eval_core.cli_report import add_report_commands
from eval_core.cli_scoring import add_scoring_commands
from eval_core.cli_team import add_team_commands
from eval_core.cli_text import add_text_commands
from eval_core.errors import EvalCoreError
from eval_core.records import WorkspaceSummary
from eval_core.version import __version__

# Nothing may reach a model hub: transformers and huggingface_hub read these before any load.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def format_workspace_table(ws: WorkspaceSummary) -> str:
    """The `workspace --format table` text: one section per kind of thing found."""
    out = [f"Workspace {ws.name}  ({ws.root})", f"config: {ws.config_file or '(none: discovered)'}", ""]
    models = ([ws.base_model] if ws.base_model else []) + list(ws.checkpoints)
    out.append("Checkpoints")
    out.append(
        _table(
            ["run", "name", "step", "kind", "params", "MB", "path", "fingerprint"],
            [
                [c.run or "(base)", c.name, c.step, c.kind, c.parameter_count,
                 f"{c.size_bytes / 1e6:.1f}", c.path, c.fingerprint.split(":")[-1][:12]]
                for c in models
            ],
        )
    )
    out += ["", "Datasets"]
    out.append(
        _table(
            ["name", "kind", "rows", "categories", "path", "fingerprint"],
            [
                [d.name, d.kind, d.rows, len(d.categories), d.path, d.fingerprint.split(":")[-1][:12]]
                for d in ws.datasets
            ],
        )
    )
    out += ["", "Training logs"]
    out.append(
        _table(["run", "kind", "KB", "path"], [[f.run, f.kind, f"{f.size_bytes / 1e3:.1f}", f.path] for f in ws.log_files])
    )
    if ws.problems:
        out += ["", "Problems"]
        for p in ws.problems:
            loc = ":".join(str(x) for x in (p.path, p.line) if x is not None)
            out.append(f"- {p.severity}: {loc}{' field ' + p.field if p.field else ''}: {p.message}")
    return "\n".join(out)


def _cmd_workspace(args: argparse.Namespace) -> int:
    from eval_core.workspace import discover_workspace

    ws = discover_workspace(args.workspace)
    if args.format == "json":
        print(json.dumps(ws.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_workspace_table(ws))
    return 1 if any(p.severity == "error" for p in ws.problems) and args.strict else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from eval_core.demo import DemoSettings, build_demo_workspace

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.seed is not None:
        from dataclasses import replace

        settings = replace(settings, seed=args.seed)
    bars: dict[str, tqdm] = {}

    def progress(stage: str, fraction: float, message: str) -> None:
        if stage == "done":
            print(message, file=sys.stderr)
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=100, desc=stage, unit="%", file=sys.stderr, leave=True)
        bar.set_postfix_str(message, refresh=False)
        bar.n = round(fraction * 100)
        bar.refresh()

    # Trainer prints its log dicts on stdout; stdout is reserved for the JSON record.
    with contextlib.redirect_stdout(sys.stderr):
        record = build_demo_workspace(args.workspace, settings, progress=progress)
    for bar in bars.values():
        bar.close()
    print(json.dumps(record, indent=2))
    return 0


def _cmd_curves(args: argparse.Namespace) -> int:
    from eval_core.curve_analysis import summarize_curves
    from eval_core.training_logs import CURVES_SCHEMA, CURVES_SCHEMA_VERSION, iter_csv, read_run_logs

    table = read_run_logs(args.path, run=args.run)
    if args.summary:
        if args.format != "json":
            raise EvalCoreError("--summary prints JSON; use --format json")
        print(json.dumps(summarize_curves(table, patience=args.patience), indent=2, allow_nan=False))
        return 0
    for warning in table.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.format == "csv":
        sys.stdout.writelines(iter_csv(table))
    else:
        record = {"schema": CURVES_SCHEMA, "schema_version": CURVES_SCHEMA_VERSION,
                  "sources": list(table.sources), "warnings": list(table.warnings), "rows": table.to_rows()}
        print(json.dumps(record, indent=1, allow_nan=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval_core",
        description="Fine-Tune Lens: evaluate fine-tuning checkpoints against their base model.",
    )
    parser.add_argument("--version", action="version", version=f"Fine-Tune Lens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="build the demo workspace by a real (small) training run; idempotent",
        description="Train a tokenizer and a ~1.4M-parameter GPT-2-style base model on general "
        "English, then fine-tune it on a customer-support set with transformers.Trainer, saving "
        "checkpoints, TensorBoard logs and held-out sets. About 2.5 minutes on 2 CPU cores; a "
        "second run finds it built and returns at once.",
    )
    demo.add_argument("--workspace", required=True, type=Path, help="folder to build into")
    demo.add_argument("--quick", action="store_true", help="reduced steps (for tests): seconds, not minutes")
    demo.add_argument("--seed", type=int, default=None, help="override the build seed")
    demo.set_defaults(func=_cmd_demo)

    ws = sub.add_parser(
        "workspace",
        help="list the runs, checkpoints, datasets and training logs found in a workspace",
        description="Discover a workspace. JSON output follows schema 'ftlens.workspace' "
        "(docs/workspace-schema.md); its schema_version changes when a field changes meaning.",
    )
    ws.add_argument("--workspace", required=True, type=Path, help="the workspace folder")
    ws.add_argument("--format", choices=("json", "table"), default="table")
    ws.add_argument("--strict", action="store_true", help="exit 1 when any problem of severity error was found")
    ws.set_defaults(func=_cmd_workspace)

    curves = sub.add_parser(
        "curves",
        help="training curves of a run as tidy rows, or per-metric best step and overfitting",
        description="Read trainer_state.json, TensorBoard event files, Lightning metrics.csv and "
        "step/metric/value logs of a run into one table (run, source, step, epoch, wall_time, "
        "metric, value). With --summary: per eval metric the best step and value, the overfitting "
        "onset (eval loss rising for PATIENCE evaluations while train loss falls), where early "
        "stopping would stop, and the generalisation gap. Schema: docs/curves-schema.md.",
    )
    curves.add_argument("path", type=Path, help="a run folder, a trainer_state.json, or a TensorBoard log folder/file")
    curves.add_argument("--format", choices=("json", "csv"), default="json")
    curves.add_argument("--summary", action="store_true", help="per-metric analysis instead of rows")
    curves.add_argument("--patience", type=int, default=3, help="evaluations without improvement (default 3)")
    curves.add_argument("--run", default=None, help="run name to put on the rows (default: folder name)")
    curves.set_defaults(func=_cmd_curves)

    add_scoring_commands(sub)
    add_text_commands(sub)
    add_forgetting_commands(sub)
    add_ratings_commands(sub)
    add_report_commands(sub)
    add_data_commands(sub)
    add_team_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 problems with --strict, 2 bad input)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EvalCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader has gone; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
