"""Rating results: rankings from blind ratings, with the campaigns that produce them.

- Choose a campaign (made here, by `ratings create`, or imported); ties as half a win or dropped;
  bootstrap seed and resamples.
- The Bradley–Terry ranking with 95% bootstrap intervals (chart and table, with win rates and
  Wilson intervals), the win-rate matrix, per-category rankings, Likert means with intervals.
- Agreement: Cohen's kappa per pair of raters, Fleiss' kappa, Krippendorff's alpha; position bias
  (share of left wins, flagged when its interval excludes 50%); rater progress.
- The same numbers as `python -m eval_core ratings summary` (both read `rating_setup.campaign_summary`).
- Export the ratings (CSV, JSON) and the human-in-the-loop fine-tuning data (JSONL); import
  judgments from another tool (CSV); create a campaign over stored outputs.
- This page names the checkpoints: it is for whoever runs the evaluation, not for raters.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from eval_core import EvalCoreError
from eval_core.metric_tables import results_version
from eval_core.rating_campaigns import DEFAULT_RUBRIC
from eval_core.rating_exchange import export_text, import_judgments, summary_json
from eval_core.rating_figures import ranking_figure, win_matrix_figure
from pages import _cached
from pages._render import plain, problem_text
from pages._session import page_workspace


def _store(root):  # noqa: ANN001, ANN202
    from eval_core.rating_setup import open_rating_store

    return open_rating_store(root)


def _fmt(v: float | None, pct: bool = False) -> str:
    return "-" if v is None else f"{v:.1%}" if pct else f"{v:.3f}"


def create_form(root: Path) -> None:
    from eval_core.rating_setup import campaign_sources, create_campaign

    try:
        sources = campaign_sources(root)
    except EvalCoreError as exc:
        st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
        return
    if not sources:
        st.info("No stored outputs of two or more checkpoints yet: generate them on the Metrics page or with "
                "`python -m eval_core evaluate`.")
        return
    labels = {f"{s.name} · {s.generation_hash[:8]}": s for s in sources}
    with st.form("new_campaign"):
        src = labels[st.selectbox("Outputs of", list(labels), key="new_campaign_source")]
        with_outputs = [c.label for c in src.checkpoints if c.outputs]
        name = st.text_input("Campaign name", key="new_campaign_name")
        models = st.multiselect("Checkpoints to compare (two or more)", with_outputs, key="new_campaign_models")
        raters = st.text_input("Raters (comma separated names)", key="new_campaign_raters")
        c1, c2 = st.columns(2)
        overlap = int(c1.number_input("Raters per item", 1, 20, 2, key="new_campaign_overlap"))
        max_items = int(c2.number_input("Items (0 = all)", 0, 100_000, 0, key="new_campaign_items"))
        rubric = st.text_input("Rubric (comma separated, 1-5 each)", ", ".join(DEFAULT_RUBRIC), key="new_campaign_rubric")
        if st.form_submit_button("Create campaign"):
            try:
                spec, n = create_campaign(root, name, models, [r.strip() for r in raters.split(",") if r.strip()],
                                          dataset=src.name, generation_hash=src.generation_hash, overlap=overlap,
                                          rubric=[c.strip() for c in rubric.split(",") if c.strip()],
                                          max_items=max_items or None)
            except EvalCoreError as exc:
                st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
                return
            _cached.clear_results()
            st.success(plain(f"Campaign '{spec.name}' created: {n} items, {len(spec.raters)} raters."))


def import_form(root: Path) -> None:
    with st.form("import_judgments"):
        campaign = st.text_input("Import into campaign (a new name)", key="import_campaign")
        upload = st.file_uploader("Judgments CSV: item_id, rater, model_a (shown left), model_b, winner[, category]",
                                  type=["csv"], key="import_file")
        if st.form_submit_button("Import") and upload is not None:
            try:
                with _store(root) as store:
                    stored, existing = import_judgments(store, campaign, Path(upload.name).name, upload.getvalue())
            except EvalCoreError as exc:
                st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
                return
            _cached.clear_results()
            st.success(plain(f"Imported {stored} judgments into '{campaign}'" + (f" ({existing} already stored)" if existing else "")))


root = page_workspace("Rating results")
try:
    with _store(root) as store:
        campaigns = store.campaigns()
except EvalCoreError as exc:
    st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
    st.stop()

with st.expander("New campaign", expanded=not campaigns):
    create_form(root)
with st.expander("Import judgments from another tool"):
    import_form(root)
if not campaigns:
    st.stop()

c1, c2, c3, c4 = st.columns(4)
name = c1.selectbox("Campaign", [c.name for c in campaigns], key="results_campaign")
ties = c2.radio("Ties", ["half", "drop"], horizontal=True, key="results_ties",
                format_func=lambda t: "count as half a win" if t == "half" else "leave out")
seed = int(c3.number_input("Bootstrap seed", value=12345, step=1, key="results_seed"))
n_resamples = int(c4.number_input("Resamples", 50, 10_000, 1000, step=50, key="results_resamples"))
try:
    summary = _cached.rating_summary(str(root), name, results_version(str(root)), seed, n_resamples)
    with _store(root) as store:
        progress = store.progress(name)
        spec = store.campaign(name)
        changed = store.text_changes(name)
except EvalCoreError as exc:
    st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
    st.stop()

st.caption(plain(f"{summary.n_judgments} judgments · {', '.join(spec.models)} · raters {', '.join(spec.raters)} · "
                 f"bootstrap {summary.n_resamples} resamples, seed {summary.seed}"
                 + ("" if spec.imported else f" · set {spec.dataset}, generation {spec.generation_hash[:8]}")))
if changed:
    st.warning(plain(f"{len(changed)} items have other text under the same id in another campaign on set "
                     f"{spec.dataset} (the set was edited): read the two campaigns separately. Ids: "
                     f"{', '.join(changed[:10])}{' ...' if len(changed) > 10 else ''}"))
if summary.n_judgments == 0:
    st.info("No ratings yet: raters rate on the Rate outputs page.")
bt = summary.bradley_terry if ties == "half" else (summary.bradley_terry_ties_dropped or summary.bradley_terry)
if bt.strengths:
    st.subheader("Ranking")
    if not bt.connected:
        st.warning("Some checkpoints were never compared with the others, directly or through a chain of "
                   "comparisons: strengths across those groups are not set by the ratings. Rate pairs that connect them.")
    st.plotly_chart(ranking_figure(bt), key="results_ranking", width="stretch")
    wins = {w.model: w for w in summary.win_rates}
    st.dataframe(pd.DataFrame([
        {"rank": s.rank, "checkpoint": s.model, "Elo": round(s.elo), "Elo 95% CI": f"[{s.elo_low:.0f}, {s.elo_high:.0f}]",
         "strength": round(s.strength, 3), "judgments": s.n,
         "win rate": _fmt(wins[s.model].rate, True) if s.model in wins else "-",
         "win rate 95% CI": (f"[{_fmt(wins[s.model].low, True)}, {_fmt(wins[s.model].high, True)}]" if s.model in wins else "-"),
         "wins/losses/ties/both bad": (f"{wins[s.model].wins}/{wins[s.model].losses}/{wins[s.model].ties}/{wins[s.model].both_bad}"
                                       if s.model in wins else "-")}
        for s in bt.strengths]), hide_index=True, key="results_table")
    st.caption(plain(f"Bradley–Terry maximum likelihood, ties {bt.ties}; {bt.method}"))
    st.plotly_chart(win_matrix_figure(summary), key="results_matrix", width="stretch")

st.subheader("Agreement and position bias")
a1, a2, a3 = st.columns(3)
a1.metric("Fleiss' kappa", _fmt(summary.fleiss_kappa), help=f"{summary.fleiss_items} items rated by the same number of raters")
a2.metric("Krippendorff's alpha (nominal)", _fmt(summary.krippendorff_alpha), help=f"{summary.krippendorff_items} items with two or more ratings")
pb = summary.position_bias
a3.metric("Left (A) wins", _fmt(pb.share_left, True),
          help=None if pb.share_left is None else f"95% CI [{_fmt(pb.low, True)}, {_fmt(pb.high, True)}] of "
          f"{pb.left_wins + pb.right_wins} decisive judgments")
if pb.flagged:
    st.warning(plain(f"Position bias: raters chose the left output in {pb.share_left:.1%} of decisive judgments "
                     f"(95% CI {pb.low:.1%}-{pb.high:.1%}), not 50%."))
if summary.cohen_kappa:
    st.dataframe(pd.DataFrame([{"rater 1": p.rater_1, "rater 2": p.rater_2, "shared items": p.n_items,
                                "Cohen's kappa": _fmt(p.kappa), "observed agreement": _fmt(p.observed_agreement, True)}
                               for p in summary.cohen_kappa]), hide_index=True, key="results_kappa")

if summary.by_category:
    st.subheader("By category")
    cat = st.selectbox("Category", sorted(summary.by_category), key="results_category")
    st.plotly_chart(ranking_figure(summary.by_category[cat], title=f"Ranking in {cat}"), key="results_cat_ranking",
                    width="stretch")
if summary.likert:
    st.subheader("Rubric scores")
    st.dataframe(pd.DataFrame([{"checkpoint": x.model, "criterion": x.criterion, "mean": round(x.mean, 2),
                                "95% CI": "-" if x.low is None else f"[{x.low:.2f}, {x.high:.2f}]", "n": x.n}
                               for x in summary.likert]), hide_index=True, key="results_likert")

st.subheader("Rater progress")
st.dataframe(pd.DataFrame([{"rater": p.rater, "rated": p.done, "assigned": p.total, "skipped": p.skipped} for p in progress]),
             hide_index=True, key="results_progress")

st.subheader("Export")
e1, e2, e3, e4 = st.columns(4)
with _store(root) as store:
    exports = {fmt: export_text(store, name, fmt) for fmt in ("csv", "json", *(() if spec.imported else ("jsonl",)))}
e1.download_button("Ratings (CSV)", exports["csv"], f"{name}-ratings.csv", "text/csv", key="dl_csv")
e2.download_button("Ratings (JSON)", exports["json"], f"{name}-ratings.json", "application/json", key="dl_json")
e3.download_button("Summary (JSON)", summary_json(summary), f"{name}-summary.json", "application/json", key="dl_summary")
if "jsonl" in exports:
    e4.download_button(f"Fine-tuning data (JSONL, {exports['jsonl'].count(chr(10))} rows)", exports["jsonl"],
                       f"{name}-finetune.jsonl", "application/jsonl", key="dl_jsonl")
