"""Reliability catalogue, section 5 (cases 41-51): bad held-out sets and training logs.

Each case reads a real file written here (CSV/JSONL bytes, Parquet by pyarrow, TensorBoard records
by tensorboard's own RecordWriter) and checks the documented behaviour: the data read back exactly,
or a DatasetError naming the file, the line and what to do; warnings and partial data for damaged
logs. Size caps are checked against sparse files (no big file is ever held in memory), and memory
bounds with tracemalloc (allocation peaks, not wall time).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import tracemalloc
from pathlib import Path

import pytest

from eval_core import data_files
from eval_core.errors import DatasetError
from eval_core.heldout_sets import example_ids, read_heldout_set
from eval_core.tensorboard_logs import read_tensorboard
from eval_core.training_logs import read_run_logs, read_trainer_state

GEN = {"id": "g1", "prompt": "Where is my order?", "reference": "It ships Monday."}


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def parquet(path: Path, rows: list[dict] | None = None, table=None) -> Path:  # noqa: ANN001
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(table if table is not None else pa.Table.from_pylist(rows), path)
    return path


def error_of(path: Path, **kwargs) -> DatasetError:
    """The DatasetError read_heldout_set raises; it always names the file."""
    with pytest.raises(DatasetError) as info:
        read_heldout_set(path, **kwargs)
    assert info.value.path == str(path) and str(path) in str(info.value)
    return info.value


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of `size` bytes that takes no disk or memory beyond `head` (a hole of zeros)."""
    with path.open("wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def peak_bytes(call) -> int:  # noqa: ANN001
    """Peak Python allocation while `call()` runs (it may raise)."""
    tracemalloc.start()
    try:
        call()
    except DatasetError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# --- 41 ----------------------------------------------------------------------------------------

TEXT = "prompt,reference\nOù est ma commande ?,Elle arrive — 注文\n"
ENCODINGS = [
    # (id, bytes of a CSV file, expected error: (line, byte offset, message fragment) or None)
    pytest.param(codecs.BOM_UTF8 + TEXT.encode(), None, id="utf8-bom"),
    pytest.param(codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), None, id="utf16le-bom"),
    pytest.param(codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), None, id="utf16be-bom"),
    # "é" in Latin-1 is 0xe9 at byte 21 of line 2 (17 header bytes + "caf"), offset 17 + 3 + 4 - 1
    pytest.param(b"prompt,reference\nthe caf\xe9,r\n", (2, 24, "byte 0xe9"), id="latin1"),
    # Excel's cp1252 curly quotes: 0x93 opens at byte 17, the first of line 2
    pytest.param(b"prompt,reference\n\x93hi\x94,r\n", (2, 17, "byte 0x93"), id="cp1252"),
    # after a UTF-8 BOM the offset still counts from the start of the file: 3 + 17 + 2
    pytest.param(codecs.BOM_UTF8 + b"prompt,reference\nok\xff,r\n", (2, 22, "byte 0xff"), id="invalid-utf8-after-bom"),
    pytest.param(TEXT.encode("utf-16-le"), (1, None, "UTF-16 or UTF-32 without a byte-order mark"), id="utf16-no-bom"),
    pytest.param(codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"), (1, None, "UTF-32"), id="utf32"),
]


@pytest.mark.parametrize("data, error", ENCODINGS)
def test_case_41_text_encodings(tmp_path, data, error):
    """UTF-8 BOM stripped and BOM-marked UTF-16 decoded; any other encoding is an error naming file, line and byte offset, never mojibake."""
    path = write(tmp_path / "enc.csv", data)
    if error is None:
        ds = read_heldout_set(path)
        assert ds.columns == ("prompt", "reference")  # no "\ufeffprompt"
        assert ds.rows == [{"prompt": "Où est ma commande ?", "reference": "Elle arrive — 注文"}]
        return
    line, offset, fragment = error
    err = error_of(path)
    assert err.line == line and fragment in err.message
    if offset is not None:
        assert f"byte offset {offset}" in err.message and "re-save the file as UTF-8" in err.message
    # The same bytes in a training log: the same kind of message.
    if offset is not None:
        log = write(tmp_path / "trainer_state.json", b'{"log_history": [],\n' + data.splitlines()[1] + b"}")
        with pytest.raises(DatasetError, match="byte offset") as info:
            read_trainer_state(log, "run")
        assert info.value.line == 2


# --- 42 ----------------------------------------------------------------------------------------

CSV_SHAPES = [
    # (id, CSV text, expected line, message fragment)
    pytest.param("prompt,reference\np,r\np,r,extra\n", 3, "3 fields but the header has 2", id="ragged-extra-field"),
    pytest.param('prompt,reference\n"two\nlines",r\np\n', 4, "1 fields but the header has 2", id="ragged-missing-field"),
    pytest.param('prompt,reference\np,r\n"never closed,r\np,r\n', 3, "never closed", id="unterminated-quote"),
    pytest.param("prompt;reference\np;r\n", 1, "separated by semicolons", id="semicolon-delimiter"),
    pytest.param("prompt\treference\np\tr\n", 1, "separated by tabs", id="tab-delimiter"),
    # A comma header with one semicolon row: the row is short, not shifted into the next column.
    pytest.param("prompt,reference\np,r\np;r\n", 3, "1 fields but the header has 2", id="one-row-with-semicolons"),
]


@pytest.mark.parametrize("text, line, fragment", CSV_SHAPES)
def test_case_42_csv_structure(tmp_path, text, line, fragment):
    """Ragged rows, an unclosed quote or another delimiter are errors naming the line; quoted newlines parse with true line numbers."""
    err = error_of(write(tmp_path / "set.csv", text))
    assert err.line == line and fragment in err.message
    # Quoted cells with commas and newlines, written by the csv module, parse exactly.
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerows([["id", "prompt", "reference"], ["1", "a,\nb", "c"], ["2", 'say "hi"\r\n\r\nbye', "d"], ["3", "e", "f"]])
    ds = read_heldout_set(write(tmp_path / "ok.csv", buf.getvalue()))
    assert ds.values("prompt") == ["a,\nb", 'say "hi"\r\n\r\nbye', "e"]
    assert ds.lines == [2, 4, 7]  # each record's first line


# --- 43 ----------------------------------------------------------------------------------------

COLUMNS = [
    # (id, header, read kwargs, field, fragments of the message)
    pytest.param("prompt,category", {"kind": "generation"}, "reference",
                 ["needs a column for ['reference']", "one of reference, response, output", "found ['prompt', 'category']"],
                 id="missing-reference"),
    pytest.param("prompt,Reference", {"kind": "generation"}, "reference",
                 ["'Reference' is not 'reference'", "found ['prompt', 'Reference']"], id="case-differs"),
    pytest.param(" prompt ,reference", {"kind": "generation"}, "prompt",
                 ["' prompt ' is not 'prompt'"], id="whitespace-differs"),
    pytest.param("Prompt,Reference", {}, None, ["cannot tell what this dataset holds", "'Prompt' is not 'prompt'"],
                 id="case-differs-kind-inferred"),
    pytest.param("Question,answer", {"columns": {"prompt": "question"}}, "prompt", ["did you mean 'Question'?"],
                 id="mapping-case-differs"),
]


@pytest.mark.parametrize("header, kwargs, field, fragments", COLUMNS)
def test_case_43_column_names(tmp_path, header, kwargs, field, fragments):
    """A missing or near-miss column (case, spaces) is an error listing expected and found; unknown extra columns are kept."""
    ncols = header.count(",") + 1
    err = error_of(write(tmp_path / "set.csv", header + "\n" + ",".join(["x"] * ncols) + "\n"), **kwargs)
    assert err.field == field
    for fragment in fragments:
        assert fragment in err.message
    ds = read_heldout_set(write(tmp_path / "extra.csv", "prompt,reference,notes,Score\np,r,n,3\n"))
    assert ds.column_map == {"prompt": "prompt", "reference": "reference"}
    assert ds.rows == [{"prompt": "p", "reference": "r", "notes": "n", "Score": "3"}]


# --- 44 ----------------------------------------------------------------------------------------

NA_CELLS = ["NA", "None", "null", "nan", "N/A", "", "   ", "\t"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_case_44_na_like_cells(tmp_path, fmt):
    """'NA', 'None', 'null', 'nan', '' and blanks stay strings; empty or blank references are listed per line."""
    rows = [{"prompt": f"p{i}", "reference": cell, "category": cell} for i, cell in enumerate(NA_CELLS)]
    path = tmp_path / f"na.{fmt}"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["prompt", "reference", "category"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write(path, buf.getvalue())
    elif fmt == "jsonl":
        write(path, jsonl(*rows))
    else:
        parquet(path, rows)
    ds = read_heldout_set(path)
    assert ds.values("reference") == NA_CELLS and ds.values("category") == NA_CELLS
    first = 2 if fmt == "csv" else 1  # Parquet and JSONL: row 1 is line 1; CSV has a header
    assert ds.blank_lines() == {"reference": [first + 5, first + 6, first + 7]}
    # The workspace summary counts them and warns on the Overview, naming the file and the column.
    from eval_core.workspace import discover_workspace

    (tmp_path / "ftlens.toml").write_text("", encoding="utf-8")
    summary = discover_workspace(tmp_path)
    (record,) = summary.datasets
    assert record.blank_values == {"reference": 3}
    (warning,) = [p for p in summary.problems if p.field == "reference"]
    assert warning.severity == "warning" and warning.path == str(path) and "3 of 8 rows have an empty reference" in warning.message


# --- 45 ----------------------------------------------------------------------------------------

IDS = [
    # (id, rows (None: no id key), expected error (line, fragment) or None)
    pytest.param(["a", "b", "a"], (3, "duplicate id 'a' (first on line 1)"), id="duplicate"),
    pytest.param(["1", 1], (2, "duplicate id '1'"), id="int-and-str"),
    pytest.param([1, 1.0], (2, "duplicate id '1'"), id="int-and-float"),
    pytest.param([None, "x", None], None, id="missing-ids-numbered-by-line"),
    pytest.param(["row-3", None, None], (3, "duplicate id 'row-3' (first on line 1)"), id="id-clashes-with-a-line-id"),
    pytest.param(["", "  ", None], None, id="blank-ids-are-missing"),
    pytest.param([True, "x"], (1, "an id must be text or a whole number, got bool"), id="bool-id"),
    pytest.param([[1], "x"], (1, "got list"), id="list-id"),
    pytest.param([2.5, "x"], (1, "got float"), id="fractional-id"),
]


@pytest.mark.parametrize("ids, error", IDS)
def test_case_45_ids(tmp_path, ids, error):
    """Duplicate ids (1 and "1" too) and ids clashing with a missing id's 'row-<line>' are rejected; every example gets one distinct id."""
    rows = [{**GEN, "id": i} if i is not None else {k: v for k, v in GEN.items() if k != "id"} for i in ids]
    path = write(tmp_path / "ids.jsonl", jsonl(*rows))
    if error is not None:
        err = error_of(path)
        assert (err.line, err.field) == (error[0], "id") and error[1] in err.message
        return
    got = example_ids(read_heldout_set(path))
    assert len(set(got)) == len(got) == len(ids)
    assert got == [str(i) if i is not None and str(i).strip() else f"row-{n}" for n, i in enumerate(ids, start=1)]


# --- 46 ----------------------------------------------------------------------------------------

JSONL_SHAPES = [
    # (id, file text, expected line, message fragment)
    pytest.param(jsonl(GEN) + '{"prompt": "p", "reference": "r"},\n', 2, "remove the comma", id="trailing-comma-after-object"),
    pytest.param(jsonl(GEN) + '{"prompt": "p", "reference": "r",}\n', 2, "invalid JSON", id="trailing-comma-inside"),
    pytest.param("\n\n" + json.dumps([GEN, GEN], indent=1), 3, "JSON array, not JSON Lines", id="top-level-array"),
    pytest.param(jsonl(GEN, {**GEN, "id": "g2", "reference": 7}), 2, "'reference' must be a string, got int",
                 id="required-field-changes-type"),
    pytest.param('{"prompt": "a", "prompt": "b", "reference": "r"}\n', 1, "'prompt' appears twice", id="duplicate-key"),
    pytest.param(jsonl(GEN, GEN | {"id": "g2"}, {**GEN, "id": "g3", "prompt": "x" * 2000}), 3, "longer than the limit",
                 id="long-line-under-a-lowered-cap"),
    pytest.param(None, 1, "longer than the limit of 16,777,216", id="100MB-single-line"),
    pytest.param('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}\n", 1, "nested too deeply", id="deeply-nested"),
    pytest.param("\n" + jsonl({**GEN, "category": "a"}) + "  \n" + jsonl({**GEN, "id": "g2", "category": 3},
                 {**GEN, "id": "g3", "category": ["x", None]}), None, None, id="mixed-types-and-blank-lines-parse"),
]


@pytest.mark.parametrize("text, line, fragment", JSONL_SHAPES)
def test_case_46_jsonl_shapes(tmp_path, monkeypatch, text, line, fragment):
    """Bad JSONL is rejected with its line; mixed types in free fields and blank lines parse; a 100 MB line hits the line cap unread."""
    if text is None:  # 100 MB on one line, against the real default cap: a sparse file
        path = sparse(tmp_path / "line.jsonl", 100_000_000, b'{"prompt": "')
        assert peak_bytes(lambda: read_heldout_set(path)) < 3 * data_files.MAX_LINE_CHARS
    else:
        path = write(tmp_path / "set.jsonl", text)
        if fragment == "longer than the limit":
            monkeypatch.setattr(data_files, "MAX_LINE_CHARS", 1000)
    if fragment is None:
        ds = read_heldout_set(path)
        assert ds.values("category") == ["a", 3, ["x", None]] and ds.lines == [2, 4, 5]
        return
    err = error_of(path)
    assert err.line == line and fragment in err.message


# --- 47 ----------------------------------------------------------------------------------------


def _parquet_variant(tmp_path: Path, variant: str) -> Path:
    import pyarrow as pa

    path = tmp_path / f"{variant}.parquet"
    if variant == "nested-struct-prompt":
        return parquet(path, [{"prompt": {"text": "p", "lang": "en"}, "reference": "r"}])
    if variant == "int-reference":
        return parquet(path, [{"prompt": "p", "reference": 42}])
    if variant == "zero-rows":
        return parquet(path, table=pa.table({"prompt": pa.array([], pa.string()), "reference": pa.array([], pa.string())}))
    good = parquet(path, [{"prompt": "p", "reference": "r"}] * 3).read_bytes()
    if variant == "corrupt-footer":
        return write(path, good[:-12] + b"\x00" * 8 + good[-4:])  # footer length zeroed, "PAR1" kept
    return write(path, good[: len(good) // 2])  # truncated: no footer at all


@pytest.mark.parametrize("variant, line, field, fragment", [
    ("nested-struct-prompt", 1, "prompt", "'prompt' must be a string, got dict"),
    ("int-reference", 1, "reference", "'reference' must be a string, got int"),
    ("zero-rows", None, None, "no rows: the file has column names (prompt, reference)"),
    ("corrupt-footer", None, None, "cannot read Parquet"),
    ("truncated", None, None, "cannot read Parquet"),
])
def test_case_47_parquet(tmp_path, monkeypatch, variant, line, field, fragment):
    """Nested or wrongly typed columns, zero rows and a damaged footer are errors naming the row and column; caps are read from the footer."""
    err = error_of(_parquet_variant(tmp_path, variant))
    assert (err.line, err.field) == (line, field) and fragment in err.message
    # List columns are fine where a list is expected (probe choices).
    probes = parquet(tmp_path / "probes.parquet", [{"prompt": "2+2?", "answer": 1, "choices": ["3", "4"]}])
    assert read_heldout_set(probes).values("choices") == [["3", "4"]]
    # The row cap and the uncompressed-size cap come from the footer, before any data is decoded.
    monkeypatch.setattr(data_files, "MAX_DATASET_ROWS", 2)
    assert "more than 2 rows" in error_of(parquet(tmp_path / "three.parquet", [{"prompt": "p", "reference": "r"}] * 3)).message
    monkeypatch.setattr(data_files, "MAX_DATASET_ROWS", 10)
    monkeypatch.setattr(data_files, "MAX_DATASET_BYTES", 1000)
    wide = parquet(tmp_path / "wide.parquet", [{"prompt": "p" * 5000, "reference": "r"}])
    assert "uncompressed" in error_of(wide).message


# --- 48 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, data, fragment", [
    ("empty.jsonl", b"", "no rows: the file is empty"),
    ("empty.csv", b"", "no rows: the file is empty"),
    ("blank.jsonl", b"\n \n\r\n", "no rows: the file has only blank lines"),
    ("header.csv", b"prompt,reference\r\n", "no rows: the file has column names (prompt, reference)"),
])
def test_case_48_empty_and_oversize_files(tmp_path, monkeypatch, name, data, fragment):
    """Empty and header-only files say so; a file over the size cap is refused unread; the row cap stops a 10 M-row file early."""
    assert fragment in error_of(write(tmp_path / name, data)).message
    # The real default size cap, against a sparse file one byte over it: refused from its size.
    big = sparse(tmp_path / "big.csv", data_files.MAX_DATASET_BYTES + 1, b"prompt,reference\n")
    err = error_of(big)
    assert "268,435,457 bytes, over the 268,435,456-byte limit for a held-out set" in err.message and "sample" in err.message
    assert peak_bytes(lambda: read_heldout_set(big)) < 2**20
    # 10 M rows (40 MB on disk) against a lowered row cap: stops at row 1,001, memory well under the file.
    rows = tmp_path / "rows.csv"
    with rows.open("wb") as f:
        f.write(b"prompt,reference\n")
        for _ in range(100):
            f.write(b"p,r\n" * 100_000)
    monkeypatch.setattr(data_files, "MAX_DATASET_ROWS", 1000)
    err = error_of(rows)
    assert err.line == 1002 and "more than 1,000 rows" in err.message
    assert peak_bytes(lambda: read_heldout_set(rows)) < 8 * 2**20


# --- 49 ----------------------------------------------------------------------------------------

RESUMED = """{"global_step": 30, "log_history": [
  {"step": 10, "epoch": 1.0, "loss": 2.0, "grad_norm": NaN},
  {"step": 20, "epoch": 2.0, "loss": 1.5, "grad_norm": Infinity},
  {"step": 20, "epoch": 2.0, "eval_loss": 1.9},
  {"step": 10, "epoch": 1.0, "loss": 2.1, "grad_norm": 0.5},
  {"step": 30, "epoch": 3.0, "loss": NaN, "grad_norm": -Infinity},
  {"step": 30, "epoch": 3.0, "eval_loss": 1.7}
]}"""


@pytest.mark.parametrize("variant", ["nan-and-infinity-resumed-mixed", "missing-log-history", "over-size-cap"])
def test_case_49_trainer_state(tmp_path, variant):
    """NaN/Infinity, repeated and out-of-order steps and mixed train/eval entries parse, NaNs counted and drawn as gaps; a file without log_history or over the cap is a clear error."""
    path = tmp_path / "trainer_state.json"
    if variant == "missing-log-history":
        # Not a Trainer state at all: nothing to parse, so an error naming the field.
        write(path, '{"global_step": 3, "best_metric": NaN}')
        with pytest.raises(DatasetError) as info:
            read_run_logs(tmp_path)
        assert info.value.field == "log_history" and str(path) in str(info.value)
        return
    if variant == "over-size-cap":
        sparse(path, data_files.MAX_LOG_BYTES + 1, b'{"log_history": [')
        with pytest.raises(DatasetError, match="over the 268,435,456-byte limit for a training log"):
            read_run_logs(tmp_path)
        assert peak_bytes(lambda: read_run_logs(tmp_path)) < 2**20
        return
    write(path, RESUMED)
    table = read_run_logs(tmp_path)
    values = {(p.metric, p.step): p.value for p in table.points}
    assert values[("loss", 10)] == 2.1 and values[("grad_norm", 10)] == 0.5  # the resumed run's write wins
    assert math.isnan(values[("loss", 30)]) and values[("grad_norm", 20)] == math.inf
    assert [p.step for p in table.series("eval_loss")] == [20, 30]
    assert [p.step for p in table.series("loss")] == [10, 20, 30]
    assert any("logged twice" in w for w in table.warnings)
    (gaps,) = [w for w in table.warnings if "NaN or infinite" in w]
    assert "3 values" in gaps and "grad_norm: 2" in gaps and "loss: 1" in gaps
    from eval_core.curve_figures import training_curves_figure

    fig = training_curves_figure(table, table.runs(), ["loss"], smoothing=0.0)
    raw = next(t for t in fig.data if t.name.endswith("(raw)"))
    assert math.isnan(raw.y[-1]) and raw.connectgaps is not True  # plotly leaves a gap at a NaN


# --- 50 ----------------------------------------------------------------------------------------


def event_file(path: Path, steps: int = 10) -> Path:
    """A real event file: tensorboard's RecordWriter framing, one scalar per record after the version."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    with path.open("wb") as f:
        writer = RecordWriter(f)
        writer.write(event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString())
        for s in range(1, steps + 1):
            value = summary_pb2.Summary.Value(tag="train/loss", simple_value=s / 4)  # exact in float32
            event = event_pb2.Event(wall_time=1.0 + s, step=s, summary=summary_pb2.Summary(value=[value]))
            writer.write(event.SerializeToString())
    return path


def _record_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 16 + int.from_bytes(data[pos : pos + 8], "little")
    return starts


@pytest.mark.parametrize("variant, steps, fragment", [
    ("truncated-last-record", 9, "last record is incomplete"),
    ("bad-payload-crc", 4, "record 6 is corrupt"),
    ("bad-header-crc", 4, "record 6 is corrupt (bad checksum)"),
    ("not-an-event-file", 0, "not a TensorBoard event file"),
    ("over-the-size-cap", 10, "only its first 32 MiB are read"),
    ("over-the-point-cap", 4, "stopped at 4 points, the cap for one log file"),
])
def test_case_50_tensorboard_damage(tmp_path, monkeypatch, variant, steps, fragment):
    """A truncated, CRC-corrupt, non-event or over-cap event file gives the points before the damage and a warning, in bounded memory."""
    if variant == "over-the-point-cap":
        monkeypatch.setattr(data_files, "MAX_LOG_POINTS", 4)
    path = event_file(tmp_path / "events.out.tfevents.1.host")
    data = bytearray(path.read_bytes())
    record6 = _record_starts(bytes(data))[5]  # the version record, then steps 1..4, then step 5
    if variant == "truncated-last-record":
        del data[-5:]
    elif variant == "bad-payload-crc":
        data[record6 + 14] ^= 0xFF
    elif variant == "bad-header-crc":
        data[record6 + 9] ^= 0xFF
    elif variant == "not-an-event-file":
        data = bytearray(b"this is a text file named like an event file\n" * 10)
    path.write_bytes(bytes(data))
    if variant == "over-the-size-cap":
        with path.open("r+b") as f:
            f.truncate(2**30 + 1)  # over 1 GB, against the real default cap: a sparse tail
        # tensorboard's reader buffers 16 MiB; nothing near the file's size is held.
        assert peak_bytes(lambda: read_tensorboard(path, "run")) < 40 * 2**20
    points, warnings = read_tensorboard(path, "run")
    assert [p.step for p in points] == list(range(1, steps + 1))
    assert [p.value for p in points] == [s / 4 for s in range(1, steps + 1)]
    assert any(fragment in w for w in warnings), warnings
    # Beside a good trainer_state.json, the damaged file only adds a warning.
    write(tmp_path / "trainer_state.json", '{"log_history": [{"step": 1, "eval_loss": 0.5}]}')
    table = read_run_logs(tmp_path)
    assert ("eval_loss", 1) in {(p.metric, p.step) for p in table.points}
    assert any(fragment in w for w in table.warnings)



# --- 51 ----------------------------------------------------------------------------------------

TRICKY = [
    pytest.param("a\u200bb\u200cc\u200dd\u2060e\ufeff", id="zero-width"),
    pytest.param("pay \u202eevil.exe\u202c \u2066iso\u2069\u200f", id="rtl-override"),
    pytest.param("before\x00after\x00", id="nul-bytes"),
    pytest.param("token" * 5_000 + " end", id="very-long-token"),
]


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_case_51_tricky_text(tmp_path, fmt, text):
    """Zero-width, bidi-override, NUL and very long tokens are read back code point for code point, and the text metrics score them without error."""
    rows = [{"id": "t1", "prompt": text, "reference": text}, {"id": "t2", "prompt": "after", "reference": text + " x"}]
    path = tmp_path / f"tricky.{fmt}"
    if fmt == "jsonl":
        write(path, jsonl(*rows))  # json escapes NUL as \u0000
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["id", "prompt", "reference"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write(path, buf.getvalue())  # NUL kept raw in the CSV bytes
    else:
        parquet(path, rows)
    ds = read_heldout_set(path)
    assert ds.values("prompt") == [text, "after"] and ds.values("reference") == [text, text + " x"]
    from eval_core.text_metrics import TextMetricConfig, normalize_answer, score_pairs

    scores = score_pairs(ds.values("reference"), ds.values("reference"), TextMetricConfig(), workers=1)
    assert all(math.isfinite(v) for s in scores for v in s.values.values())
    assert scores[0].values["exact_match"] == 1.0 and isinstance(normalize_answer(text), str)
