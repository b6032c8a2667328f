"""Contamination of a held-out set by a training set, and duplicates within one set.

Three checks, each over plain lists of ids and texts:

- **n-gram overlap**, as lm-evaluation-harness's decontamination defines it
  (`lm_eval/decontamination/janitor.py` and `decontaminate.py::get_train_overlap`): a text is
  normalised by the Janitor's translation table (ASCII `A-Z` lowered, every character of
  `string.punctuation` deleted; nothing else changes, so non-ASCII letters keep their case), split on
  whitespace, and cut into word n-grams (13 by default, as in the GPT-3 paper and lm-eval). A held-out
  item is contaminated when any of its n-grams occurs in any training text. One difference, on
  purpose: lm-eval gives a text shorter than n words no n-gram, so it can never be flagged; here its
  whole normalised word sequence is one gram, which can only match a training text with exactly the
  same normalised words.
- **exact duplicates**: equal normalised text (the words joined by single spaces).
- **near duplicates**: Jaccard similarity of word 5-shingle sets >= 0.8. Candidates come from
  `datasketch` MinHash (128 permutations, seed 1, its default SHA-1 32-bit hash) + LSH; each
  candidate is then checked with the exact Jaccard of the shingle sets, so no reported pair is a
  MinHash false positive (LSH may still miss a pair; with these settings the miss rate at Jaccard
  0.8 is under 1 %).

Speed: like `get_train_overlap`, the lookup is built over the (small) held-out set and the training
texts are streamed past it, so memory grows with the held-out set, not with training. n-grams are
stored as Python's `hash()` of the word tuple (64 bits; computed in C by `map(hash, zip(...))`).
Python salts string hashes per process, but the lookup lives inside one call, so that does not
matter; two different n-grams colliding has a chance of about (held-out n-grams) / 2**64 per
training n-gram, ~1e-12 for a 100k x 5k run, and could only add a false overlap.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from eval_core.errors import DatasetError
from eval_core.records import Record

# Janitor's table: ASCII upper -> lower, string.punctuation deleted (lm_eval/decontamination/janitor.py).
_JANITOR_TABLE = str.maketrans(
    string.ascii_lowercase + string.ascii_uppercase, string.ascii_lowercase * 2, string.punctuation
)
NORMALISATION = "lm-eval Janitor: ASCII A-Z lowercased, string.punctuation deleted, whitespace split"
GRAM_HASH = "python hash() of the word tuple, within one call"

MatchKind = Literal["exact", "near"]


@dataclass(frozen=True)
class ContaminationConfig:
    """How contamination and duplicates are measured. Every field is recorded in the protocol."""

    ngram_n: int = 13  # lm-eval's and GPT-3's decontamination n
    shingle_size: int = 5  # word 5-shingles: long enough that shared stock phrases stay below 0.8
    near_threshold: float = 0.8  # Jaccard; the usual MinHash-LSH near-duplicate cut-off
    num_perm: int = 128  # MinHash permutations: Jaccard error ~ 1/sqrt(128) = 0.09 on candidates
    seed: int = 1  # MinHash permutation seed (datasketch's default), fixed so LSH is deterministic
    near_duplicates: bool = True  # MinHash is the slow part; turn it off for overlap-only checks

    def __post_init__(self) -> None:
        if self.ngram_n < 1 or self.shingle_size < 1 or self.num_perm < 2:
            raise ValueError("ngram_n and shingle_size must be >= 1 and num_perm >= 2")
        if not 0.0 < self.near_threshold <= 1.0:
            raise ValueError(f"near_threshold must be in (0, 1], got {self.near_threshold}")


@dataclass(frozen=True)
class NgramOverlap(Record):
    """A contaminated held-out item: its distinct n-grams found in training.

    Attributes:
        heldout_id: the held-out item.
        ngrams_found: distinct n-grams of the item that occur in some training text.
        ngrams_total: distinct n-grams of the item (1 for an item shorter than n words).
        share: ngrams_found / ngrams_total.
        train_id: the smallest training id (string order) containing one of the found n-grams.
    """

    heldout_id: str
    ngrams_found: int
    ngrams_total: int
    share: float
    train_id: str


@dataclass(frozen=True)
class DuplicateMatch(Record):
    """A held-out item equal (`exact`) or near-equal (`near`) to a training item.

    `near` matches exclude exact ones; `train_id` is the most similar training item (ties: the
    smallest id); `jaccard` is the exact Jaccard of the two shingle sets (1.0 for exact).
    """

    heldout_id: str
    train_id: str
    kind: MatchKind
    jaccard: float


@dataclass(frozen=True)
class DuplicateGroup(Record):
    """Ids of one set that are duplicates of each other (sorted); near groups are the connected
    components of pairs with Jaccard >= threshold, so two members may be less similar than that."""

    kind: MatchKind
    ids: tuple[str, ...]


@dataclass(frozen=True)
class ContaminationProtocol(Record):
    """Everything needed to reproduce a contamination result."""

    ngram_n: int
    normalisation: str
    gram_hash: str
    short_items: str
    shingle_size: int
    near_threshold: float
    num_perm: int
    seed: int
    minhash_hash: str
    datasketch_version: str | None


@dataclass(frozen=True)
class ContaminationReport(Record):
    """All held-out items that leak from training, by n-gram overlap, exact and near duplicates."""

    contaminated_ids: tuple[str, ...]
    overlaps: tuple[NgramOverlap, ...]
    exact: tuple[DuplicateMatch, ...]
    near: tuple[DuplicateMatch, ...]
    protocol: ContaminationProtocol


def normalize_text(text: str) -> str:
    """The text as lm-eval's Janitor normalises it, words joined by single spaces.

    Example:
        >>> normalize_text("  Hello,   World! It's  ÉTÉ.")
        'hello world its ÉtÉ'
    """
    return " ".join(text.translate(_JANITOR_TABLE).split())


def normalized_words(text: str) -> list[str]:
    """Words of `normalize_text(text)`.

    Example:
        >>> normalized_words("Don't stop-me now!")
        ['dont', 'stopme', 'now']
    """
    return text.translate(_JANITOR_TABLE).split()


def word_ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Word n-grams; a non-empty text shorter than n words gives itself as its one gram.

    Example:
        >>> word_ngrams(["a", "b", "c"], 2)
        [('a', 'b'), ('b', 'c')]
        >>> word_ngrams(["a", "b"], 13)
        [('a', 'b')]
    """
    if len(words) < n:
        return [tuple(words)] if words else []
    return list(zip(*(words[i:] for i in range(n))))


def _gram_hashes(words: list[str], n: int) -> Iterable[int]:
    # zip over n shifted slices yields the n-gram tuples in C; hash() them without keeping them.
    if len(words) < n:
        return (hash(tuple(words)),) if words else ()
    return map(hash, zip(*(words[i:] for i in range(n))))


def check_ids(ids: Sequence[str], texts: Sequence[str], what: str) -> None:
    """Raise `DatasetError` unless ids are unique and there is one text per id."""
    if len(ids) != len(texts):
        raise DatasetError(f"{what}: {len(ids)} ids but {len(texts)} texts; give one id per text")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DatasetError(f"{what}: id {dup!r} appears more than once; ids must be unique", field="id")


def find_ngram_overlap(
    train_ids: Sequence[str],
    train_texts: Sequence[str],
    heldout_ids: Sequence[str],
    heldout_texts: Sequence[str],
    n: int = 13,
) -> tuple[NgramOverlap, ...]:
    """Held-out items sharing any word n-gram with a training text (lm-eval's definition, above).

    Returns one `NgramOverlap` per contaminated held-out item, sorted by held-out id. The result does
    not depend on the order of either set.

    Example:
        >>> train = ["the cat sat on the mat today", "a dog ran"]
        >>> [o.heldout_id for o in find_ngram_overlap(["t1", "t2"], train, ["h1", "h2"],
        ...     ["The cat sat on the MAT!", "the cat ran"], n=3)]
        ['h1']
    """
    check_ids(train_ids, train_texts, "training set")
    check_ids(heldout_ids, heldout_texts, "held-out set")
    held_grams = [set(_gram_hashes(normalized_words(t), n)) for t in heldout_texts]
    lookup: set[int] = set().union(*held_grams)
    first_train: dict[int, str] = {}  # gram -> smallest training id containing it
    for i in sorted(range(len(train_ids)), key=train_ids.__getitem__):
        # set.intersection over an iterator runs in C and builds nothing for the misses.
        found = lookup.intersection(_gram_hashes(normalized_words(train_texts[i]), n))
        if found:
            for g in found:
                first_train.setdefault(g, train_ids[i])
            lookup -= found  # already attributed to the smallest id; no need to match it again
    out = []
    for hid, grams in zip(heldout_ids, held_grams, strict=True):
        hits = [first_train[g] for g in grams if g in first_train]
        if hits:
            out.append(NgramOverlap(hid, len(hits), len(grams), len(hits) / len(grams), min(hits)))
    return tuple(sorted(out, key=lambda o: o.heldout_id))


def find_exact_duplicates(
    train_ids: Sequence[str], train_texts: Sequence[str], heldout_ids: Sequence[str], heldout_texts: Sequence[str]
) -> tuple[DuplicateMatch, ...]:
    """Held-out items whose normalised text equals a training item's (empty texts never match).

    Example:
        >>> find_exact_duplicates(["t1"], ["Hello, world"], ["h1", "h2"], ["hello world!", "bye"])
        (DuplicateMatch(heldout_id='h1', train_id='t1', kind='exact', jaccard=1.0),)
    """
    check_ids(train_ids, train_texts, "training set")
    check_ids(heldout_ids, heldout_texts, "held-out set")
    first: dict[str, str] = {}
    for tid, text in zip(train_ids, train_texts, strict=True):
        key = normalize_text(text)
        if key and (key not in first or tid < first[key]):
            first[key] = tid
    out = [DuplicateMatch(hid, first[k], "exact", 1.0) for hid, t in zip(heldout_ids, heldout_texts, strict=True)
           if (k := normalize_text(t)) in first]
    return tuple(sorted(out, key=lambda m: m.heldout_id))


def shingles(words: Sequence[str], size: int = 5) -> set[str]:
    """Word `size`-shingles joined by spaces; a shorter non-empty text is its own one shingle.

    Example:
        >>> sorted(shingles(["a", "b", "c"], 2))
        ['a b', 'b c']
    """
    return {" ".join(g) for g in word_ngrams(words, size)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b| (0.0 when both are empty).

    Example:
        >>> jaccard({"x", "y"}, {"y", "z"})
        0.3333333333333333
    """
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _minhashes(texts: Sequence[str], config: ContaminationConfig) -> list:
    from datasketch import MinHash

    sets = [[s.encode() for s in shingles(normalized_words(t), config.shingle_size)] for t in texts]
    return MinHash.bulk(sets, num_perm=config.num_perm, seed=config.seed)


def _lsh(minhashes: list, config: ContaminationConfig):
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=config.near_threshold, num_perm=config.num_perm)
    with lsh.insertion_session() as session:
        for i, m in enumerate(minhashes):
            if not m.is_empty():
                session.insert(i, m, check_duplication=False)
    return lsh


def find_near_duplicates(
    train_ids: Sequence[str],
    train_texts: Sequence[str],
    heldout_ids: Sequence[str],
    heldout_texts: Sequence[str],
    config: ContaminationConfig = ContaminationConfig(),
) -> tuple[DuplicateMatch, ...]:
    """Held-out items with a training item of shingle Jaccard >= threshold, exact duplicates excluded.

    Example:
        >>> a = "one two three four five six seven eight nine ten eleven twelve"
        >>> m = find_near_duplicates(["t1"], [a], ["h1"], [a + " thirteen"])
        >>> (m[0].train_id, round(m[0].jaccard, 3))
        ('t1', 0.889)
    """
    check_ids(train_ids, train_texts, "training set")
    check_ids(heldout_ids, heldout_texts, "held-out set")
    lsh = _lsh(_minhashes(train_texts, config), config)
    out = []
    for hid, text, m in zip(heldout_ids, heldout_texts, _minhashes(heldout_texts, config), strict=True):
        if m.is_empty():
            continue
        words = normalized_words(text)
        mine = shingles(words, config.shingle_size)
        best: tuple[float, str] | None = None
        for i in lsh.query(m):
            other = normalized_words(train_texts[i])
            if other == words:
                best = None  # an exact duplicate: reported by find_exact_duplicates instead
                break
            j = jaccard(mine, shingles(other, config.shingle_size))
            if j >= config.near_threshold and (best is None or (-j, train_ids[i]) < (-best[0], best[1])):
                best = (j, train_ids[i])
        if best is not None:
            out.append(DuplicateMatch(hid, best[1], "near", best[0]))
    return tuple(sorted(out, key=lambda m: m.heldout_id))


def duplicate_groups(
    ids: Sequence[str], texts: Sequence[str], config: ContaminationConfig = ContaminationConfig()
) -> tuple[DuplicateGroup, ...]:
    """Groups of exact and (when `config.near_duplicates`) near duplicates within one set.

    An exact group holds items with equal normalised text. A near group is a connected component
    of pairs with Jaccard >= threshold that is not a single exact group. Sorted by kind, then ids.

    Example:
        >>> duplicate_groups(["a", "b", "c"], ["Hi there", "hi, there!", "other"])
        (DuplicateGroup(kind='exact', ids=('a', 'b')),)
    """
    check_ids(ids, texts, "set")
    by_text: dict[str, list[str]] = {}
    for i, t in zip(ids, texts, strict=True):
        if key := normalize_text(t):
            by_text.setdefault(key, []).append(i)
    groups = [DuplicateGroup("exact", tuple(sorted(g))) for g in by_text.values() if len(g) > 1]
    if config.near_duplicates:
        parent = list(range(len(ids)))

        def root(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        minhashes = _minhashes(texts, config)
        lsh = _lsh(minhashes, config)
        sets = [shingles(normalized_words(t), config.shingle_size) for t in texts]
        for a, m in enumerate(minhashes):
            for b in lsh.query(m) if not m.is_empty() else ():
                if b > a and root(a) != root(b) and jaccard(sets[a], sets[b]) >= config.near_threshold:
                    parent[root(b)] = root(a)
        comps: dict[int, list[str]] = {}
        for k in range(len(ids)):
            comps.setdefault(root(k), []).append(ids[k])
        exact = {g.ids for g in groups}
        groups += [DuplicateGroup("near", g) for c in comps.values()
                   if len(c) > 1 and (g := tuple(sorted(c))) not in exact]
    return tuple(sorted(groups, key=lambda g: (g.kind, g.ids)))


def contamination_protocol(config: ContaminationConfig) -> ContaminationProtocol:
    """The protocol record of `config`, with the installed datasketch version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ds_version: str | None = version("datasketch")
    except PackageNotFoundError:
        ds_version = None
    return ContaminationProtocol(
        ngram_n=config.ngram_n, normalisation=NORMALISATION, gram_hash=GRAM_HASH,
        short_items=f"a text of fewer than {config.ngram_n} words is one gram (lm-eval gives it none)",
        shingle_size=config.shingle_size, near_threshold=config.near_threshold, num_perm=config.num_perm,
        seed=config.seed, minhash_hash="datasketch sha1_hash32 of the UTF-8 shingle",
        datasketch_version=ds_version if config.near_duplicates else None,
    )


def check_contamination(
    train_ids: Sequence[str],
    train_texts: Sequence[str],
    heldout_ids: Sequence[str],
    heldout_texts: Sequence[str],
    config: ContaminationConfig = ContaminationConfig(),
) -> ContaminationReport:
    """n-gram overlap, exact and near duplicates of a held-out set against a training set.

    `contaminated_ids` is the sorted union of the three lists.

    Example:
        >>> r = check_contamination(["t1"], ["a b c d"], ["h1", "h2"], ["A b, c d", "e f"])
        >>> r.contaminated_ids, [m.kind for m in r.exact]
        (('h1',), ['exact'])
    """
    overlaps = find_ngram_overlap(train_ids, train_texts, heldout_ids, heldout_texts, config.ngram_n)
    exact = find_exact_duplicates(train_ids, train_texts, heldout_ids, heldout_texts)
    near = (find_near_duplicates(train_ids, train_texts, heldout_ids, heldout_texts, config)
            if config.near_duplicates else ())
    ids = sorted({o.heldout_id for o in overlaps} | {m.heldout_id for m in (*exact, *near)})
    return ContaminationReport(tuple(ids), overlaps, exact, near, contamination_protocol(config))
