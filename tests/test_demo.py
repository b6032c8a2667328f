"""The demo builder makes a real Trainer run: checkpoints, logs, disjoint held-out sets, forgetting."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from eval_core.demo import DemoSettings, build_demo_workspace, is_demo_built
from eval_core.errors import WorkspaceError


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_run_looks_like_a_real_trainer_output(quick_demo):
    run = quick_demo / "runs" / "support-ft"
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [c.name for c in checkpoints] == [f"checkpoint-{s}" for s in (6, 12, 18, 24, 30, 36)]
    for ckpt in checkpoints:
        for name in ("model.safetensors", "config.json", "tokenizer.json", "trainer_state.json"):
            assert (ckpt / name).is_file(), f"{ckpt.name} lacks {name}"
    assert list(run.rglob("events.out.tfevents.*")), "no TensorBoard event files"
    base = quick_demo / "base_model"
    assert (base / "model.safetensors").is_file() and (base / "tokenizer.json").is_file()


def test_trainer_state_holds_train_and_eval_curves(quick_demo):
    state = json.loads((quick_demo / "runs/support-ft/trainer_state.json").read_text())
    keys = {k for entry in state["log_history"] for k in entry}
    assert {"loss", "learning_rate", "grad_norm", "eval_support_loss", "eval_general_loss"} <= keys
    assert state["global_step"] == 36


def test_fine_tuning_forgets_general_text_and_learns_support(quick_demo):
    # The numbers Trainer itself logged: step 0 is the base model (eval_on_start).
    history = json.loads((quick_demo / "runs/support-ft/trainer_state.json").read_text())["log_history"]
    support = {e["step"]: e["eval_support_loss"] for e in history if "eval_support_loss" in e}
    general = {e["step"]: e["eval_general_loss"] for e in history if "eval_general_loss" in e}
    assert support[36] < support[0] - 0.5
    assert general[36] > general[0] + 0.2


def test_heldout_support_set_is_disjoint_from_training(quick_demo):
    test = read_jsonl(quick_demo / "heldout/support_test.jsonl")
    train = read_jsonl(quick_demo / "train_data/support_train.jsonl")
    norm = lambda s: re.sub(r"\W+", " ", s.lower()).strip()  # noqa: E731
    assert {r["id"] for r in test}.isdisjoint(r["id"] for r in train)
    assert {norm(r["prompt"]) for r in test}.isdisjoint(norm(r["prompt"]) for r in train)
    assert {r["category"] for r in test} == {r["category"] for r in train}
    assert any(r["should_refuse"] for r in test) and not all(r["should_refuse"] for r in test)
    assert set(test[0]) == {"id", "prompt", "reference", "category", "should_refuse"}


def test_probe_and_general_text_sets_are_written(quick_demo):
    probes = read_jsonl(quick_demo / "heldout/general_knowledge.jsonl")
    assert len(probes) >= 300 and len({p["category"] for p in probes}) >= 6
    assert all(p["answer"] in p["choices"] for p in probes)
    general = read_jsonl(quick_demo / "heldout/general_text.jsonl")
    assert len({g["category"] for g in general}) >= 3


def test_second_build_is_a_no_op(quick_demo):
    before = {p: p.stat().st_mtime_ns for p in quick_demo.rglob("*") if p.is_file()}
    record = build_demo_workspace(quick_demo, DemoSettings.quick())
    after = {p: p.stat().st_mtime_ns for p in quick_demo.rglob("*") if p.is_file()}
    assert before == after
    assert record["settings"] == json.loads(json.dumps(DemoSettings.quick().__dict__))
    assert is_demo_built(quick_demo, DemoSettings.quick())
    assert not is_demo_built(quick_demo)  # the full demo is a different build


def test_refuses_to_build_over_a_foreign_folder(tmp_path):
    (tmp_path / "my_notes.txt").write_text("precious")
    with pytest.raises(WorkspaceError, match="not empty"):
        build_demo_workspace(tmp_path, DemoSettings.quick())
    assert (tmp_path / "my_notes.txt").read_text() == "precious"


def test_same_seed_same_weights_and_an_interrupted_build_resumes(tmp_path):
    from eval_core.workspace import discover_workspace

    tiny = replace(DemoSettings.quick(), pretrain_steps=2, finetune_steps=2, eval_every=1, general_eval_blocks=2)
    build_demo_workspace(tmp_path / "a", tiny)
    build_demo_workspace(tmp_path / "b", tiny)
    fp = lambda root: [c.fingerprint for c in (lambda ws: [ws.base_model, *ws.checkpoints])(discover_workspace(root))]  # noqa: E731
    assert fp(tmp_path / "a") == fp(tmp_path / "b")
    # Simulate a crash during fine-tuning: the finished stages are kept, the run is redone.
    (tmp_path / "a/.ftlens/demo/finetune.done").unlink()
    base_mtime = (tmp_path / "a/base_model/model.safetensors").stat().st_mtime_ns
    build_demo_workspace(tmp_path / "a", tiny)
    assert (tmp_path / "a/base_model/model.safetensors").stat().st_mtime_ns == base_mtime
    assert fp(tmp_path / "a") == fp(tmp_path / "b")
