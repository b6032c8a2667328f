"""Read what the forgetting analysis needs from the results store (eval_core.forgetting is pure).

- probe sets (kind `probe`): per item, the 0/1 values of `mc_acc`, `mc_acc_norm`, `cloze_exact`,
  `cloze_contains` from `text_scores`; the model's answer is the chosen choice (from the stored
  chosen index and the file's choices) or the stored cloze output (`generations`);
- general text (kind `text`): per document `(nll_sum, byte_count)` of the `perplexity` rows;
- the domain set (the first `generation` set with `completion_perplexity`, or the one named):
  per example `(nll_sum, token_count)`.
When a cell was computed under several protocols (config hashes), the newest row of each example is
used. The base model is the store's checkpoint without a run.

Base and checkpoint must read the same text the same way: each checkpoint's tokenizer (its own files,
else the base's, as model loading does) is compared with the base's on its vocabulary (tokenizer.json
model, added tokens, normalizer, pre-tokenizer, BOS/EOS; runtime truncation and padding settings are
left out, Trainer saves those) and on its chat template; a difference is a blocking mismatch
(`ForgettingInputs.tokenizer_mismatch`), and the analysis does not compare that checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from eval_core.checkpoints import TOKENIZER_FILES, read_json_file
from eval_core.errors import EvalCoreError
from eval_core.forgetting import SCORE_KINDS, ForgettingInputs, Key, ModelResults, ProbeItem
from eval_core.heldout_sets import example_ids, read_heldout_set
from eval_core.results_store import (
    ResultsStore,
    checkpoints,
    database_url,
    datasets,
    generations,
    newest_per_example,
    nll_scores,
    text_scores,
)
from eval_core.workspace import load_config


def _items(root: Path, row: dict) -> tuple[dict[Key, ProbeItem], dict[Key, list[str]]]:
    ds = read_heldout_set(root / row["path"], kind=row.get("kind") or None)
    n = len(ds.lines)
    col = lambda role: ds.values(role) if role in ds.column_map else [None] * n  # noqa: E731
    ids = example_ids(ds)
    items, choices = {}, {}
    for i, cat, prompt, answer, ch in zip(ids, col("category"), col("prompt"), col("answer"), col("choices"), strict=True):
        key = (row["name"], i)
        if isinstance(answer, int) and isinstance(ch, list) and 0 <= answer < len(ch):
            answer = ch[answer]
        items[key] = ProbeItem(row["name"], i, "" if cat is None else str(cat), str(prompt or ""),
                               "" if answer is None else str(answer), len(ch) if isinstance(ch, list) else 0)
        if isinstance(ch, list):
            choices[key] = [str(c) for c in ch]
    return items, choices


_TOKENIZER_JSON_KEYS = ("model", "added_tokens", "normalizer", "pre_tokenizer")
_VOCAB_FILES = ("vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "added_tokens.json")
_SPECIAL_KEYS = ("bos_token", "eos_token", "add_bos_token", "add_eos_token")


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenizer_identity(folder: Path) -> dict[str, str] | None:
    """{"vocab": digest, "chat_template": digest} of the tokenizer files in `folder` (None: it has none).

    Example:
        >>> tokenizer_identity(Path(".demo_workspace/base_model"))  # doctest: +SKIP
        {'vocab': '5c1e0a9b2f7d4e61', 'chat_template': '0d3f...'}
    """
    if not any((folder / n).is_file() for n in TOKENIZER_FILES):
        return None
    vocab: dict[str, object] = {}
    if (folder / "tokenizer.json").is_file():
        data = read_json_file(folder / "tokenizer.json")
        vocab["tokenizer.json"] = {k: data.get(k) for k in _TOKENIZER_JSON_KEYS}
    for name in _VOCAB_FILES:
        if (folder / name).is_file():
            vocab[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    config = read_json_file(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    vocab["specials"] = {k: config.get(k) for k in _SPECIAL_KEYS}
    template = config.get("chat_template")
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    elif (folder / "chat_template.json").is_file():
        template = read_json_file(folder / "chat_template.json").get("chat_template")
    return {"vocab": _digest(vocab), "chat_template": _digest(template)}


def tokenizer_mismatches(root: Path, ckpts: list[dict], base: dict) -> dict[str, str]:
    """Checkpoint fingerprint -> why its tokenizer or chat template is not the base model's.

    Folders outside the workspace, moved or unreadable are not read (nothing to compare, no entry).
    """
    root = root.resolve()

    def readable(row: dict) -> Path | None:
        folder = (root / row["path"]).resolve()
        return folder if folder.is_relative_to(root) and folder.is_dir() else None

    def identity(row: dict) -> dict[str, str] | None:
        folder, base_folder = readable(row), readable(base)
        try:
            # A folder without tokenizer files (an adapter) is loaded with the base's tokenizer.
            got = tokenizer_identity(folder) if folder else None
            return got if got is not None or folder is None or base_folder is None else tokenizer_identity(base_folder)
        except (EvalCoreError, OSError, UnicodeDecodeError):
            return None

    want = identity(base)
    out: dict[str, str] = {}
    if want is None:
        return out
    for c in ckpts:
        if c["fingerprint"] == base["fingerprint"] or (got := identity(c)) is None:
            continue
        differs = [what for key, what in (("vocab", "tokenizer vocabulary"), ("chat_template", "chat template"))
                   if got[key] != want[key]]
        if differs:
            out[c["fingerprint"]] = (f"{' and '.join(differs)} of {c['path']} differ from the base model's "
                                     f"({base['path']}): its probe and perplexity results are not comparable with "
                                     "the base's; evaluate both with the same tokenizer and chat template")
    return out


def load_forgetting_inputs(root: Path | str, *, url: str | None = None, domain_dataset: str | None = None) -> ForgettingInputs:
    """The base model's and every checkpoint's stored per-example results.

    Raises:
        EvalCoreError: no results store or no base model results in it, or an unknown domain set.

    Example:
        >>> load_forgetting_inputs(".demo_workspace").base.label  # doctest: +SKIP
        'base'
    """
    root = Path(root)
    store = ResultsStore(url or database_url(root, load_config(root).database_url))
    try:
        ckpts = store.read(checkpoints)
        sets = {r["name"]: r for r in store.read(datasets)}
        probe_rows = newest_per_example([r for r in store.read(text_scores) if r["metric"] in SCORE_KINDS], by_config=False)
        nll_rows = newest_per_example([r for r in store.read(nll_scores) if r["metric"] in ("perplexity", "completion_perplexity")], by_config=False)
        gen_rows = [r for r in store.read(generations) if sets.get(r["dataset"], {}).get("kind") == "probe"]
    finally:
        store.close()
    bases = [c for c in ckpts if c["run"] is None]
    if not bases:
        raise EvalCoreError(f"{root}: no base model results in the store; run `python -m eval_core evaluate --workspace {root}`")
    runs = {c["run"] for c in ckpts if c["run"] is not None}
    models = {c["fingerprint"]: ModelResults(
        "base" if c["run"] is None else c["name"] if len(runs) <= 1 else f"{c['run']}/{c['name']}",
        c["fingerprint"], c["run"], c["step"]) for c in ckpts}
    base = models[bases[0]["fingerprint"]]

    probe_sets = sorted({r["dataset"] for r in probe_rows if r["dataset"] in sets})
    text_sets = sorted({r["dataset"] for r in nll_rows if r["metric"] == "perplexity" and sets.get(r["dataset"], {}).get("kind") == "text"})
    domain_candidates = sorted({r["dataset"] for r in nll_rows if r["metric"] == "completion_perplexity"
                                and sets.get(r["dataset"], {}).get("kind") == "generation"})
    if domain_dataset is not None and domain_dataset not in domain_candidates:
        raise EvalCoreError(f"no completion_perplexity results for domain set '{domain_dataset}'; with results: "
                            + (", ".join(domain_candidates) or "(none)"))
    domain = domain_dataset or (domain_candidates[0] if domain_candidates else None)

    items: dict[Key, ProbeItem] = {}
    choices: dict[Key, list[str]] = {}
    for name in (*probe_sets, *text_sets):
        try:
            got, ch = _items(root, sets[name])
        except (EvalCoreError, OSError):
            continue  # a file that moved or broke since: results stay usable, without categories
        items.update(got)
        choices.update(ch)

    newest_output: dict[tuple[str, Key], tuple[float, str]] = {}
    for r in gen_rows:
        k = (r["checkpoint_fp"], (r["dataset"], r["example_id"]))
        if k not in newest_output or r["created_at"] > newest_output[k][0]:
            newest_output[k] = (r["created_at"], r["text"])
    for r in probe_rows:
        m = models.get(r["checkpoint_fp"])
        if m is None or r["dataset"] not in sets:
            continue
        key = (r["dataset"], r["example_id"])
        m.probe.setdefault(r["metric"], {})[key] = float(r["value"])
        if r["metric"].startswith("mc_"):
            stats = json.loads(r["stats"])
            ch = choices.get(key, [])
            chosen = int(stats[1]) if len(stats) > 1 else -1
            answer = ch[chosen] if 0 <= chosen < len(ch) else f"choice {chosen}"
        else:
            answer = newest_output.get((r["checkpoint_fp"], key), (0.0, ""))[1]
        m.answers.setdefault(r["metric"], {})[key] = answer
    for r in nll_rows:
        m = models.get(r["checkpoint_fp"])
        if m is None:
            continue
        key = (r["dataset"], r["example_id"])
        if r["metric"] == "perplexity" and r["dataset"] in text_sets:
            m.general_text[key] = (float(r["nll_sum"]), float(r["byte_count"]))
        elif r["metric"] == "completion_perplexity" and r["dataset"] == domain:
            m.domain[key] = (float(r["nll_sum"]), float(r["token_count"]))
    others = [m for fp, m in models.items() if fp != base.fingerprint and (m.probe or m.general_text or m.domain)]
    others.sort(key=lambda m: (m.run is None, m.run or "", m.step if m.step is not None else -1))
    mismatch = tokenizer_mismatches(root, ckpts, bases[0])
    return ForgettingInputs(base, others, items, probe_sets, text_sets, domain,
                            {fp: why for fp, why in mismatch.items() if any(m.fingerprint == fp for m in others)})
