"""The demo's data: general English for pretraining, customer support for fine-tuning.

Sources, all offline:
- the text of Python's bundled `pydoc_data.topics` (English documentation prose);
- `data/corpus/*.jsonl`: a general-knowledge corpus written for the project
  (science, geography, history, language, arithmetic, code);
- `data/support/*.jsonl`: a customer-support set written for the project, with a `category`
  and a `should_refuse` flag on the examples where the right answer is to refuse or hand over;
- `data/probes/*.jsonl`: general-knowledge probe items whose facts the corpus states.

Splits are seeded and stratified, so the demo is the same on every machine.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from eval_core.errors import DatasetError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class Paragraph:
    id: str
    category: str
    text: str


@dataclass(frozen=True)
class DemoData:
    """Everything the demo builder trains and evaluates on."""

    pretrain: list[Paragraph]
    general_heldout: list[Paragraph]
    support_train: list[dict]
    support_test: list[dict]
    probes: list[dict]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"invalid JSON: {exc.msg}", path=path, line=n) from exc
    return rows


def pydoc_paragraphs(min_chars: int = 80) -> list[Paragraph]:
    """Prose paragraphs of `pydoc_data.topics`, code blocks and tables dropped."""
    from pydoc_data.topics import topics

    out = []
    for topic in sorted(topics):
        for i, block in enumerate(re.split(r"\n\s*\n", topics[topic])):
            lines = [ln.strip() for ln in block.splitlines()]
            # Indented blocks are code samples or grammar rules; keep flowing prose only.
            if block.startswith((" ", "\t")) or any(ln.startswith((">>>", "***", "===", "---")) for ln in lines):
                continue
            text = " ".join(ln for ln in lines if ln)
            if len(text) >= min_chars:
                out.append(Paragraph(id=f"pydoc-{topic}-{i}", category="python_docs", text=text))
    return out


def knowledge_paragraphs(data_dir: Path = DATA_DIR) -> list[Paragraph]:
    return [
        Paragraph(id=r["id"], category=r["category"], text=r["text"])
        for f in sorted((data_dir / "corpus").glob("*.jsonl"))
        for r in _read_jsonl(f)
    ]


def _stratified_split(items: list, key, fraction: float, rng: random.Random) -> tuple[list, list]:
    groups: dict[str, list] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    keep, held = [], []
    for k in sorted(groups):
        group = groups[k][:]
        rng.shuffle(group)
        n_held = max(1, round(len(group) * fraction))
        held += group[:n_held]
        keep += group[n_held:]
    return keep, held


def load_demo_data(seed: int, data_dir: Path = DATA_DIR) -> DemoData:
    """Load and split the shipped data; the same seed gives the same split everywhere.

    The support test set is disjoint from the training set by id and by normalised prompt.
    """
    rng = random.Random(seed)
    probes = [r for f in sorted((data_dir / "probes").glob("*.jsonl")) for r in _read_jsonl(f)]
    answers = [p["answer"].lower() for p in probes]
    docs, heldout_docs = _stratified_split(pydoc_paragraphs(), lambda p: p.category, 0.06, rng)
    # Probes ask about facts the base model was pretrained on, so a knowledge paragraph that
    # states a probe answer is never held out; the rest may be, for an honest held-out text set.
    knowledge = knowledge_paragraphs(data_dir)
    safe = [p for p in knowledge if not any(a in p.text.lower() for a in answers)]
    _, heldout_knowledge = _stratified_split(safe, lambda p: p.category, 0.25, rng)
    held_ids = {p.id for p in heldout_knowledge}
    pretrain = docs + [p for p in knowledge if p.id not in held_ids]
    general_heldout = heldout_docs + heldout_knowledge

    support = [r for f in sorted((data_dir / "support").glob("*.jsonl")) for r in _read_jsonl(f)]
    seen: set[str] = set()
    unique = []
    for row in support:
        norm = re.sub(r"\W+", " ", row["prompt"].lower()).strip()
        if norm not in seen:
            seen.add(norm)
            unique.append(row)
    support_train, support_test = _stratified_split(
        unique, lambda r: f"{r['category']}|{r['should_refuse']}", 0.15, rng
    )
    return DemoData(
        pretrain=pretrain,
        general_heldout=general_heldout,
        support_train=sorted(support_train, key=lambda r: r["id"]),
        support_test=sorted(support_test, key=lambda r: r["id"]),
        probes=probes,
    )
