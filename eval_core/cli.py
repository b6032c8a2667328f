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


def _bar_factory(bars: list):
    from tqdm.auto import tqdm

    def factory(description: str, total: int):
        bar = tqdm(total=total, desc=description, unit="ex", file=sys.stderr)
        bars.append(bar)
        return bar.update

    return factory


def _read_inputs(path: Path, field: str) -> tuple[list[str], list[str]]:
    """(ids, texts) from a .txt file (one text per line) or a .jsonl/.csv/.parquet file's `field`."""
    from eval_core.errors import DatasetError
    from eval_core.heldout_sets import read_rows

    if path.suffix == ".txt":
        if not path.is_file():
            raise DatasetError("file does not exist", path=path)
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        return [f"line-{i}" for i in range(1, len(lines) + 1)], lines
    _, rows, lines, columns = read_rows(path)
    if not rows:
        raise DatasetError("the file has no rows", path=path)
    if field not in columns:
        raise DatasetError(f"no column '{field}' (columns: {columns}); pass --field", path=path, field=field)
    texts = []
    for row, line in zip(rows, lines, strict=True):
        if not isinstance(row.get(field), str):
            raise DatasetError("must be a string", path=path, line=line, field=field)
        texts.append(row[field])
    ids = [str(r["id"]) if "id" in r else f"line-{n}" for r, n in zip(rows, lines, strict=True)]
    return ids, texts


def _cmd_perplexity(args: argparse.Namespace) -> int:
    from eval_core.model_loading import open_model
    from eval_core.nll_scoring import PerplexityConfig, resolve_window, score_texts
    from eval_core.perplexity import summarize, total

    ids, texts = _read_inputs(args.data, args.field)
    config = PerplexityConfig(max_length=args.max_length, stride=args.stride, batch_size=args.batch_size)
    with open_model(args.checkpoint, base_model=args.base_model, allow_pickle=args.allow_pickle) as lm:
        max_length, stride = resolve_window(lm.model, config)
        stats = score_texts(lm.model, lm.tokenizer, texts, config)
    record = {
        "schema": "ftlens.perplexity", "schema_version": 1, "checkpoint": str(args.checkpoint), "data": str(args.data),
        **summarize(total(stats)),
        "protocol": {**config.to_dict(), "max_length": max_length, "stride": stride, "field": args.field},
        "per_example": [{"id": i, "nll_sum": s.nll_sum, "tokens": s.token_count, "bytes": s.byte_count}
                        for i, s in zip(ids, stats, strict=True)],
    }
    print(json.dumps(record, indent=2))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from eval_core.generation import GenerationConfig, generate
    from eval_core.model_loading import open_model

    ids, prompts = _read_inputs(args.data, args.field)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                              do_sample=args.sample, seed=args.seed, stop=tuple(args.stop or ()))
    with open_model(args.checkpoint, base_model=args.base_model, allow_pickle=args.allow_pickle) as lm:
        outs = generate(lm.model, lm.tokenizer, prompts, config)
    settings = config.to_dict()
    for i, p, g in zip(ids, prompts, outs, strict=True):
        print(json.dumps({"id": i, "prompt": p, "output": g.text, "new_tokens": g.new_tokens,
                          "finish_reason": g.finish_reason, "settings": settings}, ensure_ascii=False))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from eval_core.evaluation import evaluate_workspace
    from eval_core.generation import GenerationConfig
    from eval_core.nll_scoring import PerplexityConfig

    bars: list = []
    summary = evaluate_workspace(
        args.workspace, checkpoint_names=args.checkpoint, dataset_names=args.dataset, metric_names=args.metric,
        device=args.device, perplexity_config=PerplexityConfig(batch_size=args.batch_size),
        generation_config=GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
        allow_pickle=args.allow_pickle, progress_factory=_bar_factory(bars),
    )
    for bar in bars:
        bar.close()
    print(f"computed {summary.computed} examples, {summary.cached} already in the store "
          f"({len(summary.cells)} cells)", file=sys.stderr)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from eval_core.results_store import ResultsStore, database_url
    from eval_core.results_summary import collect_results, iter_results_csv
    from eval_core.workspace import check_workspace_root, load_config

    root = check_workspace_root(args.workspace)
    store = ResultsStore(database_url(root, load_config(root).database_url))
    record = collect_results(store, include_examples=not args.no_examples)
    store.close()
    if args.format == "csv":
        sys.stdout.writelines(iter_results_csv(record))
    else:
        print(json.dumps(record, indent=1, ensure_ascii=False))
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint or adapter folder")
    p.add_argument("--base-model", type=Path, default=None, help="base model folder (needed for adapters)")
    p.add_argument("--data", required=True, type=Path, help=".txt (one text per line), .jsonl, .csv or .parquet")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load .bin/.pt weights (torch.load weights_only=True); only for files you trust")


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

    ppl = sub.add_parser("perplexity", help="token perplexity and bits per byte of texts under a checkpoint",
                         description="Token-weighted perplexity exp(sum NLL / tokens), bits per byte and word "
                         "perplexity, with the protocol (window, stride, BOS policy) and per-example values.")
    _add_model_args(ppl)
    ppl.add_argument("--field", default="text", help="column holding the text (jsonl/csv/parquet)")
    ppl.add_argument("--batch-size", type=int, default=16)
    ppl.add_argument("--max-length", type=int, default=None, help="window (default: the model's context)")
    ppl.add_argument("--stride", type=int, default=None, help="new tokens per window (default: max-length - 1)")
    ppl.add_argument("--format", choices=("json",), default="json")
    ppl.set_defaults(func=_cmd_perplexity)

    gen = sub.add_parser("generate", help="batched generation for each prompt (JSON lines)")
    _add_model_args(gen)
    gen.add_argument("--field", default="prompt", help="column holding the prompt")
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--batch-size", type=int, default=16)
    gen.add_argument("--sample", action="store_true", help="seeded sampling instead of greedy")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--stop", action="append", help="stop string (repeatable)")
    gen.add_argument("--format", choices=("jsonl",), default="jsonl")
    gen.set_defaults(func=_cmd_generate)

    ev = sub.add_parser("evaluate", help="fill the results store: every checkpoint x held-out set x metric",
                        description="Compute only what the store lacks (new checkpoints, examples or metrics). "
                        "Metrics: perplexity, completion_perplexity, generation.")
    ev.add_argument("--workspace", required=True, type=Path)
    ev.add_argument("--checkpoint", action="append", help="checkpoint name (repeatable; default all, with base)")
    ev.add_argument("--dataset", action="append", help="dataset name (repeatable; default all)")
    ev.add_argument("--metric", action="append", help="metric name (repeatable; default all)")
    ev.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--max-new-tokens", type=int, default=48)
    ev.add_argument("--allow-pickle", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)

    res = sub.add_parser("results", help="every stored number with its protocol (JSON or CSV)")
    res.add_argument("--workspace", required=True, type=Path)
    res.add_argument("--format", choices=("json", "csv"), default="json")
    res.add_argument("--no-examples", action="store_true", help="aggregates only")
    res.set_defaults(func=_cmd_results)
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
