"""Rating campaigns: who rates which item, comparing which two checkpoints, shown in which order.

A campaign (`CampaignSpec`) names two or more checkpoints, a held-out set whose outputs were generated
under one generation setting, the raters, an overlap (how many raters see each item), a Likert rubric
(default helpfulness, correctness and tone on 1-5) and a seed. `assign` turns it into one
`Assignment` per (item, rater), deterministically from the seed:

- items are shuffled; item i compares the pair ``pairs[i % len(pairs)]`` of the shuffled list of
  all checkpoint pairs, so every pair gets the same number of items (within one);
- each item goes to `overlap` raters, always the least loaded so far (ties broken by a seeded
  draw), so queue lengths differ by at most one;
- for each (item, rater) a seeded coin decides which output is shown on the left ("A");
- each assignment has an opaque `token` (a hash of campaign, item, rater and seed): what the rating
  page uses as the item's key, so nothing in the browser (labels, keys, URLs) names a checkpoint.

Pure: no database (eval_core.rating_store keeps campaigns and ratings), no model.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from eval_core.errors import EvalCoreError

CAMPAIGN_SCHEMA_VERSION = 1
DEFAULT_RUBRIC: tuple[str, ...] = ("helpfulness", "correctness", "tone")
DEFAULT_SCALE: tuple[int, int] = (1, 5)
DEFAULT_OVERLAP = 2
DEFAULT_SEED = 12345
VERDICTS: tuple[str, ...] = ("left", "right", "tie", "both_bad")
"""What a rater can answer: A (left) better, B (right) better, tie, both bad."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def check_name(value: str, what: str) -> str:
    """A campaign or rater name: 1-64 letters, digits, space, dot, underscore or hyphen."""
    value = value.strip() if isinstance(value, str) else value
    if not isinstance(value, str) or not _NAME.match(value):
        raise EvalCoreError(f"{what} {value!r} is not a valid name: use 1-64 letters, digits, spaces, '.', '_' or '-', "
                            "starting with a letter or digit", field=what)
    return value


@dataclass(frozen=True)
class CampaignSpec:
    """What a campaign compares and who rates it (stored as JSON with `schema_version`).

    `models` are checkpoint labels as the results store names them ("base", "checkpoint-36", or
    "run/checkpoint-36" when a workspace has several runs); `fingerprints` are their checkpoint
    fingerprints, in the same order (empty for campaigns imported from another tool).
    """

    name: str
    dataset: str
    generation_hash: str
    models: tuple[str, ...]
    raters: tuple[str, ...]
    fingerprints: tuple[str, ...] = ()
    overlap: int = DEFAULT_OVERLAP
    rubric: tuple[str, ...] = DEFAULT_RUBRIC
    scale: tuple[int, int] = DEFAULT_SCALE
    seed: int = DEFAULT_SEED
    max_items: int | None = None
    imported: bool = False
    schema_version: int = field(default=CAMPAIGN_SCHEMA_VERSION)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name(self.name, "campaign"))
        for attr in ("models", "raters", "fingerprints", "rubric"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        object.__setattr__(self, "scale", tuple(int(v) for v in self.scale))
        object.__setattr__(self, "raters", tuple(check_name(r, "rater") for r in self.raters))
        if len(self.models) < 2 or len(set(self.models)) != len(self.models):
            raise EvalCoreError(f"a campaign compares two or more different checkpoints; got {list(self.models)}", field="models")
        if self.fingerprints and len(self.fingerprints) != len(self.models):
            raise EvalCoreError("give one fingerprint per checkpoint", field="fingerprints")
        if not self.raters or len(set(self.raters)) != len(self.raters):
            raise EvalCoreError(f"name one or more different raters; got {list(self.raters)}", field="raters")
        if not 1 <= self.overlap <= len(self.raters):
            raise EvalCoreError(f"overlap {self.overlap}: each item can be seen by 1 to {len(self.raters)} raters "
                                f"(the number of raters)", field="overlap")
        lo, hi = self.scale
        if len(self.scale) != 2 or lo >= hi:
            raise EvalCoreError(f"rubric scale {self.scale}: give (lowest, highest), e.g. (1, 5)", field="scale")
        if len(set(self.rubric)) != len(self.rubric) or any(not c.strip() for c in self.rubric):
            raise EvalCoreError(f"rubric criteria must be distinct, non-empty names; got {list(self.rubric)}", field="rubric")
        if self.max_items is not None and self.max_items < 1:
            raise EvalCoreError("max_items must be at least 1 (or None for every item)", field="max_items")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CampaignSpec:
        if data.get("schema_version") != CAMPAIGN_SCHEMA_VERSION:
            raise EvalCoreError(f"campaign record version {data.get('schema_version')} is not "
                                f"{CAMPAIGN_SCHEMA_VERSION}; upgrade Fine-Tune Lens", field="schema_version")
        return cls(**data)


@dataclass(frozen=True)
class Assignment:
    """One item in one rater's queue: `left` is shown as "A", `right` as "B"."""

    campaign: str
    item_id: str
    rater: str
    left: str
    right: str
    position: int  # order in the rater's queue, from 0
    token: str  # opaque key of (campaign, item, rater) for the browser


def assignment_token(campaign: str, item_id: str, rater: str, seed: int) -> str:
    """16 hex characters naming an (item, rater) without naming the checkpoints.

    Example:
        >>> len(assignment_token("demo", "sup-0001", "alice", 12345))
        16
    """
    return hashlib.sha256(f"{campaign}\0{item_id}\0{rater}\0{seed}".encode()).hexdigest()[:16]


def assign(spec: CampaignSpec, item_ids: Sequence[str]) -> list[Assignment]:
    """Every (item, rater) assignment of the campaign, balanced and seeded (see the module doc).

    Example:
        >>> spec = CampaignSpec("c", "set", "h", ("m1", "m2"), ("ann", "bob"), overlap=1)
        >>> sorted(a.rater for a in assign(spec, ["x", "y", "z", "w"]))
        ['ann', 'ann', 'bob', 'bob']
    """
    if len(set(item_ids)) != len(item_ids):
        raise EvalCoreError("item ids must be unique", field="id")
    rng = random.Random(spec.seed)
    items = sorted(item_ids)
    rng.shuffle(items)
    if spec.max_items is not None:
        items = items[: spec.max_items]
    pairs = list(itertools.combinations(spec.models, 2))
    rng.shuffle(pairs)
    load = dict.fromkeys(spec.raters, 0)
    out: list[Assignment] = []
    for i, item in enumerate(items):
        pair = pairs[i % len(pairs)]
        tiebreak = {r: rng.random() for r in spec.raters}
        chosen = sorted(spec.raters, key=lambda r: (load[r], tiebreak[r]))[: spec.overlap]
        for rater in sorted(chosen):
            left, right = pair if rng.random() < 0.5 else pair[::-1]
            out.append(Assignment(spec.name, item, rater, left, right, load[rater],
                                  assignment_token(spec.name, item, rater, spec.seed)))
            load[rater] += 1
    return out


def winner_of(verdict: str) -> str:
    """The analysis's winner label of a verdict: left is `model_a` (the import CSV's convention).

    Example:
        >>> winner_of("left"), winner_of("both_bad")
        ('model_a', 'both_bad')
    """
    if verdict not in VERDICTS:
        raise EvalCoreError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}", field="verdict")
    return {"left": "model_a", "right": "model_b"}.get(verdict, verdict)
