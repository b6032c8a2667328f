"""The data diagnostics of a workspace, cached in its results store like every other number.

For every training set (`[[training_sets]]` in ftlens.toml, or the files under `train/`,
`train_data/`, `training/`, `training_data/`) and every held-out set, `data_report` runs
`data_diagnostics.diagnose_data` and returns one `ftlens.data` record per pair inside an
`ftlens.data_report` record (docs/data-schema.md). A row's text is what a model sees and answers:
prompt and reference for generation sets, the text for text sets, prompt and answer for probes.

Each pair's record is kept in the store's `analyses` table under a key covering the parameters, the
code of the diagnostics (`code_digest`) and a sha256 over every id, text, category and flag of
both sets, so an unchanged pair is never recomputed and an edited row gives a fresh record. The CLI,
the Data page and the Metrics page's "exclude contaminated items" read it through here.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from eval_core.errors import EvalCoreError, WorkspaceError

ANALYSIS = "data"
DATA_REPORT_SCHEMA = "ftlens.data_report"
DATA_REPORT_VERSION = 1
TEXT_ROLES = {"generation": ("prompt", "reference"), "text": ("text",), "probe": ("prompt", "answer")}

# (fraction of the whole report done, what runs now); called while computing, then once with 1.0.
DataProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class StoredPair:
    """One (training set, held-out set) record and whether it came from the store."""

    training_set: str
    heldout_set: str
    record: dict  # the ftlens.data record (DataDiagnostics.to_dict())
    cached: bool
    key_hash: str


def text_set(root: Path, record):  # noqa: ANN001, ANN201 - a DatasetRecord -> a data_diagnostics.TextSet
    """The rows of a described dataset as a `TextSet`: ids, texts (TEXT_ROLES joined by newlines),
    categories and the should-refuse flag when the set has them."""
    from eval_core.data_diagnostics import TextSet
    from eval_core.heldout_sets import example_ids, read_heldout_set

    ds = read_heldout_set(root / record.path, kind=record.kind, columns=record.column_map)
    columns = [ds.values(role) for role in TEXT_ROLES[ds.kind] if role in ds.column_map]
    texts = ["\n".join("" if v is None else str(v) for v in values) for values in zip(*columns, strict=True)]
    categories = ds.values("category") if "category" in ds.column_map else None
    refuse = [bool(v) for v in ds.values("should_refuse")] if "should_refuse" in ds.column_map else None
    return TextSet(example_ids(ds), texts, categories, refuse)


def set_digest(ts) -> str:  # noqa: ANN001 - a TextSet
    """sha256 over everything the diagnostics read of one set: ids, texts, categories, flags, in order."""
    payload = json.dumps([list(ts.ids), list(ts.texts), ts.categories and list(ts.categories),
                          ts.should_refuse and list(ts.should_refuse)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@functools.cache
def code_digest() -> str:
    """sha256 of the diagnostics' source and datasketch's version: changed code never serves an old record."""
    from importlib.metadata import PackageNotFoundError, version

    from eval_core import data_contamination, data_diagnostics

    h = hashlib.sha256()
    for module in (data_contamination, data_diagnostics):
        h.update(Path(module.__file__).read_bytes())
    try:
        h.update(version("datasketch").encode())
    except PackageNotFoundError:
        pass
    return h.hexdigest()


def _store(root: Path):  # noqa: ANN202 - a ResultsStore, or None where the folder holds no store
    from eval_core.results_store import ResultsStore, database_url
    from eval_core.workspace import load_config

    try:
        return ResultsStore(database_url(root, load_config(root).database_url))
    except WorkspaceError:  # a bare Trainer folder: compute, but write nothing into it
        return None


def pair_diagnostics(root: Path, train, heldout, config, store=None,  # noqa: ANN001
                     progress: Callable[[float, str], None] | None = None) -> StoredPair:
    """The `ftlens.data` record of one training set (a DatasetRecord) and one held-out set: from
    `store` when it holds it for these rows and this config, else computed and stored."""
    from eval_core.data_diagnostics import diagnose_data

    train_rows, held_rows = text_set(root, train), text_set(root, heldout)
    params = {"training_set": train.name, "heldout_set": heldout.name, "text_roles": TEXT_ROLES,
              "contamination": asdict(config.contamination), "rare_share": config.rare_share}
    inputs = set_digest(train_rows) + set_digest(held_rows)
    key = hashlib.sha256(json.dumps({"analysis": ANALYSIS, "code": code_digest(), "params": params,
                                     "inputs": inputs}, sort_keys=True).encode()).hexdigest()
    stored = store.analysis(ANALYSIS, key) if store is not None else None
    if stored is not None:
        try:
            return StoredPair(train.name, heldout.name, json.loads(stored), True, key)
        except ValueError:
            pass  # unreadable: recomputed below (first write wins, so it is not stored again)
    record = diagnose_data(train_rows, held_rows, config, progress=progress).to_dict()
    if store is not None and stored is None:
        store.add_analysis(ANALYSIS, key, params, inputs,
                           json.dumps(record, ensure_ascii=False, allow_nan=False))
    return StoredPair(train.name, heldout.name, record, False, key)


def data_pairs(root: Path | str, *, ngram_n: int = 13, near_duplicates: bool = True,
               heldout_names: list[str] | None = None, progress: DataProgress | None = None) -> list[StoredPair]:
    """Every (training set, held-out set) record of the workspace, cached (see the module docstring).

    Raises:
        EvalCoreError: the workspace has no training set or no held-out set (saying where to put them),
            or a named held-out set is unknown.
    """
    from eval_core.data_contamination import ContaminationConfig
    from eval_core.data_diagnostics import DiagnosticsConfig
    from eval_core.workspace import discover_workspace

    root = Path(root)
    ws = discover_workspace(root)
    if not ws.training_sets:
        raise EvalCoreError("no training set: list it under [[training_sets]] in ftlens.toml, or put its "
                            ".jsonl/.csv/.parquet file in a train_data/ folder of the workspace", path=root)
    heldout = list(ws.datasets)
    if heldout_names is not None:
        unknown = sorted(set(heldout_names) - {d.name for d in heldout})
        if unknown:
            raise EvalCoreError(f"unknown held-out set {', '.join(unknown)}; known: "
                                + ", ".join(d.name for d in heldout), path=root, field="dataset")
        heldout = [d for d in heldout if d.name in heldout_names]
    if not heldout:
        raise EvalCoreError("no held-out set to compare with the training data", path=root)
    config = DiagnosticsConfig(contamination=ContaminationConfig(ngram_n=ngram_n, near_duplicates=near_duplicates))
    jobs = [(t, h) for t in ws.training_sets for h in heldout]
    store = _store(root)
    out = []
    try:
        for k, (train, held) in enumerate(jobs):
            # Called only while computing: a pair read from the store reports nothing.
            def step(fraction: float, what: str, k: int = k, train=train, held=held) -> None:  # noqa: ANN001
                if progress is not None:
                    progress((k + fraction) / len(jobs), f"{train.name} × {held.name}: {what}")

            out.append(pair_diagnostics(root, train, held, config, store, step))
        if progress is not None:
            progress(1.0, "done")
    finally:
        if store is not None:
            store.close()
    return out


def data_report(root: Path | str, *, ngram_n: int = 13, near_duplicates: bool = True,
                progress: DataProgress | None = None) -> dict:
    """The `ftlens.data_report` record: one `ftlens.data` record per (training set, held-out set).

    Example:
        >>> data_report(".demo_workspace")["pairs"][0]["heldout_set"]  # doctest: +SKIP
        'support_test'
    """
    pairs = data_pairs(root, ngram_n=ngram_n, near_duplicates=near_duplicates, progress=progress)
    return {"schema": DATA_REPORT_SCHEMA, "schema_version": DATA_REPORT_VERSION, "workspace": str(root),
            "text_roles": {k: list(v) for k, v in TEXT_ROLES.items()},
            "pairs": [{"training_set": p.training_set, "heldout_set": p.heldout_set, **p.record} for p in pairs]}


def contaminated_ids(pairs: list[StoredPair], heldout_set: str) -> tuple[str, ...]:
    """Held-out ids of `heldout_set` that leak from any training set (sorted)."""
    return tuple(sorted({i for p in pairs if p.heldout_set == heldout_set
                         for i in p.record["contamination"]["contaminated_ids"]}))


def leaking_items(record: dict) -> list[dict]:
    """One row per contaminated held-out item of an `ftlens.data` record, merging every way it was
    found: "held-out id", "found by" (exact duplicate, near duplicate, n-gram overlap), "shared
    n-grams" (found of total), "Jaccard" (None for n-gram-only items) and "training id" (the
    duplicate's training row, else the overlap's)."""
    c = record["contamination"]
    n = c["protocol"]["ngram_n"]
    rows: dict[str, dict] = {i: {"held-out id": i, "found by": [], f"shared {n}-grams": "", "Jaccard": None,
                                 "training id": ""} for i in c["contaminated_ids"]}
    for m in (*c["exact"], *c["near"]):
        row = rows[m["heldout_id"]]
        row["found by"].append(f"{m['kind']} duplicate")
        row["training id"], row["Jaccard"] = m["train_id"], round(m["jaccard"], 3)
    for o in c["overlaps"]:
        row = rows[o["heldout_id"]]
        row["found by"].append(f"{n}-gram overlap")
        row[f"shared {n}-grams"] = f"{o['ngrams_found']} of {o['ngrams_total']} ({o['share']:.0%})"
        row["training id"] = row["training id"] or o["train_id"]
    return [{**r, "found by": ", ".join(r["found by"])} for r in rows.values()]
