"""Fan the (checkpoint x dataset) cells of `evaluate` out over a Ray cluster (optional).

Each cell is one Ray task (one CPU; one GPU too with device "cuda" or the vllm backend) that calls
`evaluate_workspace` for that checkpoint and that dataset only. Every task writes to the workspace's
results store; rows are keyed by content fingerprints and written once (inserts ignore an existing
key), so tasks never conflict and the stored rows equal a serial run's (tests/test_evaluation_fanout.py).

Where the store lives decides where tasks may run:
- SQLite (the default) serves the workers of one machine: WAL and a busy timeout serialise their
  short write transactions. A cluster with a node on another machine is refused, since that node
  cannot reach the file;
- PostgreSQL (FTLENS_DATABASE_URL or ftlens.toml `[database] url`) serves a real cluster; every node
  then needs the workspace at the same path (a shared mount) and the same environment
  (requirements.txt and this checkout).

Workers run offline (the CLI's HF_*_OFFLINE variables) with one torch thread each, so N workers use
N cores. ray is imported on use: without it, `fan_out_evaluation` says how to install it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval_core.errors import EvalCoreError
from eval_core.evaluation import CellResult, ProgressFactory, evaluation_cells
from eval_core.generation import GenerationConfig
from eval_core.nll_scoring import PerplexityConfig
from eval_core.results_store import ENV_DATABASE_URL, ResultsStore, database_url, redact
from eval_core.workspace import load_config

FANOUT_SCHEMA = "ftlens.evaluation_fanout"
FANOUT_SCHEMA_VERSION = 1
RAY_REQUIREMENT = "ray==2.60.0"  # the release requirements-test.txt pins and the tests run
# Nothing may reach a model hub (the CLI's OFFLINE_ENV, tests check they agree), and one torch /
# tokenizer thread per worker: the workers are the parallelism, threads would oversubscribe cores.
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
}
# A local instance's shared-object store: tasks pass only small summaries, and Ray's default (30% of
# RAM) would reserve gigabytes of /dev/shm for nothing.
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20


@dataclass(frozen=True)
class FanOutJob:
    """One Ray task: a checkpoint and a dataset, with the examples it computed and found cached."""

    checkpoint: str
    dataset: str
    computed: int
    cached: int


@dataclass(frozen=True)
class FanOutSummary:
    """What a fan-out did: per job and per (checkpoint, dataset, metric) cell, computed versus cached.

    Attributes:
        database: the results store's URL, password redacted.
        address: "local" (an instance started for this run) or the cluster address given.
        workers: parallel tasks of the local instance; None on a cluster (its resources decide).
        jobs: one per (checkpoint, dataset), in `evaluate`'s order.
        cells: every metric cell of every job, as `EvaluationSummary.cells`.
    """

    database: str
    address: str
    workers: int | None
    jobs: tuple[FanOutJob, ...] = ()
    cells: tuple[CellResult, ...] = ()

    @property
    def computed(self) -> int:
        return sum(j.computed for j in self.jobs)

    @property
    def cached(self) -> int:
        return sum(j.cached for j in self.jobs)

    def to_dict(self) -> dict:
        return {"schema": FANOUT_SCHEMA, "schema_version": FANOUT_SCHEMA_VERSION, "database": self.database,
                "address": self.address, "workers": self.workers, "computed": self.computed, "cached": self.cached,
                "jobs": [j.__dict__ for j in self.jobs], "cells": [c.__dict__ for c in self.cells]}


def import_ray() -> Any:
    """The `ray` module, or an EvalCoreError saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise EvalCoreError(f"ray is not installed: `pip install {RAY_REQUIREMENT}` to fan out, or run "
                            "evaluate without --ray", field="ray") from None


def check_store_reachable(url: str, node_addresses: Collection[str], driver_address: str) -> None:
    """Refuse a SQLite store when a Ray node is another machine than the driver's.

    Raises:
        EvalCoreError: naming the store and the other machines, and what to do.

    Example:
        >>> check_store_reachable("postgresql+psycopg://db/ftlens", {"10.0.0.2"}, "10.0.0.1")
        >>> check_store_reachable("sqlite:////ws/.ftlens/results.sqlite", {"10.0.0.1"}, "10.0.0.1")
    """
    if url.split(":", 1)[0].split("+", 1)[0] != "sqlite":
        return
    others = sorted(set(node_addresses) - {driver_address})
    if others:
        raise EvalCoreError(
            f"the results store is a SQLite file ({redact(url)}) that Ray workers on other machines "
            f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}) cannot reach; set "
            f"{ENV_DATABASE_URL} to the team's PostgreSQL, or fan out on this machine (--ray without an address)",
            field="database.url")


def _worker_env() -> dict[str, str]:
    import eval_core

    env = dict(WORKER_ENV)
    # Workers import eval_core from this checkout (the same path on every node of a shared mount).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(eval_core.__file__).resolve().parent.parent),
                                                    os.environ.get("PYTHONPATH")) if p)
    if os.environ.get(ENV_DATABASE_URL):  # the store the driver checked, not whatever a worker's config says
        env[ENV_DATABASE_URL] = os.environ[ENV_DATABASE_URL]
    return env


def _evaluate_cell(root: str, checkpoint: str, dataset: str, options: dict[str, Any]) -> dict:
    """The Ray task: `evaluate_workspace` for one checkpoint and one dataset; its summary as a dict."""
    import torch

    torch.set_num_threads(1)  # OMP_NUM_THREADS covers a fresh worker; this, a reused one
    from eval_core.evaluation import evaluate_workspace

    return evaluate_workspace(root, checkpoint_names=[checkpoint], dataset_names=[dataset], **options).to_dict()


def _task_error(ray: Any, exc: Exception, checkpoint: str, dataset: str) -> EvalCoreError:
    where = f"{checkpoint} × {dataset}"
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EvalCoreError):
        return type(cause)(f"{where}: {cause.message}", path=cause.path, line=cause.line, field=cause.field)
    if isinstance(exc, ray.exceptions.RayTaskError):
        return EvalCoreError(f"the Ray task for {where} failed: {type(cause).__name__}: {cause}")
    return EvalCoreError(f"the Ray worker evaluating {where} died ({type(exc).__name__}: {str(exc)[:300]}); if it "
                         "ran out of memory, use fewer workers (--ray-workers) or a smaller --batch-size")


def fan_out_evaluation(
    root: Path | str,
    *,
    checkpoint_names: Sequence[str] | None = None,
    dataset_names: Sequence[str] | None = None,
    metric_names: Sequence[str] | None = None,
    device: str = "cpu",
    perplexity_config: PerplexityConfig | None = None,
    generation_config: GenerationConfig | None = None,
    cloze_config: GenerationConfig | None = None,
    allow_pickle: bool = False,
    address: str | None = None,
    num_workers: int = 2,
    progress: ProgressFactory | None = None,
) -> FanOutSummary:
    """`evaluate_workspace`, one Ray task per (checkpoint, dataset); the same rows in the same store.

    With `address` None (or "local") a local Ray instance with `num_workers` CPUs is started and shut
    down afterwards; with an address (e.g. "auto", "HOST:6379", "ray://HOST:10001") that cluster is
    used and only this driver's connection is closed. When Ray is already initialised in this process,
    that session is used and left running. Configs left None take `evaluate_workspace`'s defaults.

    Args:
        progress: progress(description, total) -> advance(n); advanced by one as each job finishes.

    Raises:
        EvalCoreError: ray missing; unknown names (before Ray starts); a SQLite store with workers
            on other machines; a GPU asked for in a cluster without one; a failed task (named by
            its checkpoint and dataset; the other tasks are cancelled, finished ones stay stored).

    Example:
        >>> fan_out_evaluation(".demo_workspace", num_workers=2).computed  # doctest: +SKIP
        5180
    """
    if num_workers < 1:
        raise EvalCoreError(f"num_workers={num_workers} must be at least 1", field="num_workers")
    root = Path(root).resolve()
    cells = evaluation_cells(root, checkpoint_names=checkpoint_names, dataset_names=dataset_names,
                             metric_names=metric_names)  # unknown names fail here, before Ray starts
    ray = import_ray()  # before anything is written
    url = database_url(root, load_config(root).database_url)
    ResultsStore(url).close()  # create the tables once: first-time migrations racing in workers could fail
    options: dict[str, Any] = {"metric_names": metric_names, "device": device, "allow_pickle": allow_pickle}
    for key, value in (("perplexity_config", perplexity_config), ("generation_config", generation_config),
                       ("cloze_config", cloze_config)):
        if value is not None:
            options[key] = value
    local = address in (None, "local")
    started = not ray.is_initialized()
    if started:
        init: dict[str, Any] = {"address": address or "local", "log_to_driver": False}
        if local:
            init.update(num_cpus=num_workers, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        try:
            ray.init(**init)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:  # what ray.init raises for an address
            raise EvalCoreError(f"cannot start or reach the Ray cluster at '{address or 'local'}' ({type(exc).__name__}: "
                                f"{str(exc)[:300]}); start one (`ray start --head`) or give its address, or use --ray "
                                "alone for a local instance", field="ray") from None
    try:
        check_store_reachable(url, {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")},
                              ray.util.get_node_ip_address())
        jobs = _run_jobs(ray, root, cells, options, device, generation_config, progress)
    finally:
        if started:
            ray.shutdown()
    return FanOutSummary(
        database=redact(url), address="local" if local else str(address), workers=num_workers if local else None,
        jobs=tuple(FanOutJob(c, d, sum(x.computed for x in cs), sum(x.cached for x in cs)) for (c, d), cs in jobs.items()),
        cells=tuple(x for cs in jobs.values() for x in cs))


def _run_jobs(ray: Any, root: Path, cells: list[tuple[str, str]], options: dict[str, Any], device: str,
              generation_config: GenerationConfig | None, progress: ProgressFactory | None,
              ) -> dict[tuple[str, str], list[CellResult]]:
    """Submit every cell, gather as they finish; {cell: its metric cells} in `cells` order."""
    gpus = ray.cluster_resources().get("GPU", 0)
    wants_gpu = device == "cuda" or (device == "auto" and gpus >= 1) or (
        generation_config is not None and generation_config.backend == "vllm")
    if wants_gpu and gpus < 1:  # a task asking for a GPU the cluster lacks would wait forever
        raise EvalCoreError("the Ray cluster has no GPU, and --device cuda or --backend vllm needs one per task; "
                            "use --device cpu --backend hf, or a cluster with GPUs", field="device")
    # The environment goes with each task, so it holds in a Ray session the caller started too.
    task = ray.remote(num_cpus=1, num_gpus=1 if wants_gpu else 0, runtime_env={"env_vars": _worker_env()})(_evaluate_cell)
    refs = {task.remote(str(root), c, d, options): (c, d) for c, d in cells}
    advance = progress("checkpoint × dataset jobs", len(cells)) if progress else None
    done_by_cell: dict[tuple[str, str], list[CellResult]] = {}
    pending = list(refs)
    while pending:
        [ref], pending = ray.wait(pending, num_returns=1)
        try:
            summary = ray.get(ref)
        except ray.exceptions.RayError as exc:
            for other in pending:
                ray.cancel(other)
            raise _task_error(ray, exc, *refs[ref]) from None
        done_by_cell[refs[ref]] = [CellResult(**c) for c in summary["cells"]]
        if advance is not None:
            advance(1)
    return {cell: done_by_cell[cell] for cell in cells}
