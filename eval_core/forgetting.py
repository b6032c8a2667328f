"""Catastrophic forgetting: what each checkpoint lost against its base model, and which to ship.

Pure functions over per-example results (no torch, no store: `forgetting_inputs` reads those). For
every checkpoint against the base model, on the SAME examples:

- **Retention per probe kind** (and per category):
  - 0/1 probe metrics (`mc_acc`, `mc_acc_norm`, `cloze_exact`, `cloze_contains`):
    ``retention = checkpoint_score / base_score`` where a score is the share of items right;
  - general text (`bits_per_byte`, lower is better): ``retention = base_bpb / checkpoint_bpb`` where
    ``bpb = sum(nll_sum in nats) / (ln 2 * sum(byte_count))`` over the documents.
  Retention 1.0 means nothing lost; 0.9 means 10% lost. When the base value is 0 (a base that gets
  no item right, or a checkpoint bpb of 0) retention is undefined: ``retention is None`` with the
  reason in ``undefined_reason``, never 0 and never a division error.
- **Paired bootstrap 95% interval**: each resample draws example indices once (numpy
  ``default_rng(seed)``, default seed 12345, 1000 resamples) and computes both the base and the
  checkpoint value on those same indices; the interval is the sorted resampled retentions at indices
  n//40 and n - n//40 - 1 (sacrebleu's percentile procedure, as `significance.bootstrap_interval`).
  Resamples whose base value is 0 are left out and counted in ``undefined_resamples``.
- **Chance level**: a multiple-choice retention is *informative* only when the base model scores
  above chance on those items: the lower end of the Wilson 95% interval of the base's share right
  is above the mean of 1/len(choices). A base at chance knows nothing the checkpoint could forget, so
  such a ratio is shown (flagged, with the reason) but left out of the general retention. Items of
  unknown choice count are assumed informative; cloze and bits per byte have no chance level.
- **General retention** of a checkpoint: the unweighted mean over the three probe families
  (`FAMILIES`: general text, multiple choice, cloze) of each family's retention, itself the mean of
  the family's defined, informative per-metric retentions (whole sets, not categories), so a family
  with two metrics weighs as much as one with one. **Forgetting index**:
  ``max(0, 1 - general_retention)``: 0 when nothing was lost on average, 0.2 when a fifth was. Both
  None when no family has an informative retention.
- **Flipped items** per 0/1 kind: ``lost`` (right at base, wrong at the checkpoint) and ``gained``
  (wrong at base, right at the checkpoint), with ids and both answers.
- **Domain gain** on the domain set: ``base_ppl / checkpoint_ppl - 1`` of token-weighted completion
  perplexity (``exp(sum nll / sum tokens)``); +0.41 means the checkpoint's perplexity is 1/1.41 of
  the base's.
- **Pareto frontier** over checkpoints of (domain gain, general retention), both higher-is-better:
  a checkpoint is on it when no other checkpoint is at least as good on both and better on one
  (equal points are all on it). Checkpoints without both numbers are not on it.
- **Same tokenizer**: a checkpoint whose tokenizer vocabulary or chat template differs from the
  base's (`ForgettingInputs.tokenizer_mismatch`, found by `forgetting_inputs`) is *blocked*: its
  per-kind retentions are shown, but its general retention, forgetting index and domain gain are
  None, so it is never on the frontier nor recommended; the reason is in ``blocked`` and ``warnings``.
- **Recommendation**: among checkpoints whose general retention is >= `threshold` (default 0.95),
  the highest domain gain; ties go to the higher retention, then the earlier step. When none meets
  the threshold, NO checkpoint is recommended (``checkpoint is None``) and the reason names the
  checkpoint with the best retention, so the choice to accept more forgetting stays the user's.

Example:
    >>> r = paired_retention("mc_acc", [1, 1, 0, 1], [1, 0, 0, 1], n_resamples=200)
    >>> round(r.retention, 4), r.base_value, r.checkpoint_value
    (0.6667, 0.75, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from eval_core.retention import (  # noqa: F401 - re-exported: the analysis API names them
    BPB,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    FAMILIES,
    KINDS,
    MC_KINDS,
    SCORE_KINDS,
    Retention,
    chance_check,
    paired_retention,
    wilson_interval,
)

SCHEMA = "ftlens.forgetting"
SCHEMA_VERSION = 2  # 2: probe families, chance level

Key = tuple[str, str]  # (dataset name, example id)


@dataclass(frozen=True)
class Flip:
    """One probe item whose result changed between base and checkpoint."""

    kind: str
    dataset: str
    id: str
    category: str
    direction: str  # "lost": right at base, wrong at checkpoint; "gained": the reverse
    prompt: str
    answer: str
    base_answer: str
    checkpoint_answer: str


@dataclass(frozen=True)
class ProbeItem:
    dataset: str
    id: str
    category: str
    prompt: str = ""
    answer: str = ""
    n_choices: int = 0  # multiple choice: how many choices (0: not multiple choice, or unknown)


@dataclass
class ModelResults:
    """Per-example stored results of one model (the base or a checkpoint)."""

    label: str
    fingerprint: str
    run: str | None = None
    step: int | None = None
    # kind -> (dataset, id) -> 0/1
    probe: dict[str, dict[Key, float]] = field(default_factory=dict)
    # kind -> (dataset, id) -> the model's answer as text (chosen choice or cloze output)
    answers: dict[str, dict[Key, str]] = field(default_factory=dict)
    # (dataset, id) -> (nll_sum in nats, byte_count) of general-text documents
    general_text: dict[Key, tuple[float, float]] = field(default_factory=dict)
    # (dataset, id) -> (nll_sum in nats, token_count) of the domain set's completions
    domain: dict[Key, tuple[float, float]] = field(default_factory=dict)


@dataclass
class ForgettingInputs:
    base: ModelResults
    checkpoints: list[ModelResults]
    items: dict[Key, ProbeItem] = field(default_factory=dict)  # probe items and general-text documents
    probe_datasets: list[str] = field(default_factory=list)
    general_text_datasets: list[str] = field(default_factory=list)
    domain_dataset: str | None = None
    tokenizer_mismatch: dict[str, str] = field(default_factory=dict)  # checkpoint fingerprint -> reason


@dataclass(frozen=True)
class CheckpointForgetting:
    label: str
    run: str | None
    step: int | None
    fingerprint: str
    retention: list[Retention]  # one per kind, whole set
    by_category: list[Retention]
    general_retention: float | None
    forgetting_index: float | None
    domain_perplexity: float | None
    domain_gain: float | None
    on_frontier: bool
    flips: list[Flip]
    family_retention: dict[str, float | None] = field(default_factory=dict)  # FAMILIES name -> retention
    blocked: str | None = None  # why this checkpoint is not compared with the base (tokenizer differs)


@dataclass(frozen=True)
class Recommendation:
    checkpoint: str | None  # None: no checkpoint meets the threshold (or none has both numbers)
    threshold: float
    reason: str


@dataclass(frozen=True)
class ForgettingReport:
    base: str
    base_domain_perplexity: float | None
    threshold: float
    seed: int
    n_resamples: int
    probe_datasets: list[str]
    general_text_datasets: list[str]
    domain_dataset: str | None
    checkpoints: list[CheckpointForgetting]
    recommendation: Recommendation
    definitions: dict[str, str]
    schema: str = SCHEMA
    version: int = SCHEMA_VERSION
    warnings: list[str] = field(default_factory=list)  # blocking problems, shown before any number

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ForgettingReport:
        """The inverse of `to_dict` (a record read back from the store or a JSON file).

        Raises:
            ValueError: the record is another schema or version.
        """
        if data.get("schema") != SCHEMA or data.get("version") != SCHEMA_VERSION:
            raise ValueError(f"not a {SCHEMA} v{SCHEMA_VERSION} record: {data.get('schema')} v{data.get('version')}")
        ckpts = [CheckpointForgetting(**{**c, "retention": [Retention(**r) for r in c["retention"]],
                                         "by_category": [Retention(**r) for r in c["by_category"]],
                                         "flips": [Flip(**f) for f in c["flips"]]})
                 for c in data["checkpoints"]]
        return cls(**{**data, "checkpoints": ckpts, "recommendation": Recommendation(**data["recommendation"])})


DEFINITIONS = {
    "retention_score": "checkpoint_score / base_score (share of items right), same items",
    "retention_bits_per_byte": "base_bpb / checkpoint_bpb, bpb = sum nll (nats) / (ln 2 * sum bytes)",
    "interval": "paired bootstrap: same resampled indices for base and checkpoint; sorted retentions at n//40, n-n//40-1",
    "chance_level": "multiple choice is informative when the base's Wilson 95% lower bound of share right exceeds mean 1/len(choices)",
    "family_retention": "mean of the family's defined, informative per-metric retentions (whole sets)",
    "general_retention": "unweighted mean of the defined family retentions (general text, multiple choice, cloze)",
    "forgetting_index": "max(0, 1 - general_retention)",
    "domain_gain": "base_ppl / checkpoint_ppl - 1, token-weighted completion perplexity on the domain set",
    "frontier": "Pareto frontier of (domain_gain, general_retention), both higher is better",
    "recommendation": "highest domain_gain with general_retention >= threshold; ties: higher retention, earlier step; none if no checkpoint qualifies",
}


def _paired(kind: str, base: ModelResults, ckpt: ModelResults) -> tuple[list[Key], list, list]:
    b = base.general_text if kind == BPB else base.probe.get(kind, {})
    c = ckpt.general_text if kind == BPB else ckpt.probe.get(kind, {})
    keys = sorted(set(b) & set(c))
    return keys, [b[k] for k in keys], [c[k] for k in keys]


def _with_chance(r: Retention, inputs: ForgettingInputs, keys: Sequence[Key], base_values: Sequence[float]) -> Retention:
    if r.kind not in MC_KINDS:
        return r
    n_choices = [inputs.items[k].n_choices if k in inputs.items else 0 for k in keys]
    chance, informative, reason = chance_check(base_values, n_choices)
    return replace(r, chance=chance, informative=informative, uninformative_reason=reason)


def checkpoint_retention(inputs: ForgettingInputs, ckpt: ModelResults, *, seed: int = DEFAULT_SEED,
                         n_resamples: int = DEFAULT_RESAMPLES) -> tuple[list[Retention], list[Retention]]:
    """(per kind over the whole sets, per kind and category) for kinds the base and checkpoint share;
    multiple-choice retentions carry their chance level and whether the base is above it."""
    whole, by_cat = [], []
    for kind in KINDS:
        keys, b, c = _paired(kind, inputs.base, ckpt)
        if not keys:
            continue
        whole.append(_with_chance(paired_retention(kind, b, c, seed=seed, n_resamples=n_resamples), inputs, keys, b))
        cats = sorted({inputs.items[k].category for k in keys if k in inputs.items and inputs.items[k].category})
        for cat in cats:
            pos = [i for i, k in enumerate(keys) if k in inputs.items and inputs.items[k].category == cat]
            r = paired_retention(kind, [b[i] for i in pos], [c[i] for i in pos], category=cat, seed=seed,
                                 n_resamples=n_resamples)
            by_cat.append(_with_chance(r, inputs, [keys[i] for i in pos], [b[i] for i in pos]))
    return whole, by_cat


def family_retention(retentions: Sequence[Retention]) -> dict[str, float | None]:
    """Per probe family: the mean of its defined, informative whole-set retentions (None: none)."""
    out: dict[str, float | None] = {}
    for family, kinds in FAMILIES.items():
        vals = [r.retention for r in retentions
                if r.category is None and r.kind in kinds and r.retention is not None and r.informative]
        out[family] = sum(vals) / len(vals) if vals else None
    return out


def general_retention(retentions: Sequence[Retention]) -> float | None:
    """Unweighted mean of the defined family retentions (None when no family has one).

    Example:
        >>> rs = [Retention("mc_acc", None, .8, .6, .75, None, None, 9, 0, 0), Retention("mc_acc_norm", None, .8, .8, 1.0,
        ...       None, None, 9, 0, 0), Retention("bits_per_byte", None, 1.0, 2.0, 0.5, None, None, 9, 0, 0)]
        >>> general_retention(rs)   # (mean(0.75, 1.0) + 0.5) / 2
        0.6875
    """
    vals = [v for v in family_retention(retentions).values() if v is not None]
    return sum(vals) / len(vals) if vals else None


def forgetting_index(general: float | None) -> float | None:
    """``max(0, 1 - general_retention)``.

    Example:
        >>> forgetting_index(0.8), forgetting_index(1.1), forgetting_index(None)
        (0.19999999999999996, 0.0, None)
    """
    return None if general is None else max(0.0, 1.0 - general)


def flips(inputs: ForgettingInputs, ckpt: ModelResults) -> list[Flip]:
    """Items right at base and wrong at the checkpoint ("lost"), and the reverse ("gained")."""
    out = []
    for kind in SCORE_KINDS:
        keys, b, c = _paired(kind, inputs.base, ckpt)
        for k, bv, cv in zip(keys, b, c, strict=True):
            if (bv >= 0.5) == (cv >= 0.5):
                continue
            item = inputs.items.get(k, ProbeItem(k[0], k[1], ""))
            out.append(Flip(kind, k[0], k[1], item.category, "lost" if bv >= 0.5 else "gained", item.prompt, item.answer,
                            inputs.base.answers.get(kind, {}).get(k, ""), ckpt.answers.get(kind, {}).get(k, "")))
    return out


def domain_perplexity(model: ModelResults, keys: Sequence[Key] | None = None) -> float | None:
    """Token-weighted completion perplexity ``exp(sum nll / sum tokens)`` over `keys` (default all)."""
    rows = [model.domain[k] for k in (keys if keys is not None else model.domain) if k in model.domain]
    tokens = math.fsum(t for _, t in rows)
    return math.exp(math.fsum(s for s, _ in rows) / tokens) if tokens else None


def domain_gain(base: ModelResults, ckpt: ModelResults) -> tuple[float | None, float | None]:
    """(checkpoint perplexity, base_ppl / checkpoint_ppl - 1) on the examples both have."""
    keys = sorted(set(base.domain) & set(ckpt.domain))
    b, c = domain_perplexity(base, keys), domain_perplexity(ckpt, keys)
    return c, (b / c - 1.0 if b is not None and c else None)


@dataclass(frozen=True)
class Point:
    label: str
    step: int | None
    gain: float | None
    retention: float | None


def pareto_frontier(points: Sequence[Point]) -> list[str]:
    """Labels of the points no other point dominates on (gain, retention), both higher is better.

    Example:
        >>> pareto_frontier([Point("a", 1, 0.1, 0.99), Point("b", 2, 0.3, 0.9), Point("c", 3, 0.2, 0.8)])
        ['a', 'b']
    """
    full = [p for p in points if p.gain is not None and p.retention is not None]

    def dominates(q: Point, p: Point) -> bool:
        return (q.gain >= p.gain and q.retention >= p.retention  # type: ignore[operator]
                and (q.gain > p.gain or q.retention > p.retention))  # type: ignore[operator]

    return [p.label for p in full if not any(dominates(q, p) for q in full)]


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def recommend(points: Sequence[Point], threshold: float = DEFAULT_THRESHOLD) -> Recommendation:
    """The highest domain gain among points with retention >= threshold, with the reason in words.

    Example:
        >>> recommend([Point("c-1", 1, 0.1, 0.99), Point("c-2", 2, 0.4, 0.9)]).reason
        'c-1: highest domain gain (+10%) among checkpoints keeping >= 95% general retention; c-2 gains more but retains 90%'
    """
    full = [p for p in points if p.gain is not None and p.retention is not None]
    if not full:
        return Recommendation(None, threshold, "no checkpoint has both a domain gain and a general retention; "
                              "evaluate the domain set and the probe suites for the base model and the checkpoints")
    ok = [p for p in full if p.retention >= threshold]  # type: ignore[operator]
    if not ok:
        best = max(full, key=lambda p: (p.retention, p.gain, -(p.step or 0)))  # type: ignore[arg-type]
        return Recommendation(None, threshold, f"no checkpoint keeps >= {_pct(threshold)} general retention; "
                              f"the best is {best.label} at {_pct(best.retention)} (domain gain {best.gain:+.0%}); "  # type: ignore[arg-type]
                              "lower the threshold to accept more forgetting")
    pick = max(ok, key=lambda p: (p.gain, p.retention, -(p.step if p.step is not None else 0)))  # type: ignore[arg-type]
    reason = (f"{pick.label}: highest domain gain ({pick.gain:+.0%}) among checkpoints keeping "  # type: ignore[str-format]
              f">= {_pct(threshold)} general retention")
    more = [p for p in full if p.gain > pick.gain and p.retention < threshold]  # type: ignore[operator]
    if len(more) in (1, 2):
        s = "s" if len(more) == 1 else ""
        reason += (f"; {'/'.join(p.label for p in more)} gain{s} more but retain{s} "
                   + "/".join(_pct(p.retention) for p in more))  # type: ignore[arg-type]
    elif more:  # a long run: name the range, not every checkpoint
        kept = sorted(p.retention for p in more)  # type: ignore[type-var]
        reason += (f"; {len(more)} other checkpoints gain more (up to {max(p.gain for p in more):+.0%}) "  # type: ignore[type-var]
                   f"but retain only {_pct(kept[0])}-{_pct(kept[-1])}")
    return Recommendation(pick.label, threshold, reason)


def analyse_forgetting(inputs: ForgettingInputs, *, threshold: float = DEFAULT_THRESHOLD, seed: int = DEFAULT_SEED,
                       n_resamples: int = DEFAULT_RESAMPLES) -> ForgettingReport:
    """Everything above for every checkpoint in `inputs`, as one `ftlens.forgetting` v2 record."""
    rows = []
    for ckpt in inputs.checkpoints:
        whole, by_cat = checkpoint_retention(inputs, ckpt, seed=seed, n_resamples=n_resamples)
        general = general_retention(whole)
        ppl, gain = domain_gain(inputs.base, ckpt)
        if ckpt.fingerprint in inputs.tokenizer_mismatch:  # different tokens: no summary, no recommendation
            general, gain = None, None
        rows.append((ckpt, whole, by_cat, general, ppl, gain))
    points = [Point(c.label, c.step, gain, general) for c, _, _, general, _, gain in rows]
    frontier = set(pareto_frontier(points))
    blocked = inputs.tokenizer_mismatch
    out = [CheckpointForgetting(c.label, c.run, c.step, c.fingerprint, whole, by_cat, general, forgetting_index(general),
                                ppl, gain, c.label in frontier, flips(inputs, c), family_retention(whole),
                                blocked.get(c.fingerprint)) for c, whole, by_cat, general, ppl, gain in rows]
    warnings = [f"{c.label} is not compared with the base: {blocked[c.fingerprint]}"
                for c in inputs.checkpoints if c.fingerprint in blocked]
    rec = recommend(points, threshold)
    if warnings:
        rec = replace(rec, reason=rec.reason + "; not compared (tokenizer or chat template differs from the base): "
                      + ", ".join(c.label for c in inputs.checkpoints if c.fingerprint in blocked))
    return ForgettingReport(inputs.base.label, domain_perplexity(inputs.base), threshold, seed, n_resamples,
                            list(inputs.probe_datasets), list(inputs.general_text_datasets), inputs.domain_dataset, out,
                            rec, dict(DEFINITIONS), warnings=warnings)
