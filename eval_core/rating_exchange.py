"""Ratings in and out: import pairwise judgments from other tools (CSV), export ratings (CSV, JSON)
and the human-in-the-loop fine-tuning data (JSONL).

Import CSV (UTF-8, header row; docs/ratings-schema.md): `item_id`, `rater`, `model_a`, `model_b`,
`winner` in {model_a, model_b, tie, both_bad}, optional `category`. `model_a` is the output that was
shown on the LEFT, so position bias can be measured. Every error names the file, line and field;
nothing is stored unless the whole file is valid. Rows already stored (same campaign, item, rater)
are kept as they are, so importing a file twice stores it once. An upload is parsed from its bytes in
memory and never saved; its name only labels errors and the `source` of its rows. Files over
`MAX_IMPORT_BYTES`, and binary files renamed to .csv (zip/xlsx, gzip, pickle, NUL bytes), are refused
before parsing, with what they are.

Export:
- `csv` / `json`: one row per rating (campaign, item, rater, model_a = left, model_b = right,
  winner, category, Likert scores, comment, correction, source, created_at). CSV cells starting with
  = + - @ (or a tab / carriage return) get a leading apostrophe so a spreadsheet never runs them.
- `jsonl`: the next fine-tuning round's data in the demo's training format (`id`, `category`,
  `prompt`, `response`, plus `source` and who said so): every rater correction (source `correction`), and for
  items without one, the output the raters preferred once every rater assigned to the item has rated
  it and all picked the same output (source `preferred`). Ties, "both bad", split verdicts, items
  still being rated and empty outputs give no row.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

from eval_core.errors import EvalCoreError
from eval_core.rating_campaigns import CampaignSpec, check_name
from eval_core.rating_store import RatingStore
from eval_core.records import defuse  # noqa: F401 - re-exported: the CSV cell guard every writer uses

IMPORT_COLUMNS = ("item_id", "rater", "model_a", "model_b", "winner")
WINNER_TO_VERDICT = {"model_a": "left", "model_b": "right", "tie": "tie", "both_bad": "both_bad"}
MAX_IMPORT_BYTES = 50_000_000  # 50 MB of judgments is ~500k rows; anything bigger is not a judgments file
# File signatures of what a renamed ".csv" upload often really is.
_BINARY_MAGIC = ((b"PK\x03\x04", "a zip archive (an .xlsx workbook is one)"), (b"PK\x05\x06", "an empty zip archive"),
                 (b"\x1f\x8b", "a gzip archive"), (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook"),
                 (b"PAR1", "a Parquet file"), (b"%PDF", "a PDF document"), (b"7z\xbc\xaf", "a 7-Zip archive"))
_PICKLE_PROTOCOLS = (b"\x02", b"\x03", b"\x04", b"\x05")  # after the PROTO opcode \x80; 0 and 1 are text-like
EXPORT_COLUMNS = ("campaign", "item_id", "rater", "model_a", "model_b", "winner", "category", "scores_a", "scores_b",
                  "comment", "correction", "source", "created_at")


def read_judgments_csv(path: Path | str) -> list[dict]:
    """Validated rows of an import CSV: dicts with the import columns and `category` (or None)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EvalCoreError(f"cannot read the judgments file: {exc.strerror}", path=path) from exc
    if size > MAX_IMPORT_BYTES:
        raise EvalCoreError(f"the file is {size / 1e6:.0f} MB; judgments files are limited to {MAX_IMPORT_BYTES / 1e6:.0f} MB",
                            path=path)
    try:
        data = path.read_bytes()
    except OSError as exc:  # a folder, a permission problem
        raise EvalCoreError(f"cannot read the judgments file: {exc.strerror}; give a CSV file", path=path) from exc
    return parse_judgments_csv(data, path)


def _refuse_binary(data: bytes, path: Path | str) -> None:
    """Name what a binary file really is (a renamed zip, workbook or pickle), instead of a
    confusing header error; nothing here ever unpacks or unpickles it."""
    kind = next((what for magic, what in _BINARY_MAGIC if data.startswith(magic)), None)
    if kind is None and data[:1] == b"\x80" and data[1:2] in _PICKLE_PROTOCOLS:
        kind = "a Python pickle"
    nul = data.find(b"\x00")
    # UTF-16 text has NUL bytes too: the UTF-8 decoding below says "save it as UTF-8" for it.
    if kind is None and nul >= 0 and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        kind = f"binary data (a NUL byte at offset {nul})"
    if kind is not None:
        raise EvalCoreError(f"this is {kind}, not CSV text: export the judgments as a UTF-8 CSV file and upload that",
                            path=path, line=1)


def parse_judgments_csv(data: bytes, path: Path | str) -> list[dict]:
    """`read_judgments_csv` of bytes already read (an upload, parsed in memory and never saved);
    `path` names them in errors."""
    if len(data) > MAX_IMPORT_BYTES:
        raise EvalCoreError(f"the file is {len(data) / 1e6:.0f} MB; judgments files are limited to "
                            f"{MAX_IMPORT_BYTES / 1e6:.0f} MB", path=path)
    _refuse_binary(data, path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise EvalCoreError(f"not UTF-8 text (byte {exc.start}); save the CSV as UTF-8", path=path, line=line) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in IMPORT_COLUMNS if c not in header]
    if missing:
        raise EvalCoreError(f"the header lacks {', '.join(missing)}; expected {', '.join(IMPORT_COLUMNS)}[, category]",
                            path=path, line=1, field=missing[0])
    rows, seen = [], {}
    try:
        for rec in reader:
            line = reader.line_num
            if None in rec:
                raise EvalCoreError(f"more cells than the {len(header)} columns of the header", path=path, line=line)
            for col in IMPORT_COLUMNS:
                if not (rec.get(col) or "").strip():
                    raise EvalCoreError(f"'{col}' is empty", path=path, line=line, field=col)
            row = {c: rec[c].strip() for c in IMPORT_COLUMNS}
            row["category"] = (rec.get("category") or "").strip() or None
            if row["winner"] not in WINNER_TO_VERDICT:
                raise EvalCoreError(f"winner {row['winner']!r} is not one of {', '.join(WINNER_TO_VERDICT)}",
                                    path=path, line=line, field="winner")
            if row["model_a"] == row["model_b"]:
                raise EvalCoreError("model_a and model_b are the same model", path=path, line=line, field="model_b")
            try:
                check_name(row["rater"], "rater")
            except EvalCoreError as exc:
                raise EvalCoreError(exc.message, path=path, line=line, field="rater") from exc
            key = (row["item_id"], row["rater"])
            if key in seen:
                raise EvalCoreError(f"item {row['item_id']} is judged twice by {row['rater']} (also line {seen[key]}); "
                                    "a rater judges an item once", path=path, line=line, field="item_id")
            seen[key] = line
            rows.append(row)
    except csv.Error as exc:
        raise EvalCoreError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from exc
    if not rows:
        raise EvalCoreError("no judgments: the file has a header but no rows", path=path, line=1)
    return rows


def import_judgments(store: RatingStore, campaign: str, path: Path | str, data: bytes | None = None) -> tuple[int, int]:
    """Import a judgments CSV (the file at `path`, or `data` uploaded under that name) into
    `campaign` (created when new); (rows stored now, rows already there)."""
    import time

    rows = read_judgments_csv(path) if data is None else parse_judgments_csv(data, path)
    models = sorted({r["model_a"] for r in rows} | {r["model_b"] for r in rows})
    raters = sorted({r["rater"] for r in rows})
    try:
        spec = store.campaign(campaign)
    except EvalCoreError:
        spec = CampaignSpec(campaign, "(imported)", "", tuple(models), tuple(raters), overlap=1, imported=True)
        store.register_imported_campaign(spec)
    if not spec.imported:
        raise EvalCoreError(f"campaign '{campaign}' was created in Fine-Tune Lens; import into a new campaign name",
                            field="campaign")
    now = time.time()
    stored = store.import_ratings([
        {"campaign": campaign, "item_id": r["item_id"], "rater": r["rater"], "model_left": r["model_a"],
         "model_right": r["model_b"], "verdict": WINNER_TO_VERDICT[r["winner"]], "scores": "{}", "comment": "",
         "correction": "", "category": r["category"], "source": f"import:{Path(path).name}"[:255], "created_at": now}
        for r in rows])
    new_models = [m for m in models if m not in spec.models]
    new_raters = [r for r in raters if r not in spec.raters]
    if new_models or new_raters:  # the campaign record lists everyone its ratings name
        from dataclasses import replace

        store.update_campaign(replace(spec, models=spec.models + tuple(new_models), raters=spec.raters + tuple(new_raters)))
    return stored, len(rows) - stored


def export_rows(rows: Sequence[dict]) -> list[dict]:
    """Stored rating rows in the export's columns (model_a is the left output)."""
    return [{"campaign": r["campaign"], "item_id": r["item_id"], "rater": r["rater"], "model_a": r["model_left"],
             "model_b": r["model_right"], "winner": {"left": "model_a", "right": "model_b"}.get(r["verdict"], r["verdict"]),
             "category": r["category"], "scores_a": r["scores"].get("left", {}), "scores_b": r["scores"].get("right", {}),
             "comment": r["comment"], "correction": r["correction"], "source": r["source"], "created_at": r["created_at"]}
            for r in rows]


def iter_csv(rows: Sequence[dict]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EXPORT_COLUMNS)
    for r in export_rows(rows):
        writer.writerow([defuse(json.dumps(r[c], sort_keys=True) if isinstance(r[c], dict) else r[c]) for c in EXPORT_COLUMNS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def export_text(store: RatingStore, campaign: str, fmt: str) -> str:
    """The campaign's ratings as `csv` or `json`, or its fine-tuning rows as `jsonl`."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in finetune_rows(store, campaign))
    if fmt == "json":
        return json.dumps(export_rows(store.ratings_of(campaign)), indent=1, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return "".join(iter_csv(store.ratings_of(campaign)))
    raise EvalCoreError(f"export format {fmt!r} is not one of csv, json, jsonl", field="format")


def summary_json(summary) -> str:  # noqa: ANN001 - a rating_analysis.RatingSummary
    return json.dumps(summary.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def finetune_rows(store: RatingStore, campaign: str) -> list[dict]:
    """The human-in-the-loop JSONL rows (see the module doc), in item order."""
    items = store.items(campaign)
    expected = Counter(a.item_id for a in store.assignments(campaign))  # raters assigned per item
    by_item: dict[str, list[dict]] = defaultdict(list)
    for r in store.ratings_of(campaign):
        by_item[r["item_id"]].append(r)
    out = []
    for item_id in sorted(by_item):
        item = items.get(item_id)
        if item is None:
            continue  # an imported judgment: no texts to learn from
        rs = sorted(by_item[item_id], key=lambda r: r["rater"])
        assigned = expected.get(item_id, len(rs))
        corrections = [r for r in rs if r["correction"]]
        for r in corrections:
            out.append({"id": f"{campaign}-{item_id}-{r['rater']}", "category": item.category, "prompt": item.prompt,
                        "response": r["correction"], "source": "correction", "rater": r["rater"]})
        if corrections:
            continue
        picks = {r["model_left"] if r["verdict"] == "left" else r["model_right"] if r["verdict"] == "right" else None for r in rs}
        if len(rs) == assigned and len(picks) == 1 and None not in picks and item.outputs[next(iter(picks))].strip():
            model = picks.pop()
            out.append({"id": f"{campaign}-{item_id}", "category": item.category, "prompt": item.prompt,
                        "response": item.outputs[model], "source": "preferred",
                        "model": model, "raters": [r["rater"] for r in rs]})
    return out


__all__ = ["read_judgments_csv", "parse_judgments_csv", "import_judgments", "defuse", "export_rows", "iter_csv",
           "export_text", "summary_json", "finetune_rows"]
