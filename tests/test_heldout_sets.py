"""Bad and good inputs for eval_core.heldout_sets.read_heldout_set (JSONL, CSV, Parquet)."""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path

import pytest

from eval_core.errors import DatasetError
from eval_core.heldout_sets import read_heldout_set


def jsonl(*rows: object) -> bytes:
    """One JSON value per line, non-ASCII kept raw (as most tools write it)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def read_error(path: Path, **kwargs) -> DatasetError:
    """The DatasetError reading `path` raises; it must always name the file."""
    with pytest.raises(DatasetError) as info:
        read_heldout_set(path, **kwargs)
    err = info.value
    assert err.path == str(path)
    assert str(path) in str(err)
    return err


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


GEN = {"id": "g1", "prompt": "Where is my order?", "reference": "It ships Monday.", "category": "shipping"}


# --- good inputs --------------------------------------------------------------------------


def test_generation_jsonl_infers_kind_and_counts_categories(tmp_path):
    path = write(tmp_path, "support.jsonl", jsonl(
        {"id": "a", "prompt": "p1", "reference": "r1", "category": "billing"},
        {"id": "b", "prompt": "p2", "reference": "r2", "category": "shipping"},
        {"id": "c", "prompt": "p3", "reference": "r3", "category": "billing"},
    ))
    ds = read_heldout_set(path)
    assert ds.kind == "generation"
    assert ds.format == "jsonl"
    assert ds.columns == ("id", "prompt", "reference", "category")
    assert ds.column_map == {"prompt": "prompt", "reference": "reference", "id": "id", "category": "category"}
    assert ds.category_counts() == {"billing": 2, "shipping": 1}
    assert ds.values("prompt") == ["p1", "p2", "p3"]
    assert ds.lines == [1, 2, 3]


def test_alias_columns_question_answer_are_resolved(tmp_path):
    path = write(tmp_path, "qa.jsonl", jsonl({"question": "2+2?", "answer": "4"}))
    ds = read_heldout_set(path)
    assert ds.kind == "generation"
    assert ds.column_map == {"prompt": "question", "reference": "answer"}
    assert ds.category_counts() == {}


def test_explicit_column_mapping(tmp_path):
    path = write(tmp_path, "qa.jsonl", jsonl({"q": "2+2?", "a": "4", "topic": "math"}))
    ds = read_heldout_set(path, columns={"prompt": "q", "reference": "a"})
    assert ds.kind == "generation"
    assert ds.column_map == {"prompt": "q", "reference": "a", "category": "topic"}
    assert ds.values("reference") == ["4"]


def test_text_set(tmp_path):
    path = write(tmp_path, "general.jsonl", jsonl({"id": 1, "text": "Paris is in France."}))
    ds = read_heldout_set(path)
    assert ds.kind == "text"
    assert ds.column_map == {"text": "text", "id": "id"}


def test_probe_set_with_choices(tmp_path):
    path = write(tmp_path, "probes.jsonl", jsonl(
        {"id": "p1", "prompt": "Capital of France?", "answer": "Paris", "choices": ["Paris", "Rome"]},
        {"id": "p2", "prompt": "2+2?", "answer": "4", "choices": ["3", "4"]},
    ))
    ds = read_heldout_set(path)
    assert ds.kind == "probe"
    assert ds.column_map["choices"] == "choices"
    assert ds.values("choices") == [["Paris", "Rome"], ["3", "4"]]


def test_blank_lines_are_skipped_but_counted(tmp_path):
    rows = jsonl({**GEN, "id": "a"}, {**GEN, "id": "b"}).decode().splitlines()
    path = write(tmp_path, "gaps.jsonl", "\n" + rows[0] + "\n   \n\n" + rows[1] + "\n\n")
    ds = read_heldout_set(path)
    assert len(ds.rows) == 2
    assert ds.lines == [2, 5]


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"], ids=["crlf", "cr"])
def test_other_line_endings(tmp_path, newline):
    path = write(tmp_path, "crlf.jsonl", jsonl(GEN, {**GEN, "id": "g2"}).replace(b"\n", newline))
    assert read_heldout_set(path).lines == [1, 2]


@pytest.mark.parametrize(
    "encoding, bom",
    [
        pytest.param("utf-8", codecs.BOM_UTF8, id="utf8-bom"),
        pytest.param("utf-16-le", codecs.BOM_UTF16_LE, id="utf16le-bom"),
        pytest.param("utf-16-be", codecs.BOM_UTF16_BE, id="utf16be-bom"),
    ],
)
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_bom_marked_encodings_are_accepted(tmp_path, encoding, bom, suffix):
    prompt = "Où est ma commande ? 注文"
    if suffix == ".jsonl":
        text = json.dumps({"prompt": prompt, "reference": "bientôt"}, ensure_ascii=False) + "\n"
    else:
        text = f"prompt,reference\n{prompt},bientôt\n"
    path = write(tmp_path, "enc" + suffix, bom + text.encode(encoding))
    ds = read_heldout_set(path)
    # The BOM must not leak into the first column name.
    assert ds.columns == ("prompt", "reference")
    assert ds.values("prompt") == [prompt]


def test_csv_quoted_commas_and_embedded_newlines(tmp_path):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "prompt", "reference"])
    writer.writerow(["1", "Hello, world", "Hi,\nthere"])  # record spans lines 2-3
    writer.writerow(["2", "a\n\nb", "c"])  # lines 4-6, including a blank line inside the quotes
    writer.writerow(["3", "plain", "plain"])  # line 7
    path = write(tmp_path, "multi.csv", buf.getvalue())
    ds = read_heldout_set(path)
    assert ds.format == "csv"
    assert ds.values("prompt") == ["Hello, world", "a\n\nb", "plain"]
    assert ds.values("reference") == ["Hi,\nthere", "c", "plain"]
    assert ds.lines == [2, 4, 7]


def test_csv_blank_line_between_records_keeps_line_numbers(tmp_path):
    path = write(tmp_path, "gap.csv", "prompt,reference\np1,r1\n\np2,r2\n")
    assert read_heldout_set(path).lines == [2, 4]


def test_csv_na_like_cells_stay_strings(tmp_path):
    path = write(tmp_path, "na.csv", 'prompt,reference,category,note\np,r,NA,NA\np,r,null,null\np,r,None,None\np,r,,""\n')
    ds = read_heldout_set(path)
    assert ds.values("category") == ["NA", "null", "None", ""]
    assert [r["note"] for r in ds.rows] == ["NA", "null", "None", ""]
    assert ds.category_counts() == {"": 1, "NA": 1, "None": 1, "null": 1}


def test_parquet_round_trip(tmp_path):
    rows = [
        {"id": "p1", "prompt": "Capital of France?", "answer": "Paris", "choices": ["Paris", "Rome"], "category": "geo"},
        {"id": "p2", "prompt": "2+2?", "answer": "4", "choices": ["3", "4"], "category": "math"},
    ]
    path = write_parquet(tmp_path / "probes.parquet", rows)
    ds = read_heldout_set(path)
    assert ds.format == "parquet"
    assert ds.kind == "probe"
    assert ds.rows == rows
    assert ds.lines == [1, 2]  # Parquet has no lines: 1-based row numbers
    assert ds.category_counts() == {"geo": 1, "math": 1}


def test_ids_missing_on_some_rows_are_not_duplicates(tmp_path):
    path = write(tmp_path, "ids.jsonl", jsonl(
        {"prompt": "p", "reference": "r"},
        {"id": "x", "prompt": "p", "reference": "r"},
        {"prompt": "p", "reference": "r"},
    ))
    assert len(read_heldout_set(path).rows) == 3


TRICKY = [
    pytest.param("a\u200bb\u200cc\u200dd\u2060e\ufeff", id="zero-width"),
    pytest.param("abc \u202eevil\u202c \u2066iso\u2069 \u200f", id="rtl-override"),
    pytest.param("para one\u2028para two\u2029three\x85four", id="unicode-line-separators"),
    pytest.param("x" * 200_000 + " é 😀 " + "y" * 200_000, id="very-long"),
    pytest.param("  leading and trailing spaces\t ", id="whitespace"),
]


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_tricky_text_is_kept_byte_exact(tmp_path, fmt, text):
    rows = [{"id": "t1", "prompt": text, "reference": text}, {"id": "t2", "prompt": "after", "reference": "after"}]
    path = tmp_path / f"tricky.{fmt}"
    if fmt == "jsonl":
        write(tmp_path, path.name, jsonl(*rows))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["id", "prompt", "reference"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write(tmp_path, path.name, buf.getvalue())
    else:
        write_parquet(path, rows)
    ds = read_heldout_set(path)
    assert [v.encode("utf-8") for v in ds.values("prompt")] == [text.encode("utf-8"), b"after"]
    assert ds.values("reference") == [text, "after"]
    if fmt == "jsonl":
        assert ds.lines == [1, 2]


# --- bad inputs ---------------------------------------------------------------------------

ERRORS = [
    # (file name, content, read_heldout_set kwargs, line, field, message fragment)
    pytest.param("qa.jsonl", jsonl({"q": "x", "a": "y"}), {"columns": {"prompt": "q", "reference": "answer"}},
                 None, "reference", "'answer' mapped to role 'reference' is not in the file", id="mapping-to-missing-column"),
    pytest.param("probe.jsonl", jsonl({"prompt": "p", "answer": "a", "choices": ["a", "b"]},
                                      {"prompt": "p", "answer": "a", "choices": ["a", 2]}),
                 {}, 2, "choices", "list of strings", id="choices-not-all-strings"),
    pytest.param("probe.jsonl", jsonl({"prompt": "p", "answer": "a", "choices": "a|b"}),
                 {}, 1, "choices", "list of strings", id="choices-a-string"),
    pytest.param("bad.jsonl", jsonl(GEN, {**GEN, "id": "g2"}) + b'{"prompt": "p", "reference": }\n',
                 {}, 3, None, "invalid JSON", id="invalid-json-line-3"),
    pytest.param("array.jsonl", json.dumps([GEN, GEN], indent=2), {}, 1, None, "JSON Lines", id="json-array-file"),
    pytest.param("list.jsonl", jsonl(GEN, ["p", "r"]), {}, 2, None, "must be a JSON object", id="line-is-json-list"),
    pytest.param("scalar.jsonl", jsonl(GEN, "just a string"), {}, 2, None, "must be a JSON object", id="line-is-json-string"),
    pytest.param("latin1.jsonl", jsonl(GEN) + '{"prompt": "caf\xe9", "reference": "r"}\n'.encode("latin-1"),
                 {}, 2, None, "byte 0xe9", id="invalid-utf8-line-2"),
    # The BOM must not shift the reported byte or line.
    pytest.param("bom-latin1.jsonl", codecs.BOM_UTF8 + jsonl(GEN) + b'\xff{"prompt": "p", "reference": "r"}\n',
                 {}, 2, None, "byte 0xff", id="invalid-utf8-after-bom"),
    pytest.param("odd.jsonl", codecs.BOM_UTF16_LE + b'{\x00"', {}, 1, None, "invalid UTF-16", id="truncated-utf16"),
    pytest.param("noref.jsonl", jsonl({"prompt": "p", "category": "c"}), {"kind": "generation"},
                 None, "reference", "needs a column for ['reference']", id="missing-required-column"),
    pytest.param("notext.jsonl", jsonl({"prompt": "p"}), {"kind": "text"}, None, "text", "needs a column", id="text-set-without-text"),
    pytest.param("unknown.jsonl", jsonl({"foo": 1, "bar": 2}), {}, None, None, "cannot tell what this dataset holds",
                 id="cannot-infer-kind"),
    pytest.param("num.jsonl", jsonl(GEN, {**GEN, "id": "g2", "reference": 42}), {}, 2, "reference", "got int",
                 id="required-value-number"),
    pytest.param("null.jsonl", jsonl(GEN, {**GEN, "id": "g2", "prompt": None}), {}, 2, "prompt", "got NoneType",
                 id="required-value-null"),
    pytest.param("absent.jsonl", jsonl(GEN, {"id": "g2", "reference": "r"}), {}, 2, "prompt", "the field is missing",
                 id="required-value-absent-on-a-row"),
    pytest.param("dup.jsonl", jsonl(GEN, {**GEN, "id": "other"}, GEN), {}, 3, "id", "first on line 1", id="duplicate-id"),
    pytest.param("dup.jsonl", jsonl({**GEN, "id": "1"}, {**GEN, "id": 1}), {}, 2, "id", "duplicate id '1'",
                 id="duplicate-id-str-and-int"),
    pytest.param("ragged.csv", "prompt,reference\np,r\np,r,extra\n", {}, 3, None, "3 fields but the header has 2",
                 id="csv-too-many-fields"),
    pytest.param("ragged.csv", "prompt,reference\n\"multi\nline\",r\np\n", {}, 4, None, "1 fields but the header has 2",
                 id="csv-too-few-fields"),
    pytest.param("dup.csv", "prompt,reference,prompt\np,r,q\n", {}, 1, "prompt", "duplicate column", id="csv-duplicate-header"),
    # The quote opens on line 3; the reader only notices at the end of the file.
    pytest.param("quote.csv", 'prompt,reference\np,r\n"never closed,r\np,r\n', {}, 3, None, "never closed",
                 id="csv-unterminated-quote"),
    pytest.param("quote.csv", 'prompt,reference\n"a"b,r\n', {}, 2, None, "malformed CSV", id="csv-text-after-quote"),
    pytest.param("empty.jsonl", b"", {}, None, None, "no rows", id="empty-jsonl"),
    pytest.param("blank.jsonl", b"\n  \n\n", {}, None, None, "no rows", id="only-blank-lines-jsonl"),
    pytest.param("empty.csv", b"", {}, None, None, "no rows", id="empty-csv"),
    pytest.param("header.csv", "prompt,reference\n", {}, None, None, "no rows", id="header-only-csv"),
    pytest.param("data.txt", "prompt\treference\n", {}, None, None, "unsupported file type '.txt'", id="unsupported-suffix"),
    pytest.param("corrupt.parquet", bytes(range(256)) * 4, {}, None, None, "cannot read Parquet", id="corrupt-parquet"),
    pytest.param("fake.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1", {}, None, None, "cannot read Parquet",
                 id="parquet-magic-but-corrupt"),
]


@pytest.mark.parametrize("name, content, kwargs, line, field, fragment", ERRORS)
def test_bad_input_raises_dataset_error(tmp_path, name, content, kwargs, line, field, fragment):
    err = read_error(write(tmp_path, name, content), **kwargs)
    assert fragment in err.message
    assert err.line == line
    assert err.field == field


def test_missing_file(tmp_path):
    err = read_error(tmp_path / "nowhere.jsonl")
    assert "does not exist" in err.message


def test_parquet_null_in_required_column_names_the_row(tmp_path):
    path = write_parquet(tmp_path / "nulls.parquet", [{"prompt": "p", "reference": "r"}, {"prompt": "p", "reference": None}])
    err = read_error(path)
    assert (err.line, err.field) == (2, "reference")


def test_error_string_shows_file_line_and_field(tmp_path):
    path = write(tmp_path, "num.jsonl", jsonl({"prompt": "p", "reference": 3}))
    assert str(read_error(path)).startswith(f"{path}:1, field 'reference': ")
