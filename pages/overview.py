"""Overview: what is in the workspace (runs, checkpoints, datasets, logs) and what is wrong with it.

- With no workspace chosen, offers the built-in demo: opens it when built, else builds it here with
  progress (a real training run, about 2.5 minutes), then opens it.
- A missing folder or a broken ftlens.toml shows one st.error naming the file, line and field.
- Problems with single checkpoints or datasets show as errors/warnings above the tables; the rest
  of the workspace is still shown.
- "Which checkpoint to ship": the forgetting analysis's recommended checkpoint and its reason (or
  why none qualifies), at the threshold chosen on the Forgetting page, with a link there.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from eval_core import EvalCoreError, WorkspaceSummary, build_demo_workspace, is_demo_built
from pages import _cached
from pages._forgetting_views import recommendation_banner
from pages._render import chart_text, plain, plain_frame, problem_text
from pages._session import current_workspace, demo_dir, demo_settings, set_workspace
from pages._team import page_guard

STAGE_LABELS = {
    "tokenizer": "Training the tokenizer",
    "base_model": "Pretraining the base model",
    "heldout": "Writing held-out sets",
    "finetune": "Fine-tuning (saving checkpoints)",
    "campaign": "Generating answers for the rating campaign",
    "done": "Done",
}


def offer_demo() -> None:
    st.title("Fine-Tune Lens")
    st.write(
        "Pick the checkpoint to ship: training curves, perplexity and text metrics per checkpoint, "
        "forgetting versus the base model, and blind side-by-side ratings."
    )
    st.info(
        "No workspace is open. Enter a workspace folder in the sidebar, start the app with "
        "`--workspace DIR` or `FTLENS_WORKSPACE`, or use the built-in demo workspace."
    )
    demo = demo_dir()
    settings = demo_settings()
    if is_demo_built(demo, settings):
        st.button("Open the demo workspace", key="open_demo", type="primary", on_click=set_workspace, args=(demo,))
        return
    st.write(
        "The demo is built once, by a real training run on this machine (about 2.5 minutes on "
        "2 CPU cores): a small GPT-2-style model pretrained on general English, then fine-tuned on "
        "a customer-support set, saving checkpoints as Trainer does."
    )
    if st.button("Build the demo workspace", key="build_demo", type="primary"):
        with st.status("Building the demo workspace…", expanded=True) as status:
            bar = st.progress(0.0, text="Starting")

            def progress(stage: str, fraction: float, message: str) -> None:
                label = STAGE_LABELS.get(stage, stage)
                bar.progress(min(max(fraction, 0.0), 1.0), text=f"{label}: {message}")

            try:
                build_demo_workspace(demo, settings, progress=progress)
            except EvalCoreError as exc:
                status.update(label="Building the demo failed", state="error")
                st.error(plain(exc))
                return
            status.update(label="Demo workspace built", state="complete")
        set_workspace(demo)
        _cached.clear()
        st.rerun()


def show_problems(ws: WorkspaceSummary) -> None:
    for p in ws.problems:
        text = problem_text(p.message, p.path, p.line, p.field)
        (st.error if p.severity == "error" else st.warning)(text)


def checkpoint_table(ws: WorkspaceSummary) -> pd.DataFrame:
    models = ([ws.base_model] if ws.base_model else []) + list(ws.checkpoints)
    return pd.DataFrame(
        [
            {
                "run": c.run or "(base model)",
                "checkpoint": c.name,
                "step": "" if c.step is None else str(c.step),
                "kind": c.kind,
                "weights": c.weight_format,
                "parameters": "" if c.parameter_count is None else f"{c.parameter_count:,}",
                "size (MB)": f"{c.size_bytes / 1e6:.1f}",
                "path": c.path,
                "fingerprint": c.fingerprint.split(":")[-1][:12],
            }
            for c in models
        ]
    )


def show_workspace(ws: WorkspaceSummary) -> None:
    st.title(plain(ws.name))  # a folder or config name: any text
    st.caption(plain(f"{ws.root} · config: {ws.config_file or 'none (discovered)'}"))
    show_problems(ws)
    cols = st.columns(4)
    cols[0].metric("Runs", len(ws.runs))
    cols[1].metric("Checkpoints", len(ws.checkpoints))
    cols[2].metric("Held-out sets", len(ws.datasets))
    cols[3].metric("Training-log files", len(ws.log_files))

    st.subheader("Which checkpoint to ship")
    recommendation_banner(ws.root)

    st.subheader("Base model and checkpoints")
    if ws.base_model is None and not ws.checkpoints:
        st.info("No checkpoints found. A run folder holds checkpoint-<step>/ folders (see README).")
    else:
        # st.table renders real text (not a canvas), so values are selectable and searchable; its
        # cells are Markdown, so run and folder names are escaped.
        st.table(plain_frame(checkpoint_table(ws).set_index("checkpoint")))

    st.subheader("Held-out sets")
    if not ws.datasets:
        st.info("No held-out sets found: add .jsonl/.csv/.parquet files or list them in ftlens.toml.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "name": d.name,
                        "kind": d.kind,
                        "rows": d.rows,
                        "categories": len(d.categories),
                        "columns": ", ".join(f"{r}←{c}" for r, c in d.column_map.items()),
                        "path": d.path,
                        "fingerprint": d.fingerprint.split(":")[-1][:12],
                    }
                    for d in ws.datasets
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        if ws.training_sets:  # what the model was fine-tuned on: read by the data diagnostics, never scored
            st.caption(plain("Training sets (for `python -m eval_core data`): " + ", ".join(
                f"{t.name} ({t.rows} rows, {t.path})" for t in ws.training_sets)))
        balance = [  # Plotly draws <b>, <a href>… in tick labels and facet titles: names are escaped
            {"dataset": chart_text(d.name), "category": chart_text(cat), "rows": n}
            for d in ws.datasets
            for cat, n in d.categories.items()
        ]
        if balance:
            fig = px.bar(
                pd.DataFrame(balance), x="category", y="rows", facet_col="dataset",
                title="Category balance (rows per category)",
            )
            fig.update_xaxes(matches=None, tickangle=-40)
            fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
            st.plotly_chart(fig, width="stretch", key="category_balance")

    st.subheader("Training logs")
    if not ws.log_files:
        st.info("No training logs found (trainer_state.json, TensorBoard events, metrics.csv).")
    else:
        st.dataframe(
            pd.DataFrame([{"run": f.run, "kind": f.kind, "KB": round(f.size_bytes / 1e3, 1), "path": f.path} for f in ws.log_files]),
            hide_index=True,
            width="stretch",
        )


page_guard("Overview")
root = current_workspace()
if root is None:
    offer_demo()
else:
    try:
        summary = _cached.workspace_summary(str(root))
    except EvalCoreError as exc:
        st.title("Workspace")
        st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
        st.stop()
    show_workspace(summary)
