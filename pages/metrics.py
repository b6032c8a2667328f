"""Metrics: checkpoints x metrics with 95% intervals, by category, by step, A vs B, worst examples.

- With no stored text metrics, says so and offers "Compute metrics": the text metrics and the
  completion perplexity of every generation set for every checkpoint, with progress shown; the
  store computes only what is missing. With results, the same form is the Compute tab.
- Choose the held-out set, the generation setting when there are several (its protocol shown),
  the bootstrap seed (12345) and the number of resamples (1000).
- "Exclude contaminated items": leaves out the held-out items that leak from a training set of the
  workspace (as the Data page finds them, with its settings), names them, recomputes every table
  on the rest, and shows in the Checkpoints tab how far each number moved.
- Checkpoints: one row per checkpoint, "value [low, high]" per metric, ↑/↓ for the direction,
  ★ on the best checkpoint of each metric, rows sorted by the "rank by" metric; each metric's
  signature, the seed, resamples and the generation protocol below.
- By category: one metric per checkpoint and category, the weakest category of each checkpoint
  marked ▼ and named.
- By step: the metric at each checkpoint's training step with interval error bars, the base
  model as a dashed line.
- A vs B: the paired bootstrap test of two checkpoints and the examples filtered by outcome (B
  better, A better, both wrong, only A wrong, only B wrong, all); prompts, references and outputs
  are shown as plain text, never as HTML or Markdown.
- Worst examples: the lowest-scoring examples of one checkpoint.
- A workspace or results-database problem is one error naming its cause.
"""

from __future__ import annotations

import streamlit as st

from eval_core import EvalCoreError
from eval_core.data_report import contaminated_ids
from eval_core.metric_subsets import without_examples
from eval_core.metric_tables import describe_generation, results_version
from eval_core.significance import DEFAULT_RESAMPLES, DEFAULT_SEED
from pages import _cached
from pages import _metrics_views as views
from pages._data_views import data_settings, workspace_pairs
from pages._render import plain, problem_text
from pages._session import page_workspace

root = page_workspace("Metrics")
try:
    ws = _cached.workspace_summary(str(root))
    version = results_version(ws.root)
    all_results = _cached.dataset_results(ws.root, version)
except EvalCoreError as exc:
    st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
    st.stop()

if not all_results:
    st.info("No text metrics are stored for this workspace yet. Compute them here, or run "
            "`python -m eval_core evaluate` and press Refresh.")
    views.compute_form(ws)
    st.stop()

names = list(dict.fromkeys(r.name for r in all_results))
c1, c2, c3, c4 = st.columns([2, 3, 1, 1])
name = c1.selectbox("Held-out set", names, key="metrics_dataset")
settings = {r.generation_hash: r for r in all_results if r.name == name}  # newest generation setting first
if len(settings) > 1:
    chosen_hash = c2.selectbox(
        "Generation setting", list(settings), key=f"metrics_generation_{name}",
        format_func=lambda h: f"{describe_generation(settings[h].generation_protocol)} · {h[:8]}",
    )
    chosen = settings[chosen_hash]
else:
    (chosen,) = settings.values()
    c2.caption(plain(f"Generation: {describe_generation(chosen.generation_protocol)} · setting {chosen.generation_hash[:8]}"))
seed = int(c3.number_input("Seed", 0, 2**32 - 1, DEFAULT_SEED, key="metrics_seed", help="Bootstrap seed (sacrebleu's default)"))
n_resamples = int(c4.number_input("Resamples", 100, 10_000, DEFAULT_RESAMPLES, step=100, key="metrics_resamples",
                                  help="Bootstrap resamples for intervals and paired tests"))
excluded: tuple[str, ...] = ()
if st.toggle("Exclude contaminated items", key=f"metrics_exclude_{name}",
             help="Leave out the items of this held-out set that leak from a training set of the workspace "
                  "(n-gram overlap, exact or near duplicates, as the Data page finds them) and show how far each "
                  "number moves"):
    try:
        leaks = contaminated_ids(workspace_pairs(ws, *data_settings(), heldout_names=[name]), name)
    except EvalCoreError as exc:
        st.warning(problem_text(exc.message, exc.path, exc.line, exc.field))
        leaks = None
    held = tuple(i for i in leaks or () if i in chosen.examples)
    if leaks is not None and not held:
        st.info(plain(f"No scored item of {name} leaks from the training data ({data_settings()[0]}-gram overlap, "
                      "exact and near duplicates): the numbers below are already clean."))
    elif held:
        try:
            chosen = without_examples(chosen, held)
        except EvalCoreError as exc:
            st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
            st.stop()
        excluded = held
        st.warning(plain(f"Without {len(held)} contaminated item(s) of {name}: {', '.join(held[:20])}"
                         + (" …" if len(held) > 20 else "") + ". Every table below covers the remaining "
                         f"{len(chosen.examples)} items; the Checkpoints tab shows how far each number moved."))
view = views.View(ws.root, version, chosen, seed, n_resamples, excluded)

tabs = st.tabs(["Checkpoints", "By category", "By step", "A vs B", "Worst examples", "Compute"])
sections = [views.checkpoint_table, views.by_category, views.by_step, views.a_vs_b, views.worst]
for tab, draw in zip(tabs, sections, strict=False):
    with tab:
        try:
            draw(view)
        except EvalCoreError as exc:
            st.error(problem_text(exc.message, exc.path, exc.line, exc.field))

with tabs[-1]:
    st.caption("Compute metrics for new checkpoints or under another generation setting.")
    views.compute_form(ws)
