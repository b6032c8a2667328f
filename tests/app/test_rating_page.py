"""Rate outputs page, one test per behaviour in pages/rating.py's docstring.

The workspace is a copy of the session's quick demo, whose builder created the campaign "demo"
(checkpoint-6, checkpoint-24, checkpoint-36; raters alice and bob; 24 items each).
"""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

from eval_core.rating_setup import open_rating_store
from eval_core.rating_store import rating_items

PAGE = "pages/rating.py"
MODELS = ("checkpoint-6", "checkpoint-24", "checkpoint-36")


@pytest.fixture
def ws(quick_demo, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(quick_demo, dst)
    return dst


def open_page(app, monkeypatch, workspace, rater: str | None = "alice"):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(workspace))
    at = app().run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    if rater:
        at.selectbox(key="rating_rater_demo").set_value(rater).run()
        assert not at.exception, at.exception
    return at


def everything_shown(at) -> str:
    """Every text, label, option and widget key the page sends to the browser."""
    parts = []
    for kind in ("title", "markdown", "caption", "code", "info", "success", "warning", "error", "text"):
        parts += [str(e.value) for e in getattr(at, kind)]
    for kind in ("radio", "selectbox", "text_area", "button", "text_input", "number_input"):
        for w in getattr(at, kind):
            parts += [str(w.label), str(getattr(w, "key", "")), *(str(o) for o in getattr(w, "options", []))]
    parts += [str(getattr(e, "proto", "")) for e in at.get("progress")]
    return "\n".join(parts)


def test_without_a_campaign_says_where_to_make_one(app, monkeypatch, evaluated_demo):
    at = open_page(app, monkeypatch, evaluated_demo, rater=None)
    assert "No rating campaign" in at.info[0].value


def test_rater_picks_a_name_and_sees_progress_and_one_item(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws, rater=None)
    assert "Choose your name" in at.info[0].value
    at.selectbox(key="rating_rater_demo").set_value("alice").run()
    assert at.get("progress")[0].proto.text == "alice: 0 of 24 rated"
    store = open_rating_store(ws)
    try:
        item = store.next_item("demo", "alice")
    finally:
        store.close()
    codes = [c.value for c in at.code]
    assert codes[0] == item.prompt and codes[1] == (item.left_text or "(empty output)")
    assert codes[2] == (item.right_text or "(empty output)")
    assert [m.value for m in at.markdown if m.value in ("**A**", "**B**")] == ["**A**", "**B**"]


def test_no_checkpoint_name_reaches_the_browser(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    shown = everything_shown(at)
    assert "alice: 0 of 24 rated" in shown  # the scan sees the page
    for name in (*MODELS, "checkpoint"):
        assert name not in shown


def test_submit_stores_verdict_rubric_comment_and_correction(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    token = next(r.key for r in at.radio if r.key.endswith("_verdict")).split("_")[1]
    at.radio(key=f"rate_{token}_verdict").set_value("right")
    at.radio(key=f"rate_{token}_left_helpfulness").set_value(2)
    at.radio(key=f"rate_{token}_right_tone").set_value(5)
    at.text_area(key=f"rate_{token}_comment").input("B is clearer")
    at.text_area(key=f"rate_{token}_correction").input("The ideal answer.")
    at.button[0].click().run()  # the form's Submit
    assert not at.exception
    assert at.success[0].value == "Saved."
    assert at.get("progress")[0].proto.text == "alice: 1 of 24 rated"
    store = open_rating_store(ws)
    try:
        (row,) = store.ratings_of("demo")
        token_of = {a.item_id: a.token for a in store.assignments("demo", "alice")}
    finally:
        store.close()
    assert token_of[row["item_id"]] == token and row["rater"] == "alice"
    assert (row["verdict"], row["comment"], row["correction"]) == ("right", "B is clearer", "The ideal answer.")
    assert row["scores"] == {"left": {"helpfulness": 2}, "right": {"tone": 5}}
    assert f"rate_{token}_verdict" not in [r.key for r in at.radio]  # the next item is shown


def test_submit_without_a_verdict_is_refused(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    at.button[0].click().run()
    assert "Choose A better" in at.warning[0].value
    store = open_rating_store(ws)
    try:
        assert store.ratings_of("demo") == []
    finally:
        store.close()


def test_a_replayed_submit_is_stored_once(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    token = next(r.key for r in at.radio if r.key.endswith("_verdict")).split("_")[1]
    store = open_rating_store(ws)
    try:
        store.submit("demo", token, "alice", "tie")  # the same item, rated in another tab first
    finally:
        store.close()
    at.radio(key=f"rate_{token}_verdict").set_value("left")
    at.button[0].click().run()
    assert "already saved" in at.info[0].value
    store = open_rating_store(ws)
    try:
        rows = store.ratings_of("demo")
    finally:
        store.close()
    assert [r["verdict"] for r in rows] == ["tie"]  # one row: the first rating stands


def test_skip_then_undo(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    first = next(r.key for r in at.radio if r.key.endswith("_verdict"))
    at.button(key=f"{first.removesuffix('_verdict')}_skip").click().run()
    assert "Skipped" in at.info[0].value
    second = next(r.key for r in at.radio if r.key.endswith("_verdict"))
    assert second != first
    at.radio(key=second).set_value("both_bad")
    at.button[0].click().run()
    assert at.get("progress")[0].proto.text == "alice: 1 of 24 rated, 1 skipped"
    at.button(key="rating_undo").click().run()
    assert "last rating was deleted" in at.info[0].value
    assert at.get("progress")[0].proto.text == "alice: 0 of 24 rated, 1 skipped"
    assert next(r.key for r in at.radio if r.key.endswith("_verdict")) == second  # that item again


def test_outputs_holding_html_are_shown_as_literal_text(app, monkeypatch, ws):
    html = '<img src=x onerror="alert(1)"><script>alert(2)</script>**bold**'
    store = open_rating_store(ws)
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.update(rating_items).values(prompt=html))
    finally:
        store.close()
    at = open_page(app, monkeypatch, ws)
    assert at.code[0].value == html  # st.code: shown exactly, never interpreted
    assert all(html not in m.value for m in at.markdown)
