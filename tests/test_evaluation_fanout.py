"""Ray fan-out of `evaluate`: the same stored rows as a serial run, on a local Ray instance with 2
workers; clear refusals (ray missing, unknown names, a SQLite store out of a worker's reach)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from eval_core.errors import EvalCoreError
from eval_core.evaluation import evaluate_workspace, evaluation_cells
from eval_core.evaluation_fanout import (
    RAY_REQUIREMENT,
    WORKER_ENV,
    FanOutJob,
    FanOutSummary,
    check_store_reachable,
    fan_out_evaluation,
)
from eval_core.generation import GenerationConfig
from eval_core.results_store import ResultsStore, database_url
from tests.conftest import TINY_TEXT, make_tiny_gpt2

GEN = GenerationConfig(max_new_tokens=4)
STORED_TABLES = ("nll_scores", "generations", "text_scores", "checkpoints", "datasets", "protocols")
MODELS = ["base", "checkpoint-1", "checkpoint-2"]


def _ray():
    """The ray module; a skip saying so where it is not installed, a failure under CI=true."""
    if os.environ.get("CI") == "true":
        try:
            importlib.import_module("ray")
        except ImportError as exc:
            pytest.fail(f"ray is required for the fan-out test in CI ({exc}): pip install -r requirements-test.txt")
    return pytest.importorskip("ray", reason=f"ray not installed (pip install {RAY_REQUIREMENT}, in requirements-test.txt)")


@pytest.fixture(scope="module")
def tiny_ws(tmp_path_factory, tiny_tokenizer) -> Path:
    """A base model and a run of two checkpoints (tiny real GPT-2s), a text set and a generation set."""
    ws = tmp_path_factory.mktemp("fanout") / "ws"
    make_tiny_gpt2(ws / "base_model", tiny_tokenizer, seed=0)
    for step in (1, 2):
        make_tiny_gpt2(ws / "runs" / "ft" / f"checkpoint-{step}", tiny_tokenizer, seed=step)
    (ws / "heldout").mkdir()
    texts = [{"id": f"t{i}", "text": t} for i, t in enumerate(TINY_TEXT[:6])]
    (ws / "heldout" / "general_text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in texts))
    gen = [{"id": f"g{i}", "prompt": f"Customer: question {i}?", "reference": "it ships in three days."} for i in range(5)]
    (ws / "heldout" / "support.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gen))
    return ws


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _stored(ws: Path) -> dict[str, list[tuple]]:
    """Every row of the stored tables, without write times, sorted: comparable across two stores."""
    import eval_core.results_store as rs

    # `protocols.metric` is left out: perplexity and completion_perplexity can share one config (and
    # so one config hash), and that row keeps whichever metric registered it first, which in a
    # fan-out is whichever job got there first. The protocol text itself must be equal.
    def kept(table: str, column: str) -> bool:
        return column != "created_at" and (table, column) != ("protocols", "metric")

    store = ResultsStore(database_url(ws))
    try:
        return {name: sorted(tuple(sorted((k, v) for k, v in row.items() if kept(name, k)))
                             for row in store.read(getattr(rs, name)))
                for name in STORED_TABLES}
    finally:
        store.close()


def test_ray_fan_out_equals_the_serial_results(tiny_ws, tmp_path):
    ray = _ray()
    import torch

    fanned, serial = _copy(tiny_ws, tmp_path / "fanned"), _copy(tiny_ws, tmp_path / "serial")
    totals, ticks = [], []

    def progress(description: str, total: int):
        totals.append(total)
        return ticks.append

    summary = fan_out_evaluation(fanned, generation_config=GEN, num_workers=2, progress=progress)
    assert not ray.is_initialized(), "the local Ray instance it started must be shut down"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray worker runs: the same kernels, so the same floats
    try:
        reference = evaluate_workspace(serial, generation_config=GEN)
    finally:
        torch.set_num_threads(threads)

    # Every (checkpoint x dataset) pair was one job, and progress advanced once per finished job.
    assert [(j.checkpoint, j.dataset) for j in summary.jobs] == evaluation_cells(serial) == [
        (m, d) for m in MODELS for d in ("general_text", "support")]
    assert totals == [6] and ticks == [1] * 6
    assert (summary.address, summary.workers, summary.cached) == ("local", 2, 0)
    assert summary.computed == reference.computed > 0
    key = lambda c: (c.checkpoint, c.dataset, c.metric, c.computed, c.cached)  # noqa: E731
    assert sorted(map(key, summary.cells)) == sorted(map(key, reference.cells))
    # The stored per-example rows (NLL statistics, generations, text scores) and protocols are equal.
    got, want = _stored(fanned), _stored(serial)
    for table in STORED_TABLES:
        assert got[table] and got[table] == want[table], table
    # A serial run on the fanned-out store finds everything there: nothing is computed again.
    again = evaluate_workspace(fanned, generation_config=GEN)
    assert again.computed == 0 and again.cached == reference.computed


def test_a_failing_job_is_named_by_its_checkpoint_and_dataset_and_ray_is_shut_down(tiny_ws, tmp_path):
    ray = _ray()
    ws = _copy(tiny_ws, tmp_path / "ws")
    too_long = GenerationConfig(max_new_tokens=100)  # the tiny models' context is 64 tokens
    with pytest.raises(EvalCoreError, match=r"checkpoint-\d × support: max_new_tokens=100 leaves no room") as info:
        fan_out_evaluation(ws, checkpoint_names=["checkpoint-1", "checkpoint-2"], dataset_names=["support"],
                           metric_names=["generation"], generation_config=too_long, num_workers=2)
    assert info.value.field == "max_new_tokens"
    assert not ray.is_initialized()


def test_without_ray_the_error_says_how_to_install_and_names_are_checked_first(tiny_ws, tmp_path, monkeypatch):
    ws = _copy(tiny_ws, tmp_path / "ws")
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    with pytest.raises(EvalCoreError, match="Did you mean 'checkpoint-1'"):
        fan_out_evaluation(ws, checkpoint_names=["checkpont-1"])
    with pytest.raises(EvalCoreError, match=f"ray is not installed: `pip install {RAY_REQUIREMENT}` to fan out"):
        fan_out_evaluation(ws)
    assert not (ws / ".ftlens" / "results.sqlite").exists(), "nothing is written before Ray is there"
    with pytest.raises(EvalCoreError, match="at least 1"):
        fan_out_evaluation(ws, num_workers=0)


@pytest.mark.parametrize(
    "url, nodes, refused",
    [
        ("sqlite:////ws/.ftlens/results.sqlite", {"10.0.0.1"}, False),  # a local instance: one machine
        ("sqlite:////ws/.ftlens/results.sqlite", {"10.0.0.1", "10.0.0.2"}, True),  # a worker elsewhere
        ("sqlite:////ws/.ftlens/results.sqlite", {"10.0.0.2"}, True),  # ray:// client to a remote head
        ("postgresql+psycopg://ann:s3cret@db:5432/ftlens", {"10.0.0.1", "10.0.0.2"}, False),
    ],
)
def test_a_sqlite_store_is_refused_when_a_worker_is_another_machine(url, nodes, refused):
    if not refused:
        check_store_reachable(url, nodes, "10.0.0.1")
        return
    with pytest.raises(EvalCoreError, match="cannot reach; set FTLENS_DATABASE_URL to the team's PostgreSQL") as info:
        check_store_reachable(url, nodes, "10.0.0.1")
    assert "10.0.0.2" in str(info.value) and "10.0.0.1" not in str(info.value)


def test_workers_run_offline_with_one_thread_as_the_cli_does():
    from eval_core.cli import OFFLINE_ENV

    assert OFFLINE_ENV.items() <= WORKER_ENV.items()
    assert WORKER_ENV["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize(
    "flags, address, workers",
    [(["--ray"], "local", 2), (["--ray-workers", "3"], None, 3), (["--ray", "ray://head:10001"], "ray://head:10001", 2)],
)
def test_cli_ray_flags_fan_out_and_print_the_fan_out_record(tiny_ws, monkeypatch, capsys, flags, address, workers):
    import eval_core.evaluation_fanout as fanout
    from eval_core.cli import main

    seen = {}

    def fake(root, **kwargs):
        seen.update(kwargs)
        return FanOutSummary(database="sqlite:///x", address=kwargs["address"] or "local", workers=kwargs["num_workers"],
                             jobs=(FanOutJob("base", "support", 5, 0),))

    monkeypatch.setattr(fanout, "fan_out_evaluation", fake)
    assert main(["evaluate", "--workspace", str(tiny_ws), "--max-new-tokens", "4", *flags]) == 0
    assert (seen["address"], seen["num_workers"]) == (address, workers)
    assert seen["generation_config"] == GEN and seen["generation_config"].backend == "hf"
    record = json.loads(capsys.readouterr().out)
    assert record["schema"] == "ftlens.evaluation_fanout" and record["computed"] == 5
