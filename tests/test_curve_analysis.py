"""Curve analysis: TensorBoard smoothing, metric direction, best step, HF early stopping,
overfitting onset and the per-metric summaries. Expected values are worked out by hand in the
comments (or, for early stopping, also checked against transformers' own EarlyStoppingCallback)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval_core.curve_analysis import (
    best_index,
    early_stop_index,
    is_eval_metric,
    metric_direction,
    overfit_onset_index,
    smooth_tensorboard,
    summarize_curves,
    summarize_metric,
)
from eval_core.training_logs import CurvePoint, CurveTable

NAN, INF = float("nan"), float("inf")


def same(a: list[float], b: list[float]) -> bool:
    """Element-wise equality up to 1e-12, NaN equal to NaN."""
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12, abs=1e-12) for x, y in zip(a, b)
    )


# --- smooth_tensorboard ------------------------------------------------------------------------
# last = last*w + (1-w)*v ; smoothed = last / (1 - w**n), n = finite values seen so far.

@pytest.mark.parametrize("values, weight, expected", [
    # last: .5, 1.25, 2.125 ; debias: .5, .75, .875 -> 1, 5/3, 17/7
    pytest.param([1.0, 2.0, 3.0], 0.5, [1.0, 5 / 3, 17 / 7], id="w0.5-ramp"),
    # last: .4*4=1.6 -> /.4 = 4 ; 1.6*.6 + .4*2 = 1.76 -> /(1-.36) = 2.75
    pytest.param([4.0, 2.0], 0.6, [4.0, 2.75], id="w0.6-two-points"),
    # w=0: last = v and 1 - 0**n = 1, so the input comes back
    pytest.param([3.0, -1.0, 7.5], 0.0, [3.0, -1.0, 7.5], id="w0-identity"),
    # TensorBoard returns a constant series as is (no smoothing, no rounding)
    pytest.param([0.1, 0.1, 0.1], 0.9, [0.1, 0.1, 0.1], id="constant"),
    # the NaN passes through and n stays 1: last after 2 is 1.25, divided by 1-.25 -> 5/3
    # (had the NaN advanced n, it would be 1.25/.875 = 10/7)
    pytest.param([1.0, NAN, 2.0], 0.5, [1.0, NAN, 5 / 3], id="nan-keeps-debias-count"),
    # infinities pass through too: last .5*2=1 -> 2 ; then .5 + .5*4 = 2.5 -> /.75 = 10/3
    pytest.param([2.0, INF, -INF, 4.0], 0.5, [2.0, INF, -INF, 10 / 3], id="inf-passes-through"),
    # w=.999: last .001 -> /.001 = 1 ; .000999 + .002 = .002999 -> /(1-.998001) = 2999/1999
    pytest.param([1.0, 2.0], 0.999, [1.0, 2999 / 1999], id="w0.999-max"),
    pytest.param([], 0.5, [], id="empty"),
])
def test_smooth_tensorboard_golden(values, weight, expected):
    assert same(smooth_tensorboard(values, weight), expected)


@pytest.mark.parametrize("weight", [
    pytest.param(1.0, id="one"),       # the slider stops at 0.999; 1.0 would divide by zero
    pytest.param(-0.1, id="negative"),
    pytest.param(NAN, id="nan"),
])
def test_smooth_tensorboard_rejects_weight(weight):
    with pytest.raises(ValueError):
        smooth_tensorboard([1.0, 2.0], weight)


any_floats = st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30)
finite_floats = st.lists(st.floats(min_value=-1e6, max_value=1e6), max_size=30)


@given(any_floats, st.floats(min_value=0.0, max_value=0.999))
def test_smooth_tensorboard_keeps_length(values, weight):
    assert len(smooth_tensorboard(values, weight)) == len(values)


@given(any_floats)
def test_smooth_tensorboard_weight_zero_is_identity(values):
    assert same(smooth_tensorboard(values, 0.0), values)


@given(finite_floats, st.floats(min_value=0.0, max_value=0.999))
def test_smooth_tensorboard_stays_within_values_seen(values, weight):
    # the debiased EMA is a convex combination of the values seen so far
    for i, s in enumerate(smooth_tensorboard(values, weight)):
        lo, hi = min(values[: i + 1]), max(values[: i + 1])
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        assert lo - tol <= s <= hi + tol


# --- metric_direction / is_eval_metric ---------------------------------------------------------

@pytest.mark.parametrize("metric, direction", [
    pytest.param("loss", "lower", id="loss"),
    pytest.param("eval_loss", "lower", id="eval_loss"),
    pytest.param("eval_perplexity", "lower", id="perplexity"),
    pytest.param("eval_wer", "lower", id="wer"),
    pytest.param("eval_accuracy", "higher", id="accuracy"),
    pytest.param("eval_bleu", "higher", id="bleu"),
    pytest.param("eval_rougeL", "higher", id="rougeL"),
    pytest.param("eval_f1", "higher", id="f1"),
    pytest.param("eval_exact_match", "higher", id="exact_match"),
    pytest.param("eval_gizmo", "lower", id="unknown-defaults-lower"),
])
def test_metric_direction(metric, direction):
    assert metric_direction(metric) == direction


@pytest.mark.parametrize("metric, expected", [
    pytest.param("eval_loss", True, id="eval_loss"),
    pytest.param("eval_support_loss", True, id="named-eval-set"),  # HF's eval_<set>_loss
    pytest.param("val_loss", True, id="lightning-val"),
    pytest.param("eval_runtime", False, id="timing-runtime"),
    pytest.param("eval_samples_per_second", False, id="timing-throughput"),
    pytest.param("loss", False, id="train-loss"),
    pytest.param("learning_rate", False, id="learning-rate"),
])
def test_is_eval_metric(metric, expected):
    assert is_eval_metric(metric) is expected


# --- best_index --------------------------------------------------------------------------------

@pytest.mark.parametrize("values, direction, expected", [
    pytest.param([3.0, 1.0, 2.0], "lower", 1, id="lower-min"),
    pytest.param([3.0, 1.0, 2.0], "higher", 0, id="higher-max"),
    pytest.param([2.0, 1.0, 1.0], "lower", 1, id="tie-earliest"),
    pytest.param([NAN, 5.0, NAN, 4.0], "lower", 3, id="nan-ignored"),
    pytest.param([NAN, -INF, 0.5], "lower", 2, id="inf-ignored"),
    pytest.param([NAN, NAN], "lower", None, id="all-nan"),
    pytest.param([], "higher", None, id="empty"),
])
def test_best_index(values, direction, expected):
    assert best_index(values, direction) == expected


# --- early_stop_index --------------------------------------------------------------------------
# HF EarlyStoppingCallback, threshold 0: the counter is reset on a strict improvement and incremented
# otherwise (equal or NaN); training stops at the evaluation where the counter reaches patience.

@pytest.mark.parametrize("values, direction, patience, expected", [
    pytest.param([1.0, 0.9, 0.8, 0.7], "lower", 1, None, id="always-improves"),
    pytest.param([1.0, 0.9, 1.0], "lower", 1, 2, id="patience1-first-worse"),
    pytest.param([1.0, 1.0], "lower", 1, 1, id="equal-is-no-improvement"),
    # counters: 0, 1, 0 (0.9 < 1.0 resets), 1, 2 -> stop at index 4
    pytest.param([1.0, 1.1, 0.9, 1.0, 1.0], "lower", 2, 4, id="improvement-resets"),
    # counters: 0, 1, 2, 3 -> stop at index 3
    pytest.param([0.5, 0.6, 0.7, 0.8], "lower", 3, 3, id="patience3"),
    pytest.param([0.5, 0.6, 0.7], "lower", 3, None, id="too-few-evals"),
    pytest.param([1.0, NAN, NAN], "lower", 2, 2, id="nan-counts"),
    # HF's first evaluation always resets the counter (state.best_metric is still None),
    # even when it is NaN: counters 0, 1 -> no stop with patience 2; stop at 0 never happens
    pytest.param([NAN, NAN], "lower", 2, None, id="leading-nan-not-counted"),
    pytest.param([NAN], "lower", 1, None, id="leading-nan-patience1"),
    pytest.param([0.5, 0.7, 0.6, 0.6], "higher", 2, 3, id="higher"),  # counters 0, 0, 1, 2
    pytest.param([], "lower", 1, None, id="empty"),
])
def test_early_stop_index(values, direction, patience, expected):
    assert early_stop_index(values, direction, patience) == expected


def _hf_stop_index(values: list[float], direction: str, patience: int) -> int | None:
    """Drive transformers' own EarlyStoppingCallback the way Trainer does: the callback runs in
    evaluate(), then Trainer._determine_best_metric updates state.best_metric."""
    from types import SimpleNamespace

    import numpy as np
    from transformers.trainer_callback import EarlyStoppingCallback, TrainerControl, TrainerState

    greater = direction == "higher"
    args = SimpleNamespace(metric_for_best_model="m", greater_is_better=greater)
    callback, state, control = EarlyStoppingCallback(patience), TrainerState(), TrainerControl()
    for i, v in enumerate(values):
        callback.on_evaluate(args, state, control, {"eval_m": v})
        if control.should_training_stop:
            return i
        if state.best_metric is None:  # Trainer._determine_best_metric
            state.best_metric = -INF if greater else INF
        if (np.greater if greater else np.less)(v, state.best_metric):
            state.best_metric = v
    return None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.just(NAN), st.sampled_from([0.1, 0.2, 0.3, 0.4])), max_size=12),
    st.sampled_from(["lower", "higher"]),
    st.integers(min_value=1, max_value=4),
)
def test_early_stop_index_matches_transformers(values, direction, patience):
    pytest.importorskip("transformers")
    assert early_stop_index(values, direction, patience) == _hf_stop_index(values, direction, patience)


# --- overfit_onset_index -----------------------------------------------------------------------

FALLING = [(s, 2.0 - s / 100) for s in range(1, 61)]  # train loss logged every step, falling
RISING = [(s, 1.0 + s / 100) for s in range(1, 61)]


@pytest.mark.parametrize("evals, train, patience, expected", [
    # best 1.2 at index 2; 1.3, 1.4, 1.5 all above it and the train loss keeps falling -> index 3
    pytest.param([(10, 2.0), (20, 1.5), (30, 1.2), (40, 1.3), (50, 1.4), (60, 1.5)], FALLING, 3, 3,
                 id="overfits"),
    # the same eval curve while the train loss rises too: divergence, not overfitting
    pytest.param([(10, 2.0), (20, 1.5), (30, 1.2), (40, 1.3), (50, 1.4), (60, 1.5)], RISING, 3, None,
                 id="diverges"),
    # a 2-eval bump (shorter than patience 3) then a new best: no onset
    pytest.param([(10, 2.0), (20, 1.5), (30, 1.7), (40, 1.6), (50, 1.4), (60, 1.3)], FALLING, 3, None,
                 id="short-bump"),
    # the same bump is enough with patience 1: index 2 (1.7 > 1.5, train falling)
    pytest.param([(10, 2.0), (20, 1.5), (30, 1.7), (40, 1.6), (50, 1.4), (60, 1.3)], FALLING, 1, 2,
                 id="short-bump-patience1"),
    # eval at step 0, before train is first logged at step 1: the step-0 eval is paired with the
    # first train value (1.99), the last window eval with steps 21..30 (mean 1.745) -> index 1
    pytest.param([(0, 1.0), (10, 1.2), (20, 1.4), (30, 1.6)], FALLING, 3, 1, id="eval-at-step-0"),
    pytest.param([(10, 2.0), (20, 1.5)], FALLING, 3, None, id="too-few-evals"),
])
def test_overfit_onset_index(evals, train, patience, expected):
    assert overfit_onset_index(evals, train, patience) == expected


# --- summarize_metric / summarize_curves -------------------------------------------------------

def pt(metric: str, step: int, value: float, run: str = "r") -> CurvePoint:
    return CurvePoint(run=run, source="test", step=step, epoch=None, wall_time=None, metric=metric, value=value)


def overfit_points(run: str = "r") -> list[CurvePoint]:
    """Train loss 2 - step/100 every 5 steps; eval_loss best 1.5 at step 30, then rising."""
    train = [pt("loss", s, 2.0 - s / 100, run) for s in range(5, 65, 5)]
    evals = [pt("eval_loss", s, v, run) for s, v in [(10, 2.0), (20, 1.6), (30, 1.5), (40, 1.7), (50, 1.8), (60, 1.9)]]
    return train + evals


@pytest.mark.parametrize("patience, expected", [
    # best 1.5 @30. Early stop: counters 0,0,0,1,2,3 -> index 5 (step 60). Onset: index 3 (step 40),
    # train mean over (50,60] = (1.45+1.40)/2 = 1.425 < over (20,30] = (1.75+1.70)/2 = 1.725.
    # Gaps: at best 1.5 - 1.725 = -0.225 ; at last 1.9 - 1.425 = 0.475
    pytest.param(3, dict(best_step=30, best_value=1.5, overfit_onset_step=40, early_stop_step=60,
                         recommended_stop_step=60, generalization_gap_at_best=-0.225,
                         generalization_gap_at_last=0.475), id="patience3"),
    # only 3 evaluations after the best: patience 4 never stops (recommend the last eval) and no onset
    pytest.param(4, dict(best_step=30, best_value=1.5, overfit_onset_step=None, early_stop_step=None,
                         recommended_stop_step=60, generalization_gap_at_best=-0.225,
                         generalization_gap_at_last=0.475), id="patience4"),
    # patience 1 stops at the first worse eval (step 40); onset at step 40 too
    pytest.param(1, dict(best_step=30, overfit_onset_step=40, early_stop_step=40, recommended_stop_step=40),
                 id="patience1"),
])
def test_summarize_metric_overfitting_run(patience, expected):
    s = summarize_metric(CurveTable(tuple(overfit_points())), "r", "eval_loss", patience)
    assert (s.direction, s.evaluations, s.last_step, s.last_value, s.patience, s.train_metric) == (
        "lower", 6, 60, 1.9, patience, "loss")
    for field, value in expected.items():
        assert getattr(s, field) == pytest.approx(value), field


@pytest.mark.parametrize("train_series, expected", [
    # HF logs `loss` every logging step and `train_loss` once at the end: `loss` wins
    pytest.param({"loss": 2, "train_loss": 1}, "loss", id="hf-usual"),
    pytest.param({"loss": 3, "train_loss": 3}, "loss", id="loss-preferred"),
    pytest.param({"train_loss": 3}, "train_loss", id="train_loss-when-loss-missing"),
    pytest.param({"train/loss": 3}, "train/loss", id="tb-tag"),
    pytest.param({"train_loss": 1}, None, id="single-point-is-not-a-curve"),
    pytest.param({}, None, id="none"),
])
def test_summarize_metric_train_metric(train_series, expected):
    points = [pt(name, 10 * (i + 1), 1.0 - 0.1 * i) for name, n in train_series.items() for i in range(n)]
    points += [pt("eval_loss", 10, 1.2), pt("eval_loss", 20, 1.1)]
    s = summarize_metric(CurveTable(tuple(points)), "r", "eval_loss")
    assert s.train_metric == expected
    if expected is None:
        assert (s.generalization_gap_at_best, s.generalization_gap_at_last, s.overfit_onset_step) == (None, None, None)


@pytest.mark.parametrize("train, expected_gap_at_last", [
    # mean of the train losses logged in (10, 20]: steps 12..20 -> (1.0+0.8+0.6+0.4+0.2)/5 = 0.6 ;
    # step 10 (0.9) belongs to the previous interval. Gap = 1.1 - 0.6
    pytest.param([(10, 0.9), (12, 1.0), (14, 0.8), (16, 0.6), (18, 0.4), (20, 0.2)], 0.5, id="mean-in-interval"),
    # nothing logged in (10, 20]: the last train value at or before step 20 (0.7 @8) -> 1.1 - 0.7
    pytest.param([(4, 0.9), (8, 0.7), (30, 0.1)], 0.4, id="fallback-last-before"),
])
def test_generalization_gap(train, expected_gap_at_last):
    points = [pt("loss", s, v) for s, v in train] + [pt("eval_loss", 10, 1.2), pt("eval_loss", 20, 1.1)]
    s = summarize_metric(CurveTable(tuple(points)), "r", "eval_loss")
    assert s.generalization_gap_at_last == pytest.approx(expected_gap_at_last)


def test_summarize_metric_higher_is_better():
    points = overfit_points() + [
        pt("eval_accuracy", s, v) for s, v in [(10, 0.5), (20, 0.7), (30, 0.6), (40, 0.65), (50, 0.6)]]
    s = summarize_metric(CurveTable(tuple(points)), "r", "eval_accuracy", patience=3)
    # best = max 0.7 @20; counters 0,0,1,2,3 -> stop @50; no onset and no gap for accuracy
    assert (s.direction, s.best_step, s.best_value) == ("higher", 20, 0.7)
    assert (s.early_stop_step, s.recommended_stop_step, s.overfit_onset_step) == (50, 50, None)
    assert (s.generalization_gap_at_best, s.generalization_gap_at_last) == (None, None)


@pytest.mark.parametrize("patience", [pytest.param(0, id="zero"), pytest.param(-1, id="negative")])
def test_patience_below_one_is_refused(patience):
    table = CurveTable(tuple(overfit_points()))
    with pytest.raises(ValueError):
        summarize_metric(table, "r", "eval_loss", patience)
    with pytest.raises(ValueError):
        summarize_curves(table, patience)


def test_summarize_curves_record():
    noise = [pt(m, 60, v, run) for run in ("a", "b") for m, v in [
        ("eval_runtime", 3.2), ("eval_samples_per_second", 90.0), ("eval_steps_per_second", 11.0),
        ("learning_rate", 1e-5), ("grad_norm", 0.8)]]
    acc = [pt("eval_accuracy", s, v, "b") for s, v in [(10, 0.5), (20, 0.7)]]
    table = CurveTable(tuple(overfit_points("a") + overfit_points("b") + acc + noise), warnings=("w1",))
    record = summarize_curves(table, patience=3)
    assert (record["schema"], record["schema_version"], record["patience"], record["warnings"]) == (
        "ftlens.curves.summary", 1, 3, ["w1"])
    # timing metrics, learning_rate, grad_norm and the train loss are not summarized; run a has no accuracy
    assert [(m["run"], m["metric"]) for m in record["metrics"]] == [
        ("a", "eval_loss"), ("b", "eval_accuracy"), ("b", "eval_loss")]
    by = {(m["run"], m["metric"]): m for m in record["metrics"]}
    assert by[("a", "eval_loss")]["overfit_onset_step"] == 40 and by[("a", "eval_loss")]["patience"] == 3
    assert (by[("b", "eval_accuracy")]["direction"], by[("b", "eval_accuracy")]["best_step"]) == ("higher", 20)


def test_summarize_curves_is_strict_json_for_a_diverged_run():
    # a run that diverges ends on a NaN eval loss; `curves --summary` prints with allow_nan=False
    points = [pt("loss", 5, 2.0), pt("loss", 10, 1.5), pt("loss", 15, NAN), pt("loss", 20, NAN),
              pt("eval_loss", 10, 1.8), pt("eval_loss", 20, NAN)]
    record = summarize_curves(CurveTable(tuple(points)))
    (m,) = json.loads(json.dumps(record, allow_nan=False))["metrics"]
    assert (m["best_step"], m["best_value"], m["last_step"]) == (10, 1.8, 20)
    # written as the rows write non-finite values (docs/curves-schema.md)
    assert (m["last_value"], m["generalization_gap_at_last"]) == ("NaN", "NaN")


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("eval_answer_accuracy", "higher"), ("eval_answer_f1", "higher"), ("eval_HasAns_exact", "higher"),
     ("eval_bits_per_byte", "lower"), ("eval_support_loss", "lower")],
)
def test_direction_matches_name_tokens_not_substrings(metric, expected):
    # "answer" contains "wer" (word error rate); only whole tokens decide.
    assert metric_direction(metric) == expected
