"""The forgetting analysis of a workspace, cached in its results store like every other number.

`forgetting_report` reads the stored per-example results (`forgetting_inputs`), then returns the
`ftlens.forgetting` record kept in the store's `analyses` table under a key that covers the
parameters, the record's schema version, the analysis code (`code_digest`) and `inputs_digest` (a
sha256 over every value the analysis reads). It computes and stores the record only when that key is absent, so a new result, an edited
probe item or other parameters give a fresh analysis and an unchanged workspace none at all. The CLI,
the pages and the reports all read the analysis through here, so they show the same numbers.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from eval_core.forgetting import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    SCHEMA,
    SCHEMA_VERSION,
    ForgettingInputs,
    ForgettingReport,
    analyse_forgetting,
)
from eval_core.forgetting_inputs import load_forgetting_inputs
from eval_core.results_store import ResultsStore, database_url
from eval_core.workspace import load_config

ANALYSIS = "forgetting"


@dataclass(frozen=True)
class StoredForgetting:
    report: ForgettingReport
    cached: bool  # True: read from the store; False: computed now (and stored)
    key_hash: str
    inputs_digest: str


def _canonical(value: object) -> object:
    """JSON-ready and order-free: dicts (tuple keys too) become key-sorted [key, value] lists."""
    if isinstance(value, dict):
        pairs = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return sorted(pairs, key=lambda kv: json.dumps(kv[0], sort_keys=True))
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def inputs_digest(inputs: ForgettingInputs) -> str:
    """sha256 over everything the analysis reads: per-example values, answers, items, set names.

    Example:
        >>> inputs_digest(load_forgetting_inputs(".demo_workspace"))[:12]  # doctest: +SKIP
        '3f9a0c51e2d4'
    """
    payload = json.dumps(_canonical(asdict(inputs)), sort_keys=True, ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@functools.cache
def code_digest() -> str:
    """sha256 of the analysis's own source (eval_core.forgetting and eval_core.retention): a changed
    formula or wording is a new key, so a record computed by older code is never served."""
    from eval_core import forgetting, retention

    h = hashlib.sha256()
    for module in (forgetting, retention):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


def analysis_key(params: dict, digest: str) -> str:
    key = {"analysis": ANALYSIS, "schema": SCHEMA, "version": SCHEMA_VERSION, "code": code_digest(),
           "params": params, "inputs": digest}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def forgetting_report(
    root: Path | str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_RESAMPLES,
    domain_dataset: str | None = None,
    url: str | None = None,
) -> StoredForgetting:
    """The workspace's forgetting analysis: from the store when it holds it for these inputs and
    parameters, else computed and stored.

    Raises:
        EvalCoreError: no results store, no base model results, or an unknown domain set.

    Example:
        >>> forgetting_report(".demo_workspace").report.recommendation.checkpoint  # doctest: +SKIP
        'checkpoint-10'
    """
    root = Path(root)
    url = url or database_url(root, load_config(root).database_url)
    inputs = load_forgetting_inputs(root, url=url, domain_dataset=domain_dataset)
    digest = inputs_digest(inputs)
    params = {"threshold": threshold, "seed": seed, "n_resamples": n_resamples, "domain_dataset": inputs.domain_dataset}
    key = analysis_key(params, digest)
    store = ResultsStore(url)
    try:
        stored = store.analysis(ANALYSIS, key)
        if stored is not None:
            try:
                return StoredForgetting(ForgettingReport.from_dict(json.loads(stored)), True, key, digest)
            except (ValueError, TypeError, KeyError):
                pass  # an unreadable record is recomputed; first write wins, so it is not stored again
        report = analyse_forgetting(inputs, threshold=threshold, seed=seed, n_resamples=n_resamples)
        # Nothing to compare yet (no probe or general-text results): not worth a row, and reading a
        # workspace should not write to it until there is an analysis to keep.
        if stored is None and any(c.retention for c in report.checkpoints):
            record = json.dumps(report.to_dict(), ensure_ascii=False, allow_nan=False)
            store.add_analysis(ANALYSIS, key, params, digest, record)
        return StoredForgetting(report, False, key, digest)
    finally:
        store.close()
