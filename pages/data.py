"""Data: does a held-out set leak into the training data, and how do the sets compare.

- With no training set in the workspace, says where to put one (`[[training_sets]]` in ftlens.toml
  or a `train_data/` folder); with no held-out set, says so.
- Settings: the n-gram length (13, lm-evaluation-harness's decontamination n) and near duplicates
  (MinHash/LSH, Jaccard >= 0.8 of word 5-shingles, confirmed exactly). The Metrics page's
  "exclude contaminated items" uses the same settings.
- Overlap table: per training set and held-out set, the contaminated held-out items (by n-gram
  overlap, exact or near duplicate), duplicates within the held-out set, coverage gaps, and the ids.
- For a chosen pair: the leaking examples (how each was found, the training row it comes from, both
  texts shown literally), duplicates within each set, category balance and coverage gaps, length
  charts, lexical diversity and the share of should-refuse examples; the protocol below.
- Computing shows a progress bar; results are kept in the workspace's results store, so a pair whose
  rows have not changed is never recomputed.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from eval_core import EvalCoreError
from eval_core.data_figures import balance_figure, length_figure
from eval_core.data_report import leaking_items
from pages import _cached
from pages._data_views import DEFAULT_NGRAM, NEAR_KEY, NGRAM_KEY, set_texts, workspace_pairs
from pages._render import plain, problem_text
from pages._session import page_workspace


root = page_workspace("Data")
try:
    ws = _cached.workspace_summary(str(root))
except EvalCoreError as exc:
    st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
    st.stop()
if not ws.training_sets:
    st.info("This workspace has no training set to check the held-out sets against. List it in ftlens.toml "
            "under `[[training_sets]]` (name, path, kind, columns, as for `[[datasets]]`), or put its "
            ".jsonl, .csv or .parquet file in a `train_data/` folder of the workspace, then press Refresh.")
    st.stop()
if not ws.datasets:
    st.info("This workspace has no held-out set to compare with its training data.")
    st.stop()

c1, c2 = st.columns(2)
ngram = int(c1.number_input("n-gram length (words)", 1, 200, DEFAULT_NGRAM, key=NGRAM_KEY,
                            help="A held-out item is contaminated when it shares one word n-gram with a training "
                                 "row; lm-evaluation-harness uses 13. Items shorter than n words count as one gram."))
near = c2.toggle("Near duplicates (MinHash)", value=True, key=NEAR_KEY,
                 help="Also find held-out items whose word 5-shingles have Jaccard >= 0.8 with a training row")
try:
    pairs = workspace_pairs(ws, ngram, near)
except EvalCoreError as exc:
    st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
    st.stop()

leaking = [p for p in pairs if p.record["contamination"]["contaminated_ids"]]
if leaking:
    st.warning(plain("Held-out items leak from training: " + "; ".join(
        f"{p.heldout_set} ← {p.training_set}: {len(p.record['contamination']['contaminated_ids'])} item(s)"
        for p in leaking) + ". Their scores measure memory, not generalisation; the Metrics page can leave them out."))
else:
    st.success(plain(f"No held-out item shares a {ngram}-gram with, or duplicates, a training row."))

st.subheader("Overlap")
st.dataframe(pd.DataFrame([{
    "training set": p.training_set, "held-out set": p.heldout_set, "held-out rows": p.record["heldout_rows"],
    "contaminated": len(c["contaminated_ids"]),
    "share": f"{len(c['contaminated_ids']) / max(1, p.record['heldout_rows']):.1%}",
    f"{ngram}-gram overlap": len(c["overlaps"]), "exact": len(c["exact"]), "near": len(c["near"]),
    "duplicate groups in held-out": len(p.record["heldout_duplicates"]), "coverage gaps": len(p.record["coverage_gaps"]),
    "contaminated ids": ", ".join(c["contaminated_ids"]),
} for p in pairs for c in [p.record["contamination"]]]), hide_index=True, width="stretch", key="data_overlap")

labels = [f"{p.training_set} × {p.heldout_set}" for p in pairs]
default = pairs.index(leaking[0]) if leaking else 0
label = st.selectbox("Training set × held-out set", labels, index=default, key="data_pair")
pair = pairs[labels.index(label)]
record = pair.record
tabs = st.tabs(["Leaking examples", "Duplicates", "Balance", "Lengths", "Diversity"])

with tabs[0]:
    found = leaking_items(record)
    if not found:
        st.success(plain(f"No item of {pair.heldout_set} leaks from {pair.training_set}."))
    else:
        st.dataframe(pd.DataFrame(found), hide_index=True, width="stretch", key="data_leaks")
        shown = st.selectbox("Show an example", [r["held-out id"] for r in found], key="data_leak_example")
        row = next(r for r in found if r["held-out id"] == shown)
        held_texts = set_texts(str(ws.root), pair.heldout_set, True)
        train_texts = set_texts(str(ws.root), pair.training_set, False)
        left, right = st.columns(2)
        left.caption(plain(f"Held-out {pair.heldout_set} · {shown}"))
        left.code(held_texts.get(shown, ""), language=None, wrap_lines=True)
        right.caption(plain(f"Training {pair.training_set} · {row['training id']}"))
        right.code(train_texts.get(row["training id"], ""), language=None, wrap_lines=True)

with tabs[1]:
    groups = [{"set": name, "kind": g["kind"], "size": len(g["ids"]), "ids": ", ".join(g["ids"])}
              for name, key in ((pair.training_set, "train_duplicates"), (pair.heldout_set, "heldout_duplicates"))
              for g in record[key]]
    if groups:
        st.dataframe(pd.DataFrame(groups), hide_index=True, width="stretch", key="data_duplicates")
    else:
        st.success("No duplicates within either set.")

with tabs[2]:
    st.plotly_chart(balance_figure(record, train_name=pair.training_set, heldout_name=pair.heldout_set),
                    key="data_balance", width="stretch")
    gaps = record["coverage_gaps"]
    if gaps:
        st.markdown(plain(f"Categories of {pair.heldout_set} that training lacks or has below "
                          f"{record['rare_share']:.0%} of its rows:"))
        st.dataframe(pd.DataFrame(gaps), hide_index=True, width="stretch", key="data_gaps")
    else:
        st.caption("Every held-out category is covered by the training set.")
    negatives = [n for n in record["negatives"] if n["category"] is None]
    if negatives:
        st.caption(plain("Should-refuse examples: " + "; ".join(
            f"{pair.training_set if n['set'] == 'train' else pair.heldout_set} {n['negatives']} of {n['rows']} "
            f"({n['share']:.1%})" for n in negatives if n["share"] is not None)))

with tabs[3]:
    unit = st.radio("Unit", ["tokens", "chars"], horizontal=True, key="data_length_unit",
                    format_func=lambda u: "words (whitespace)" if u == "tokens" else "characters")
    st.plotly_chart(length_figure(record, unit=unit, train_name=pair.training_set, heldout_name=pair.heldout_set),
                    key="data_lengths", width="stretch")

with tabs[4]:
    st.dataframe(pd.DataFrame([{"set": pair.training_set if d["set"] == "train" else pair.heldout_set,
                                "distinct-1": d["distinct_1"], "distinct-2": d["distinct_2"],
                                "unigrams": d["unigrams"], "bigrams": d["bigrams"]} for d in record["diversity"]]),
                 hide_index=True, width="stretch", key="data_diversity")
    st.caption("distinct-n: distinct word n-grams over all n-grams of the set (higher: more varied text).")

with st.expander("How these numbers were computed"):
    st.caption(plain(f"Text compared: prompt and reference of generation sets, the text of text sets, prompt and "
                     f"answer of probes. Categories rarer than {record['rare_share']:.0%} of training count as rare. "
                     f"Record {record['schema']} v{record['schema_version']}; "
                     f"{'read from' if pair.cached else 'computed now and kept in'} the results store."))
    st.json(record["contamination"]["protocol"], expanded=True)
