"""The demo builder makes a real Trainer run: checkpoints, logs, disjoint held-out sets, forgetting,
and a leak-check set whose planted leaks are exactly what the data diagnostics find."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from eval_core import demo_corpus
from eval_core.data_contamination import find_ngram_overlap
from eval_core.demo import STAGES, DemoSettings, _Markers, build_demo_workspace, is_demo_built
from eval_core.errors import WorkspaceError
from eval_core.version import __version__

HELDOUT_SETS = ["support_test", "general_text", "general_knowledge", "support_test_leak_check"]


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


def ngram_overlap_ids(train: list[dict], heldout: list[dict]) -> list[str]:
    """Held-out ids sharing a 13-gram with training, by eval_core.data_contamination (the Data page's
    check), over prompt + reference as `data` compares a generation set."""
    text = lambda r: r["prompt"] + "\n" + r.get("reference", r.get("response"))  # noqa: E731
    return [o.heldout_id for o in find_ngram_overlap(
        [r["id"] for r in train], [text(r) for r in train], [r["id"] for r in heldout], [text(r) for r in heldout])]


@pytest.fixture(scope="module")
def demo_data_report(quick_demo) -> dict:
    from eval_core.data_report import data_report

    report = data_report(quick_demo)
    return {p["heldout_set"]: p["contamination"] for p in report["pairs"] if p["training_set"] == "support_train"}


def test_decontamination_keeps_training_and_drops_only_overlapping_test_rows(quick_demo, monkeypatch):
    seed = DemoSettings.quick().seed
    data = demo_corpus.load_demo_data(seed)
    assert read_jsonl(quick_demo / "train_data/support_train.jsonl") == data.support_train
    assert [r["id"] for r in read_jsonl(quick_demo / "heldout/support_test.jsonl")] == [r["id"] for r in data.support_test]
    # The plain stratified split: the same draws with the 13-gram check turned off.
    monkeypatch.setattr(demo_corpus, "janitor_grams", lambda text, n=13: set())
    plain = demo_corpus.load_demo_data(seed)
    assert plain.support_train == data.support_train  # the fine-tuning data is untouched
    kept = [r for r in plain.support_test if r in data.support_test]
    assert kept == data.support_test  # the test set only shrinks
    dropped = sorted(r["id"] for r in plain.support_test if r not in data.support_test)
    assert dropped and dropped == ngram_overlap_ids(plain.support_train, plain.support_test)
    assert ngram_overlap_ids(data.support_train, data.support_test) == []


def test_default_heldout_sets_are_clean_for_the_data_page(demo_data_report):
    assert sorted(demo_data_report) == sorted(HELDOUT_SETS)
    for name in ("support_test", "general_text", "general_knowledge"):
        assert demo_data_report[name]["contaminated_ids"] == [], name


def test_data_page_finds_exactly_the_planted_leaks(quick_demo, demo_data_report):
    planted = json.loads((quick_demo / ".ftlens/demo_build.json").read_text())["planted_leaks"]
    assert sorted(p["kind"] for p in planted) == ["exact", "exact", "near", "near", "ngram", "ngram"]
    by_kind = {k: {p["id"]: p["train_id"] for p in planted if p["kind"] == k} for k in ("exact", "near", "ngram")}
    found = demo_data_report["support_test_leak_check"]
    assert found["contaminated_ids"] == sorted(p["id"] for p in planted)
    assert {m["heldout_id"]: m["train_id"] for m in found["exact"]} == by_kind["exact"]
    assert {m["heldout_id"]: m["train_id"] for m in found["near"]} == by_kind["near"]
    assert all(m["jaccard"] >= 0.85 for m in found["near"])
    overlaps = {o["heldout_id"]: o["train_id"] for o in found["overlaps"]}
    assert overlaps == {p["id"]: p["train_id"] for p in planted}  # every leak shares 13-grams with its source
    # The clean part is support_test rows, copied whole.
    test = {r["id"]: r for r in read_jsonl(quick_demo / "heldout/support_test.jsonl")}
    rows = read_jsonl(quick_demo / "heldout/support_test_leak_check.jsonl")
    clean = [r for r in rows if r["id"] not in overlaps]
    assert len(clean) >= 15 and all(test[r["id"]] == r for r in clean)
    assert all(set(r) == {"id", "prompt", "reference", "category", "should_refuse"} for r in rows)


def test_a_demo_built_before_the_data_change_rebuilds_from_the_heldout_stage(tmp_path):
    settings = DemoSettings.quick()
    old_key = json.dumps({"version": __version__, **asdict(settings)}, sort_keys=True)  # the key before it
    markers = _Markers(tmp_path, settings)
    markers.dir.mkdir(parents=True)
    for stage in STAGES:
        (markers.dir / f"{stage}.done").write_text(old_key)
    assert [s for s in STAGES if markers.done(s)] == ["tokenizer", "base_model"]
    assert not is_demo_built(tmp_path, settings)


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
