"""The demo's data: general English for pretraining, customer support for fine-tuning.

Sources, all offline:
- the text of Python's bundled `pydoc_data.topics` (English documentation prose);
- `data/corpus/*.jsonl`: a general-knowledge corpus written for the project
  (science, geography, history, language, arithmetic, code);
- `data/support/*.jsonl`: a customer-support set written for the project, with a `category`
  and a `should_refuse` flag on the examples where the right answer is to refuse or hand over;
- `data/probes/*.jsonl`: general-knowledge probe items whose facts the corpus states.

Splits are seeded and stratified, so the demo is the same on every machine. The support test set is
then cleaned of rows that share a word 13-gram with training (the Data page's check); a separate
leak-check set copies clean test rows and adds leaks planted on purpose, so the Data page has known
contamination to find.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter, defaultdict
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
    support_test_leak_check: list[dict]  # clean support_test rows plus planted leaks, support_test's keys
    planted_leaks: list[dict]  # {"id", "kind": "exact"|"near"|"ngram", "train_id"} per planted row


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


NGRAM_N = 13  # lm-evaluation-harness's decontamination n, as the Data page uses
LEAK_CHECK_CLEAN_ROWS = 20
# A 60-word text has 56 word 5-shingles; changing its last word changes one of them, so the copy keeps
# a shingle Jaccard of 55/57 = 0.96 with its source: a near duplicate well above the 0.8 cut-off.
NEAR_MIN_WORDS = 60
QUOTE_WORDS = 16  # a quoted span of 16 words holds four 13-grams, and is too little of a row to be near

# lm-eval's Janitor normalisation, restated rather than imported from data_contamination so that the
# Data page stays an independent check of the demo, not the definition the demo was built with.
_JANITOR = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)
# Only case, some punctuation and spacing change: equal to the source after the Janitor's normalisation.
_RESTYLE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, "?!.,;:")
# New prompts whose answers quote a training response inside new text: they share 13-grams with
# training without being exact or near duplicates.
_QUOTE_FRAMES = (
    ("A customer pasted an old chat with your team into a complaint form. What did the agent tell them?",
     'Going by the pasted chat, the agent wrote: "{span} ..." We have checked the ticket since then, '
     "and the customer confirmed last week that the matter is closed."),
    ("My neighbour says your support told her something useful last month. Could you repeat it for me?",
     "We cannot open another customer's conversation, but our agents often explain it like this: "
     '"{span} ..." If your case is different, start a new chat and a person will go through it with you.'),
)


def janitor_grams(text: str, n: int = NGRAM_N) -> set[tuple[str, ...]]:
    """Word n-grams of the Janitor-normalised text; a non-empty text under n words is one gram."""
    words = text.translate(_JANITOR).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return set(zip(*(words[i:] for i in range(n))))


def _text(row: dict) -> str:
    return row["prompt"] + "\n" + row["response"]  # what the Data page compares for a generation set


def _restyle(text: str) -> str:
    return "  ".join(text.translate(_RESTYLE).split())


def _leak_check_rows(train: list[dict], test: list[dict], rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Clean test rows plus six planted leaks: two exact copies of training rows (restyled), two near
    copies (last word changed) and two new rows quoting a span of a training response."""
    counts = Counter(g for r in train for g in janitor_grams(_text(r)))
    # Sources whose every 13-gram is their own, so the Data page names this very row as the match.
    own = [r for r in train if all(counts[g] == 1 for g in janitor_grams(_text(r)))]
    near_src = rng.sample([r for r in own if len(_text(r).translate(_JANITOR).split()) >= NEAR_MIN_WORDS], 2)
    rest = [r for r in own if r not in near_src and len(r["response"].split()) >= QUOTE_WORDS + 4]
    picked = rng.sample(rest, 4)
    rows, planted = [], []

    def plant(kind: str, k: int, src: dict, **fields: object) -> None:
        rows.append({**src, "id": f"planted-{kind}-{k}", **fields})
        planted.append({"id": f"planted-{kind}-{k}", "kind": kind, "train_id": src["id"]})

    for k, src in enumerate(picked[:2], start=1):
        plant("exact", k, src, prompt=_restyle(src["prompt"]), response=_restyle(src["response"]))
    for k, src in enumerate(near_src, start=1):
        words = src["response"].split()
        core = words[-1].rstrip(string.punctuation)
        words[-1] = ("today" if core.lower() != "today" else "soon") + words[-1][len(core):]
        plant("near", k, src, response=" ".join(words))
    for k, (src, (prompt, frame)) in enumerate(zip(picked[2:], _QUOTE_FRAMES, strict=True), start=1):
        words = src["response"].split()
        start = rng.randrange(len(words) - QUOTE_WORDS + 1)
        span = " ".join(words[start:start + QUOTE_WORDS])
        plant("ngram", k, src, prompt=prompt, response=frame.format(span=span), should_refuse=False)
    clean = rng.sample(test, min(LEAK_CHECK_CLEAN_ROWS, len(test)))
    return sorted(clean + rows, key=lambda r: r["id"]), planted


def load_demo_data(seed: int, data_dir: Path = DATA_DIR) -> DemoData:
    """Load and split the shipped data; the same seed gives the same split everywhere.

    The support test set is disjoint from the training set by id, normalised prompt and 13-gram;
    `support_train` is exactly the stratified split's training part.
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
    train_part, test_part = _stratified_split(unique, lambda r: f"{r['category']}|{r['should_refuse']}", 0.15, rng)
    support_train = sorted(train_part, key=lambda r: r["id"])
    # Distinct prompts can still have answers built from the same stock sentences; a test row sharing
    # a 13-gram with training would be reported as contaminated, so it is dropped (training is kept).
    train_grams = set().union(*(janitor_grams(_text(r)) for r in support_train))
    support_test = [r for r in sorted(test_part, key=lambda r: r["id"]) if not janitor_grams(_text(r)) & train_grams]
    leak_check, planted = _leak_check_rows(support_train, support_test, rng)
    return DemoData(
        pretrain=pretrain,
        general_heldout=general_heldout,
        support_train=support_train,
        support_test=support_test,
        probes=probes,
        support_test_leak_check=leak_check,
        planted_leaks=planted,
    )
