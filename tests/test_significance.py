"""Bootstrap intervals and paired tests against sacrebleu's own procedures, and the exact sign test.

Expected values come from sacrebleu 2.x, run in the test with the same seed (`SACREBLEU_SEED`, set
with monkeypatch): `Metric.corpus_score(..., n_bootstrap=1000)` for intervals (its `_ci` is half
the interval's width) and `significance.PairedTest(..., test_type="bs")` for paired p-values. Sign
test values are binomial tails computed here with `math.comb`.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from eval_core.errors import EvalCoreError
from eval_core.significance import (
    DEFAULT_SEED,
    Interval,
    PairedResult,
    bootstrap_interval,
    paired_test,
    sign_test,
)
from eval_core.text_metrics import ALL_METRICS, TextMetricConfig, score_pairs

SACREBLEU = {"bleu": BLEU, "chrf": CHRF}

VOCAB = ("the order ships in three days refund issued to your card reset router password account billing "
         "café 東京 привет email support agent replies within hours").split()


def _system(refs: list[str], keep: float, seed: int) -> list[str]:
    """A seeded 'model output' per reference: words kept with probability `keep`, others replaced."""
    rng = random.Random(seed)
    return [" ".join(w if rng.random() < keep else rng.choice(VOCAB) for w in r.split()) for r in refs]


@pytest.fixture(scope="module")
def systems() -> dict[str, list[str]]:
    rng = random.Random(11)
    refs = [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(4, 18))) + "." for _ in range(80)]
    refs[3] = ""  # an empty reference and an empty output ride along
    a, b = _system(refs, 0.55, 1), _system(refs, 0.6, 2)
    a[5] = ""
    return {"refs": refs, "a": a, "b": b}


@pytest.fixture(scope="module")
def scored(systems) -> dict[str, list]:
    return {k: score_pairs(systems[k], systems["refs"], workers=1) for k in ("a", "b")}


def _stats(scores, metric):
    return [s.stats[metric] for s in scores]


def _values(scores, metric):
    return [s.values[metric] for s in scores]


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
@pytest.mark.parametrize("seed", [DEFAULT_SEED, 7])
def test_bootstrap_interval_equals_sacrebleus(monkeypatch, systems, scored, metric, seed):
    monkeypatch.setenv("SACREBLEU_SEED", str(seed))
    score = SACREBLEU[metric]().corpus_score(systems["b"], [systems["refs"]], n_bootstrap=1000)
    iv = bootstrap_interval(metric, _stats(scored["b"], metric), n_resamples=1000, seed=seed)
    assert iv.value == score.score
    assert (iv.high - iv.low) / 2 == score._ci
    assert iv.low <= iv.value <= iv.high
    assert (iv.n, iv.n_resamples, iv.seed, iv.metric) == (80, 1000, seed, metric)


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_paired_test_p_value_equals_sacrebleus(monkeypatch, systems, scored, metric):
    seed = 4321  # not 0: PairedTest treats a seed of 0 as "no seed"
    monkeypatch.setenv("SACREBLEU_SEED", str(seed))
    _, table = PairedTest([("a", systems["a"]), ("b", systems["b"])], {metric: SACREBLEU[metric]()},
                          [systems["refs"]], test_type="bs")()
    (name,) = [k for k in table if k != "System"]
    baseline, system = table[name]
    result = paired_test(metric, _stats(scored["a"], metric), _stats(scored["b"], metric),
                         _values(scored["a"], metric), _values(scored["b"], metric), seed=seed)
    assert result.p_value == system.p_value
    assert (result.value_a, result.value_b) == (baseline.score, system.score)
    assert result.delta == system.score - baseline.score
    assert result.sign_test_p is None  # corpus-level metrics: no per-example sign test


def test_paired_test_reports_wins_and_the_sign_test_for_per_example_metrics(scored):
    a, b = _values(scored["a"], "rouge1"), _values(scored["b"], "rouge1")
    result = paired_test("rouge1", _stats(scored["a"], "rouge1"), _stats(scored["b"], "rouge1"), a, b)
    assert result.b_better == sum(y > x for x, y in zip(a, b)) and result.a_better == sum(x > y for x, y in zip(a, b))
    assert result.b_better + result.a_better + result.ties == result.n == 80
    assert result.sign_test_p == sign_test(result.b_better, result.a_better)
    assert result.delta == pytest.approx(sum(b) / 80 - sum(a) / 80)
    assert 0 < result.p_value <= 1 and "sign test" in result.method


def test_same_seed_same_result_and_another_seed_other_resamples(scored):
    stats = _stats(scored["a"], "bleu")
    assert bootstrap_interval("bleu", stats, seed=3) == bootstrap_interval("bleu", stats, seed=3)
    assert bootstrap_interval("bleu", stats, seed=3) != bootstrap_interval("bleu", stats, seed=4)
    args = ("rougeL", _stats(scored["a"], "rougeL"), _stats(scored["b"], "rougeL"),
            _values(scored["a"], "rougeL"), _values(scored["b"], "rougeL"))
    assert paired_test(*args, seed=3) == paired_test(*args, seed=3)
    assert (bootstrap_interval("rougeL", args[1], seed=3).low, bootstrap_interval("rougeL", args[1], seed=3).high) != \
        (bootstrap_interval("rougeL", args[1], seed=5).low, bootstrap_interval("rougeL", args[1], seed=5).high)


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_identical_systems_have_no_difference(scored, metric):
    stats, values = _stats(scored["a"], metric), _values(scored["a"], metric)
    result = paired_test(metric, stats, stats, values, values, n_resamples=300)
    assert result.delta == 0 and result.p_value == 1.0
    assert (result.b_better, result.a_better, result.ties) == (0, 0, 80)
    if result.sign_test_p is not None:
        assert result.sign_test_p == 1.0


def test_identical_systems_where_sacrebleu_says_significant(monkeypatch, systems):
    # The documented departure: sacrebleu gives 1/(n+1) for a system against itself; we give 1.0.
    monkeypatch.setenv("SACREBLEU_SEED", "9")
    _, table = PairedTest([("a", systems["a"]), ("a2", systems["a"])], {"bleu": BLEU()}, [systems["refs"]],
                          test_type="bs", n_samples=100)()
    assert table["BLEU"][1].p_value == pytest.approx(1 / 101)


@pytest.mark.parametrize(
    ("wins", "losses", "expected"),
    [
        (0, 5, 0.0625),  # 2 * C(5,0) / 2^5
        (5, 0, 0.0625),  # symmetric
        (5, 5, 1.0),  # 2 * sum_{i<=5} C(10,i) / 2^10 = 1.246..., capped at 1
        (2, 8, 112 / 1024),  # 2 * (1 + 10 + 45) / 2^10
        (0, 0, 1.0),  # nothing to test: no evidence
        (1, 0, 1.0),  # 2 * 1/2
        (20, 60, 2 * sum(math.comb(80, i) for i in range(21)) / 2**80),
    ],
)
def test_sign_test_is_the_exact_binomial_tail(wins, losses, expected):
    assert sign_test(wins, losses) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60))
def test_sign_test_is_symmetric_and_a_probability(wins, losses):
    p = sign_test(wins, losses)
    assert p == sign_test(losses, wins) and 0 < p <= 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=30), st.integers(0, 2**31))
def test_intervals_of_means_are_ordered_and_inside_the_data(values, seed):
    # A resample's mean lies between the smallest and largest value, whatever the seed. (For BLEU
    # not even value in [low, high] is guaranteed, so only mean metrics are checked this way.)
    stats = [(v, v, v) for v in values]
    iv = bootstrap_interval("rougeL", stats, n_resamples=50, seed=seed)
    assert min(values) - 1e-12 <= iv.low <= iv.high <= max(values) + 1e-12


def test_bleu_intervals_are_ordered(scored):
    for seed in range(5):
        iv = bootstrap_interval("bleu", _stats(scored["a"][:12], "bleu"), n_resamples=100, seed=seed)
        assert iv.low <= iv.high


def test_records_are_plain_dicts():
    iv = bootstrap_interval("exact_match", [(1.0,), (0.0,), (1.0,), (1.0,)], seed=1)
    assert isinstance(iv, Interval) and iv.to_dict()["value"] == 0.75
    res = paired_test("exact_match", [(1.0,), (0.0,)], [(1.0,), (1.0,)], [1.0, 0.0], [1.0, 1.0], n_resamples=50)
    assert isinstance(res, PairedResult) and res.to_dict()["delta"] == 0.5 and res.to_dict()["b_better"] == 1


def test_a_different_config_changes_the_corpus_value(systems):
    lower = TextMetricConfig(lowercase=True)
    scores = score_pairs([p.upper() for p in systems["b"]], systems["refs"], lower, workers=1)
    iv = bootstrap_interval("bleu", _stats(scores, "bleu"), n_resamples=100, config=lower)
    assert iv.value == BLEU(lowercase=True).corpus_score([p.upper() for p in systems["b"]], [systems["refs"]]).score


def test_empty_and_mismatched_inputs_are_clear_errors():
    with pytest.raises(EvalCoreError, match="empty set is undefined"):
        bootstrap_interval("bleu", [])
    with pytest.raises(EvalCoreError, match="empty set is undefined"):
        paired_test("bleu", [], [], [], [])
    with pytest.raises(EvalCoreError, match="counts differ"):
        paired_test("exact_match", [(1.0,)], [(1.0,), (0.0,)], [1.0], [1.0, 0.0])
    with pytest.raises(EvalCoreError, match="at least 1"):
        bootstrap_interval("exact_match", [(1.0,)], n_resamples=0)
