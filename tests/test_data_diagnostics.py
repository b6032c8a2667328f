"""Data diagnostics: planted leaks found with the right training id, clean sets not flagged,
duplicates, balance, lengths, distinct-n, negatives, determinism and the JSON record."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval_core.data_contamination import (
    ContaminationConfig,
    check_contamination,
    duplicate_groups,
    find_exact_duplicates,
    find_near_duplicates,
    find_ngram_overlap,
    normalize_text,
)
from eval_core.data_diagnostics import (
    DATA_SCHEMA,
    TextSet,
    category_balance,
    diagnose_data,
    distinct_n,
    negative_shares,
    set_lengths,
)
from eval_core.errors import DatasetError

_RNG = random.Random(7)
_VOCAB = [f"word{i}" for i in range(3000)]


def _text(k: int) -> str:
    return " ".join(_RNG.choice(_VOCAB) for _ in range(k))


TRAIN_IDS = [f"t{i:02d}" for i in range(30)]
TRAIN = [_text(100 if i == 20 else 40) for i in range(30)]
# Planted leaks, each with the training id it must be traced to.
PLANTED = {
    "h_copy": (TRAIN[3], "t03"),  # verbatim copy
    "h_embedded": ("Some new intro here. " + " ".join(TRAIN[7].split()[10:25]) + " and a new ending.", "t07"),
    "h_case": (TRAIN[11].upper().replace(" ", ", ", 5) + "!!!", "t11"),  # case and punctuation changed
}
# A near duplicate: 2 adjacent words of 100 changed.
_near_words = TRAIN[20].split()
_near_words[50], _near_words[51] = "changedA", "changedB"
NEAR = " ".join(_near_words)
CLEAN = [_text(40) for _ in range(5)] + ["thank you for your message", "please reset your password"]


def _heldout():
    ids = [*PLANTED, "h_near", *[f"h_clean{i}" for i in range(len(CLEAN))]]
    texts = [t for t, _ in PLANTED.values()] + [NEAR, *CLEAN]
    return ids, texts


def test_normalisation_follows_lm_eval_janitor():
    # Janitor: ASCII letters lowered, string.punctuation deleted, whitespace split; É keeps its case.
    assert normalize_text("It's  A\tTEST...\nÉcole-2") == "its a test École2"


def test_planted_leaks_are_found_with_their_training_id():
    ids, texts = _heldout()
    overlaps = {o.heldout_id: o for o in find_ngram_overlap(TRAIN_IDS, TRAIN, ids, texts, n=13)}
    for hid, (_, tid) in PLANTED.items():
        assert overlaps[hid].train_id == tid
    assert overlaps["h_near"].train_id == "t20"
    assert overlaps["h_copy"].share == 1.0 and overlaps["h_copy"].ngrams_total == 28  # 40 - 13 + 1
    # 15 embedded words give 3 13-grams; the item has 4 + 15 + 4 = 23 words, so 11 13-grams.
    assert overlaps["h_embedded"].ngrams_found == 3 and overlaps["h_embedded"].ngrams_total == 11
    assert not any(h.startswith("h_clean") for h in overlaps)


def test_exact_and_near_duplicates_across_sets():
    ids, texts = _heldout()
    exact = find_exact_duplicates(TRAIN_IDS, TRAIN, ids, texts)
    assert [(m.heldout_id, m.train_id) for m in exact] == [("h_case", "t11"), ("h_copy", "t03")]
    near = find_near_duplicates(TRAIN_IDS, TRAIN, ids, texts)
    assert [(m.heldout_id, m.train_id) for m in near] == [("h_near", "t20")]
    # 96 shingles each; the 2 adjacent changed words (50, 51) break the 6 starting at 46..51:
    # 90 shared / (90 + 6 + 6) union (exact Jaccard, not the MinHash estimate).
    assert near[0].jaccard == pytest.approx(90 / 102)


def test_near_duplicate_below_threshold_is_not_reported():
    words = TRAIN[0].split()
    changed = " ".join(w + "x" if i % 4 == 0 else w for i, w in enumerate(words))  # every 4th word
    assert find_near_duplicates(TRAIN_IDS, TRAIN, ["h"], [changed]) == ()


def test_clean_set_sharing_common_words_and_short_phrases_is_not_flagged():
    train = ["please reset your password in the settings page of the app today",
             "thank you for your message we will get back to you soon"]
    held = ["please reset your password in the settings page of the website now thanks",
            "thank you for your message it helps us a lot"]
    report = check_contamination(["a", "b"], train, ["x", "y"], held)
    assert report.contaminated_ids == ()


def test_short_items_compare_as_one_whole_gram():
    train_ids, train = ["t1", "t2"], ["Reset my password.", "the quick brown fox jumps"]
    held_ids, held = ["h1", "h2", "h3"], ["reset my PASSWORD", "reset my", "quick brown fox"]
    found = find_ngram_overlap(train_ids, train, held_ids, held, n=13)
    # Only the whole-text match counts: "reset my" and "quick brown fox" are parts, not wholes.
    assert [(o.heldout_id, o.train_id, o.ngrams_total) for o in found] == [("h1", "t1", 1)]


def test_empty_and_punctuation_only_texts_never_match():
    report = check_contamination(["t"], ["!!!"], ["h1", "h2"], ["...", ""])
    assert report.contaminated_ids == ()
    assert duplicate_groups(["a", "b"], ["", "?"]) == ()


def test_duplicates_within_one_set():
    base = _text(30)
    words = base.split()
    words[29] = "different"
    ids = ["a", "b", "c", "d", "e"]
    texts = [base, base.upper() + ".", " ".join(words), _text(30), "Hello"]
    groups = [(g.kind, g.ids) for g in duplicate_groups(ids, texts)]
    # a, b exact; c is a near duplicate of both (one end word changed: 25/27 shingles shared).
    assert groups == [("exact", ("a", "b")), ("near", ("a", "b", "c"))]
    no_near = duplicate_groups(ids, texts, ContaminationConfig(near_duplicates=False))
    assert [(g.kind, g.ids) for g in no_near] == [("exact", ("a", "b"))]


def test_results_are_deterministic_and_independent_of_input_order():
    ids, texts = _heldout()
    first = check_contamination(TRAIN_IDS, TRAIN, ids, texts)
    assert check_contamination(TRAIN_IDS, TRAIN, ids, texts) == first
    order = list(range(len(TRAIN)))
    random.Random(1).shuffle(order)
    h_order = list(range(len(ids)))[::-1]
    shuffled = check_contamination([TRAIN_IDS[i] for i in order], [TRAIN[i] for i in order],
                                   [ids[i] for i in h_order], [texts[i] for i in h_order])
    assert shuffled == first


def test_example_training_id_is_the_smallest_when_several_contain_the_gram():
    t = _text(20)
    found = find_ngram_overlap(["z", "b", "m"], [t, t, "other words"], ["h"], [t], n=13)
    assert found[0].train_id == "b"


def test_bad_inputs_raise_dataset_errors():
    with pytest.raises(DatasetError, match="appears more than once"):
        find_ngram_overlap(["a", "a"], ["x", "y"], [], [])
    with pytest.raises(DatasetError, match="2 ids but 1 texts"):
        TextSet(["a", "b"], ["x"])
    with pytest.raises(DatasetError):
        TextSet(["a"], ["x"], categories=["c", "d"])


def test_category_balance_and_coverage_on_a_hand_made_example():
    # 200 training rows: billing 150, shipping 49, refunds 1 (0.5 % < 1 %); held-out adds "legal".
    train = TextSet([str(i) for i in range(200)], ["x"] * 200, ["billing"] * 150 + ["shipping"] * 49 + ["refunds"])
    held = TextSet(["a", "b", "c", "d"], ["y"] * 4, ["billing", "refunds", "legal", None])
    balance, gaps = category_balance(train, held)
    rows = {b.category: (b.train_rows, b.heldout_rows, b.train_share, b.heldout_share) for b in balance}
    assert rows == {"(none)": (0, 1, 0.0, 0.25), "billing": (150, 1, 0.75, 0.25), "legal": (0, 1, 0.0, 0.25),
                    "refunds": (1, 1, 0.005, 0.25), "shipping": (49, 0, 0.245, 0.0)}
    assert [(g.category, g.status) for g in gaps] == [("(none)", "missing"), ("legal", "missing"), ("refunds", "rare")]
    _, gaps_loose = category_balance(train, held, rare_share=0.001)
    assert "refunds" not in [g.category for g in gaps_loose]
    assert category_balance(TextSet(["a"], ["x"]), TextSet(["b"], ["y"])) == ((), ())


def test_length_stats_per_set_and_category():
    ts = TextSet(["1", "2", "3", "4"], ["a", "a b", "a b c", "a b c d e f g h i j"], ["p", "p", "q", "q"])
    stats = {(s.category, s.unit): s for s in set_lengths(ts, "train")}
    whole = stats[(None, "tokens")]
    # numpy.percentile([1, 2, 3, 10], 90) = 7.9 (linear interpolation); median 2.5
    assert (whole.min, whole.median, whole.max, whole.rows) == (1, 2.5, 10, 4)
    assert whole.p90 == pytest.approx(7.9)
    assert (stats[("q", "chars")].min, stats[("q", "chars")].max) == (5, 19)
    assert stats[("p", "tokens")].median == 1.5


@pytest.mark.parametrize(
    ("texts", "n", "expected"),
    [
        (["the cat sat", "the cat ran"], 1, (6, 4 / 6)),  # the, cat, sat, ran
        (["the cat sat", "the cat ran"], 2, (4, 3 / 4)),  # the cat (x2), cat sat, cat ran
        (["A a, A!"], 1, (3, 1 / 3)),  # normalised: a a a
        (["one"], 2, (0, math.nan)),  # no bigram at all
        ([], 1, (0, math.nan)),
    ],
)
def test_distinct_n_against_hand_computed_values(texts, n, expected):
    total, value = distinct_n(texts, n)
    assert total == expected[0]
    assert value == pytest.approx(expected[1], nan_ok=True)


def test_negative_shares():
    ts = TextSet(["1", "2", "3", "4"], ["a"] * 4, ["x", "x", "y", "y"], [True, False, True, True])
    shares = {s.category: (s.rows, s.negatives, s.share) for s in negative_shares(ts, "heldout")}
    assert shares == {None: (4, 3, 0.75), "x": (2, 1, 0.5), "y": (2, 2, 1.0)}
    assert negative_shares(TextSet(["1"], ["a"]), "train") == ()


def test_diagnostics_record_round_trips_through_json():
    ids, texts = _heldout()
    train = TextSet(TRAIN_IDS, TRAIN, ["billing"] * 30, [False] * 29 + [True])
    held = TextSet(ids, texts, ["billing"] * (len(ids) - 1) + ["legal"], [False] * len(ids))
    d = diagnose_data(train, held)
    out = d.to_dict()
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert (out["schema"], out["schema_version"]) == (DATA_SCHEMA, 1)
    protocol = out["contamination"]["protocol"]
    assert (protocol["ngram_n"], protocol["shingle_size"], protocol["num_perm"], protocol["seed"]) == (13, 5, 128, 1)
    assert protocol["near_threshold"] == 0.8 and protocol["datasketch_version"] == "1.6.5"
    assert set(out["contamination"]["contaminated_ids"]) == {*PLANTED, "h_near"}
    assert [g["category"] for g in out["coverage_gaps"]] == ["legal"]
    assert diagnose_data(train, held) == d


_WORDS = st.lists(st.sampled_from(["a", "b", "c", "d", "The", "cat,", "sat!", "x1"]), min_size=13, max_size=40)


@settings(max_examples=60, deadline=None)
@given(train=st.lists(_WORDS, min_size=1, max_size=5), pick=st.integers(0, 4), extra=_WORDS)
def test_a_verbatim_copy_of_a_training_item_is_always_flagged(train, pick, extra):
    texts = [" ".join(w) for w in train]
    copy = texts[pick % len(texts)]
    found = find_ngram_overlap([f"t{i}" for i in range(len(texts))], texts, ["h", "other"], [copy, " ".join(extra)])
    assert "h" in [o.heldout_id for o in found]
    assert next(o for o in found if o.heldout_id == "h").share == 1.0


def _reference_overlap(train: list[str], heldout: list[str], n: int) -> dict[str, tuple[int, int, str]]:
    """An independent reference: lm-evaluation-harness's Janitor normalisation written out, n-gram
    tuples (no hashing), a set intersection per held-out item; a text shorter than n is one gram."""
    import string as _string

    table = str.maketrans(_string.ascii_uppercase, _string.ascii_lowercase, _string.punctuation)

    def grams(text: str) -> set[tuple[str, ...]]:
        words = text.translate(table).split()
        if not words:
            return set()
        return {tuple(words)} if len(words) < n else {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    train_grams = [(f"t{i}", grams(t)) for i, t in enumerate(train)]
    out = {}
    for j, text in enumerate(heldout):
        mine = grams(text)
        found = {g for _, tg in train_grams for g in mine & tg}
        if found:
            first = min(tid for tid, tg in train_grams if mine & tg)
            out[f"h{j}"] = (len(found), len(mine), first)
    return out


@settings(max_examples=80, deadline=None)
@given(train=st.lists(st.lists(st.sampled_from(["Order", "ships", "today,", "the", "LAMP", "is", "late!", "refund"]),
                               max_size=9).map(" ".join), min_size=1, max_size=6),
       heldout=st.lists(st.lists(st.sampled_from(["order", "Ships", "today", "the", "lamp", "is", "late", "why?"]),
                                 max_size=9).map(" ".join), min_size=1, max_size=6),
       n=st.integers(1, 4))
def test_ngram_overlap_equals_an_independent_reference(train, heldout, n):
    """Every contaminated id, count of found and total n-grams, and example training id equal the reference's."""
    got = find_ngram_overlap([f"t{i}" for i in range(len(train))], train, [f"h{j}" for j in range(len(heldout))], heldout, n=n)
    assert {o.heldout_id: (o.ngrams_found, o.ngrams_total, o.train_id) for o in got} == _reference_overlap(train, heldout, n)
