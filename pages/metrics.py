"""Metrics: checkpoints x metrics with 95% intervals, by category, by step, A vs B, worst examples.

- With no stored text metrics, says so and offers "Compute metrics": the text metrics and the
  completion perplexity of every generation set for every checkpoint, with progress shown; the
  store computes only what is missing. With results, the same form is the Compute tab.
- Choose the held-out set, the generation setting when there are several (its protocol shown),
  the bootstrap seed (12345) and the number of resamples (1000).
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
from eval_core.metric_tables import describe_generation, results_version
from eval_core.significance import DEFAULT_RESAMPLES, DEFAULT_SEED
from pages import _cached
from pages import _metrics_views as views
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
view = views.View(ws.root, version, chosen, seed, n_resamples)

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
