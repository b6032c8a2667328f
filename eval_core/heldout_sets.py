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

import codecs
import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval_core.errors import DatasetError
from eval_core.records import DatasetKind

DATASET_SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}

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

    def category_counts(self) -> dict[str, int]:
        if "category" not in self.column_map:
            return {}
        counts = Counter("" if v is None else str(v) for v in self.values("category"))
        return dict(sorted(counts.items()))


def _decode(raw: bytes, path: Path) -> str:
    """Decode UTF-8 (with or without BOM) or BOM-marked UTF-16; name the line of a bad byte."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"invalid UTF-16 ({exc.reason})", path=path) from exc
    # Strip the BOM by hand: "utf-8-sig" reports error offsets relative to the text after it,
    # which would name the wrong byte and line.
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-save the file as UTF-8",
            path=path,
            line=line,
        ) from exc


def _read_jsonl(path: Path) -> tuple[list[dict], list[int], list[str]]:
    text = _decode(path.read_bytes(), path)
    if text.lstrip().startswith("["):
        raise DatasetError(
            "this is a JSON array, not JSON Lines; write one JSON object per line",
            path=path,
            line=1,
        )
    rows, lines, columns = [], [], {}
    # Not str.splitlines(): it also splits on U+2028, U+2029 and U+0085, which JSON strings may
    # hold raw, and would cut a record in two. "\r" cannot occur raw inside a JSON string.
    for n, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=n
            ) from exc
        if not isinstance(obj, dict):
            raise DatasetError("each line must be a JSON object", path=path, line=n)
        for k in obj:
            columns.setdefault(k, None)
        rows.append(obj)
        lines.append(n)
    return rows, lines, list(columns)


def _read_csv(path: Path) -> tuple[list[dict], list[int], list[str]]:
    text = _decode(path.read_bytes(), path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    # The csv module refuses cells over 128 KiB by default; no cell can be longer than the file.
    old_limit = csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            return [], [], []
        if len(set(header)) != len(header):
            dup = [c for c, k in Counter(header).items() if k > 1][0]
            raise DatasetError("duplicate column name in the header", path=path, line=1, field=dup)
        rows, lines = [], []
        start = reader.line_num + 1
        for record in reader:
            if not record:
                start = reader.line_num + 1
                continue
            if len(record) != len(header):
                raise DatasetError(
                    f"{len(record)} fields but the header has {len(header)}; quote cells that "
                    "contain commas or newlines",
                    path=path,
                    line=start,
                )
            rows.append(dict(zip(header, record)))
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            # The reader only notices at the end of the file; the quote opened in this record.
            raise DatasetError(
                "malformed CSV: a quoted cell in the record starting here is never closed; add "
                'the closing quote (write a literal quote inside a quoted cell as "")',
                path=path,
                line=start,
            ) from exc
        raise DatasetError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from exc
    finally:
        csv.field_size_limit(old_limit)
    return rows, lines, header


def _read_parquet(path: Path) -> tuple[list[dict], list[int], list[str]]:
    import pyarrow.parquet as pq  # deferred: pyarrow is heavy and only Parquet needs it

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DatasetError(f"cannot read Parquet: {exc}", path=path) from exc
    rows = table.to_pylist()
    # Parquet has no lines; report the 1-based row number instead.
    return rows, list(range(1, len(rows) + 1)), list(table.column_names)


def read_rows(path: Path) -> tuple[str, list[dict], list[int], list[str]]:
    """Read any supported file into (format, rows, line numbers, columns)."""
    fmt = DATASET_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(
            f"unsupported file type '{path.suffix}'; use .jsonl, .csv or .parquet", path=path
        )
    if not path.is_file():
        raise DatasetError("dataset file does not exist", path=path)
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]
    try:
        return (fmt, *reader(path))
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path=path) from exc


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
        f"cannot tell what this dataset holds from its columns {columns}; set kind and "
        "[datasets.columns] for it in ftlens.toml (e.g. prompt = \"question\", reference = \"answer\")"
    )


def resolve_columns(
    kind: DatasetKind, columns: list[str], mapping: dict[str, str] | None, path: Path
) -> dict[str, str]:
    """Map roles onto columns: explicit mapping first, then aliases; check required roles."""
    mapping = dict(mapping or {})
    for role, col in mapping.items():
        if col not in columns:
            raise DatasetError(
                f"column '{col}' mapped to role '{role}' is not in the file (columns: {columns})",
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
        raise DatasetError(
            f"a {kind} set needs a column for {missing}; found {columns}. Rename the column or map "
            f"it in ftlens.toml [datasets.columns]",
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
            non-text required value, a duplicate id, a probe answer that is not one of its
            choices. Empty strings are kept: metrics decide what
            an empty reference means, as their reference implementations do.

    Example:
        >>> ds = read_heldout_set(Path("heldout/support_test.jsonl"))  # doctest: +SKIP
        >>> ds.kind, len(ds.rows)
        ('generation', 64)
    """
    fmt, rows, lines, found = read_rows(path)
    if not rows:
        raise DatasetError("the dataset has no rows", path=path)
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
        if "id" in column_map and row.get(column_map["id"]) is not None:
            # A row without an id is not a duplicate of another row without one.
            key = str(row[column_map["id"]])
            if key in seen_ids:
                raise DatasetError(
                    f"duplicate id {key!r} (first on line {seen_ids[key]}); ids must be unique",
                    path=path,
                    line=line,
                    field=column_map["id"],
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


def example_ids(ds: HeldoutSet) -> list[str]:
    """Each example's id: its `id` column, else "row-<line>" (stable while lines are only appended)."""
    if "id" in ds.column_map:
        return [str(v) for v in ds.values("id")]
    return [f"row-{line}" for line in ds.lines]
