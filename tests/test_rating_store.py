"""Rating campaigns and the rating store: balanced seeded assignment, one rating per (item, rater)
whatever the clicks, skip and undo, and several processes rating at once with nothing lost and
nothing duplicated. Every store test runs twice: on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from eval_core.errors import EvalCoreError
from eval_core.rating_campaigns import CampaignSpec, assign, assignment_token, winner_of
from eval_core.rating_store import RatingItem, RatingStore, judgments_and_scores, ratings

MODELS = ("ckpt-a", "ckpt-b", "ckpt-c")


def _items(n: int) -> list[RatingItem]:
    return [RatingItem(f"item-{i:03d}", f"prompt {i}", {m: f"{m} says {i}" for m in MODELS}, f"ref {i}", f"cat{i % 3}")
            for i in range(n)]


def _spec(name="c1", raters=("ann", "bob", "cy"), overlap=2, **kw) -> CampaignSpec:
    return CampaignSpec(name, "support_test", "genhash", MODELS, raters, overlap=overlap, **kw)


@pytest.fixture
def store(store_url):
    s = RatingStore(store_url)
    yield s
    s.close()


@settings(max_examples=40, deadline=None)
@given(n_items=st.integers(1, 60), n_raters=st.integers(1, 6), data=st.data())
def test_assignment_is_balanced_and_seeded(n_items, n_raters, data):
    raters = tuple(f"r{i}" for i in range(n_raters))
    overlap = data.draw(st.integers(1, n_raters))
    spec = CampaignSpec("c", "set", "h", MODELS, raters, overlap=overlap, seed=data.draw(st.integers(0, 10**6)))
    ids = [f"i{i}" for i in range(n_items)]
    plan = assign(spec, ids)
    assert plan == assign(spec, list(reversed(ids)))  # deterministic, whatever the input order
    per_item = Counter(a.item_id for a in plan)
    assert set(per_item) == set(ids) and set(per_item.values()) == {overlap}
    load = Counter(a.rater for a in plan)
    assert max(load.values()) - min(load.get(r, 0) for r in raters) <= 1  # queues differ by at most one
    pairs = Counter(frozenset((a.left, a.right)) for a in plan if a.rater == min(a2.rater for a2 in plan if a2.item_id == a.item_id))
    assert max(pairs.values()) - min(pairs.get(frozenset(p), 0) for p in [(MODELS[0], MODELS[1]), (MODELS[0], MODELS[2]),
                                                                             (MODELS[1], MODELS[2])]) <= 1 or n_items < 3
    for rater in raters:
        assert sorted(a.position for a in plan if a.rater == rater) == list(range(load.get(rater, 0)))
    assert len({a.token for a in plan}) == len(plan)


def test_left_right_order_is_randomised_per_rater():
    spec = _spec(raters=("ann", "bob"), overlap=2)
    plan = assign(spec, [f"i{i}" for i in range(200)])
    lefts = Counter(a.left for a in plan)
    assert all(80 < lefts[m] < 190 for m in MODELS)  # every model is shown left about half the time
    by_item = {}
    for a in plan:
        by_item.setdefault(a.item_id, []).append(a.left)
    assert any(len(set(v)) == 2 for v in by_item.values())  # raters of an item can see different orders


def test_tokens_name_no_model():
    spec = _spec()
    for a in assign(spec, ["x"]):
        assert a.token == assignment_token("c1", "x", a.rater, spec.seed)
        assert not any(m in a.token for m in MODELS)


@pytest.mark.parametrize(("kw", "field"), [
    ({"overlap": 4}, "overlap"), ({"overlap": 0}, "overlap"), ({"raters": ("ann", "ann")}, "raters"),
    ({"raters": ("<script>",)}, "rater"), ({"name": "../x"}, "campaign"), ({"rubric": ("tone", "tone")}, "rubric"),
    ({"scale": (5, 1)}, "scale"),
])
def test_invalid_specs_name_the_field(kw, field):
    with pytest.raises(EvalCoreError) as err:
        _spec(**kw)
    assert err.value.field == field


def test_submit_is_stored_once_whatever_the_clicks(store):
    store.create_campaign(_spec(), _items(6))
    nxt = store.next_item("c1", "ann")
    assert nxt.prompt.startswith("prompt ") and nxt.left_text != nxt.right_text
    assert store.submit("c1", nxt.token, "ann", "left", {"left": {"helpfulness": 4}, "right": {"tone": 2}}, "ok", "")
    assert not store.submit("c1", nxt.token, "ann", "right")  # a double click / replay: the first stands
    rows = store.ratings_of("c1")
    assert len(rows) == 1 and rows[0]["verdict"] == "left" and rows[0]["scores"] == {"left": {"helpfulness": 4}, "right": {"tone": 2}}
    assert store.next_item("c1", "ann").token != nxt.token


def test_a_rater_cannot_rate_another_raters_item(store):
    plan = store.create_campaign(_spec(), _items(6))
    bobs = next(a for a in plan if a.rater == "bob")
    with pytest.raises(EvalCoreError, match="not in ann's queue"):
        store.submit("c1", bobs.token, "ann", "left")


@pytest.mark.parametrize(("scores", "message"), [
    ({"left": {"helpfulness": 6}}, "from 1 to 5"), ({"left": {"speed": 3}}, "not in the rubric"),
    ({"middle": {"tone": 3}}, "per side"), ({"left": {"tone": 2.5}}, "whole number"),
])
def test_bad_scores_are_refused(store, scores, message):
    store.create_campaign(_spec(), _items(3))
    token = store.next_item("c1", "ann").token
    with pytest.raises(EvalCoreError, match=message):
        store.submit("c1", token, "ann", "left", scores)
    assert store.ratings_of("c1") == []


def test_skip_moves_to_the_end_and_undo_brings_back(store):
    store.create_campaign(_spec(raters=("ann",), overlap=1), _items(3))
    first = store.next_item("c1", "ann")
    store.skip("c1", first.token, "ann")
    second = store.next_item("c1", "ann")
    assert second.token != first.token and not second.skipped
    store.submit("c1", second.token, "ann", "tie")
    third = store.next_item("c1", "ann")
    store.submit("c1", third.token, "ann", "both_bad")
    again = store.next_item("c1", "ann")
    assert again.token == first.token and again.skipped
    assert store.undo_last("c1", "ann") == third.token
    assert store.next_item("c1", "ann").token == third.token  # the undone item comes back before the skipped one
    assert [p.done for p in store.progress("c1")] == [1]


def test_campaign_names_are_unique_and_items_are_a_snapshot(store):
    store.create_campaign(_spec(), _items(4))
    with pytest.raises(EvalCoreError, match="exists"):
        store.create_campaign(_spec(), _items(4))
    assert store.items("c1")["item-001"].outputs["ckpt-b"] == "ckpt-b says 1"
    with pytest.raises(EvalCoreError, match="no output of ckpt-c"):
        store.create_campaign(_spec(name="c2"), [RatingItem("x", "p", {"ckpt-a": "1", "ckpt-b": "2"})])


def test_judgments_from_rows_keep_left_as_model_a(store):
    store.create_campaign(_spec(raters=("ann",), overlap=1), _items(2))
    a = store.next_item("c1", "ann")
    store.submit("c1", a.token, "ann", "right", {"right": {"tone": 5}})
    (row,) = store.ratings_of("c1")
    (j,), (score,) = judgments_and_scores([row])
    assert (j.model_a, j.model_b, j.winner) == (row["model_left"], row["model_right"], "model_b")
    assert (score.model, score.criterion, score.score) == (row["model_right"], "tone", 5.0)
    assert winner_of("tie") == "tie"


# --- several processes at once -------------------------------------------------------------------

N_ITEMS, RATERS = 60, ("r0", "r1", "r2", "r3")


def _rate_all(url: str, rater: str, seed: int, out) -> None:  # noqa: ANN001 - a multiprocessing queue
    store = RatingStore(url)
    try:
        tokens = [a.token for a in store.assignments("load", rater)]
        random.Random(seed).shuffle(tokens)
        acked = [t for t in tokens if store.submit("load", t, rater, random.Random(t).choice(["left", "right", "tie"]))]
        out.put((rater, acked))
    finally:
        store.close()


def _concurrent_ratings(url: str) -> None:
    store = RatingStore(url)
    try:
        store.create_campaign(CampaignSpec("load", "set", "h", MODELS, RATERS, overlap=2), _items(N_ITEMS))
    finally:
        store.close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    # Two processes per rater (two browser tabs racing on the same queue), 8 writers in all.
    procs = [ctx.Process(target=_rate_all, args=(url, r, i, out)) for i, r in enumerate(RATERS * 2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = RatingStore(url)
    try:
        rows = store.ratings_of("load")
        with store.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(ratings).where(ratings.c.campaign == "load")).scalar()
    finally:
        store.close()
    stored = Counter((r["item_id"], r["rater"]) for r in rows)
    assert total == len(rows) == N_ITEMS * 2 and set(stored.values()) == {1}  # 0 duplicated
    acked = Counter()
    for rater, tokens in results:
        acked[rater] += len(tokens)
    assert all(acked[r] == N_ITEMS * 2 // len(RATERS) for r in RATERS), acked  # each rating acknowledged exactly once
    assert len(rows) == sum(acked.values())  # 0 lost


def test_concurrent_raters_lose_and_duplicate_nothing(store_url):
    _concurrent_ratings(store_url)
