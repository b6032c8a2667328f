"""Rating statistics against independent fits, the reference libraries and textbook values.

Where each expected value comes from:
- Bradley-Terry: an independent maximum-likelihood fit written here (Hunter 2004, "MM algorithms for
  generalized Bradley-Terry models", Ann. Statist. 32(1), the MM / Zermelo iteration
  pi_i <- W_i / sum_j n_ij / (pi_i + pi_j)), iterated to convergence; the closed form
  theta_a - theta_b = ln(wins / losses) of two models; the known strengths of simulated judgments.
- Cohen's kappa: Wikipedia "Cohen's kappa", worked example (50 proposals, table [[20, 5], [10, 15]],
  p_o = 0.7, p_e = 0.5, kappa = 0.4).
- Fleiss' kappa: Wikipedia "Fleiss' kappa", worked example (10 subjects, 14 raters, 5 categories,
  kappa = 0.210); the hand case below is worked out in its comment.
- Krippendorff's alpha: Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4
  observers x 12 units nominal example with missing values, alpha = 0.743; the hand case is worked in
  its comment from the coincidence-matrix formula of the same paper.
- Wilson intervals: statsmodels ``proportion_confint(method="wilson")``; Student-t intervals:
  ``scipy.stats.t.interval``.
"""

from __future__ import annotations

import doctest
import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval_core import rating_agreement, rating_analysis, rating_bradley_terry
from eval_core.errors import EvalCoreError
from eval_core.rating_analysis import (
    SCHEMA,
    SCHEMA_VERSION,
    Judgment,
    LikertScore,
    bradley_terry,
    bradley_terry_by_category,
    canonical_order,
    cohen_kappa_pairs,
    fleiss_kappa,
    krippendorff_alpha,
    likert_summary,
    position_bias,
    summarise,
    win_matrix,
    win_rates,
)

TRUE_THETA = {"alpha": 1.0, "bravo": 0.3, "charlie": -0.2, "delta": -1.1}  # sums to 0, as the fit is centred


def simulate(n: int, seed: int, tie_share: float = 0.0, both_bad_share: float = 0.0) -> list[Judgment]:
    """Judgments drawn from the Bradley-Terry model with TRUE_THETA; sides and pairs at random."""
    rng = np.random.default_rng(seed)
    names = list(TRUE_THETA)
    out = []
    for t in range(n):
        i, j = rng.choice(len(names), size=2, replace=False)
        a, b = names[i], names[j]
        u = rng.random()
        if u < tie_share:
            winner = "tie"
        elif u < tie_share + both_bad_share:
            winner = "both_bad"
        else:
            p_a = 1 / (1 + math.exp(-(TRUE_THETA[a] - TRUE_THETA[b])))
            winner = "model_a" if rng.random() < p_a else "model_b"
        out.append(Judgment(f"q{t}", f"r{t % 5}", a, b, winner, category=("billing", "refunds")[t % 2]))
    return out


def mm_fit(judgments: list[Judgment], ties: str) -> dict[str, float]:
    """Independent Bradley-Terry MLE by Hunter's MM iteration (ties as half-wins or dropped), centred."""
    names = sorted({m for j in judgments for m in (j.model_a, j.model_b)})
    wins = np.zeros((len(names), len(names)))
    for j in judgments:
        a, b = names.index(j.model_a), names.index(j.model_b)
        if j.winner == "model_a":
            wins[a, b] += 1
        elif j.winner == "model_b":
            wins[b, a] += 1
        elif ties == "half":
            wins[a, b] += 0.5
            wins[b, a] += 0.5
    games = wins + wins.T
    pi = np.ones(len(names))
    for _ in range(100_000):
        new = wins.sum(axis=1) / (games / (pi[:, None] + pi[None, :])).sum(axis=1)
        new /= np.exp(np.log(new).mean())
        done = np.max(np.abs(new - pi)) < 1e-14
        pi = new
        if done:
            break
    theta = np.log(pi) - np.log(pi).mean()
    return dict(zip(names, theta.tolist(), strict=True))


@pytest.fixture(scope="module")
def simulated() -> list[Judgment]:
    return simulate(3000, seed=2024, tie_share=0.1, both_bad_share=0.05)


@pytest.mark.parametrize("ties", ["half", "drop"])
def test_bradley_terry_equals_an_independent_mm_fit(simulated, ties):
    bt = bradley_terry(simulated, ties=ties, n_resamples=10)
    reference = mm_fit(simulated, ties)
    assert bt.converged and bt.connected
    assert sum(s.strength for s in bt.strengths) == pytest.approx(0.0, abs=1e-9)
    for s in bt.strengths:
        assert s.strength == pytest.approx(reference[s.model], abs=1e-4)
        assert s.elo == pytest.approx(1000 + 400 * s.strength / math.log(10))
    assert bt.n_judgments == (3000 if ties == "half" else sum(j.winner in ("model_a", "model_b") for j in simulated))


def test_bradley_terry_recovers_known_strengths_inside_its_intervals(simulated):
    # Ties were drawn independently of strength, so dropping them leaves an unbiased fit of TRUE_THETA.
    bt = bradley_terry(simulated, ties="drop", n_resamples=200, seed=7)
    assert [s.model for s in bt.strengths] == ["alpha", "bravo", "charlie", "delta"]
    assert [s.rank for s in bt.strengths] == [1, 2, 3, 4]
    for s in bt.strengths:
        assert s.strength == pytest.approx(TRUE_THETA[s.model], abs=0.15)
        assert s.low < TRUE_THETA[s.model] < s.high
        assert s.elo_low < s.elo < s.elo_high
        assert 0.05 < s.high - s.low < 0.5


def test_bootstrap_intervals_are_percentiles_of_seeded_refits():
    # Re-derive the intervals by hand: the same default_rng(seed) draws over the canonical order,
    # each resample refitted by the MM fit, sorted, read at n//40 and n - n//40 - 1.
    js = simulate(200, seed=3)
    seed, n_res = 99, 40
    bt = bradley_terry(js, ties="half", n_resamples=n_res, seed=seed)
    ordered = canonical_order(js)
    rng = np.random.default_rng(seed)
    refits = [mm_fit([ordered[i] for i in rng.choice(len(ordered), size=len(ordered), replace=True)], "half")
              for _ in range(n_res)]
    for s in bt.strengths:
        values = sorted(r[s.model] for r in refits)
        assert (s.low, s.high) == pytest.approx((values[n_res // 40], values[n_res - n_res // 40 - 1]), abs=1e-5)


@pytest.mark.parametrize("ties, expected_diff, n_fit", [
    ("half", math.log((7 + 2) / (3 + 2)), 14),  # 2 ties + 2 both_bad, each half a win per side
    ("drop", math.log(7 / 3), 10),
])
def test_two_models_have_the_closed_form_strength(ties, expected_diff, n_fit):
    verdicts = ["model_a"] * 7 + ["model_b"] * 3 + ["tie"] * 2 + ["both_bad"] * 2
    js = [Judgment(f"q{i}", "ann", "a", "b", w) for i, w in enumerate(verdicts)]
    bt = bradley_terry(js, ties=ties, n_resamples=20)
    top, bottom = bt.strengths
    assert (top.model, bottom.model) == ("a", "b")
    assert top.strength - bottom.strength == pytest.approx(expected_diff, abs=1e-6)
    assert top.strength == pytest.approx(-bottom.strength)
    assert (bt.ties, bt.both_bad, bt.n_judgments, top.n) == (ties, ties, n_fit, n_fit)


def test_a_model_that_wins_everything_stays_finite_and_first():
    js = [Judgment(f"q{i}", "ann", "champ", other, "model_a") for i, other in enumerate(["x", "y"] * 5)]
    js += [Judgment(f"p{i}", "ann", "x", "y", w) for i, w in enumerate(["model_a", "model_b", "model_a"])]
    bt = bradley_terry(js, n_resamples=30)
    assert bt.converged
    assert bt.strengths[0].model == "champ"
    assert all(math.isfinite(v) for s in bt.strengths for v in (s.strength, s.low, s.high, s.elo))


def test_models_that_never_meet_are_flagged_as_disconnected():
    js = [Judgment("q1", "ann", "a", "b", "model_a"), Judgment("q2", "ann", "c", "d", "model_b")]
    assert not bradley_terry(js, n_resamples=5).connected


def test_bradley_terry_refuses_too_few_models_and_bad_options():
    with pytest.raises(EvalCoreError) as err:
        bradley_terry([])
    assert err.value.field == "judgments"
    with pytest.raises(EvalCoreError) as err:
        bradley_terry([Judgment("q1", "ann", "a", "b", "tie")], ties="drop")
    assert "at least 2 models" in str(err.value)
    with pytest.raises(EvalCoreError) as err:
        bradley_terry([Judgment("q1", "ann", "a", "b", "tie")], ties="ignore")
    assert err.value.field == "ties"


def test_bradley_terry_by_category_skips_categories_with_one_model(simulated):
    js = simulated[:200] + [Judgment("z1", "ann", "a", "b", "tie", "solo"), Judgment("z2", "ann", "a", "b", "tie")]
    by = bradley_terry_by_category(js, ties="drop", n_resamples=5)
    assert list(by) == ["billing", "refunds"]
    assert by["billing"].n_judgments == sum(j.category == "billing" and j.winner in ("model_a", "model_b") for j in js)


# Cohen's kappa (Wikipedia "Cohen's kappa" example): A yes & B yes 20, A yes & B no 5, A no & B yes 10,
# both no 15. "Yes" = model x better. Rater B saw the sides the other way round, so the canonical
# labels, not the clicks, must be compared.
def _cohen_example() -> list[Judgment]:
    cells = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    js = []
    for i, (va, vb) in enumerate(cells):
        js.append(Judgment(f"p{i}", "A", "x", "y", "model_a" if va == "yes" else "model_b"))
        js.append(Judgment(f"p{i}", "B", "y", "x", "model_b" if vb == "yes" else "model_a"))
    return js


def test_cohen_kappa_matches_the_textbook_example():
    [pair] = cohen_kappa_pairs(_cohen_example())
    assert (pair.rater_1, pair.rater_2, pair.n_items) == ("A", "B", 50)
    assert pair.observed_agreement == pytest.approx(0.7)
    assert pair.kappa == pytest.approx(0.4)


def test_cohen_kappa_perfect_undefined_and_too_few():
    labels = ["model_a", "model_b", "tie", "both_bad"] * 3
    perfect = [Judgment(f"q{i}", r, "x", "y", w) for i, w in enumerate(labels) for r in ("A", "B")]
    assert cohen_kappa_pairs(perfect)[0].kappa == pytest.approx(1.0)
    one_label = [Judgment(f"q{i}", r, "x", "y", "tie") for i in range(4) for r in ("A", "B")]
    assert cohen_kappa_pairs(one_label)[0].kappa is None  # chance agreement 1: kappa is 0/0
    one_item = [Judgment("q1", "A", "x", "y", "tie"), Judgment("q1", "B", "x", "y", "tie"),
                Judgment("q2", "C", "x", "y", "tie")]
    assert [(p.rater_1, p.rater_2, p.n_items, p.kappa) for p in cohen_kappa_pairs(one_item)] == [("A", "B", 1, None)]


def test_statsmodels_fleiss_kappa_matches_the_wikipedia_example():
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert sm_fleiss(table, method="fleiss") == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_from_judgments_by_hand():
    # Units with 3 raters: q1 3x first; q2 2x first + 1x second; q3 3x second.
    # P_i = (sum n_ij^2 - 3) / 6 = 1, 1/3, 1 -> P_bar = 7/9; p_first = 5/9, p_second = 4/9
    # -> P_e = 41/81; kappa = (7/9 - 41/81) / (1 - 41/81) = 22/40 = 0.55.
    # q4 (2 raters) and q5 (1 rater) are not rated by the most common count (3), so are left out.
    verdicts = {"q1": ["model_a"] * 3, "q2": ["model_a", "model_a", "model_b"], "q3": ["model_b"] * 3,
                "q4": ["model_a", "model_b"], "q5": ["tie"]}
    js = [Judgment(q, f"r{k}", "x", "y", w) for q, ws in verdicts.items() for k, w in enumerate(ws)]
    assert fleiss_kappa(js) == (pytest.approx(0.55), 3)
    assert fleiss_kappa(js[:3]) == (None, 1)  # one unit: too few
    assert fleiss_kappa([]) == (None, 0)


def test_krippendorff_package_matches_the_2011_paper():
    import krippendorff

    nan = np.nan
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    assert krippendorff.alpha(reliability_data=data, level_of_measurement="nominal") == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_from_judgments_by_hand():
    # Units: q1 (first, first), q2 (second, second), q3 (first, second); q4 has one rating (unpairable).
    # Coincidences: o_ff = 2, o_ss = 2, o_fs = o_sf = 1; n_f = n_s = 3, n = 6.
    # D_o = 2/6, D_e = (3*3 + 3*3) / (6*5) = 0.6 -> alpha = 1 - (1/3) / 0.6 = 4/9.
    # Rater C stands in for B on q3 with the sides swapped: missing ratings must not matter.
    js = [Judgment("q1", "A", "x", "y", "model_a"), Judgment("q1", "B", "x", "y", "model_a"),
          Judgment("q2", "A", "x", "y", "model_b"), Judgment("q2", "B", "x", "y", "model_b"),
          Judgment("q3", "A", "x", "y", "model_a"), Judgment("q3", "C", "y", "x", "model_a"),
          Judgment("q4", "A", "x", "y", "tie")]
    alpha, n_items = krippendorff_alpha(js)
    assert (alpha, n_items) == (pytest.approx(4 / 9), 3)
    assert krippendorff_alpha(js[-1:]) == (None, 0)
    assert krippendorff_alpha([Judgment(q, r, "x", "y", "tie") for q in ("q1", "q2") for r in "AB"]) == (None, 2)


def test_repeated_verdicts_of_one_rater_reduce_to_the_most_frequent():
    js = [Judgment("q1", "A", "x", "y", w) for w in ("model_a", "tie", "model_a")]
    assert rating_agreement.rating_units(js) == {("q1", "x", "y"): {"A": "first"}}


@pytest.mark.parametrize("left, right, flagged", [(70, 30, True), (50, 50, False), (45, 55, False), (30, 70, True), (0, 0, False)])
def test_position_bias(left, right, flagged):
    from statsmodels.stats.proportion import proportion_confint

    js = [Judgment(f"q{i}", "ann", "a", "b", "model_a") for i in range(left)]
    js += [Judgment(f"p{i}", "ann", "b", "a", "model_b") for i in range(right)]
    js += [Judgment("t", "ann", "a", "b", "tie"), Judgment("u", "ann", "a", "b", "both_bad")]  # left out
    pb = position_bias(js)
    assert (pb.left_wins, pb.right_wins, pb.flagged) == (left, right, flagged)
    if left + right == 0:
        assert (pb.share_left, pb.low, pb.high) == (None, None, None)
        return
    assert pb.share_left == pytest.approx(left / (left + right))
    assert (pb.low, pb.high) == pytest.approx(proportion_confint(left, left + right, method="wilson"))


def test_win_rates_count_ties_as_half_and_both_bad_apart():
    js = [Judgment("q1", "A", "a", "b", "model_a"), Judgment("q2", "A", "b", "a", "model_a"),
          Judgment("q3", "A", "a", "b", "tie"), Judgment("q4", "A", "a", "b", "both_bad"),
          Judgment("q5", "A", "a", "c", "model_a"), Judgment("q6", "A", "b", "c", "both_bad")]
    rates = {w.model: w for w in win_rates(js)}
    a = rates["a"]
    assert (a.wins, a.losses, a.ties, a.both_bad, a.n) == (2, 1, 1, 1, 5)
    assert a.rate == pytest.approx((2 + 0.5) / 4)
    from statsmodels.stats.proportion import proportion_confint

    assert (a.low, a.high) == pytest.approx(proportion_confint(2.5, 4, method="wilson"))
    assert (rates["c"].wins, rates["c"].losses, rates["c"].both_bad, rates["c"].rate) == (0, 1, 1, 0.0)
    assert [w.model for w in win_rates(js)] == ["a", "b", "c"]
    only_bad = win_rates([Judgment("q1", "A", "x", "y", "both_bad")])
    assert [(w.rate, w.low, w.n) for w in only_bad] == [(None, None, 1), (None, None, 1)]


def test_win_matrix_is_complementary(simulated):
    matrix = win_matrix(simulated[:400])
    assert len(matrix) == 4 * 3
    for (a, b), (rate, n) in matrix.items():
        rate_back, n_back = matrix[(b, a)]
        assert n == n_back > 0
        assert rate + rate_back == pytest.approx(1.0)
    lonely = win_matrix([Judgment("q1", "A", "x", "y", "both_bad"), Judgment("q2", "A", "x", "z", "model_b")])
    assert lonely[("x", "y")] == (None, 0) and lonely[("z", "x")] == (1.0, 1) and lonely[("y", "z")] == (None, 0)


def test_likert_means_and_t_intervals_match_scipy():
    from scipy import stats

    values = {("tuned", "helpfulness"): [4, 5, 3, 5, 4, 2], ("base", "helpfulness"): [2, 3, 3],
              ("tuned", "tone"): [5], ("base", "tone"): [3, 3, 3]}
    scores = [LikertScore(f"q{i}", "ann", m, c, v) for (m, c), vs in values.items() for i, v in enumerate(vs)]
    out = {(s.model, s.criterion): s for s in likert_summary(scores)}
    assert [(s.criterion, s.model) for s in likert_summary(scores)] == sorted((c, m) for m, c in values)
    for key in [("tuned", "helpfulness"), ("base", "helpfulness")]:
        x = np.array(values[key], dtype=float)
        low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert (out[key].mean, out[key].low, out[key].high, out[key].n) == pytest.approx((x.mean(), low, high, len(x)))
    assert (out[("tuned", "tone")].low, out[("tuned", "tone")].high) == (None, None)  # one score: no spread
    assert (out[("base", "tone")].low, out[("base", "tone")].high) == (3.0, 3.0)  # no spread at all


def _rich_judgments() -> list[Judgment]:
    rnd = random.Random(5)
    js = []
    for i in range(40):
        a, b = rnd.sample(["base", "tuned", "dpo"], 2)
        for rater in rnd.sample(["ann", "bob", "cy"], rnd.choice([1, 2, 3])):
            js.append(Judgment(f"q{i}", rater, a, b, rnd.choice(rating_analysis.WINNERS), rnd.choice([None, "billing", "refunds"])))
    return js


def test_summarise_round_trips_through_json():
    likert = [LikertScore(f"q{i}", "ann", m, "helpfulness", 1 + (i % 5)) for i in range(6) for m in ("base", "tuned")]
    likert.append(LikertScore("q0", "ann", "dpo", "tone", 4))  # a single score: interval None
    s = summarise(_rich_judgments(), likert, campaign="c1", n_resamples=20, seed=3)
    d = s.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert (d["schema"], d["version"], d["campaign"], d["seed"], d["n_resamples"]) == (SCHEMA, SCHEMA_VERSION, "c1", 3, 20)
    assert d["models"] == ["base", "dpo", "tuned"]
    assert {r["model"] for r in d["win_matrix"]} == set(d["models"]) and len(d["win_matrix"]) == 6
    assert sorted(d["by_category"]) == ["billing", "refunds"]
    assert s.bradley_terry_ties_dropped is not None and s.bradley_terry_ties_dropped.ties == "drop"
    assert s.cohen_kappa and s.krippendorff_items > 0 and "krippendorff_alpha" in d["definitions"]


def test_summarise_zero_and_one_judgment():
    empty = summarise([])
    d = empty.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert (empty.n_judgments, empty.models, empty.win_rates, empty.win_matrix, empty.by_category) == (0, [], [], [], {})
    assert (empty.bradley_terry.strengths, empty.bradley_terry_ties_dropped, empty.fleiss_kappa) == ([], None, None)
    assert (empty.position_bias.share_left, empty.position_bias.flagged, empty.cohen_kappa) == (None, False, [])
    one = summarise([Judgment("q1", "ann", "base", "tuned", "model_b", "billing")], n_resamples=10)
    assert [s.model for s in one.bradley_terry.strengths] == ["tuned", "base"]
    assert list(one.by_category) == ["billing"]
    assert json.dumps(one.to_dict(), allow_nan=False)
    only_tie = summarise([Judgment("q1", "ann", "base", "tuned", "tie")], n_resamples=10)
    assert only_tie.bradley_terry_ties_dropped is None and len(only_tie.bradley_terry.strengths) == 2


@settings(max_examples=15, deadline=None)
@given(st.permutations(_rich_judgments()[:25]))
def test_summary_is_invariant_to_the_order_of_judgments(shuffled):
    reference = summarise(_rich_judgments()[:25], n_resamples=5).to_dict()
    assert summarise(shuffled, n_resamples=5).to_dict() == reference


@pytest.mark.parametrize("kwargs, field", [
    ({"winner": "left"}, "winner"),
    ({"model_b": "base"}, "model_b"),
    ({"item_id": ""}, "item_id"),
    ({"rater": "  "}, "rater"),
    ({"category": 3}, "category"),
])
def test_judgment_validation_names_the_field(kwargs, field):
    fields = {"item_id": "q1", "rater": "ann", "model_a": "base", "model_b": "tuned", "winner": "tie", **kwargs}
    with pytest.raises(EvalCoreError) as err:
        Judgment(**fields)
    assert err.value.field == field
    assert field in str(err.value)


@pytest.mark.parametrize("score", [float("nan"), float("inf"), "4", True])
def test_likert_score_must_be_a_finite_number(score):
    with pytest.raises(EvalCoreError) as err:
        LikertScore("q1", "ann", "base", "helpfulness", score)
    assert err.value.field == "score"


@pytest.mark.parametrize("module", [rating_analysis, rating_agreement, rating_bradley_terry])
def test_docstring_examples_run(module):
    assert doctest.testmod(module, raise_on_error=False).failed == 0
