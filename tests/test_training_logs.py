"""Log parsers: golden against a real Trainer run (the quick demo), merging, and bad inputs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from eval_core.errors import DatasetError
from eval_core.training_logs import (
    find_log_sources,
    read_lightning_csv,
    read_plain_log,
    read_run_logs,
    read_tensorboard,
    read_trainer_state,
)


@pytest.fixture
def run_dir(quick_demo) -> Path:
    return quick_demo / "runs" / "support-ft"


def event_file(run_dir: Path) -> Path:
    (path,) = run_dir.rglob("events.out.tfevents.*")
    return path


def strip_epoch(points):
    # HF writes train/epoch after the step's other scalars, so a cut can fall between them.
    return [(p.step, p.metric, p.value, p.wall_time) for p in points]


def logged(run_dir: Path) -> dict[tuple[str, int], float]:
    """What the Trainer run logged, straight from its final trainer_state.json."""
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return {
        (k, e["step"]): float(v)
        for e in history
        for k, v in e.items()
        if k not in ("step", "epoch", "total_flos") and isinstance(v, (int, float))
    }


def test_trainer_state_points_equal_what_the_run_logged(run_dir):
    points, warnings = read_trainer_state(run_dir / "trainer_state.json", "support-ft")
    assert warnings == []
    assert {(p.metric, p.step): p.value for p in points} == logged(run_dir)
    epochs = {p.step: p.epoch for p in points if p.metric == "loss"}
    assert all(e is not None and e > 0 for e in epochs.values())


def test_tensorboard_points_equal_what_the_run_logged(run_dir):
    points, warnings = read_tensorboard(event_file(run_dir), "support-ft")
    assert warnings == []
    expected = logged(run_dir)
    got = {(p.metric, p.step): p.value for p in points}
    # HF's callback writes the same scalars, as float32, under train/... and eval/... tags.
    shared = set(got) & set(expected)
    assert {("loss", 1), ("eval_support_loss", 0), ("eval_general_loss", 36), ("learning_rate", 5)} <= shared
    for key in shared:
        assert got[key] == pytest.approx(expected[key], rel=1e-6), key
    assert all(p.wall_time and p.wall_time > 1.6e9 for p in points)
    assert {p.epoch for p in points if p.metric == "loss"} != {None}


def test_run_folder_merges_all_sources_once(run_dir, quick_demo):
    table = read_run_logs(run_dir, root=quick_demo)
    keys = [(p.metric, p.step) for p in table.points]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(logged(run_dir))
    assert Path(table.sources[0]).name == "trainer_state.json" and len(table.sources) == 8
    # Values come from trainer_state.json (float64), wall times from TensorBoard.
    p = table.series("eval_support_loss")[-1]
    assert p.source == "runs/support-ft/trainer_state.json"
    assert p.value == logged(run_dir)[("eval_support_loss", 36)]
    assert p.wall_time is not None


def test_tensorboard_folder_alone(run_dir):
    table = read_run_logs(event_file(run_dir).parent, run="tb-only")
    assert {"loss", "eval_support_loss", "learning_rate"} <= set(table.metrics())
    assert table.runs() == ["tb-only"]


def test_resumed_run_keeps_the_last_write_and_says_so(tmp_path):
    history = [
        {"step": 10, "epoch": 1.0, "loss": 2.0}, {"step": 20, "epoch": 2.0, "loss": 1.5},
        {"step": 20, "epoch": 2.0, "eval_loss": 1.9},
        # resumed from checkpoint-10: steps 20 and 30 are logged again
        {"step": 20, "epoch": 2.0, "loss": 1.4}, {"step": 30, "epoch": 3.0, "loss": 1.2},
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 30, "log_history": history}))
    points, warnings = read_trainer_state(tmp_path / "trainer_state.json", "r")
    assert {(p.metric, p.step): p.value for p in points} == {
        ("loss", 10): 2.0, ("loss", 20): 1.4, ("loss", 30): 1.2, ("eval_loss", 20): 1.9,
    }
    assert len(warnings) == 1 and "resumed" in warnings[0] and "last write" in warnings[0]


def test_nan_and_infinity_are_values(tmp_path):
    (tmp_path / "trainer_state.json").write_text(
        '{"log_history": [{"step": 1, "loss": NaN, "grad_norm": Infinity}, {"step": 2, "loss": -Infinity}]}'
    )
    table = read_run_logs(tmp_path / "trainer_state.json")
    values = {(p.metric, p.step): p.value for p in table.points}
    assert math.isnan(values[("loss", 1)]) and values[("grad_norm", 1)] == math.inf
    rows = {(r["metric"], r["step"]): r["value"] for r in table.to_rows()}
    assert rows == {("loss", 1): "NaN", ("grad_norm", 1): "Infinity", ("loss", 2): "-Infinity"}


@pytest.mark.parametrize(
    ("content", "needle", "field"),
    [
        ('{"global_step": 3}', "log_history", "log_history"),
        ('{"log_history": [{"loss": 1.0}]}', "integer 'step'", "log_history[0].step"),
        ('{"log_history": [', "invalid JSON", None),
    ],
    ids=["no-log-history", "entry-without-step", "broken-json"],
)
def test_bad_trainer_state(tmp_path, content, needle, field):
    path = tmp_path / "trainer_state.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=needle) as err:
        read_trainer_state(path, "r")
    assert err.value.field == field and str(path) in str(err.value)


def test_empty_log_history_is_an_empty_table(tmp_path):
    (tmp_path / "trainer_state.json").write_text('{"log_history": []}')
    table = read_run_logs(tmp_path)
    assert table.points == () and table.warnings == ()


def test_missing_path_and_folder_without_logs(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_run_logs(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no training logs"):
        read_run_logs(tmp_path)


def test_truncated_event_file_keeps_what_was_read(run_dir, tmp_path):
    data = event_file(run_dir).read_bytes()
    full, _ = read_tensorboard(event_file(run_dir), "r", "src")
    cut = tmp_path / "events.out.tfevents.1.cut"
    cut.write_bytes(data[:-7])  # the last record loses its tail, as in a run killed mid-write
    points, warnings = read_tensorboard(cut, "r", "src")
    assert len(warnings) == 1 and "incomplete" in warnings[0]
    assert 0 < len(points) <= len(full)
    assert strip_epoch(points) == strip_epoch(full[: len(points)])


def test_corrupt_event_file_keeps_the_points_before_the_damage(run_dir, tmp_path):
    data = bytearray(event_file(run_dir).read_bytes())
    full, _ = read_tensorboard(event_file(run_dir), "r", "src")
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "events.out.tfevents.1.bad"
    bad.write_bytes(bytes(data))
    points, warnings = read_tensorboard(bad, "r", "src")
    assert len(warnings) == 1 and "corrupt" in warnings[0]
    assert 0 < len(points) < len(full)
    assert strip_epoch(points) == strip_epoch(full[: len(points)])


def test_lightning_csv_logger(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "epoch,step,train_loss,val_loss,val_acc\n0,49,2.5,,\n0,99,2.1,,\n0,99,,2.3,0.41\n1,149,1.9,,\n1,199,,2.2,0.44\n"
    )
    points, _ = read_lightning_csv(tmp_path / "metrics.csv", "lit")
    got = {(p.metric, p.step): (p.value, p.epoch) for p in points}
    assert got == {
        ("train_loss", 49): (2.5, 0.0), ("train_loss", 99): (2.1, 0.0), ("val_loss", 99): (2.3, 0.0),
        ("val_acc", 99): (0.41, 0.0), ("train_loss", 149): (1.9, 1.0), ("val_loss", 199): (2.2, 1.0),
        ("val_acc", 199): (0.44, 1.0),
    }
    (tmp_path / "metrics.csv").write_text("epoch,step,val_loss\n0,10,abc\n")
    with pytest.raises(DatasetError) as err:
        read_lightning_csv(tmp_path / "metrics.csv", "lit")
    assert (err.value.line, err.value.field) == (2, "val_loss")


def test_plain_jsonl_and_csv_logs(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "metric": "loss", "value": 3.0, "wall_time": 1700000000.5}\n\n{"step": 2, "metric": "loss", "value": 2.5}\n'
    )
    points, _ = read_plain_log(tmp_path / "metrics.jsonl", "p")
    assert [(p.step, p.value, p.wall_time) for p in points] == [(1, 3.0, 1700000000.5), (2, 2.5, None)]
    (tmp_path / "log.csv").write_text("step,metric,value\n1,loss,2\n1.5,loss,1\n")
    with pytest.raises(DatasetError) as err:
        read_plain_log(tmp_path / "log.csv", "p")
    assert (err.value.line, err.value.field) == (3, "step")
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "value": 2}\n')
    with pytest.raises(DatasetError, match="missing 'metric'"):
        read_plain_log(tmp_path / "bad.jsonl", "p")


def test_sources_are_ranked_most_complete_trainer_state_first(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.safetensors", "optimizer.pt"))
    sources = find_log_sources(copy)
    assert sources[0] == copy / "trainer_state.json"
    assert sources[-1].name.startswith("events.out.tfevents.")
