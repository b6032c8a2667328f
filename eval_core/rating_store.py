"""Rating campaigns and ratings in the workspace's database (SQLite by default, PostgreSQL by URL).

The same database as the results store (`ResultsStore`: WAL, busy timeout, BEGIN IMMEDIATE), with
its own tables (docs/ratings-schema.md):

- `rating_campaigns`: one row per campaign, its `CampaignSpec` as JSON;
- `rating_items`: a snapshot of every item at creation (prompt, reference, category and each
  checkpoint's output), so the texts raters judge never change under them;
- `rating_assignments`: one row per (campaign, item, rater) with the left/right order and the token;
- `ratings`: one row per (campaign, item, rater), enforced by the primary key. A submit is one
  transaction that inserts-or-ignores that row, so a double click or a replayed request stores
  exactly one rating, and a rating is acknowledged only after its transaction committed;
- `rating_skips`: items a rater skipped (they come back at the end of the queue).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from eval_core.errors import EvalCoreError
from eval_core.rating_campaigns import VERDICTS, Assignment, CampaignSpec, assign, check_name, winner_of
from eval_core.results_store import ResultsStore

MAX_TEXT = 20_000  # characters of a comment or correction: a paragraph, not a file
rating_metadata = sa.MetaData()
rating_campaigns = sa.Table(
    "rating_campaigns", rating_metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
rating_items = sa.Table(
    "rating_items", rating_metadata,
    sa.Column("campaign", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.String(255), primary_key=True),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("reference", sa.Text),
    sa.Column("category", sa.String(255)),
    sa.Column("outputs", sa.Text, nullable=False),  # JSON {model label: output text}
)
rating_assignments = sa.Table(
    "rating_assignments", rating_metadata,
    sa.Column("campaign", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.String(255), primary_key=True),
    sa.Column("rater", sa.String(64), primary_key=True),
    sa.Column("token", sa.String(32), nullable=False, unique=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("model_left", sa.String(255), nullable=False),
    sa.Column("model_right", sa.String(255), nullable=False),
)
ratings = sa.Table(
    "ratings", rating_metadata,
    sa.Column("campaign", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.String(255), primary_key=True),
    sa.Column("rater", sa.String(64), primary_key=True),
    sa.Column("model_left", sa.String(255), nullable=False),
    sa.Column("model_right", sa.String(255), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),  # left / right / tie / both_bad
    sa.Column("scores", sa.Text, nullable=False),  # JSON {"left": {criterion: score}, "right": {...}}
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("correction", sa.Text, nullable=False),  # the rater's ideal answer, or ""
    sa.Column("category", sa.String(255)),
    sa.Column("source", sa.String(255), nullable=False),  # "app" or "import:<file name>"
    sa.Column("created_at", sa.Float, nullable=False),
)
rating_skips = sa.Table(
    "rating_skips", rating_metadata,
    sa.Column("campaign", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.String(255), primary_key=True),
    sa.Column("rater", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class RatingItem:
    """What raters see of one item (outputs keyed by model label)."""

    item_id: str
    prompt: str
    outputs: dict[str, str]
    reference: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class QueueItem:
    """The next item of a rater: only what the rating page may show (no model names)."""

    token: str
    position: int
    prompt: str
    left_text: str
    right_text: str
    skipped: bool


@dataclass(frozen=True)
class Progress:
    rater: str
    done: int
    total: int
    skipped: int


class RatingStore(ResultsStore):
    """Campaigns and ratings; a `ResultsStore` on the same database with the rating tables too.

    Example:
        >>> store = RatingStore(database_url(root))  # doctest: +SKIP
        >>> store.submit("demo", token, "alice", "left", {"left": {"helpfulness": 4}})
        True
    """

    metadatas = (*ResultsStore.metadatas, rating_metadata)

    # --- campaigns -----------------------------------------------------------------------------

    def create_campaign(self, spec: CampaignSpec, items: Sequence[RatingItem]) -> list[Assignment]:
        """Store the campaign, its item snapshot and its assignments in one transaction."""
        if not items:
            raise EvalCoreError(f"campaign '{spec.name}' has no items: every checkpoint needs an output for an item", field="dataset")
        for it in items:
            missing = [m for m in spec.models if m not in it.outputs]
            if missing:
                raise EvalCoreError(f"item {it.item_id} has no output of {', '.join(missing)}", field="outputs")
        plan = assign(spec, [it.item_id for it in items])
        now = time.time()
        with self._writing() as conn:
            if conn.execute(sa.select(rating_campaigns.c.name).where(rating_campaigns.c.name == spec.name)).first():
                raise EvalCoreError(f"a campaign named '{spec.name}' exists; choose another name", field="campaign")
            conn.execute(rating_campaigns.insert().values(name=spec.name, spec=json.dumps(spec.to_dict()), created_at=now))
            kept = {a.item_id for a in plan}
            conn.execute(rating_items.insert(), [
                {"campaign": spec.name, "item_id": it.item_id, "prompt": it.prompt, "reference": it.reference,
                 "category": it.category, "outputs": json.dumps({m: it.outputs[m] for m in spec.models})}
                for it in items if it.item_id in kept])
            conn.execute(rating_assignments.insert(), [
                {"campaign": a.campaign, "item_id": a.item_id, "rater": a.rater, "token": a.token, "position": a.position,
                 "model_left": a.left, "model_right": a.right} for a in plan])
        return plan

    def register_imported_campaign(self, spec: CampaignSpec) -> None:
        """Create (or keep) a campaign record for judgments imported from another tool."""
        with self._writing() as conn:
            row = conn.execute(sa.select(rating_campaigns.c.spec).where(rating_campaigns.c.name == spec.name)).first()
            if row is None:
                conn.execute(rating_campaigns.insert().values(name=spec.name, spec=json.dumps(spec.to_dict()), created_at=time.time()))

    def update_campaign(self, spec: CampaignSpec) -> None:
        """Replace a campaign's record (imports add the models and raters their rows name)."""
        with self._writing() as conn:
            conn.execute(rating_campaigns.update().where(rating_campaigns.c.name == spec.name).values(spec=json.dumps(spec.to_dict())))

    def campaigns(self) -> list[CampaignSpec]:
        with self._reading() as conn:
            rows = conn.execute(sa.select(rating_campaigns.c.spec).order_by(rating_campaigns.c.created_at)).all()
        return [CampaignSpec.from_dict(json.loads(r[0])) for r in rows]

    def campaign(self, name: str) -> CampaignSpec:
        with self._reading() as conn:
            row = conn.execute(sa.select(rating_campaigns.c.spec).where(rating_campaigns.c.name == name)).first()
        if row is None:
            known = ", ".join(c.name for c in self.campaigns()) or "(none)"
            raise EvalCoreError(f"no rating campaign named '{name}'; campaigns: {known}", field="campaign")
        return CampaignSpec.from_dict(json.loads(row[0]))

    def items(self, campaign: str) -> dict[str, RatingItem]:
        t = rating_items
        with self._reading() as conn:
            rows = conn.execute(sa.select(t).where(t.c.campaign == campaign)).all()
        return {r.item_id: RatingItem(r.item_id, r.prompt, json.loads(r.outputs), r.reference, r.category) for r in rows}

    def text_changes(self, campaign: str) -> list[str]:
        """Ids of the campaign's items whose prompt or reference differs from the same id in another
        campaign on the same held-out set: the set was re-imported with changed text under old ids.

        Each campaign's ratings stay linked to the text it snapshotted (nothing is re-linked to the new
        text); this list is what a page or report shows so the two campaigns are not read as one.
        """
        spec = self.campaign(campaign)
        mine = self.items(campaign)
        changed: set[str] = set()
        for other in self.campaigns():
            if other.name == campaign or other.imported or other.dataset != spec.dataset:
                continue
            for item_id, item in self.items(other.name).items():
                now = mine.get(item_id)
                if now is not None and (now.prompt, now.reference) != (item.prompt, item.reference):
                    changed.add(item_id)
        return sorted(changed)

    def assignments(self, campaign: str, rater: str | None = None) -> list[Assignment]:
        t = rating_assignments
        cond = [t.c.campaign == campaign] + ([t.c.rater == rater] if rater is not None else [])
        with self._reading() as conn:
            rows = conn.execute(sa.select(t).where(*cond).order_by(t.c.rater, t.c.position)).all()
        return [Assignment(r.campaign, r.item_id, r.rater, r.model_left, r.model_right, r.position, r.token) for r in rows]

    # --- a rater's queue -----------------------------------------------------------------------------

    def _rated_and_skipped(self, conn, campaign: str, rater: str) -> tuple[set[str], dict[str, float]]:  # noqa: ANN001
        rated = {r[0] for r in conn.execute(sa.select(ratings.c.item_id).where(
            ratings.c.campaign == campaign, ratings.c.rater == rater))}
        skipped = {r[0]: r[1] for r in conn.execute(sa.select(rating_skips.c.item_id, rating_skips.c.created_at).where(
            rating_skips.c.campaign == campaign, rating_skips.c.rater == rater))}
        return rated, skipped

    def next_item(self, campaign: str, rater: str) -> QueueItem | None:
        """The rater's next unrated item: in queue order, skipped items last (oldest skip first)."""
        queue = self.assignments(campaign, rater)
        with self._reading() as conn:
            rated, skipped = self._rated_and_skipped(conn, campaign, rater)
        todo = [a for a in queue if a.item_id not in rated]
        if not todo:
            return None
        nxt = min(todo, key=lambda a: (a.item_id in skipped, skipped.get(a.item_id, 0.0), a.position))
        item = self.items(campaign)[nxt.item_id]
        return QueueItem(nxt.token, nxt.position, item.prompt, item.outputs[nxt.left], item.outputs[nxt.right],
                         nxt.item_id in skipped)

    def progress(self, campaign: str) -> list[Progress]:
        """Per rater: rated, assigned and currently skipped items."""
        spec = self.campaign(campaign)
        queue = self.assignments(campaign)
        out = []
        with self._reading() as conn:
            for rater in spec.raters:
                rated, skipped = self._rated_and_skipped(conn, campaign, rater)
                mine = [a for a in queue if a.rater == rater]
                out.append(Progress(rater, len(rated), len(mine) or len(rated), len(set(skipped) - rated)))
        return out

    def _assignment(self, conn, campaign: str, token: str, rater: str) -> sa.Row:  # noqa: ANN001
        t = rating_assignments
        row = conn.execute(sa.select(t).where(t.c.campaign == campaign, t.c.token == token)).first()
        if row is None or row.rater != rater:
            raise EvalCoreError(f"item {token} is not in {rater}'s queue of campaign '{campaign}'", field="token")
        return row

    def submit(self, campaign: str, token: str, rater: str, verdict: str, scores: dict | None = None,
               comment: str = "", correction: str = "") -> bool:
        """Store a rating; True when stored now, False when this rater had already rated the item
        (a double click or a replayed request: the first rating stands, nothing is duplicated).

        `scores` is {"left": {criterion: score}, "right": {...}} on the campaign's rubric and scale.
        """
        spec = self.campaign(campaign)
        if verdict not in VERDICTS:
            raise EvalCoreError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}", field="verdict")
        clean = _check_scores(spec, scores or {})
        for what, text in (("comment", comment), ("correction", correction)):
            if not isinstance(text, str) or len(text) > MAX_TEXT:
                raise EvalCoreError(f"the {what} must be text of at most {MAX_TEXT} characters", field=what)
        with self._writing() as conn:
            a = self._assignment(conn, campaign, token, rater)
            item = conn.execute(sa.select(rating_items.c.category).where(
                rating_items.c.campaign == campaign, rating_items.c.item_id == a.item_id)).first()
            stored = conn.execute(self._insert_ignore(ratings).values(
                campaign=campaign, item_id=a.item_id, rater=rater, model_left=a.model_left, model_right=a.model_right,
                verdict=verdict, scores=json.dumps(clean, sort_keys=True), comment=comment.strip(),
                correction=correction.strip(), category=item.category if item else None, source="app",
                created_at=time.time()).returning(ratings.c.item_id)).first() is not None
            conn.execute(rating_skips.delete().where(rating_skips.c.campaign == campaign, rating_skips.c.item_id == a.item_id,
                                                     rating_skips.c.rater == rater))
        return stored

    def skip(self, campaign: str, token: str, rater: str) -> None:
        """Put an item at the end of the rater's queue (skipping again moves it to the end again)."""
        with self._writing() as conn:
            a = self._assignment(conn, campaign, token, rater)
            conn.execute(rating_skips.delete().where(rating_skips.c.campaign == campaign,
                                                     rating_skips.c.item_id == a.item_id, rating_skips.c.rater == rater))
            conn.execute(rating_skips.insert().values(campaign=campaign, item_id=a.item_id, rater=rater, created_at=time.time()))

    def undo_last(self, campaign: str, rater: str) -> str | None:
        """Delete the rater's newest rating made in the app; its token (the item comes back first)."""
        with self._writing() as conn:
            row = conn.execute(sa.select(ratings.c.item_id).where(
                ratings.c.campaign == campaign, ratings.c.rater == rater, ratings.c.source == "app")
                .order_by(ratings.c.created_at.desc()).limit(1)).first()
            if row is None:
                return None
            conn.execute(ratings.delete().where(ratings.c.campaign == campaign, ratings.c.item_id == row[0],
                                                ratings.c.rater == rater))
            token = conn.execute(sa.select(rating_assignments.c.token).where(
                rating_assignments.c.campaign == campaign, rating_assignments.c.item_id == row[0],
                rating_assignments.c.rater == rater)).first()
        return token[0] if token else None

    def import_ratings(self, rows: Sequence[dict]) -> int:
        """Insert imported ratings (dicts with the `ratings` columns); the number newly stored."""
        if not rows:
            return 0
        with self._writing() as conn:
            # RETURNING, not rowcount: psycopg reports no rowcount for INSERT ... ON CONFLICT DO NOTHING.
            return sum(conn.execute(self._insert_ignore(ratings).values(**r).returning(ratings.c.item_id)).first() is not None
                       for r in rows)

    def ratings_of(self, campaign: str) -> list[dict]:
        with self._reading() as conn:
            rows = conn.execute(sa.select(ratings).where(ratings.c.campaign == campaign)
                                .order_by(ratings.c.created_at, ratings.c.item_id, ratings.c.rater)).all()
        return [{**r._mapping, "scores": json.loads(r.scores)} for r in rows]


def _check_scores(spec: CampaignSpec, scores: dict) -> dict:
    lo, hi = spec.scale
    out: dict[str, dict[str, int]] = {}
    for side, by_criterion in scores.items():
        if side not in ("left", "right") or not isinstance(by_criterion, dict):
            raise EvalCoreError(f"scores are given per side ('left', 'right'), not {side!r}", field="scores")
        for criterion, value in by_criterion.items():
            if value is None:
                continue
            if criterion not in spec.rubric:
                raise EvalCoreError(f"'{criterion}' is not in the rubric ({', '.join(spec.rubric)})", field="scores")
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi or int(value) != value:
                raise EvalCoreError(f"{criterion} score {value!r} must be a whole number from {lo} to {hi}", field="scores")
            out.setdefault(side, {})[criterion] = int(value)
    return out


def judgments_and_scores(rows: Sequence[dict]):
    """The analysis's inputs from stored rating rows: `Judgment`s and `LikertScore`s (model labels)."""
    from eval_core.rating_analysis import Judgment, LikertScore

    judgments, likert = [], []
    for r in rows:
        judgments.append(Judgment(r["item_id"], r["rater"], r["model_left"], r["model_right"], winner_of(r["verdict"]),
                                  r.get("category")))
        for side, model in (("left", r["model_left"]), ("right", r["model_right"])):
            for criterion, score in r["scores"].get(side, {}).items():
                likert.append(LikertScore(r["item_id"], r["rater"], model, criterion, float(score)))
    return judgments, likert


__all__ = ["RatingItem", "RatingStore", "QueueItem", "Progress", "check_name", "judgments_and_scores"]
