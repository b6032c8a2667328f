"""Forgetting: what each checkpoint lost against its base model, and which checkpoint to ship.

- With no stored probe or general-text results, says so and shows the command that computes them
  (`python -m eval_core evaluate`).
- The recommended checkpoint with its reason in words, for a retention threshold the user sets
  (default 95%); when none meets it, says so and names the best retention.
- Retention by training step for a chosen probe kind and category, with paired bootstrap 95%
  intervals, beside the general retention and the domain gain on a second axis; kinds where the base
  model is at chance level are marked and explained (they are left out of the general retention).
- The domain gain vs general retention scatter with the Pareto frontier and the recommendation.
- A table per checkpoint: general retention, forgetting index, domain gain, on the frontier, the
  retention of each probe family and kind.
- The threshold chosen here is the session's: Overview and Training curves recommend the same.
- Flipped items of a chosen checkpoint (lost or gained), with base and checkpoint answers shown as
  plain text, never as HTML or Markdown.
- A workspace or results-database problem is one error naming its cause.
"""

from __future__ import annotations

import streamlit as st

from eval_core import EvalCoreError
from eval_core.forgetting import BPB, DEFAULT_RESAMPLES, DEFAULT_SEED, KINDS
from eval_core.forgetting_figures import frontier_figure, retention_step_figure
from eval_core.metric_tables import results_version
from pages import _cached
from pages._render import plain, problem_text
from pages._session import THRESHOLD_KEY, forgetting_threshold, page_workspace

HOW_TO = ("python -m eval_core evaluate --workspace {root} --dataset general_knowledge --dataset general_text "
          "--dataset support_test")


def _pct(x: float | None, signed: bool = False) -> str:
    return "undefined" if x is None else f"{x:+.1%}" if signed else f"{x:.1%}"


root = page_workspace("Forgetting")

c1, c2, c3 = st.columns(3)
threshold = c1.number_input("Retention threshold", min_value=0.01, max_value=2.0, value=forgetting_threshold(), step=0.01,
                            key="forgetting_threshold", help="least general retention a recommended checkpoint keeps; "
                            "the Overview and Training curves pages use it too")
st.session_state[THRESHOLD_KEY] = float(threshold)
seed = int(c2.number_input("Bootstrap seed", value=DEFAULT_SEED, step=1, key="forgetting_seed"))
n_resamples = int(c3.number_input("Resamples", min_value=10, max_value=10000, value=DEFAULT_RESAMPLES, step=100,
                                  key="forgetting_resamples"))
try:
    ws = _cached.workspace_summary(str(root))
    report = _cached.forgetting_report(str(ws.root), results_version(ws.root), float(threshold), seed, n_resamples)
except EvalCoreError as exc:
    if "no base model results" in exc.message:
        report = None
    else:
        st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
        st.stop()

if report is None or not any(c.retention for c in report.checkpoints):
    st.info("No probe results are stored for this workspace yet: the base model and the checkpoints need "
            "probe-suite and general-text results. Compute them, then press Refresh:")
    st.code(HOW_TO.format(root=root), language="bash")
    st.stop()

for warning in report.warnings:  # before any number: these checkpoints are not comparable with the base
    st.error(plain(warning))
rec = report.recommendation
if rec.checkpoint:
    st.success(plain(f"Recommended: {rec.reason}"))
else:
    st.warning(plain(f"No recommendation: {rec.reason}"))
st.caption(plain(f"Against {report.base}; domain set {report.domain_dataset or 'none'}; probes "
                 f"{', '.join(report.probe_datasets) or 'none'}; general text {', '.join(report.general_text_datasets) or 'none'}; "
                 f"paired bootstrap 95% intervals, {report.n_resamples} resamples, seed {report.seed}."))

kinds = [k for k in KINDS if any(r.kind == k for c in report.checkpoints for r in c.retention)]
at_chance = {r.kind: r.uninformative_reason for c in report.checkpoints for r in c.retention if not r.informative}
# Informative kinds first: a kind where the base is at chance shows noise, not forgetting.
kinds.sort(key=lambda k: (k in at_chance, k != BPB))  # general text first: every model has a signal there
st.subheader("Retention by step")
k1, k2 = st.columns(2)
kind = k1.selectbox("Probe kind", kinds, key="forgetting_kind",
                    format_func=lambda k: f"{k} (base at chance)" if k in at_chance else k)
categories = sorted({r.category for c in report.checkpoints for r in c.by_category if r.kind == kind and r.category})
category = k2.selectbox("Category", ["(all)", *categories], key="forgetting_category")
st.plotly_chart(retention_step_figure(report, kind, None if category == "(all)" else category), key="forgetting_steps", width="stretch")
if kind in at_chance:
    st.caption(plain(f"{kind}: {at_chance[kind]}, so its retention is noise; it is left out of the general retention."))
st.subheader("Domain gain vs general retention")
st.plotly_chart(frontier_figure(report), key="forgetting_frontier", width="stretch")

st.subheader("Checkpoints")
st.dataframe([
    {"checkpoint": c.label, "step": c.step, "general retention": _pct(c.general_retention),
     "forgetting index": "undefined" if c.forgetting_index is None else f"{c.forgetting_index:.3f}",
     "domain gain": _pct(c.domain_gain, signed=True), "on frontier": c.on_frontier,
     **{f"{fam.replace('_', ' ')} retention": _pct(v) for fam, v in c.family_retention.items()
        if any(v2 is not None for c2 in report.checkpoints for f2, v2 in c2.family_retention.items() if f2 == fam)},
     **{k: next((_pct(r.retention) + ("" if r.low is None else f" [{_pct(r.low)}, {_pct(r.high)}]")
                 + ("" if r.informative else " (chance)") for r in c.retention if r.kind == k), "-") for k in kinds},
     "recommended": c.label == rec.checkpoint, "blocked": c.blocked or ""}
    for c in report.checkpoints], hide_index=True)
undefined = [f"{c.label} {r.kind}{' · ' + r.category if r.category else ''}: {r.undefined_reason}"
             for c in report.checkpoints for r in (*c.retention, *c.by_category) if r.retention is None]
if undefined:
    with st.expander(f"Undefined retentions ({len(undefined)})"):
        st.code("\n".join(undefined), language=None)

st.subheader("Flipped items")
f1, f2, f3 = st.columns(3)
label = f1.selectbox("Checkpoint", [c.label for c in report.checkpoints], index=len(report.checkpoints) - 1,
                     key="forgetting_flip_checkpoint")
direction = f2.selectbox("Direction", ["lost", "gained"], key="forgetting_flip_direction",
                         format_func=lambda d: "right at base → wrong" if d == "lost" else "wrong at base → right")
chosen = next(c for c in report.checkpoints if c.label == label)
flip_kinds = sorted({f.kind for f in chosen.flips}) or kinds[:1]
flip_kind = f3.selectbox("Probe kind", flip_kinds, key="forgetting_flip_kind")
flips = [f for f in chosen.flips if f.direction == direction and f.kind == flip_kind]
st.caption(f"{len(flips)} item(s)")
if flips:
    st.dataframe([{"id": f.id, "category": f.category, "prompt": f.prompt, "answer": f.answer,
                   "base answer": f.base_answer, "checkpoint answer": f.checkpoint_answer} for f in flips],
                 hide_index=True)
