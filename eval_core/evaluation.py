"""Evaluate a workspace: every (checkpoint x held-out set x metric) cell, computing only what is missing.

Metrics (a registry of small frozen specs):
- `perplexity`: token perplexity, bits per byte and word perplexity of `text` sets;
- `completion_perplexity`: perplexity of the reference given the prompt, for `generation` sets
  (through the chat template when the tokenizer has one) and `probe` sets (the answer after the
  cloze prompt, no template);
- `generation`: the checkpoint's output for each prompt of `generation` sets (by transformers, or by
  vLLM for a config whose backend is "vllm": eval_core.generation_vllm);
- `bleu`, `chrf`, `rouge1`, `rouge2`, `rougeL`, `rougeLsum`, `exact_match`: the outputs of
  `generation` sets scored against their references (eval_core.text_metrics); choosing one also
  computes the generations it needs. They need no model, so a checkpoint whose generations are
  stored is not loaded again to score them;
- `mc_acc`, `mc_acc_norm`, `cloze_exact`, `cloze_contains`: `probe` sets, multiple choice by
  log-likelihood and cloze recall by greedy completion (eval_core.probe_scoring, docs/probe-suites.md).

Each example's result is stored under (checkpoint fingerprint, dataset name, example id, example
hash, metric, config hash). A model is loaded only when one of its cells has missing examples; results
are written in chunks, each one transaction, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from eval_core.errors import EvalCoreError
from eval_core.generation import GenerationConfig
from eval_core.heldout_sets import example_hashes, example_ids, read_heldout_set
from eval_core.nll_scoring import BOS_POLICIES, PerplexityConfig
from eval_core.perplexity import DEFINITIONS as PERPLEXITY_DEFINITIONS
from eval_core.probe_scoring import (
    CLOZE_GENERATION,
    PROBE_METRIC_DESCRIPTIONS,
    PROBE_METRICS,
    MultipleChoiceConfig,
    ProbeConfig,
    ProbeTask,
    applicable,
    needs_model,
    probe_config,
    probe_work,
    resolve_answers,
    run_probe_tasks,
)
from eval_core.records import CheckpointRecord, DatasetRecord, WorkspaceSummary
from eval_core.results_store import ResultsStore, checkpoints, database_url, protocols, redact
from eval_core.text_metrics import HIGHER_IS_BETTER
from eval_core.text_scoring import TextScoreConfig, TextTask, run_text_tasks, text_libraries
from eval_core.workspace import discover_workspace, load_config

ProgressFactory = Callable[[str, int], Callable[[int], None]]
"""progress_factory(description, total) -> advance(n)."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    dataset_kinds: tuple[str, ...]
    table: str
    unit: str
    higher_is_better: bool
    description: str


METRICS: dict[str, MetricSpec] = {
    "perplexity": MetricSpec("perplexity", ("text",), "nll_scores", "perplexity", False,
                             "token-weighted perplexity (with bits per byte, word perplexity) of plain texts"),
    "completion_perplexity": MetricSpec("completion_perplexity", ("generation", "probe"), "nll_scores", "perplexity", False,
                                        "perplexity of the reference (answer) tokens given the prompt"),
    "generation": MetricSpec("generation", ("generation",), "generations", "text", True,
                             "the checkpoint's output for each prompt (greedy unless configured)"),
    **{name: MetricSpec(name, ("generation",), "text_scores", "score", HIGHER_IS_BETTER[name], description)
       for name, description in [
           ("bleu", "sacrebleu BLEU of the outputs against the references (0-100)"),
           ("chrf", "sacrebleu chrF of the outputs against the references (0-100)"),
           ("rouge1", "rouge-score ROUGE-1 F1, Porter stemmer (0-1)"),
           ("rouge2", "rouge-score ROUGE-2 F1, Porter stemmer (0-1)"),
           ("rougeL", "rouge-score ROUGE-L F1, Porter stemmer (0-1)"),
           ("rougeLsum", "rouge-score ROUGE-Lsum F1, sentences split on newlines (0-1)"),
           ("exact_match", "share of outputs equal to the reference after normalisation (0-1)"),
       ]},
    **{name: MetricSpec(name, ("probe",), "text_scores", "proportion", True, description)
       for name, description in PROBE_METRIC_DESCRIPTIONS.items()},
}


def _did_you_mean(kind: str, name: str, known: Sequence[str]) -> EvalCoreError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return EvalCoreError(f"unknown {kind} '{name}'.{hint} Known: {', '.join(known)}", field=kind)


def get_metric(name: str) -> MetricSpec:
    if name not in METRICS:
        raise _did_you_mean("metric", name, list(METRICS))
    return METRICS[name]


@dataclass
class CellResult:
    checkpoint: str
    dataset: str
    metric: str
    computed: int = 0
    cached: int = 0


@dataclass
class EvaluationSummary:
    """What `evaluate` did: examples computed now versus found in the store."""

    database: str
    cells: list[CellResult] = field(default_factory=list)

    @property
    def computed(self) -> int:
        return sum(c.computed for c in self.cells)

    @property
    def cached(self) -> int:
        return sum(c.cached for c in self.cells)

    def to_dict(self) -> dict:
        return {"schema": "ftlens.evaluation", "schema_version": 1, "database": self.database,
                "computed": self.computed, "cached": self.cached, "cells": [c.__dict__ for c in self.cells]}


def _select(kind: str, wanted: Sequence[str] | None, available: dict, problems: Sequence = ()) -> list[tuple[str, object]]:
    """(name, item) pairs in workspace order; an unknown name is an error with a hint.

    A name that discovery could not use (an empty or broken file) is reported with its problem.
    """
    if not wanted:
        return list(available.items())
    for name in wanted:
        if name not in available:
            for p in problems:
                if p.path and Path(p.path).stem == name:
                    raise EvalCoreError(f"{kind} '{name}' cannot be used: {p.message}", path=p.path, line=p.line, field=p.field)
            raise _did_you_mean(kind, name, list(available))
    return [(n, v) for n, v in available.items() if n in wanted]


def _protocol(metric: str, config: PerplexityConfig | GenerationConfig | TextScoreConfig | ProbeConfig) -> dict:
    import torch
    import transformers

    libraries = {"torch": torch.__version__, "transformers": transformers.__version__}
    if isinstance(config, TextScoreConfig):
        libraries.update(text_libraries())
    if getattr(config, "backend", "hf") == "vllm":  # outputs from another engine: record which release
        from eval_core.generation_vllm import vllm_version

        libraries["vllm"] = vllm_version()
    out = {"config": config.to_dict(), "libraries": libraries}
    ppl = config.perplexity if isinstance(config, MultipleChoiceConfig) else config
    if isinstance(ppl, PerplexityConfig):  # log base, aggregation and BOS policy in words, beside the numbers
        out["definitions"] = {**PERPLEXITY_DEFINITIONS, "bos": BOS_POLICIES[ppl.bos_policy]}
    return out


def _context_of(folder: Path) -> int | None:
    """The context length from a checkpoint's config.json (no model load)."""
    from eval_core.checkpoints import read_json_file

    cfg = folder / "config.json"
    if not cfg.is_file():
        return None
    data = read_json_file(cfg)
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        if isinstance(data.get(key), int):
            return data[key]
    return None


def _configs(spec: MetricSpec, ds: DatasetRecord, ppl: PerplexityConfig, gen: GenerationConfig, context: int | None,
             cloze: GenerationConfig):
    if spec.name == "generation":
        return gen
    if spec.table == "text_scores" and spec.name not in PROBE_METRICS:
        return TextScoreConfig(spec.name, gen)
    if context is not None:  # record the window actually used, not "the model's default"
        window = min(ppl.max_length or context, context)
        ppl = replace(ppl, max_length=window, stride=ppl.stride or window)
    if spec.name in PROBE_METRICS:
        return probe_config(spec.name, ppl, cloze)
    if spec.name == "completion_perplexity" and ds.kind == "probe":
        return replace(ppl, use_chat_template=False)  # a cloze prompt is plain text, not a chat turn
    return ppl


def _targets(ws: WorkspaceSummary, checkpoint_names: Sequence[str] | None, dataset_names: Sequence[str] | None,
             metric_names: Sequence[str] | None) -> tuple[list[tuple[str, CheckpointRecord]], list[DatasetRecord], list[MetricSpec]]:
    """The chosen (name, checkpoint) pairs, datasets and metrics, in workspace order; unknown names raise."""
    models: dict[str, CheckpointRecord] = {}
    if ws.base_model:
        models["base"] = ws.base_model
    for c in ws.checkpoints:
        models[c.name if len(ws.runs) == 1 else f"{c.run}/{c.name}"] = c
    chosen_models: list[tuple[str, CheckpointRecord]] = _select("checkpoint", checkpoint_names, models)  # type: ignore[assignment]
    chosen_sets: list[DatasetRecord] = [d for _, d in _select("dataset", dataset_names, {d.name: d for d in ws.datasets}, ws.problems)]  # type: ignore[misc]
    specs = [get_metric(m) for m in metric_names] if metric_names else list(METRICS.values())
    if any(s.table == "text_scores" and "generation" in s.dataset_kinds for s in specs) and METRICS["generation"] not in specs:
        specs.insert(0, METRICS["generation"])  # text metrics score the outputs, so make them first
    errors = [p for p in ws.problems if p.severity == "error"]
    if not chosen_models or not chosen_sets:
        raise EvalCoreError("nothing to evaluate: the workspace has no usable checkpoint or dataset"
                            + (f" ({errors[0].message})" if errors else ""))
    return chosen_models, chosen_sets, specs


def evaluation_cells(
    root: Path | str,
    *,
    checkpoint_names: Sequence[str] | None = None,
    dataset_names: Sequence[str] | None = None,
    metric_names: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """The (checkpoint, dataset) name pairs `evaluate_workspace` would visit, in its order.

    Only datasets that one of the chosen metrics applies to are listed; each pair can be evaluated
    on its own (`checkpoint_names=[c], dataset_names=[d]`), as `evaluation_fanout` does.

    Raises:
        EvalCoreError: as `evaluate_workspace` for unknown names or an empty workspace.

    Example:
        >>> evaluation_cells(".demo_workspace", checkpoint_names=["base"], dataset_names=["general_text"])  # doctest: +SKIP
        [('base', 'general_text')]
    """
    models, sets, specs = _targets(discover_workspace(Path(root)), checkpoint_names, dataset_names, metric_names)
    kinds = {k for s in specs for k in s.dataset_kinds}
    return [(m, d.name) for m, _ in models for d in sets if d.kind in kinds]


def evaluate_workspace(
    root: Path | str,
    *,
    checkpoint_names: Sequence[str] | None = None,
    dataset_names: Sequence[str] | None = None,
    metric_names: Sequence[str] | None = None,
    device: str = "cpu",
    perplexity_config: PerplexityConfig = PerplexityConfig(),
    generation_config: GenerationConfig = GenerationConfig(max_new_tokens=48),
    cloze_config: GenerationConfig = CLOZE_GENERATION,
    allow_pickle: bool = False,
    chunk_size: int = 64,
    progress_factory: ProgressFactory | None = None,
) -> EvaluationSummary:
    """Fill the results store for the chosen cells; return what was computed and what was cached.

    `generation_config` drives the outputs of `generation` sets, `cloze_config` the cloze outputs of
    `probe` sets (always without a chat template).

    Raises:
        EvalCoreError: an unknown checkpoint, dataset or metric name (with "did you mean"), or a
            checkpoint or dataset that cannot be used.

    Example:
        >>> evaluate_workspace(".demo_workspace").to_dict()["computed"]  # doctest: +SKIP
        5180
    """
    from eval_core.model_loading import models_in_turn, open_model
    from eval_core.scoring_tasks import run_task

    root = Path(root)
    ws = discover_workspace(root)
    url = database_url(root, load_config(Path(ws.root)).database_url)  # a wrong folder is named first
    chosen_models, chosen_sets, specs = _targets(ws, checkpoint_names, dataset_names, metric_names)
    vllm = generation_config.backend == "vllm" and METRICS["generation"] in specs and any(d.kind == "generation" for d in chosen_sets)
    if vllm:  # refuse adapters, a missing vllm or GPU before any work, not at the first generation cell
        from eval_core.generation_vllm import VllmTask, check_vllm_checkpoint, require_vllm, run_vllm_generations

        for _, c in chosen_models:
            check_vllm_checkpoint(Path(ws.root) / c.path, Path(ws.root))
        require_vllm()
    store = ResultsStore(url)

    data = {d.name: resolve_answers(read_heldout_set(Path(ws.root) / d.path, kind=d.kind, columns=d.column_map))
            for d in chosen_sets}
    ids = {name: example_ids(ds) for name, ds in data.items()}
    hashes = {name: example_hashes(ds) for name, ds in data.items()}
    store.upsert_reference(checkpoints, [
        {"fingerprint": c.fingerprint, "run": c.run, "name": c.name, "step": c.step, "path": c.path, "kind": c.kind}
        for _, c in chosen_models])
    for d in chosen_sets:
        store.set_dataset({"name": d.name, "fingerprint": d.fingerprint, "path": d.path, "kind": d.kind,
                           "rows": d.rows, "example_ids": json.dumps(ids[d.name])})

    summary = EvaluationSummary(database=redact(store.url))  # printed by the CLI: never a password
    base_dir = Path(ws.root) / ws.base_model.path if ws.base_model else None
    with models_in_turn():
        for model_name, ckpt in chosen_models:
            todo, text_todo, probe_todo, vllm_todo = [], {}, {}, []
            context = _context_of(Path(ws.root) / ckpt.path) or (_context_of(base_dir) if base_dir else None)
            for d in chosen_sets:
                for spec in specs:
                    if d.kind not in spec.dataset_kinds:
                        continue
                    cfg = _configs(spec, d, perplexity_config, generation_config, context, cloze_config)
                    h = cfg.config_hash()
                    store.upsert_reference(protocols, [{"config_hash": h, "metric": spec.name,
                                                        "protocol": json.dumps(_protocol(spec.name, cfg), sort_keys=True)}])
                    keys = list(zip(ids[d.name], hashes[d.name], strict=True))
                    if spec.name in PROBE_METRICS:  # multiple choice: only items with choices
                        keys = [k for k, ok in zip(keys, applicable(spec.name, data[d.name]), strict=True) if ok]
                        if not keys:
                            continue
                    have = store.existing_keys(spec.table, ckpt.fingerprint, d.name, spec.name, h)
                    missing = [k for k in keys if k not in have]
                    cell = CellResult(model_name, d.name, spec.name, cached=len(keys) - len(missing))
                    summary.cells.append(cell)
                    if missing and spec.name in PROBE_METRICS:
                        probe_todo.setdefault(d.name, []).append(ProbeTask(cfg, missing, cell))
                    elif missing and spec.table == "text_scores":
                        text_todo.setdefault(d.name, []).append(TextTask(cfg, missing, cell))
                    elif missing and vllm and spec.name == "generation":
                        vllm_todo.append(VllmTask(data[d.name], ids[d.name], missing, cfg, h, d.name, cell))
                    elif missing:
                        todo.append((d, spec, cfg, h, missing, cell))
            need = bool(todo) or any(needs_model(store, t, ckpt.fingerprint, n) for n, t in probe_todo.items())
            opened = (open_model(Path(ws.root) / ckpt.path, base_model=base_dir, allow_pickle=allow_pickle, root=Path(ws.root))
                      if need else nullcontext())
            with opened as lm:
                if lm is not None:
                    lm.model.to(_device(device))
                for d, spec, cfg, h, missing, cell in todo:
                    advance = progress_factory(f"{model_name} · {d.name} · {spec.name}", len(missing)) if progress_factory else None
                    run_task(store, lm, data[d.name], ids[d.name], missing, spec.name, cfg, h,
                             ckpt.fingerprint, d.name, chunk_size, cell, advance)
                for name, tasks in probe_todo.items():
                    advance = progress_factory(f"{model_name} · {name} · probes", probe_work(tasks)) if progress_factory else None
                    run_probe_tasks(store, lm, data[name], ids[name], tasks, ckpt.fingerprint, name, chunk_size, advance)
            if vllm_todo:  # after the transformers model is released: vLLM takes most of the GPU's memory
                run_vllm_generations(store, Path(ws.root) / ckpt.path, vllm_todo, ckpt.fingerprint, root=Path(ws.root),
                                     progress_factory=(lambda desc, n, m=model_name: progress_factory(f"{m} · {desc}", n))
                                     if progress_factory else None)
            for name, tasks in text_todo.items():
                n = len({k for t in tasks for k in t.missing})
                advance = progress_factory(f"{model_name} · {name} · text metrics", n) if progress_factory else None
                run_text_tasks(store, data[name], ids[name], tasks, ckpt.fingerprint, name, advance=advance)
    store.close()
    return summary


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise EvalCoreError("--device cuda was asked for but torch sees no CUDA device; use cpu or auto")
    if name not in ("cpu", "cuda"):
        raise EvalCoreError(f"unknown device '{name}'; use cpu, cuda or auto")
    return name
