"""Rating campaigns of a workspace: which stored outputs can be rated, creating a campaign from them,
and the campaign's `ftlens.ratings` summary.

A campaign rates outputs already in the results store (`python -m eval_core evaluate` generates
them): one held-out generation set under one generation setting, for two or more checkpoints. The
items are the examples every chosen checkpoint has an output for; their prompt, reference, category
and outputs are copied into the campaign when it is created (eval_core.rating_store).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eval_core.errors import EvalCoreError
from eval_core.metric_tables import DatasetResults, load_dataset_results
from eval_core.rating_campaigns import DEFAULT_OVERLAP, DEFAULT_RUBRIC, DEFAULT_SCALE, DEFAULT_SEED, CampaignSpec
from eval_core.rating_store import RatingItem, RatingStore, judgments_and_scores
from eval_core.results_store import database_url
from eval_core.workspace import load_config


def open_rating_store(root: Path | str, url: str | None = None) -> RatingStore:
    """The workspace's database (FTLENS_DATABASE_URL, ftlens.toml `[database] url`, else SQLite)."""
    root = Path(root)
    return RatingStore(url or database_url(root, load_config(root).database_url))


def campaign_sources(root: Path | str, url: str | None = None) -> list[DatasetResults]:
    """Generation sets with stored outputs of at least two checkpoints (newest setting first)."""
    return [r for r in load_dataset_results(root, url) if sum(bool(c.outputs) for c in r.checkpoints) >= 2]


def rating_items(results: DatasetResults, models: Sequence[str]) -> list[RatingItem]:
    """One item per example that every model in `models` has an output for."""
    chosen = [results.checkpoint(m) for m in models]
    common = set.intersection(*(set(c.outputs) for c in chosen)) if chosen else set()
    return [RatingItem(eid, ex.prompt, {c.label: c.outputs[eid] for c in chosen}, ex.reference or None, ex.category or None)
            for eid, ex in results.examples.items() if eid in common]


def create_campaign(
    root: Path | str,
    name: str,
    models: Sequence[str],
    raters: Sequence[str],
    *,
    dataset: str | None = None,
    generation_hash: str | None = None,
    overlap: int = DEFAULT_OVERLAP,
    rubric: Sequence[str] = DEFAULT_RUBRIC,
    scale: tuple[int, int] = DEFAULT_SCALE,
    seed: int = DEFAULT_SEED,
    max_items: int | None = None,
    url: str | None = None,
) -> tuple[CampaignSpec, int]:
    """Create a campaign over stored outputs; (its spec, the number of items).

    Raises:
        EvalCoreError: no stored outputs for these checkpoints, an unknown set or checkpoint, a
            campaign of that name exists, or an invalid setting (overlap, names, rubric).

    Example:
        >>> create_campaign(".demo_workspace", "demo", ["checkpoint-30", "checkpoint-180"], ["alice", "bob"])  # doctest: +SKIP
        (CampaignSpec(name='demo', ...), 64)
    """
    sources = campaign_sources(root, url)
    pick = [s for s in sources if (dataset is None or s.name == dataset) and (generation_hash is None or s.generation_hash == generation_hash)]
    if not pick:
        have = ", ".join(f"{s.name} ({s.generation_hash[:8]})" for s in sources) or "none"
        raise EvalCoreError(f"no stored outputs of two or more checkpoints for {dataset or 'any generation set'}; "
                            f"with outputs: {have}. Generate them with `python -m eval_core evaluate`", field="dataset")
    results = pick[0]
    labels = [c.label for c in results.checkpoints if c.outputs]
    unknown = [m for m in models if m not in labels]
    if unknown:
        raise EvalCoreError(f"no outputs of {', '.join(unknown)} on {results.name}; checkpoints with outputs: {', '.join(labels)}",
                            field="models")
    spec = CampaignSpec(name, results.name, results.generation_hash, tuple(models), tuple(raters),
                        tuple(results.checkpoint(m).fingerprint for m in models), overlap, tuple(rubric), scale, seed, max_items)
    items = rating_items(results, models)
    with open_rating_store(root, url) as store:
        plan = store.create_campaign(spec, items)
    return spec, len({a.item_id for a in plan})


def campaign_summary(root: Path | str, campaign: str, *, seed: int = DEFAULT_SEED, n_resamples: int = 1000,
                     url: str | None = None):
    """The campaign's `ftlens.ratings` record (eval_core.rating_analysis.summarise) from its ratings."""
    from eval_core.rating_analysis import summarise

    with open_rating_store(root, url) as store:
        store.campaign(campaign)  # a clear error for an unknown name
        rows = store.ratings_of(campaign)
    judgments, likert = judgments_and_scores(rows)
    return summarise(judgments, likert, campaign=campaign, seed=seed, n_resamples=n_resamples)
