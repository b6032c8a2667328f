"""The Metrics page's sections (pages/metrics.py draws them in tabs): tables, charts, example cards.

Every number comes from eval_core.metric_tables through pages._cached. Texts from the model or the
dataset go through `st.code` (literal, never HTML or Markdown) or `plain`; tables are st.dataframe,
which draws cells as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from eval_core import EvalCoreError, WorkspaceSummary
from eval_core.metric_figures import metric_step_figure
from eval_core.metric_ranking import (
    best_by_metric,
    categories_worst_first,
    direction_arrow,
    format_interval,
    format_value,
    ranked_checkpoints,
    weakest_categories,
)
from eval_core.metric_tables import (
    PERPLEXITY,
    DatasetResults,
    ExampleComparison,
    MetricRow,
    default_wrong_below,
    example_scores,
    worst_examples,
)
from eval_core.metric_subsets import metric_shifts
from eval_core.text_metrics import ALL_METRICS, SCALE
from pages import _cached
from pages._render import plain, problem_text

MAX_SHOWN = 20  # example cards drawn at once; the table above them lists every match
DEFAULT_MAX_NEW_TOKENS = 48  # evaluate_workspace's and `python -m eval_core evaluate`'s default: shared cache
OUTCOME_LABELS = {
    "b_better": "B better", "a_better": "A better", "both_wrong": "Both wrong",
    "only_a_wrong": "Only A wrong", "only_b_wrong": "Only B wrong", "all": "All",
}
OUTCOME_TEXT = {
    "b_better": "B scores higher than A", "a_better": "A scores higher than B",
    "both_wrong": "both are wrong", "only_a_wrong": "A is wrong and B is not",
    "only_b_wrong": "B is wrong and A is not", "all": "all examples",
}


@dataclass(frozen=True)
class View:
    """What every section needs: the chosen results and the bootstrap settings."""

    root: str
    version: tuple | None
    results: DatasetResults
    seed: int
    n_resamples: int
    excluded: tuple[str, ...] = ()  # example ids left out (contaminated items); `results` is without them

    def rows(self, metrics: list[str], by_category: bool = False, *, everything: bool = False) -> list[MetricRow]:
        """Rows over the kept examples (`everything`: over all, excluded ones included)."""
        r = self.results
        return _cached.metric_rows(self.root, self.version, r.name, r.generation_hash, tuple(metrics), by_category,
                                   self.seed, self.n_resamples, () if everything else self.excluded)

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.results.checkpoints]


def header(metric: str) -> str:
    return f"{metric} {direction_arrow(metric)}"


def metric_choice(view: View, label: str, key: str, metrics: list[str] | None = None, where=st) -> str:
    options = metrics if metrics is not None else view.results.metrics
    return where.selectbox(label, options, index=options.index("bleu") if "bleu" in options else 0, key=key,
                        format_func=header)


def checkpoint_table(view: View) -> None:
    metrics = view.results.metrics
    rank_by = metric_choice(view, "Rank by", "metrics_rank_by")
    rows = view.rows(metrics)
    cells = {(r.checkpoint, r.metric): r for r in rows}
    best = best_by_metric(rows)
    steps = {c.label: c.step for c in view.results.checkpoints}
    table = []
    for rank, label in enumerate(ranked_checkpoints(rows, rank_by), start=1):
        line: dict = {"rank": rank, "checkpoint": label, "step": "" if steps[label] is None else str(steps[label])}
        for m in metrics:
            row = cells.get((label, m))
            line[header(m)] = "" if row is None else format_interval(row.interval) + (" ★" if best.get(m) == label else "")
        table.append(line)
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch", key="metrics_table")
    st.caption(f"Value [95% interval]; ↑ higher is better, ↓ lower is better; ★ best checkpoint of the metric. "
               f"Sorted by {plain(rank_by)}. Intervals: bootstrap over the {rows[0].interval.n if rows else 0} examples, "
               f"seed {view.seed}, {view.n_resamples} resamples.")
    if view.excluded:
        shifts(view, metrics)
    with st.expander("How these numbers were computed"):
        signatures = {r.metric: (r.signature, r.interval.method) for r in rows}
        st.dataframe(pd.DataFrame([{"metric": header(m), "signature": sig, "interval": method}
                                   for m, (sig, method) in signatures.items()]), hide_index=True, width="stretch")
        st.caption(plain(f"Held-out set {view.results.name}; generation setting {view.results.generation_hash}; "
                         f"bootstrap seed {view.seed}, {view.n_resamples} resamples."))
        st.json(view.results.generation_protocol, expanded=True)


def shifts(view: View, metrics: list[str]) -> None:
    """How far each number moves when the excluded (contaminated) items are left out."""
    moved = metric_shifts(view.rows(metrics, everything=True), view.rows(metrics))
    st.markdown("**How the numbers move without the contaminated items**")
    st.dataframe(pd.DataFrame([
        {"checkpoint": s.checkpoint, "metric": header(s.metric), "all items": format_value(s.metric, s.all_value),
         "without contaminated": format_value(s.metric, s.kept_value),
         "change": ("+" if s.change >= 0 else "") + format_value(s.metric, s.change),
         "examples": f"{s.kept_examples} of {s.all_examples}"} for s in moved]),
        hide_index=True, width="stretch", key="metrics_shifts")


def by_category(view: View) -> None:
    metric = metric_choice(view, "Metric", "metrics_category_metric")
    rows = [r for r in view.rows([metric], by_category=True) if r.metric == metric]
    categories = sorted({r.category for r in rows if r.category is not None})
    if not categories or categories == [""]:
        st.info("This held-out set has no category column, so there is nothing to split by.")
        return
    weakest = weakest_categories(rows, metric)
    sizes = {r.category: r.interval.n for r in rows if r.category is not None}
    columns = {c: f"{c or '(none)'} (n={sizes[c]})" for c in categories}
    table = []
    for label in view.labels:
        line = {"checkpoint": label}
        for r in rows:
            if r.checkpoint != label:
                continue
            text = format_interval(r.interval)
            if r.category is None:
                line["all"] = text
            else:
                line[columns[r.category]] = text + (" ▼" if weakest.get(label) == r.category else "")
        table.append(line)
    frame = pd.DataFrame(table)
    st.dataframe(frame.style.map(lambda v: "background-color: rgba(255, 75, 75, 0.18)" if str(v).endswith("▼") else ""),
                 hide_index=True, width="stretch", key="metrics_category_table")
    st.caption(f"{plain(header(metric))} per category, value [95% interval]; ▼ the checkpoint's weakest category.")
    last = view.labels[-1]
    worst_first = categories_worst_first(rows, metric, last)
    st.markdown(plain(f"Weakest categories of {last} by {metric}: "
                      + ", ".join(f"{r.category} ({format_value(metric, r.interval.value)})" for r in worst_first[:3])))
    st.markdown(plain("Weakest category per checkpoint: " + "; ".join(f"{c}: {w}" for c, w in weakest.items())))


def by_step(view: View) -> None:
    metric = metric_choice(view, "Metric", "metrics_step_metric")
    rows = view.rows([metric])
    steps = [r for r in rows if r.step is not None]
    if not steps:
        st.info("No checkpoint with a training step has results for this metric.")
        return
    base = next((r for r in rows if r.run is None), None)
    st.plotly_chart(metric_step_figure(steps, base=base), width="stretch", key="metrics_step_chart")
    st.caption(f"Error bars: 95% bootstrap intervals (seed {view.seed}, {view.n_resamples} resamples). "
               "The Training curves page can draw this metric beside the loss curves.")


def a_vs_b(view: View) -> None:
    labels = view.labels
    metrics = [m for m in view.results.metrics if m != PERPLEXITY]
    if len(labels) < 2 or not metrics:
        st.info("A vs B needs text metrics of at least two checkpoints.")
        return
    c1, c2, c3, c4 = st.columns(4)
    a = c1.selectbox("A", labels, index=0, key="ab_a")
    b = c2.selectbox("B", labels, index=len(labels) - 1, key="ab_b")
    metric = metric_choice(view, "Metric", "ab_metric", metrics, c3)
    step = 0.05 if SCALE.get(metric) == 1.0 else 1.0
    # One widget per metric, so the threshold starts at that metric's default and each keeps its own.
    wrong_below = float(c4.number_input("Wrong below", 0.0, SCALE.get(metric, 100.0), default_wrong_below(metric), step,
                                        key=f"ab_wrong_below_{metric}",
                                        help="An example is wrong for a checkpoint when its value is below this"))
    if a == b:
        st.info("Choose two different checkpoints.")
        return
    r = view.results
    cmp = _cached.comparison(view.root, view.version, r.name, r.generation_hash, a, b, metric, wrong_below,
                             view.seed, view.n_resamples, view.excluded)
    p = cmp.paired
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(plain(f"A: {a}"), format_value(metric, p.value_a))
    m2.metric(plain(f"B: {b}"), format_value(metric, p.value_b), delta=f"{p.delta:+.4g}")
    m3.metric("p-value", f"{p.p_value:.4f}")
    m4.metric("B better / A better / ties", f"{p.b_better} / {p.a_better} / {p.ties}")
    verdict = (f"B is {'better' if p.delta > 0 else 'worse'} than A on {metric} (p = {p.p_value:.4f} < 0.05)."
               if p.p_value < 0.05 and p.delta != 0 else
               f"No significant difference on {metric} at the 5% level (p = {p.p_value:.4f}).")
    st.markdown(plain(verdict))
    sign = "" if p.sign_test_p is None else f"; sign test over per-example wins p = {p.sign_test_p:.4f}"
    st.caption(plain(f"{p.method}; {p.n} examples, {p.n_resamples} resamples, seed {p.seed}{sign}."))

    outcome = st.radio("Show examples where", list(OUTCOME_LABELS), format_func=OUTCOME_LABELS.get, horizontal=True,
                       key="ab_outcome")
    chosen = sorted(cmp.filter(outcome), key=lambda e: -abs(e.value_b - e.value_a))  # biggest differences first
    st.markdown(plain(f"{len(chosen)} of {len(cmp.examples)} examples: {OUTCOME_TEXT[outcome]} "
                      f"(wrong: {metric} below {format_value(metric, cmp.wrong_below)})."))
    if not chosen:
        return
    st.dataframe(pd.DataFrame([{"id": e.example.id, "category": e.example.category, f"A {metric}": e.value_a,
                                f"B {metric}": e.value_b, "B - A": e.value_b - e.value_a} for e in chosen]),
                 hide_index=True, width="stretch", key="ab_examples_table")
    if len(chosen) > MAX_SHOWN:
        st.caption(f"Showing the first {MAX_SHOWN} of {len(chosen)} (largest differences first); the table lists all.")
    for e in chosen[:MAX_SHOWN]:
        example_card(view, e, a, b, metric)


def scores_line(scores: dict[str, float]) -> str:
    return " · ".join(f"{m} {format_value(m, v)}" for m, v in scores.items())


def text_block(label: str, text: str, where=st) -> None:
    """A caption and the text, literal (st.code never interprets HTML or Markdown)."""
    where.caption(plain(label if text else f"{label} (empty)"))
    where.code(text, language=None, wrap_lines=True)


def example_card(view: View, e: ExampleComparison, a: str, b: str, metric: str) -> None:
    with st.container(border=True):
        st.markdown(plain(f"{e.example.id} · category {e.example.category or '(none)'} · {metric}: "
                          f"A {format_value(metric, e.value_a)} → B {format_value(metric, e.value_b)}"))
        text_block("Prompt", e.example.prompt)
        text_block("Reference", e.example.reference)
        left, right = st.columns(2)
        text_block(f"Output A ({a}): {scores_line(example_scores(view.results, a, e.example.id))}", e.output_a, left)
        text_block(f"Output B ({b}): {scores_line(example_scores(view.results, b, e.example.id))}", e.output_b, right)


def worst(view: View) -> None:
    labels = view.labels
    c1, c2, c3 = st.columns([2, 2, 1])
    label = c1.selectbox("Checkpoint", labels, index=len(labels) - 1, key="worst_checkpoint")
    metric = metric_choice(view, "Metric", "worst_metric", where=c2)
    k = int(c3.number_input("How many", 1, 50, 5, key="worst_k"))
    found = worst_examples(view.results, label, metric, k)
    st.caption(plain(f"The {len(found)} examples of {label} with the {'lowest' if direction_arrow(metric) == '↑' else 'highest'} "
                     f"{metric} (output: the generation under this setting)."))
    for example, output, value in found:
        with st.container(border=True):
            st.markdown(plain(f"{example.id} · category {example.category or '(none)'} · {metric} {format_value(metric, value)}"))
            text_block("Prompt", example.prompt)
            text_block("Reference", example.reference)
            text_block(f"Output: {scores_line(example_scores(view.results, label, example.id))}", output)


def compute_form(ws: WorkspaceSummary) -> None:
    """Evaluate every checkpoint on the generation sets (text metrics + completion perplexity), then rerun."""
    from eval_core.evaluation import evaluate_workspace
    from eval_core.generation import GenerationConfig

    sets = [d.name for d in ws.datasets if d.kind == "generation"]
    if not sets:
        st.info("This workspace has no generation set (prompts with references), so there is nothing to score.")
        return
    n_models = len(ws.checkpoints) + (1 if ws.base_model else 0)
    max_new = int(st.number_input("Max new tokens per output", 1, 1024, DEFAULT_MAX_NEW_TOKENS, key="metrics_max_new_tokens",
                                  help="Greedy decoding; results are stored per generation setting"))
    st.caption(plain(f"Generates an output for every prompt of {', '.join(sets)} with each of the {n_models} models, then "
                     f"scores {', '.join(ALL_METRICS)} and {PERPLEXITY}. Stored results are reused: only what is "
                     "missing is computed."))
    if not st.button("Compute metrics", key="metrics_compute", type="primary"):
        return
    with st.status("Computing metrics…", expanded=True) as status:
        def progress_factory(description: str, total: int):
            bar = st.progress(0.0, text=plain(description))
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                bar.progress(min(done[0] / max(total, 1), 1.0), text=plain(f"{description}: {done[0]}/{total}"))

            return advance

        try:
            summary = evaluate_workspace(ws.root, dataset_names=sets, metric_names=[*ALL_METRICS, PERPLEXITY],
                                         generation_config=GenerationConfig(max_new_tokens=max_new),
                                         progress_factory=progress_factory)
        except EvalCoreError as exc:
            status.update(label="Computing metrics failed", state="error")
            st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
            return
        status.update(label=f"Metrics computed: {summary.computed} new, {summary.cached} reused", state="complete")
    _cached.clear_results()
    st.rerun()
