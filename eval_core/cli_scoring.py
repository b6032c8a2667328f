"""The scoring commands of the CLI: perplexity, generate, evaluate, results.

Registered on the main parser by `cli.build_parser`; they print JSON (or JSON lines / CSV) on
stdout and progress bars on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _bar_factory(bars: list):
    from tqdm.auto import tqdm

    def factory(description: str, total: int):
        bar = tqdm(total=total, desc=description, unit="ex", file=sys.stderr)
        bars.append(bar)
        return bar.update

    return factory


def _read_inputs(path: Path, field: str) -> tuple[list[str], list[str]]:
    """(ids, texts) from a .txt file (one text per line) or a .jsonl/.csv/.parquet file's `field`."""
    from eval_core.cli_text import read_text_lines
    from eval_core.errors import DatasetError
    from eval_core.heldout_sets import read_rows

    if path.suffix == ".txt":
        if not path.is_file():
            raise DatasetError("file does not exist", path=path)
        lines = read_text_lines(path)
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
    from eval_core.generation import GenerationConfig, with_backend
    from eval_core.nll_scoring import PerplexityConfig

    bars: list = []
    common = dict(
        checkpoint_names=args.checkpoint, dataset_names=args.dataset, metric_names=args.metric, device=args.device,
        perplexity_config=PerplexityConfig(batch_size=args.batch_size), allow_pickle=args.allow_pickle,
        generation_config=with_backend(GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
                                       args.backend),
    )
    if args.ray is not None or args.ray_workers is not None:
        from eval_core.evaluation_fanout import fan_out_evaluation

        summary = fan_out_evaluation(args.workspace, address=args.ray, num_workers=args.ray_workers or 2,
                                     progress=_bar_factory(bars), **common)
    else:
        summary = evaluate_workspace(args.workspace, progress_factory=_bar_factory(bars), **common)
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


def add_scoring_commands(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    ppl = sub.add_parser("perplexity", help="token perplexity and bits per byte of texts under a checkpoint",
                         description="Token-weighted perplexity exp(sum NLL / tokens), bits per byte and word "
                         "perplexity, with the protocol (window, stride, BOS policy) and per-example values.")
    _add_model_args(ppl)
    ppl.add_argument("--field", default="text", help="column holding the text (jsonl/csv/parquet)")
    ppl.add_argument("--batch-size", type=int, default=16)
    ppl.add_argument("--max-length", type=int, default=None, help="window (default: the model's context)")
    ppl.add_argument("--stride", type=int, default=None, help="new tokens scored per window (default: max-length, disjoint windows as lm-evaluation-harness)")
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
    ev.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                    help="engine for the outputs of generation sets: hf (transformers) or vllm (GPU only, "
                    "`pip install vllm`); their outputs are stored apart")
    ev.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                    help="run each checkpoint x dataset as a Ray task: alone, on a local instance with "
                    "--ray-workers CPUs; with ADDRESS (auto, HOST:6379, ray://HOST:10001), on that cluster "
                    "(across machines, with PostgreSQL as the store). Needs `pip install ray==2.60.0`")
    ev.add_argument("--ray-workers", type=int, default=None, metavar="N",
                    help="parallel tasks of the local Ray instance (default 2); implies --ray")
    ev.set_defaults(func=_cmd_evaluate)

    res = sub.add_parser("results", help="every stored number with its protocol (JSON or CSV)")
    res.add_argument("--workspace", required=True, type=Path)
    res.add_argument("--format", choices=("json", "csv"), default="json")
    res.add_argument("--no-examples", action="store_true", help="aggregates only")
    res.set_defaults(func=_cmd_results)
