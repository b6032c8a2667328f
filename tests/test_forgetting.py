"""Forgetting analysis: retention arithmetic, paired bootstrap intervals, flips, frontier and the
recommendation on hand-made tables (no model), and real forgetting on the evaluated demo."""

from __future__ import annotations

import doctest
import math
import shutil

import numpy as np
import pytest

import eval_core.forgetting as fg
from eval_core.forgetting import (
    ForgettingInputs,
    ModelResults,
    Point,
    ProbeItem,
    analyse_forgetting,
    paired_retention,
    pareto_frontier,
    recommend,
)


def test_docstring_examples_run():
    assert doctest.testmod(fg, raise_on_error=False).failed == 0


@pytest.mark.parametrize(
    ("kind", "base", "ckpt", "expected"),
    [
        ("mc_acc", [1, 1, 1, 1], [1, 1, 1, 0], 0.75),  # 3/4 right vs 4/4
        ("cloze_exact", [1, 0, 1, 0], [1, 1, 1, 0], 1.5),  # a checkpoint can gain: 3/4 over 2/4
        ("mc_acc_norm", [1, 1], [1, 1], 1.0),
        # bits per byte: base 8 nats / (ln2 * 4 bytes); checkpoint twice the nll -> base/ckpt = 0.5
        ("bits_per_byte", [(4.0, 2), (4.0, 2)], [(8.0, 2), (8.0, 2)], 0.5),
        # byte-weighted, not a mean of per-document ratios: (1+3)/(1+1) vs (2+2)/(1+1) -> 1.0
        ("bits_per_byte", [(1.0, 1), (3.0, 1)], [(2.0, 1), (2.0, 1)], 1.0),
    ],
)
def test_retention_arithmetic(kind, base, ckpt, expected):
    r = paired_retention(kind, base, ckpt, n_resamples=100)
    assert r.retention == pytest.approx(expected)
    assert r.undefined_reason is None
    assert r.low <= r.retention <= r.high or r.low == r.high


def test_bits_per_byte_values_are_in_bits():
    r = paired_retention("bits_per_byte", [(math.log(2) * 8, 8)], [(math.log(2) * 16, 8)], n_resamples=10)
    assert r.base_value == pytest.approx(1.0) and r.checkpoint_value == pytest.approx(2.0)


def test_zero_base_score_is_undefined_not_zero():
    r = paired_retention("mc_acc", [0, 0, 0], [1, 0, 1])
    assert r.retention is None and r.low is None and r.high is None
    assert "base model's score is 0" in r.undefined_reason
    empty = paired_retention("cloze_exact", [], [])
    assert empty.retention is None and "no examples" in empty.undefined_reason


def test_paired_bootstrap_matches_an_independent_loop():
    rng = np.random.default_rng(0)
    base = (rng.random(60) < 0.8).astype(float)
    ckpt = np.where(rng.random(60) < 0.85, base, 1 - base)
    r = paired_retention("mc_acc", list(base), list(ckpt), seed=7, n_resamples=500)
    # independent: the same indices drawn once per resample for both models
    idx = np.random.default_rng(7).choice(60, size=(500, 60), replace=True)
    ratios = sorted(ckpt[i].mean() / base[i].mean() for i in idx)
    assert (r.low, r.high) == pytest.approx((ratios[500 // 40], ratios[500 - 500 // 40 - 1]))
    assert r.seed == 7 and r.n_resamples == 500 and r.n == 60
    # seeded: the same call gives the same interval
    assert paired_retention("mc_acc", list(base), list(ckpt), seed=7, n_resamples=500) == r


def test_paired_interval_is_tighter_than_unpaired_when_items_agree():
    # checkpoint differs from base on 2 of 100 items: pairing keeps the ratio near 0.97
    base = [1.0] * 70 + [0.0] * 30
    ckpt = [1.0] * 68 + [0.0] * 32
    r = paired_retention("mc_acc", base, ckpt, n_resamples=1000)
    rng = np.random.default_rng(1)  # unpaired: base and checkpoint resampled independently
    b, c = np.array(base), np.array(ckpt)
    unpaired = sorted(c[rng.integers(0, 100, 100)].mean() / b[rng.integers(0, 100, 100)].mean() for _ in range(1000))
    assert r.high - r.low < (unpaired[974] - unpaired[25]) / 2
    assert r.high == 1.0  # no resample can make the checkpoint better: it lost items and gained none
    assert r.retention == pytest.approx(68 / 70)


def _inputs() -> ForgettingInputs:
    items = {("p", f"q{i}"): ProbeItem("p", f"q{i}", "sci" if i < 2 else "geo", f"prompt {i}", f"ans {i}") for i in range(4)}
    base = ModelResults("base", "fp0", probe={"mc_acc": {("p", "q0"): 1, ("p", "q1"): 1, ("p", "q2"): 1, ("p", "q3"): 0}},
                        answers={"mc_acc": {("p", f"q{i}"): f"b{i}" for i in range(4)}},
                        general_text={("t", "d0"): (10.0, 10)}, domain={("s", "e0"): (4.0, 2)})
    c1 = ModelResults("checkpoint-1", "fp1", "run", 1,
                      probe={"mc_acc": {("p", "q0"): 1, ("p", "q1"): 1, ("p", "q2"): 1, ("p", "q3"): 1}},
                      general_text={("t", "d0"): (10.0, 10)}, domain={("s", "e0"): (2.0, 2)})
    c2 = ModelResults("checkpoint-2", "fp2", "run", 2,
                      probe={"mc_acc": {("p", "q0"): 0, ("p", "q1"): 1, ("p", "q2"): 1, ("p", "q3"): 0}},
                      answers={"mc_acc": {("p", "q0"): "wrong"}},
                      general_text={("t", "d0"): (20.0, 10)}, domain={("s", "e0"): (1.0, 2)})
    return ForgettingInputs(base, [c1, c2], items, ["p"], ["t"], "s")


def test_analysis_of_a_hand_made_table():
    report = analyse_forgetting(_inputs(), n_resamples=200)
    assert report.schema == "ftlens.forgetting" and report.version == 1
    c1, c2 = report.checkpoints
    by_kind = {r.kind: r for r in c2.retention}
    assert by_kind["mc_acc"].retention == pytest.approx(2 / 3)
    assert by_kind["bits_per_byte"].retention == pytest.approx(0.5)
    assert c2.general_retention == pytest.approx((2 / 3 + 0.5) / 2)
    assert c2.forgetting_index == pytest.approx(1 - (2 / 3 + 0.5) / 2)
    assert c1.forgetting_index == 0.0  # retention 4/3 and 1.0: clipped at 0
    # per category: sci lost q0 (1/2), geo base 1/2 -> checkpoint 1/2
    cats = {(r.kind, r.category): r.retention for r in c2.by_category}
    assert cats[("mc_acc", "sci")] == pytest.approx(0.5) and cats[("mc_acc", "geo")] == pytest.approx(1.0)
    # flips with ids and both answers
    assert [(f.id, f.direction, f.base_answer, f.checkpoint_answer) for f in c2.flips] == [("q0", "lost", "b0", "wrong")]
    assert [(f.id, f.direction) for f in c1.flips] == [("q3", "gained")]
    # domain: base ppl e^2, c1 e^1, c2 e^0.5
    assert c1.domain_gain == pytest.approx(math.e - 1) and c2.domain_gain == pytest.approx(math.exp(1.5) - 1)
    assert c1.on_frontier and c2.on_frontier
    assert report.recommendation.checkpoint == "checkpoint-1"
    assert "checkpoint-2 gains more but retains 58%" in report.recommendation.reason
    assert report.to_dict()["checkpoints"][1]["flips"][0]["id"] == "q0"


def test_frontier_with_ties_and_dominated_points():
    pts = [Point("a", 1, 0.2, 0.99), Point("b", 2, 0.2, 0.99), Point("c", 3, 0.1, 0.95),
           Point("d", 4, 0.5, 0.80), Point("e", 5, None, 0.99)]
    assert pareto_frontier(pts) == ["a", "b", "d"]  # equal points both stay; c dominated; e lacks a gain


def test_recommendation_ties_go_to_retention_then_earlier_step():
    assert recommend([Point("a", 1, 0.2, 0.96), Point("b", 2, 0.2, 0.99)]).checkpoint == "b"
    assert recommend([Point("late", 9, 0.2, 0.99), Point("early", 3, 0.2, 0.99)]).checkpoint == "early"


def test_no_checkpoint_meets_the_threshold_recommends_none():
    rec = recommend([Point("a", 1, 0.1, 0.90), Point("b", 2, 0.4, 0.80)], threshold=0.95)
    assert rec.checkpoint is None
    assert "no checkpoint keeps >= 95%" in rec.reason and "the best is a at 90%" in rec.reason
    assert recommend([Point("a", 1, 0.1, 0.90)], threshold=0.85).checkpoint == "a"
    assert recommend([Point("a", 1, None, None)]).checkpoint is None


def test_demo_shows_forgetting(evaluated_demo, tmp_path):
    """The last checkpoint's general retention is below the first's on the demo."""
    from eval_core.evaluation import evaluate_workspace
    from eval_core.forgetting_inputs import load_forgetting_inputs

    ws = tmp_path / "ws"
    shutil.copytree(evaluated_demo, ws)
    # log-likelihood probes and general-text perplexity: no generation, so fast
    evaluate_workspace(ws, checkpoint_names=["base", "checkpoint-6", "checkpoint-36"],
                       dataset_names=["general_knowledge", "general_text"], metric_names=["mc_acc", "mc_acc_norm", "perplexity"])
    inputs = load_forgetting_inputs(ws)
    assert inputs.domain_dataset == "support_test" and inputs.probe_datasets == ["general_knowledge"]
    report = analyse_forgetting(inputs, n_resamples=200)
    first, last = report.checkpoints[0], report.checkpoints[-1]
    assert (first.label, last.label) == ("checkpoint-6", "checkpoint-36")
    assert last.general_retention < first.general_retention
    assert last.domain_gain > first.domain_gain
    assert {r.kind for r in last.retention} == {"mc_acc", "mc_acc_norm", "bits_per_byte"}
    probe_categories = {r.category for r in last.by_category if r.kind == "mc_acc"}
    assert probe_categories == {"science", "geography", "history", "language", "arithmetic", "code"}


def test_figures_of_a_hand_made_report():
    from eval_core.forgetting_figures import frontier_figure, retention_rows, retention_step_figure

    report = analyse_forgetting(_inputs(), n_resamples=50)
    fig = retention_step_figure(report, "mc_acc")
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[0].y) == pytest.approx([4 / 3, 2 / 3])
    assert fig.data[1].yaxis == "y2" and fig.layout.xaxis.title.text == "training step"
    assert [lbl for lbl, _, _ in retention_rows(report, "mc_acc", "sci")] == ["checkpoint-1", "checkpoint-2"]
    names = [t.name for t in frontier_figure(report).data]
    assert names == ["checkpoints", "Pareto frontier", "recommended: checkpoint-1"]
