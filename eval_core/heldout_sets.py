"""Read held-out sets (JSONL, CSV, Parquet) with a column mapping and precise errors.

Every cell is kept as the file gave it: "NA", "null" and "" stay strings (pandas' default NA
parsing would silently turn them into missing values and change scores). Errors name the file, the
1-based line and the field, and say what to change.

Roles: a dataset's columns are mapped onto roles. `generation` sets need `prompt` and `reference`;
`text` sets need `text`; `probe` sets need `prompt` and `answer` (optional `choices`: then the
answer is one of the choices, as text or as a 0-based index; docs/probe-suites.md). `id`,
`category` and `should_refuse` are optional everywhere. When the workspace config gives no
mapping, the first column whose name matches an alias of the role is used.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval_core.data_files import DATASET_SUFFIXES as DATASET_SUFFIXES
from eval_core.data_files import read_rows as read_rows
from eval_core.errors import DatasetError
from eval_core.records import DatasetKind

ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "uid", "example_id", "idx"),
    "prompt": ("prompt", "input", "question", "instruction", "query", "source"),
    "reference": ("reference", "response", "output", "target", "completion", "answer"),
    "text": ("text", "content", "document", "passage"),
    "answer": ("answer", "target", "label"),
    "choices": ("choices", "options"),
    "category": ("category", "topic", "subject", "domain"),
    "should_refuse": ("should_refuse", "refuse", "is_negative"),
}
REQUIRED_ROLES: dict[str, tuple[str, ...]] = {
    "generation": ("prompt", "reference"),
    "text": ("text",),
    "probe": ("prompt", "answer"),
}
OPTIONAL_ROLES: dict[str, tuple[str, ...]] = {
    "generation": ("id", "category", "should_refuse"),
    "text": ("id", "category"),
    "probe": ("id", "category", "choices"),
}


@dataclass(frozen=True)
class HeldoutSet:
    """A held-out set in memory.

    Attributes:
        rows: one dict per example, keyed by the file's column names.
        lines: the 1-based line in the file where each row starts (for error messages).
        column_map: role -> column name.
    """

    path: Path
    format: str
    kind: DatasetKind
    columns: tuple[str, ...]
    column_map: dict[str, str]
    rows: list[dict[str, Any]] = field(repr=False)
    lines: list[int] = field(repr=False)

    def values(self, role: str) -> list[Any]:
        """The column mapped to `role`, one value per row."""
        col = self.column_map[role]
        return [r.get(col) for r in self.rows]

    def blank_lines(self) -> dict[str, list[int]]:
        """Lines whose required text (prompt, reference, text, answer) is empty or whitespace
        only, per role; such rows are kept, and the counts belong in any summary of the set."""
        found: dict[str, list[int]] = {}
        for role in REQUIRED_ROLES[self.kind]:
            for value, line in zip(self.values(role), self.lines):
                if isinstance(value, str) and not value.strip():
                    found.setdefault(role, []).append(line)
        return found

    def category_counts(self) -> dict[str, int]:
        if "category" not in self.column_map:
            return {}
        counts = Counter("" if v is None else str(v) for v in self.values("category"))
        return dict(sorted(counts.items()))


def infer_kind(columns: list[str], column_map: dict[str, str]) -> DatasetKind:
    """Guess the dataset kind from its (mapped) columns."""
    have = set(columns)

    def has(role: str) -> bool:
        return role in column_map or any(a in have for a in ROLE_ALIASES[role])

    if has("choices") and has("prompt"):
        return "probe"
    if has("prompt") and has("reference"):
        return "generation"
    if has("text"):
        return "text"
    raise DatasetError(
        f"cannot tell what this dataset holds from its columns {columns}{_near_misses(columns)}; set kind and "
        "[datasets.columns] for it in ftlens.toml (e.g. prompt = \"question\", reference = \"answer\")"
    )


def _near_misses(columns: list[str]) -> str:
    """A hint naming columns that differ from a known column name only by case or spaces: such a
    column is not matched (a guess could pick the wrong one), but it is what the user meant."""
    known = {a for aliases in ROLE_ALIASES.values() for a in aliases}
    near = [f"{c!r} is not {c.strip().lower()!r}" for c in columns
            if c not in known and c.strip().lower() in known]
    return f" (names must match exactly: {', '.join(near)})" if near else ""


def resolve_columns(
    kind: DatasetKind, columns: list[str], mapping: dict[str, str] | None, path: Path
) -> dict[str, str]:
    """Map roles onto columns: explicit mapping first, then aliases; check required roles."""
    mapping = dict(mapping or {})
    for role, col in mapping.items():
        if col not in columns:
            raise DatasetError(
                f"column '{col}' mapped to role '{role}' is not in the file (columns: {columns})"
                + next((f"; did you mean {c!r}?" for c in columns if c.strip().lower() == col.strip().lower()), ""),
                path=path,
                field=role,
            )
    resolved = dict(mapping)
    taken = set(mapping.values())
    for role in (*REQUIRED_ROLES[kind], *OPTIONAL_ROLES[kind]):
        if role in resolved:
            continue
        for alias in ROLE_ALIASES[role]:
            if alias in columns and alias not in taken:
                resolved[role] = alias
                taken.add(alias)
                break
    missing = [r for r in REQUIRED_ROLES[kind] if r not in resolved]
    if missing:
        expected = "; ".join(f"{r}: one of {', '.join(ROLE_ALIASES[r])}" for r in missing)
        raise DatasetError(
            f"a {kind} set needs a column for {missing} (expected {expected}); found {columns}"
            f"{_near_misses(columns)}. Rename the column or map it in ftlens.toml [datasets.columns]",
            path=path,
            field=missing[0],
        )
    return resolved


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_probe_answer(row: dict, column_map: dict[str, str], path: Path, line: int) -> None:
    """A probe's choices are a list of at least two strings, and its answer is one of them (the
    text itself or its 0-based index); without choices the answer must be text."""
    answer_col = column_map["answer"]
    answer = row.get(answer_col)
    choices = row.get(column_map["choices"]) if "choices" in column_map else None
    missing = " (the field is missing)" if answer is None else ""
    if choices is None:
        if not isinstance(answer, str):
            raise DatasetError(f"'{answer_col}' must be a string when the item has no choices, got "
                               f"{type(answer).__name__}{missing}", path=path, line=line, field=answer_col)
        return
    if not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        raise DatasetError("choices must be a list of strings", path=path, line=line, field=column_map["choices"])
    if len(choices) < 2:
        raise DatasetError(f"a multiple-choice item needs at least two choices, got {len(choices)}; add choices "
                           "or leave the field out for a cloze-only item", path=path, line=line,
                           field=column_map["choices"])
    if not (isinstance(answer, str) or _is_index(answer)):
        raise DatasetError(f"'{answer_col}' must be one of the choices (text) or its 0-based index, got "
                           f"{type(answer).__name__}{missing}",
                           path=path, line=line, field=answer_col)
    if _is_index(answer) and not 0 <= answer < len(choices):
        raise DatasetError(f"answer index {answer} is outside the {len(choices)} choices (0-based: 0 to "
                           f"{len(choices) - 1})", path=path, line=line, field=answer_col)
    if isinstance(answer, str) and answer not in choices:
        raise DatasetError(f"answer {answer!r} is not one of the choices {choices}; make it equal to one "
                           "choice, character for character, or give the choice's 0-based index",
                           path=path, line=line, field=answer_col)


def read_heldout_set(
    path: Path, *, kind: DatasetKind | None = None, columns: dict[str, str] | None = None
) -> HeldoutSet:
    """Read and validate a held-out set.

    Args:
        path: a .jsonl, .csv or .parquet file.
        kind: `generation`, `text` or `probe`; inferred from the columns when None.
        columns: role -> column overrides.

    Raises:
        DatasetError: naming the file, line and field: bad encoding or JSON, a missing column, a
            non-text required value, a duplicate or clashing id, a probe answer that is not
            one of its choices, a file over a cap of `eval_core.file_limits`. Empty strings
            are kept (metrics decide what an empty reference means, as their reference
            implementations do); `HeldoutSet.blank_lines` lists them.

    Example:
        >>> ds = read_heldout_set(Path("heldout/support_test.jsonl"))  # doctest: +SKIP
        >>> ds.kind, len(ds.rows)
        ('generation', 64)
    """
    fmt, rows, lines, found = read_rows(path)
    if not rows:
        why = ("the file is empty" if path.stat().st_size == 0 else
               f"the file has column names ({', '.join(found)}) and nothing else" if found else "the file has only blank lines")
        raise DatasetError(f"the dataset has no rows: {why}; add examples, one per line", path=path)
    try:
        kind = kind or infer_kind(found, columns or {})
    except DatasetError as exc:
        raise DatasetError(exc.message, path=path) from None
    column_map = resolve_columns(kind, found, columns, path)
    text_roles = [r for r in REQUIRED_ROLES[kind]]
    seen_ids: dict[str, int] = {}
    for row, line in zip(rows, lines):
        for role in text_roles:
            value = row.get(column_map[role])
            if kind == "probe" and role == "answer":
                continue  # text, or an index into the choices: checked with them below
            if not isinstance(value, str):
                raise DatasetError(
                    f"'{column_map[role]}' must be a string, got {type(value).__name__}"
                    + (" (the field is missing)" if value is None else ""),
                    path=path,
                    line=line,
                    field=column_map[role],
                )
        # Ids key results and ratings: two rows under one id would merge two examples' scores.
        key = _row_id(row, column_map, path, line)
        if key in seen_ids:
            clash = (" (a row without an id is called 'row-<its line>'; give every row an id)"
                     if key.startswith("row-") else "")
            raise DatasetError(
                f"duplicate id {key!r} (first on line {seen_ids[key]}); ids must be unique, and 1 and "
                f"\"1\" are the same id{clash}",
                path=path,
                line=line,
                field=column_map.get("id"),
            )
        seen_ids[key] = line
        if kind == "probe":
            _check_probe_answer(row, column_map, path, line)
    return HeldoutSet(
        path=path,
        format=fmt,
        kind=kind,
        columns=tuple(found),
        column_map=column_map,
        rows=rows,
        lines=lines,
    )


def _row_id(row: dict, column_map: dict[str, str], path: Path, line: int) -> str:
    """The row's id as text, or "row-<line>" when it has none (missing, null, NaN or blank)."""
    value = row.get(column_map["id"]) if "id" in column_map else None
    if isinstance(value, float) and (value != value or value.is_integer()):
        # Parquet written by pandas stores an integer id column with gaps as floats (1.0, NaN).
        value = None if value != value else int(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"row-{line}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(f"an id must be text or a whole number, got {type(value).__name__} {value!r}",
                           path=path, line=line, field=column_map["id"])
    return str(value)


def example_ids(ds: HeldoutSet) -> list[str]:
    """Each example's id: its `id` column as text, else "row-<line>" (stable while lines are only
    appended); unique, as read_heldout_set checks."""
    return [_row_id(row, ds.column_map, ds.path, line) for row, line in zip(ds.rows, ds.lines)]


def example_hashes(ds: HeldoutSet) -> list[str]:
    """A hash of each example's own fields (all roles but id): edits are computed again."""
    roles = sorted(r for r in ds.column_map if r != "id")
    return [
        hashlib.sha256(json.dumps([str(row.get(ds.column_map[r])) for r in roles]).encode()).hexdigest()[:16]
        for row in ds.rows
    ]
