"""Rate outputs: a rater's blind side-by-side queue.

- The rater picks the campaign and their name, and sees their progress (rated / assigned). In team
  mode the name is the signed-in member's (no picker) and only campaigns listing them are offered.
- One item at a time: the prompt and two outputs labelled only "A" and "B". No checkpoint name
  reaches the browser: not in labels, widget keys (they use the assignment's opaque token), URLs
  or HTML. Prompt and outputs are plain text (st.code), never Markdown or HTML.
- Choices: A better, B better, tie, both bad; the campaign's rubric (1-5 by default) for each side;
  a comment; an optional "ideal answer" correction.
- Submit stores the rating in one transaction (a double click or replay stores it once: the page
  says it was already saved); Skip moves the item to the end of the queue; Undo deletes the last
  rating and shows that item again.
"""

from __future__ import annotations

import streamlit as st

from eval_core import EvalCoreError
from pages._render import plain, problem_text
from pages._session import page_workspace
from pages._team import signed_in_member

VERDICT_LABELS = {"left": "A is better", "right": "B is better", "tie": "Tie", "both_bad": "Both are bad"}
NOT_RATED = "–"
RATER_KEY = "ftlens_rater"  # (campaign, rater) of this session


def _store(root):  # noqa: ANN001, ANN202
    from eval_core.rating_setup import open_rating_store

    return open_rating_store(root)


def _flash(kind: str, text: str) -> None:
    st.session_state["rating_flash"] = (kind, text)


def _show_flash() -> None:
    kind, text = st.session_state.pop("rating_flash", (None, None))
    if kind:
        getattr(st, kind)(text if kind == "error" else plain(text))  # errors come escaped by problem_text


root = page_workspace("Rate outputs", rater_allowed=True)
member = signed_in_member()  # team mode: the signed-in rater; None on one person's app
try:
    with _store(root) as store:
        campaigns = [c for c in store.campaigns() if not c.imported]
except EvalCoreError as exc:
    st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
    st.stop()
if member is not None:  # a rater sees only the campaigns that list them, and only their own queue
    campaigns = [c for c in campaigns if member.name in c.raters]
    if not campaigns:
        st.info(plain(f"No campaign lists {member.name} as a rater yet. Ask your admin to add you."))
        st.stop()
if not campaigns:
    st.info("No rating campaign in this workspace yet. Create one on the Rating results page, or with "
            "`python -m eval_core ratings create`.")
    st.stop()

c1, c2 = st.columns(2)
names = [c.name for c in campaigns]
name = c1.selectbox("Campaign", names, key="rating_campaign")
spec = next(c for c in campaigns if c.name == name)
if member is not None:
    rater = member.name  # from the sign-in, never from a name picked in the page
    c2.caption(plain(f"Rating as {rater}"))
else:
    rater = c2.selectbox("Your name", spec.raters, index=None, placeholder="Choose your name", key=f"rating_rater_{name}")
if rater is None:
    st.info("Choose your name to start rating. Outputs are shown as A and B only; which checkpoint wrote "
            "which is never shown here.")
    st.stop()

with _store(root) as store:
    mine = next(p for p in store.progress(name) if p.rater == rater)
    item = store.next_item(name, rater)

_show_flash()
st.progress(mine.done / mine.total if mine.total else 1.0,
            text=plain(f"{rater}: {mine.done} of {mine.total} rated" + (f", {mine.skipped} skipped" if mine.skipped else "")))


def undo() -> None:
    with _store(root) as s:
        token = s.undo_last(name, rater)
    _flash("info", "Your last rating was deleted; rate that item again." if token else "Nothing to undo.")


if item is None:
    st.success(plain(f"All done, {rater}: every item of your queue is rated. Thank you!"))
    st.button("Undo my last rating", key="rating_undo_done", on_click=undo)
    st.stop()

st.caption(f"Item {mine.done + 1} of {mine.total}" + (" (skipped before)" if item.skipped else ""))
st.markdown("**Prompt**")
st.code(item.prompt, language=None, wrap_lines=True)
left, right = st.columns(2)
with left:
    st.markdown("**A**")
    st.code(item.left_text or "(empty output)", language=None, wrap_lines=True)
with right:
    st.markdown("**B**")
    st.code(item.right_text or "(empty output)", language=None, wrap_lines=True)

key = f"rate_{item.token}"
lo, hi = spec.scale


def submit(token: str) -> None:
    """Runs before the rerun, with this item's widget values: so the verdict is stored for the item the
    rater saw, even when another tab rated it meanwhile (then the rater is told it was already saved)."""
    k = f"rate_{token}"
    verdict = st.session_state.get(f"{k}_verdict")
    if verdict is None:
        _flash("warning", "Choose A better, B better, tie or both bad first.")
        return
    scores = {side: {c: int(v) for c in spec.rubric if (v := st.session_state.get(f"{k}_{side}_{c}", NOT_RATED)) != NOT_RATED}
              for side in ("left", "right")}
    try:
        with _store(root) as s:
            stored = s.submit(name, token, rater, verdict, scores, st.session_state.get(f"{k}_comment", ""),
                              st.session_state.get(f"{k}_correction", ""))
    except EvalCoreError as exc:
        _flash("error", problem_text(exc.message, exc.path, exc.line, exc.field))
        return
    _flash("success" if stored else "info", "Saved." if stored else "This item was already saved; it was not stored twice.")


with st.form(key=f"{key}_form", clear_on_submit=False, border=True):
    st.radio("Which is better?", list(VERDICT_LABELS), format_func=VERDICT_LABELS.get, index=None,
             horizontal=True, key=f"{key}_verdict")
    options = [NOT_RATED, *range(lo, hi + 1)]
    if spec.rubric:
        cols = st.columns(2)
        for side, col, label in (("left", cols[0], "A"), ("right", cols[1], "B")):
            with col:
                for criterion in spec.rubric:
                    st.radio(plain(f"{label}: {criterion}"), options, horizontal=True, key=f"{key}_{side}_{criterion}")
    st.text_area("Comment (optional)", key=f"{key}_comment", max_chars=20_000)
    st.text_area("Write the ideal answer (optional)", key=f"{key}_correction", max_chars=20_000,
                 help="Exported as training data for the next fine-tuning round")
    st.form_submit_button("Submit", type="primary", on_click=submit, args=(item.token,))


def skip() -> None:
    with _store(root) as s:
        s.skip(name, item.token, rater)
    _flash("info", "Skipped: the item comes back at the end of your queue.")


b1, b2 = st.columns(2)
b1.button("Skip", key=f"{key}_skip", on_click=skip)
b2.button("Undo my last rating", key="rating_undo", on_click=undo, disabled=mine.done == 0)
