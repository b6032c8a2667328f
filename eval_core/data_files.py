"""Reading users' data files within size and memory caps: text lines, and the rows of held-out sets.

The caps are checked before a file is read whole (its size from the file system, lines streamed
with a length limit, Parquet's row count and uncompressed size from its footer).

A held-out set or a training log is a user's file: a 10 GB dump, a 100 MB line or a run folder
with a stray multi-gigabyte event file must give a clear message, not exhaust the server's memory.
Each cap is a module constant (read at call time, so a deployment or a test can change it):

| cap | default | what it bounds |
| --- | --- | --- |
| `MAX_DATASET_BYTES` | 256 MiB | a .jsonl/.csv/.parquet held-out set on disk (and a Parquet file's uncompressed size) |
| `MAX_DATASET_ROWS` | 1,000,000 | examples in one held-out set; generation is evaluated row by row |
| `MAX_LINE_CHARS` | 16 Mi characters | one JSONL line, or one CSV line or cell |
| `MAX_LOG_BYTES` | 256 MiB | a trainer_state.json, metrics.csv or step/metric/value log (parsed whole) |
| `MAX_EVENT_FILE_BYTES` | 32 MiB | how much of one TensorBoard event file is read (the rest is skipped, with a warning) |
| `MAX_EVENT_RECORD_BYTES` | 64 MiB | one TensorBoard record (protobuf's own message limit) |
| `MAX_LOG_POINTS` | 2,000,000 | scalar points kept from one log file |

Why these numbers: held-out sets are thousands of examples, and 256 MiB of JSONL already becomes
about 2 GB of Python objects. The tensorboard package checks each record's CRC in pure Python at
about 2 MB/s, so 32 MiB (some 500,000 scalar points) takes about 15 s; bigger event files hold
images or histograms, which the curves do not use.

Text files are UTF-8 (a byte-order mark is stripped) or UTF-16 with a byte-order mark; anything
else is an error naming the line and byte offset, never a silent guess at another encoding.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eval_core.errors import DatasetError

DATASET_SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}

MAX_DATASET_BYTES = 256 * 2**20
MAX_DATASET_ROWS = 1_000_000
MAX_LINE_CHARS = 16 * 2**20
MAX_LOG_BYTES = 256 * 2**20
MAX_EVENT_FILE_BYTES = 32 * 2**20
MAX_EVENT_RECORD_BYTES = 64 * 2**20
MAX_LOG_POINTS = 2_000_000

_BLOCK = 2**20
_EOL = re.compile(rb"\r\n|\r|\n")


def human_bytes(n: int) -> str:
    """`n` bytes in binary units, e.g. '256 MiB', for messages.

    Example:
        >>> human_bytes(256 * 2**20), human_bytes(1536)
        ('256 MiB', '1.5 KiB')
    """
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def check_file_size(path: Path, cap: int, what: str, advice: str) -> int:
    """The file's size in bytes, after checking it against `cap` (without reading the file).

    Raises:
        DatasetError: the file is larger than `cap`; the message gives both sizes and `advice`.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    if size > cap:
        shown, limit = human_bytes(size), human_bytes(cap)
        if shown == limit:  # just over the cap: rounded units would read "256 MiB, over the 256 MiB limit"
            shown, limit = f"{size:,} bytes", f"{cap:,}-byte"
        raise DatasetError(
            f"the file is {shown}, over the {limit} limit for {what}; {advice}",
            path=path,
        )
    return size


def read_limited_text(path: Path, cap: int, what: str) -> str:
    """A whole (small) text file as UTF-8, BOM stripped, after the size check.

    Raises:
        DatasetError: over `cap`, unreadable, or not UTF-8 (naming the line and byte offset).
    """
    check_file_size(path, cap, what, "trim it or point Fine-Tune Lens at a smaller copy")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + len(data) - len(body)
        raise DatasetError(
            f"not UTF-8 text (byte 0x{data[offset]:02x} at byte offset {offset}); logs are written as UTF-8",
            path=path,
            line=len(_EOL.findall(data[:offset])) + 1,
        ) from exc


def iter_text_lines(path: Path, max_chars: int | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, line with its line ending) of a UTF-8 or BOM-marked UTF-16 file.

    Lines end at "\\n", "\\r\\n" or a lone "\\r" (not at U+2028 and friends, which JSON strings may
    hold raw). Memory stays bounded: a line longer than `max_chars` (default `MAX_LINE_CHARS`)
    is an error before it is read whole.

    Raises:
        DatasetError: a bad byte (naming line, column and byte offset), a line over the cap, or a
            file that looks like UTF-16/UTF-32 without a byte-order mark.
    """
    max_chars = MAX_LINE_CHARS if max_chars is None else max_chars
    with path.open("rb") as raw:
        head = raw.read(4)
        raw.seek(0)
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            raise DatasetError("UTF-32 text is not supported; re-save the file as UTF-8", path=path, line=1)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            yield from _utf16_lines(raw, path, max_chars)
            return
        if b"\x00" in head[:2]:
            # ASCII saved as UTF-16 without a BOM is valid UTF-8 with a NUL after every letter:
            # reading it as UTF-8 would give silent garbage.
            raise DatasetError(
                "the file starts with a NUL byte: it looks like UTF-16 or UTF-32 without a byte-order "
                "mark; re-save it as UTF-8",
                path=path,
                line=1,
            )
        if head.startswith(codecs.BOM_UTF8):
            raw.seek(len(codecs.BOM_UTF8))
        for n, offset, line in _byte_lines(raw, path, max_chars):
            try:
                yield n, line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(
                    f"not valid UTF-8: byte 0x{line[exc.start]:02x} at byte offset {offset + exc.start} "
                    f"(column {exc.start + 1} of the line); re-save the file as UTF-8",
                    path=path,
                    line=n,
                ) from exc


def _too_long(path: Path, n: int, max_chars: int) -> DatasetError:
    return DatasetError(
        f"line {n} is longer than the limit of {max_chars:,} characters (bytes, in UTF-8); a held-out example or log "
        "line is never this long: check the file (one JSON object per line, quotes closed), or "
        "split the long text",
        path=path,
        line=n,
    )


def _byte_lines(raw: io.BufferedReader, path: Path, max_bytes: int) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw line with ending); splitting on bytes is safe in UTF-8,
    where "\r" and "\n" never occur inside a multi-byte character."""
    buf, pos, n = bytearray(), raw.tell(), 0
    while True:
        block = raw.read(_BLOCK)
        # Only the new bytes (and a "\r" left at the old end) can hold a line ending: a long line
        # is scanned once, not once per block.
        scan = max(0, len(buf) - 1)
        buf += block
        start = 0
        for m in _EOL.finditer(buf, scan):
            if m.group() == b"\r" and m.end() == len(buf) and block:
                break  # the "\n" of a "\r\n" may start the next block
            n += 1
            if m.start() - start > max_bytes:
                raise _too_long(path, n, max_bytes)
            yield n, pos + start, bytes(buf[start : m.end()])
            start = m.end()
        del buf[:start]
        pos += start
        if len(buf) > max_bytes:
            raise _too_long(path, n + 1, max_bytes)
        if not block:
            if buf:
                yield n + 1, pos, bytes(buf)
            return


def _utf16_lines(raw: io.BufferedReader, path: Path, max_chars: int) -> Iterator[tuple[int, str]]:
    text = io.TextIOWrapper(raw, encoding="utf-16", newline="")
    n = 0
    while True:
        try:
            line = text.readline(max_chars + 2)  # + 2: room for a "\r\n" after a line at the cap
        except UnicodeDecodeError as exc:
            raise DatasetError(f"invalid UTF-16 ({exc.reason}); re-save the file as UTF-8", path=path,
                               line=n + 1) from exc
        if not line:
            return
        n += 1
        if len(line.rstrip("\r\n")) > max_chars:
            raise _too_long(path, n, max_chars)
        yield n, line


# --- held-out set files: rows of JSONL, CSV and Parquet ------------------------------------


_SPLIT_ADVICE = ("split the file or evaluate a sample of it (e.g. its first rows: "
                 "`head -n 5001 big.csv > sample.csv`)")


def _row_cap_error(path: Path, line: int) -> DatasetError:
    cap = MAX_DATASET_ROWS
    return DatasetError(f"more than {cap:,} rows, the limit for a held-out set (this is row {cap + 1:,}); "
                        f"{_SPLIT_ADVICE}", path=path, line=line)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice would silently keep only its last value."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"the key {key!r} appears twice in one object; keep one")
        obj[key] = value
    return obj


def _read_jsonl(path: Path) -> tuple[list[dict], list[int], list[str]]:
    rows: list[dict] = []
    lines: list[int] = []
    columns: dict[str, None] = {}
    for n, line in iter_text_lines(path):
        if not line.strip():
            continue
        if not rows and line.lstrip().startswith("["):
            raise DatasetError("this is a JSON array, not JSON Lines; write one JSON object per line",
                               path=path, line=n)
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            hint = "; remove the comma at the end of the line" if line.rstrip().endswith(",") else ""
            raise DatasetError(f"invalid JSON: {exc.msg} (column {exc.colno}){hint}", path=path, line=n) from exc
        except ValueError as exc:  # a key given twice, or an integer too long to convert
            raise DatasetError(str(exc), path=path, line=n) from exc
        except RecursionError:
            raise DatasetError("JSON nested too deeply to read; flatten the record", path=path, line=n) from None
        if not isinstance(obj, dict):
            raise DatasetError("each line must be a JSON object", path=path, line=n)
        if len(rows) >= MAX_DATASET_ROWS:
            raise _row_cap_error(path, n)
        for k in obj:
            columns.setdefault(k, None)
        rows.append(obj)
        lines.append(n)
    return rows, lines, list(columns)


_OTHER_DELIMITERS = ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes"))


def _read_csv(path: Path) -> tuple[list[dict], list[int], list[str]]:
    reader = csv.reader((line for _, line in iter_text_lines(path)), strict=True)
    # The csv module's cell limit is process-wide; it is raised to the line cap for this read only.
    old_limit = csv.field_size_limit(MAX_LINE_CHARS)
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            return [], [], []
        if len(header) == 1:
            for sep, name in _OTHER_DELIMITERS:
                if sep in header[0]:
                    raise DatasetError(f"the header is one column, {header[0]!r}: the file seems separated by "
                                       f"{name}; re-save it comma-separated (quote cells that contain commas)",
                                       path=path, line=1)
        if len(set(header)) != len(header):
            dup = [c for c, k in Counter(header).items() if k > 1][0]
            raise DatasetError("duplicate column name in the header", path=path, line=1, field=dup)
        rows: list[dict] = []
        lines: list[int] = []
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
            if len(rows) >= MAX_DATASET_ROWS:
                raise _row_cap_error(path, start)
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
        if "field larger than field limit" in str(exc):
            raise DatasetError(
                f"a cell in the record starting here is longer than {MAX_LINE_CHARS:,} characters; "
                "a quote left open makes the rest of the file one cell: close it, or split the text",
                path=path,
                line=start,
            ) from exc
        raise DatasetError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from exc
    finally:
        csv.field_size_limit(old_limit)
    return rows, lines, header


def _read_parquet(path: Path) -> tuple[list[dict], list[int], list[str]]:
    import pyarrow.parquet as pq  # deferred: pyarrow is heavy and only Parquet needs it

    advice = "re-export it (the footer or a data page is damaged or the file is not Parquet)"
    try:
        meta = pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DatasetError(f"cannot read Parquet: {exc}; {advice}", path=path) from exc
    # The footer tells the size before anything is decoded: a small compressed file can expand a lot.
    if meta.num_rows > MAX_DATASET_ROWS:
        raise _row_cap_error(path, MAX_DATASET_ROWS + 1)
    unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if unpacked > MAX_DATASET_BYTES:
        raise DatasetError(f"the data is {human_bytes(unpacked)} uncompressed, over the "
                           f"{human_bytes(MAX_DATASET_BYTES)} limit; {_SPLIT_ADVICE}", path=path)
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DatasetError(f"cannot read Parquet: {exc}; {advice}", path=path) from exc
    rows = table.to_pylist()
    # Parquet has no lines; report the 1-based row number instead.
    return rows, list(range(1, len(rows) + 1)), list(table.column_names)


def read_rows(path: Path) -> tuple[str, list[dict], list[int], list[str]]:
    """Read any supported file into (format, rows, line numbers, columns), within the caps of
    this module (file size, rows, line length), checked before the file is read whole."""
    fmt = DATASET_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(
            f"unsupported file type '{path.suffix}'; use .jsonl, .csv or .parquet", path=path
        )
    if not path.is_file():
        raise DatasetError("dataset file does not exist", path=path)
    check_file_size(path, MAX_DATASET_BYTES, "a held-out set", _SPLIT_ADVICE)
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]
    try:
        return (fmt, *reader(path))
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path=path) from exc
