"""Forgetting analysis: retention arithmetic, paired bootstrap intervals, flips, frontier and the
recommendation on hand-made tables (no model), and real forgetting on the evaluated demo."""

from __future__ import annotations

import doctest
import json
import math
import shutil

import numpy as np
import pytest

import eval_core.forgetting as fg
from eval_core.forgetting import (
    ForgettingInputs,
    ForgettingReport,
    ModelResults,
    Point,
    ProbeItem,
    analyse_forgetting,
    chance_check,
    paired_retention,
    pareto_frontier,
    recommend,
    wilson_interval,
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
    assert report.schema == "ftlens.forgetting" and report.version == 2
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


def test_a_long_list_of_checkpoints_that_gain_more_is_summarised():
    pts = [Point("c-5", 5, 0.1, 0.99), *(Point(f"c-{s}", s, s / 100, 0.9 - s / 1000) for s in (20, 30, 60))]
    rec = recommend(pts)
    assert rec.checkpoint == "c-5"
    assert rec.reason.endswith("; 3 other checkpoints gain more (up to +60%) but retain only 84%-88%")


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
    by_name = {t.name: t for t in fig.data}
    # general retention: mean over families of (mc 4/3 or 2/3, general text 1 or 1/2)
    assert list(by_name["general retention"].y) == pytest.approx([(4 / 3 + 1) / 2, (2 / 3 + 0.5) / 2])
    assert by_name["domain gain"].yaxis == "y2" and fig.layout.xaxis.title.text == "training step"
    assert any("recommended: checkpoint-1" in (a.text or "") for a in fig.layout.annotations)
    # per category: no general-retention line (it is a whole-set number)
    assert "general retention" not in {t.name for t in retention_step_figure(report, "mc_acc", "sci").data}
    assert [lbl for lbl, _, _ in retention_rows(report, "mc_acc", "sci")] == ["checkpoint-1", "checkpoint-2"]
    names = [t.name for t in frontier_figure(report).data]
    assert names == ["checkpoints", "Pareto frontier", "recommended: checkpoint-1"]


def test_wilson_interval_matches_the_textbook_formula():
    # Wilson (1927); e.g. 30/100: 0.2189..0.3958, 0/10: 0..0.2775, 10/10: 0.7225..1
    assert [round(x, 4) for x in wilson_interval(30, 100)] == [0.2189, 0.3958]
    assert [round(x, 4) for x in wilson_interval(0, 10)] == [0.0, 0.2775]
    assert [round(x, 4) for x in wilson_interval(10, 10)] == [0.7225, 1.0]


@pytest.mark.parametrize(
    ("right", "n", "choices", "informative"),
    [(25, 100, 4, False), (35, 100, 4, True), (58, 100, 2, False), (75, 100, 2, True), (1, 4, 4, False)],
)
def test_chance_check(right, n, choices, informative):
    chance, ok, reason = chance_check([1.0] * right + [0.0] * (n - right), [choices] * n)
    assert chance == pytest.approx(1 / choices) and ok is informative
    assert (reason is None) == informative
    if reason:
        assert f"not above chance {1 / choices:.1%}" in reason


def test_chance_level_with_mixed_choice_counts_and_unknown_counts():
    chance, _, _ = chance_check([0, 0], [2, 4])
    assert chance == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert chance_check([0, 0], [4, 0]) == (None, True, None)  # a count unknown: cannot judge, kept


def test_multiple_choice_at_chance_is_left_out_of_general_retention():
    """A base at chance knows nothing to forget: its ratio is shown, flagged, not averaged in."""
    n = 40
    items = {("p", f"q{i}"): ProbeItem("p", f"q{i}", "sci", n_choices=4) for i in range(n)}
    at_chance = {("p", f"q{i}"): float(i % 4 == 0) for i in range(n)}  # 25% on 4 choices
    base = ModelResults("base", "fp0", probe={"mc_acc": at_chance}, general_text={("t", "d"): (10.0, 10)})
    ckpt = ModelResults("c", "fp1", "run", 1, probe={"mc_acc": {k: float(v == 0) for k, v in at_chance.items()}},
                        general_text={("t", "d"): (12.5, 10)})
    report = analyse_forgetting(ForgettingInputs(base, [ckpt], items, ["p"], ["t"]), n_resamples=50)
    c = report.checkpoints[0]
    mc = next(r for r in c.retention if r.kind == "mc_acc")
    assert mc.retention == pytest.approx(3.0) and not mc.informative and mc.chance == pytest.approx(0.25)
    assert "not above chance 25.0%" in mc.uninformative_reason
    assert c.family_retention == {"general_text": pytest.approx(0.8), "multiple_choice": None, "cloze": None}
    assert c.general_retention == pytest.approx(0.8)  # bits per byte only
    # the same checkpoint against a base that knows the answers: multiple choice counts again
    knows = {k: float(i % 4 != 3) for i, k in enumerate(at_chance)}  # 75% on 4 choices
    base2 = ModelResults("base", "fp0", probe={"mc_acc": knows}, general_text={("t", "d"): (10.0, 10)})
    ckpt2 = ModelResults("c", "fp1", "run", 1, probe={"mc_acc": dict(knows)}, general_text={("t", "d"): (12.5, 10)})
    c2 = analyse_forgetting(ForgettingInputs(base2, [ckpt2], items, ["p"], ["t"]), n_resamples=50).checkpoints[0]
    assert c2.family_retention["multiple_choice"] == pytest.approx(1.0)
    assert c2.general_retention == pytest.approx((1.0 + 0.8) / 2)


def test_families_weigh_equally_whatever_their_metric_count():
    base = ModelResults("base", "fp0", probe={"mc_acc": {("p", "a"): 1.0, ("p", "b"): 1.0},
                                              "mc_acc_norm": {("p", "a"): 1.0, ("p", "b"): 1.0}},
                        general_text={("t", "d"): (10.0, 10)})
    ckpt = ModelResults("c", "fp1", "run", 1, probe={"mc_acc": {("p", "a"): 1.0, ("p", "b"): 0.0},
                                                     "mc_acc_norm": {("p", "a"): 0.0, ("p", "b"): 0.0}},
                        general_text={("t", "d"): (10.0, 10)})
    c = analyse_forgetting(ForgettingInputs(base, [ckpt], {}, ["p"], ["t"]), n_resamples=20).checkpoints[0]
    assert c.family_retention["multiple_choice"] == pytest.approx(0.25)  # mean(0.5, 0.0)
    assert c.general_retention == pytest.approx((0.25 + 1.0) / 2)


def test_report_round_trips_through_its_dict():
    report = analyse_forgetting(_inputs(), n_resamples=30)
    assert ForgettingReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    with pytest.raises(ValueError, match="not a ftlens.forgetting v2 record"):
        ForgettingReport.from_dict({**report.to_dict(), "version": 1})
