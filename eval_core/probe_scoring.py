"""Probe scoring: multiple-choice knowledge by log-likelihood, cloze recall by greedy completion.

Definitions (docs/probe-suites.md gives them with examples):
- log-likelihood of a choice: the sum over the choice's tokens of log p(token | prompt, earlier choice
  tokens), the choice joined to the raw prompt (no chat template) as
  `eval_core.nll_scoring.completion_docs` joins a reference: with one space when neither the prompt
  ends nor the choice starts with whitespace (lm-evaluation-harness's default `target_delimiter`).
  Computed by `nll_scoring.score_completions` (batched, batch-size invariant): ll = -nll_sum.
- `mc_acc`: 1 when the choice of highest log-likelihood is the answer, else 0.
- `mc_acc_norm`: 1 when the choice of highest log-likelihood divided by `len(choice)` is the answer.
  `len` counts characters (Unicode code points) of the choice text without the delimiter, exactly
  as lm-evaluation-harness's `acc_norm` (`completion_len = len(choice)` in
  `ConfigurableTask.process_results`); its UTF-8 byte variant is lm-eval's separate `acc_bytes`.
  Both break ties towards the first choice, as `numpy.argmax` does.
- `cloze_exact`: 1 when `normalize_answer(first line of the output) == normalize_answer(answer)`.
- `cloze_contains`: 1 when the normalised answer's words occur as a contiguous run of the normalised
  first line's words ("paris" is in "it is paris", not in "parisian"); an answer that normalises to
  nothing is contained only in a line that does too.
  The output is the checkpoint's greedy continuation of the raw prompt (no chat template), stopped
  at the first newline (`CLOZE_GENERATION`); `normalize_answer` is eval_core.text_metrics' (NFKC,
  case folding, punctuation and English articles removed, whitespace collapsed).

Stored per example in `text_scores` (value 0/1; stats a JSON list whose first entry is that 0/1, so
the corpus value is the mean of the first statistic):
- `mc_acc`, `mc_acc_norm`: [correct, chosen index, answer index, ll_0, ..., ll_{k-1}] (nats, raw
  log-likelihoods for both metrics; the lengths come from the dataset's choices);
- `cloze_exact`, `cloze_contains`: [match]; the output is in `generations` under the cloze
  generation settings' hash.
Multiple-choice metrics apply to items with `choices`; cloze metrics to every item.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from eval_core.errors import EvalCoreError
from eval_core.generation import GenerationConfig, generate
from eval_core.heldout_sets import HeldoutSet
from eval_core.nll_scoring import PerplexityConfig, score_completions
from eval_core.results_store import ResultsStore
from eval_core.text_metrics import normalize_answer

PROBE_PROTOCOL_VERSION = 1
MC_METRICS: tuple[str, ...] = ("mc_acc", "mc_acc_norm")
CLOZE_METRICS: tuple[str, ...] = ("cloze_exact", "cloze_contains")
PROBE_METRICS: tuple[str, ...] = MC_METRICS + CLOZE_METRICS
PROBE_METRIC_DESCRIPTIONS: dict[str, str] = {
    "mc_acc": "multiple choice: share of items whose highest log-likelihood choice is the answer (lm-eval acc, 0-1)",
    "mc_acc_norm": "multiple choice: the same with log-likelihood / characters of the choice (lm-eval acc_norm, 0-1)",
    "cloze_exact": "cloze: share of greedy first lines equal to the answer after normalisation (0-1)",
    "cloze_contains": "cloze: share of greedy first lines containing the normalised answer as whole words (0-1)",
}
CLOZE_GENERATION = GenerationConfig(max_new_tokens=16, stop=("\n",), use_chat_template=False, batch_size=64)
"""Greedy, raw prompt, first line only. 16 new tokens: the longest shipped answer is 10 tokens for the
demo tokenizer (" Simón Bolívar"), so a few words beyond it still fit; rows end at the first newline.
Batches of 64: cloze prompts are one short line, and per-step overhead dominates small models (the
429 shipped probes take 1.5 s instead of 3.0 s at 16 on a demo checkpoint; greedy outputs are the
same at any batch size)."""


@dataclass(frozen=True)
class MultipleChoiceConfig:
    """One multiple-choice metric under one log-likelihood protocol (chat template always off)."""

    metric: str
    perplexity: PerplexityConfig = PerplexityConfig(use_chat_template=False)

    def __post_init__(self) -> None:
        _check_metric(self.metric, MC_METRICS)
        object.__setattr__(self, "perplexity", replace(self.perplexity, use_chat_template=False))

    def to_dict(self) -> dict:
        return {"protocol_version": PROBE_PROTOCOL_VERSION, "metric": self.metric, "signature": signature(self.metric),
                "perplexity": self.perplexity.to_dict(), "perplexity_config_hash": self.perplexity.config_hash()}

    def config_hash(self) -> str:
        key = {"v": PROBE_PROTOCOL_VERSION, "metric": self.metric, "perplexity": self.perplexity.config_hash()}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ClozeConfig:
    """One cloze metric over the outputs of one generation configuration (chat template always off)."""

    metric: str
    generation: GenerationConfig = CLOZE_GENERATION

    def __post_init__(self) -> None:
        _check_metric(self.metric, CLOZE_METRICS)
        object.__setattr__(self, "generation", replace(self.generation, use_chat_template=False))

    def to_dict(self) -> dict:
        # Not "generation_config_hash": metric_tables groups generation-set text metrics by that key.
        return {"protocol_version": PROBE_PROTOCOL_VERSION, "metric": self.metric, "signature": signature(self.metric),
                "generation": self.generation.to_dict(), "cloze_generation_hash": self.generation.config_hash()}

    def config_hash(self) -> str:
        key = {"v": PROBE_PROTOCOL_VERSION, "metric": self.metric, "generation": self.generation.config_hash()}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


ProbeConfig = MultipleChoiceConfig | ClozeConfig


def _check_metric(metric: str, known: tuple[str, ...]) -> None:
    if metric not in known:
        raise EvalCoreError(f"'{metric}' is not one of {', '.join(known)}", field="metric")


def probe_config(metric: str, perplexity: PerplexityConfig, generation: GenerationConfig) -> ProbeConfig:
    """The configuration of `metric`: the log-likelihood protocol or the cloze generation settings."""
    return MultipleChoiceConfig(metric, perplexity) if metric in MC_METRICS else ClozeConfig(metric, generation)


def signature(metric: str) -> str:
    """How the value was computed, in one line (shown beside it by `results`)."""
    norm = "norm:nfkc+casefold+punct+articles+ws"
    return {
        "mc_acc": f"mc_acc|ll:sum-logprob(' '+choice|prompt)|pick:argmax-first|v{PROBE_PROTOCOL_VERSION}",
        "mc_acc_norm": f"mc_acc_norm|ll/len(choice) chars (lm-eval acc_norm)|pick:argmax-first|v{PROBE_PROTOCOL_VERSION}",
        "cloze_exact": f"cloze_exact|greedy first line == answer|{norm}|v{PROBE_PROTOCOL_VERSION}",
        "cloze_contains": f"cloze_contains|answer words in greedy first line|{norm}|v{PROBE_PROTOCOL_VERSION}",
    }[metric]


# --- pure metric functions ------------------------------------------------------------------------


def answer_index(choices: Sequence[str], answer: str | int) -> int:
    """The answer's 0-based position among `choices` (the first equal choice, as lm-eval's `index`).

    Example:
        >>> answer_index(["Rome", "Paris"], "Paris"), answer_index(["Rome", "Paris"], 0)
        (1, 0)
    """
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise EvalCoreError(f"answer index {answer} is outside the {len(choices)} choices", field="answer")
        return answer
    if answer not in choices:
        raise EvalCoreError(f"answer {answer!r} is not one of the choices {list(choices)}", field="answer")
    return list(choices).index(answer)


def argmax_first(values: Sequence[float]) -> int:
    """The index of the largest value, the first one on ties (numpy.argmax's rule).

    Example:
        >>> argmax_first([-3.0, -1.0, -1.0])
        1
    """
    if not values:
        raise EvalCoreError("no choices to pick from")
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def multiple_choice_stats(loglikelihoods: Sequence[float], choices: Sequence[str], answer: int) -> dict[str, list[float]]:
    """`mc_acc` and `mc_acc_norm` statistics of one item: [correct, chosen, answer, *loglikelihoods].

    Example:
        >>> s = multiple_choice_stats([-4.0, -6.0], ["ab", "abcdef"], answer=1)
        >>> s["mc_acc"][:3], s["mc_acc_norm"][:3]   # -4/2 = -2 < -6/6 = -1: normalising flips the pick
        ([0.0, 0.0, 1.0], [1.0, 1.0, 1.0])
    """
    if len(loglikelihoods) != len(choices):
        raise EvalCoreError(f"{len(loglikelihoods)} log-likelihoods for {len(choices)} choices")
    lls = [float(v) for v in loglikelihoods]
    chosen = argmax_first(lls)
    # lm-eval divides by len(choice) with no guard; an empty choice would divide by zero there too.
    chosen_norm = argmax_first([ll / max(len(c), 1) for ll, c in zip(lls, choices, strict=True)])
    return {
        "mc_acc": [float(chosen == answer), float(chosen), float(answer), *lls],
        "mc_acc_norm": [float(chosen_norm == answer), float(chosen_norm), float(answer), *lls],
    }


def first_line(text: str) -> str:
    """The output up to its first line break.

    Example:
        >>> first_line(" Paris.\\nThe capital")
        ' Paris.'
    """
    return text.split("\n", 1)[0].split("\r", 1)[0]


def cloze_stats(output: str, answer: str) -> dict[str, list[float]]:
    """`cloze_exact` and `cloze_contains` statistics of one output: [match] each.

    Example:
        >>> cloze_stats(" the Pacific Ocean, the largest", "Pacific Ocean")
        {'cloze_exact': [0.0], 'cloze_contains': [1.0]}
    """
    line, target = normalize_answer(first_line(output)), normalize_answer(answer)
    exact = line == target
    contains = exact or (bool(target) and f" {target} " in f" {line} ")
    return {"cloze_exact": [float(exact)], "cloze_contains": [float(contains)]}


# --- the model side ---------------------------------------------------------------------------------


def choice_loglikelihoods(model, tokenizer, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                          config: PerplexityConfig = PerplexityConfig(use_chat_template=False),
                          progress: Callable[[int], None] | None = None) -> list[list[float]]:
    """Log-likelihood (nats) of each choice given its item's prompt; all pairs in one batched pass.

    Example:
        >>> choice_loglikelihoods(lm.model, lm.tokenizer, ["Water boils at"], [["100 C", "5 C"]])  # doctest: +SKIP
        [[-7.91, -9.02]]
    """
    if len(prompts) != len(choices):
        raise EvalCoreError(f"{len(prompts)} prompts but {len(choices)} choice lists")
    flat_prompts = [p for p, cs in zip(prompts, choices, strict=True) for _ in cs]
    flat_choices = [c for cs in choices for c in cs]
    config = replace(config, use_chat_template=False)  # a cloze prompt is plain text, not a chat turn
    stats = score_completions(model, tokenizer, flat_prompts, flat_choices, config, progress)
    out, i = [], 0
    for cs in choices:
        out.append([-stats[i + j].nll_sum for j in range(len(cs))])
        i += len(cs)
    return out


# --- the evaluation task ------------------------------------------------------------------------------


@dataclass
class ProbeTask:
    """The missing (example id, example hash) keys of one probe metric, and the cell that counts them."""

    config: ProbeConfig
    missing: list[tuple[str, str]]
    cell: object  # evaluation.CellResult


def applicable(metric: str, ds: HeldoutSet) -> list[bool]:
    """Per row: does `metric` apply (multiple choice needs choices; cloze applies to every item)?"""
    if metric in CLOZE_METRICS:
        return [True] * len(ds.rows)
    if "choices" not in ds.column_map:
        return [False] * len(ds.rows)
    return [isinstance(c, list) and len(c) > 0 for c in ds.values("choices")]


def resolve_answers(ds: HeldoutSet) -> HeldoutSet:
    """The set with every answer given as a choice index replaced by that choice's text, so that
    completion perplexity and cloze matching score the text. Rows are copied, never changed."""
    if ds.kind != "probe" or "choices" not in ds.column_map:
        return ds
    a, c = ds.column_map["answer"], ds.column_map["choices"]
    if not any(isinstance(r.get(a), int) and not isinstance(r.get(a), bool) for r in ds.rows):
        return ds
    rows = [{**r, a: r[c][r[a]]} if isinstance(r.get(a), int) and not isinstance(r.get(a), bool) else r for r in ds.rows]
    return replace(ds, rows=rows)


def needs_model(store: ResultsStore, tasks: Sequence[ProbeTask], checkpoint_fp: str, dataset: str) -> bool:
    """True when a task cannot be finished from stored outputs (multiple choice always needs the model)."""
    for t in tasks:
        if not t.missing:
            continue
        if isinstance(t.config, MultipleChoiceConfig):
            return True
        stored = store.generations_of(checkpoint_fp, dataset, t.config.generation.config_hash())
        if any(k not in stored for k in t.missing):
            return True
    return False


def probe_work(tasks: Sequence[ProbeTask]) -> int:
    """Examples `run_probe_tasks` will process (once per multiple-choice or cloze group), for progress."""
    return sum(len(keys) for _, keys in _groups(tasks))


def _groups(tasks: Sequence[ProbeTask]) -> list[tuple[list[ProbeTask], list[tuple[str, str]]]]:
    """Tasks sharing one model pass (same log-likelihood protocol, or same generation settings),
    with the union of their missing keys."""
    by: dict[object, list[ProbeTask]] = {}
    for t in tasks:
        setting = t.config.perplexity if isinstance(t.config, MultipleChoiceConfig) else t.config.generation
        by.setdefault((type(t.config), setting), []).append(t)
    return [(group, sorted({k for t in group for k in t.missing})) for group in by.values()]


def run_probe_tasks(
    store: ResultsStore,
    lm,  # LoadedModel or None when `needs_model` said no
    ds: HeldoutSet,
    all_ids: Sequence[str],
    tasks: Sequence[ProbeTask],
    checkpoint_fp: str,
    dataset: str,
    chunk_size: int = 64,
    advance: Callable[[int], None] | None = None,
) -> None:
    """Compute the missing probe rows in chunks, one transaction each (cloze outputs are stored first,
    then their scores, so an interrupted run re-scores stored outputs without generating again).

    `ds` must have its answers resolved to text (`resolve_answers`).
    """
    index = {eid: i for i, eid in enumerate(all_ids)}
    cols = ds.column_map
    key = {"checkpoint_fp": checkpoint_fp, "dataset": dataset}
    for group, wanted in _groups(tasks):
        wanted.sort(key=lambda k: index[k[0]])
        mc = isinstance(group[0].config, MultipleChoiceConfig)
        gen = None if mc else group[0].config.generation  # type: ignore[union-attr]
        stored = {} if gen is None else store.generations_of(checkpoint_fp, dataset, gen.config_hash())
        for start in range(0, len(wanted), chunk_size):
            keys = wanted[start : start + chunk_size]
            rows = [ds.rows[index[eid]] for eid, _ in keys]
            if mc:
                if lm is None:
                    raise EvalCoreError("internal: multiple-choice scoring was asked for without a model")
                choices = [r[cols["choices"]] for r in rows]
                lls = choice_loglikelihoods(lm.model, lm.tokenizer, [r[cols["prompt"]] for r in rows], choices,
                                            group[0].config.perplexity)  # type: ignore[union-attr]
                stats = [multiple_choice_stats(ll, cs, answer_index(cs, r[cols["answer"]]))
                         for ll, cs, r in zip(lls, choices, rows, strict=True)]
            else:
                new = [(k, r) for k, r in zip(keys, rows, strict=True) if k not in stored]
                if new:
                    if lm is None:
                        raise EvalCoreError("internal: cloze outputs are missing and no model was loaded")
                    outs = generate(lm.model, lm.tokenizer, [r[cols["prompt"]] for _, r in new], gen)
                    store.add_generations([
                        {**key, "example_id": k[0], "example_hash": k[1], "config_hash": gen.config_hash(),  # type: ignore[union-attr]
                         "text": g.text, "new_tokens": g.new_tokens, "finish_reason": g.finish_reason}
                        for (k, _), g in zip(new, outs, strict=True)])
                    stored.update({k: g.text for (k, _), g in zip(new, outs, strict=True)})
                stats = [cloze_stats(stored[k], str(r[cols["answer"]])) for k, r in zip(keys, rows, strict=True)]
            out = []
            for t in group:
                todo, h = set(t.missing), t.config.config_hash()
                for k, s in zip(keys, stats, strict=True):
                    if k in todo:
                        values = s[t.config.metric]
                        out.append({**key, "example_id": k[0], "example_hash": k[1], "metric": t.config.metric,
                                    "config_hash": h, "value": values[0], "stats": json.dumps(values)})
                        t.cell.computed += 1  # type: ignore[attr-defined]
            store.add_text_scores(out)
            if advance is not None:
                advance(len(keys))
