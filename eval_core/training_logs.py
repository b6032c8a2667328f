"""Training logs of every common format, read into one tidy table of `CurvePoint`s.

Sources:
- Hugging Face `trainer_state.json` (`log_history`): NaN and Infinity are read as floats; a step
  written twice (a resumed run re-logs the steps after its checkpoint) keeps the last write and the
  table says so in `warnings`;
- TensorBoard event files, read with the `tensorboard` package's own loader; HF's tag names
  (`train/loss`, `eval/support_loss`) are mapped back to the trainer_state names (`loss`,
  `eval_support_loss`) so the two sources merge; a truncated or corrupt file gives a warning and
  the records read before the damage;
- PyTorch Lightning `CSVLogger` `metrics.csv` (one column per metric, sparse rows);
- plain step/metric/value rows as `.jsonl` or `.csv` (optional `epoch`, `wall_time`).

A run folder holding several sources merges them: a (metric, step) point is taken once, from the
most complete trainer_state.json first, then from the other sources; a TensorBoard point for the
same (metric, step) only lends its wall time.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from eval_core.errors import DatasetError

CURVES_SCHEMA = "ftlens.curves"
CURVES_SCHEMA_VERSION = 1

TRAINER_STATE = "trainer_state.json"
TB_PREFIX = "events.out.tfevents."
LIGHTNING_CSV = "metrics.csv"
PLAIN_LOGS = ("metrics.jsonl", "log_history.jsonl")
_NOT_METRICS = {"step", "epoch", "total_flos"}


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One logged value: the row of the tidy table."""

    run: str
    source: str
    step: int
    epoch: float | None
    wall_time: float | None
    metric: str
    value: float


@dataclass(frozen=True)
class CurveTable:
    """Every point of one or more runs, with what was noticed while reading them."""

    points: tuple[CurvePoint, ...]
    warnings: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=())

    def metrics(self) -> list[str]:
        return sorted({p.metric for p in self.points})

    def runs(self) -> list[str]:
        return sorted({p.run for p in self.points})

    def series(self, metric: str, run: str | None = None) -> list[CurvePoint]:
        """Points of one metric (and run), in step order."""
        return sorted(
            (p for p in self.points if p.metric == metric and (run is None or p.run == run)),
            key=lambda p: p.step,
        )

    def to_rows(self) -> list[dict]:
        """JSON-ready rows; NaN/inf values become the strings 'NaN', 'Infinity', '-Infinity'."""
        return [
            {
                "run": p.run, "source": p.source, "step": p.step, "epoch": p.epoch,
                "wall_time": p.wall_time, "metric": p.metric, "value": json_float(p.value),
            }
            for p in self.points
        ]


def json_float(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def read_trainer_state(path: Path, run: str, source: str | None = None) -> tuple[list[CurvePoint], list[str]]:
    """Points of a trainer_state.json `log_history`, last write wins for repeated steps.

    Raises:
        DatasetError: the file is missing, not JSON, or has no `log_history` list.
    """
    source = source or path.name
    text = _read_text(path)
    try:
        state = json.loads(text)  # json accepts NaN, Infinity and -Infinity, as Trainer writes them
    except json.JSONDecodeError as exc:
        raise DatasetError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno) from exc
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise DatasetError(
            "no 'log_history' list: this is not a Trainer state file", path=path, field="log_history"
        )
    found: dict[tuple[str, int], CurvePoint] = {}
    repeated = 0
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            raise DatasetError(
                f"log_history[{i}] has no integer 'step'", path=path, field=f"log_history[{i}].step"
            )
        epoch = _number(entry.get("epoch"))
        for key, raw in entry.items():
            value = _number(raw)
            if key in _NOT_METRICS or value is None:
                continue
            point = CurvePoint(run, source, entry["step"], epoch, None, key, value)
            if (key, entry["step"]) in found:
                repeated += 1
            found[(key, entry["step"])] = point
    warnings = []
    if repeated:
        warnings.append(
            f"{path}: {repeated} values were logged twice for the same step (a resumed run); "
            "the last write is kept"
        )
    return list(found.values()), warnings


def _tb_metric(tag: str) -> str:
    """HF's TensorBoardCallback writes `train/x` and `eval/x`; map back to `x` and `eval_x`."""
    if tag.startswith("train/"):
        return tag[len("train/"):]
    if tag.startswith("eval/"):
        return "eval_" + tag[len("eval/"):]
    return tag


def read_tensorboard(path: Path, run: str, source: str | None = None) -> tuple[list[CurvePoint], list[str]]:
    """Scalar points of one event file, read with tensorboard's own loader.

    A truncated or corrupt file yields the points read before the damage and a warning.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    source = source or path.name
    points: list[CurvePoint] = []
    warnings: list[str] = []
    epochs: dict[int, float] = {}
    events = 0
    try:
        for event in EventFileLoader(str(path)).Load():
            events += 1
            for v in event.summary.value:
                kind = v.WhichOneof("value")
                if kind == "simple_value":
                    value = float(v.simple_value)
                elif kind == "tensor" and v.metadata.plugin_data.plugin_name == "scalars":
                    arr = tensor_util.make_ndarray(v.tensor)
                    if arr.size != 1:
                        continue
                    value = float(arr.reshape(()))
                else:
                    continue
                metric = _tb_metric(v.tag)
                if metric == "epoch":
                    epochs[int(event.step)] = value
                    continue
                if metric in _NOT_METRICS:
                    continue
                points.append(CurvePoint(run, source, int(event.step), None, float(event.wall_time), metric, value))
    except Exception as exc:  # the loader raises DataLossError and friends on damaged records
        warnings.append(
            f"{path}: stopped reading after {len(points)} points: {type(exc).__name__}: {exc}. "
            "The file is truncated or corrupt; the points before the damage are shown."
        )
    # tensorboard's loader stops quietly at a bad CRC or a half-written record (it expects more
    # data from a live run); the record framing tells whether it read the whole file.
    complete, trailing = _record_framing(path)
    if not warnings and events < complete:
        warnings.append(
            f"{path}: record {events + 1} of {complete} is corrupt (bad checksum); the {len(points)} "
            "points before it are shown"
        )
    elif not warnings and trailing:
        warnings.append(
            f"{path}: the last record is incomplete ({trailing} bytes; the file is truncated or "
            "still being written); the points before it are shown"
        )
    if path.stat().st_size > 0 and not points and not warnings:
        warnings.append(f"{path}: no scalar values found")
    return [replace(p, epoch=epochs.get(p.step)) for p in points], warnings


def _record_framing(path: Path) -> tuple[int, int]:
    """(complete TFRecord frames, bytes left over) from the frames' length fields alone.

    A frame is an 8-byte little-endian length, a 4-byte length checksum, the payload and a 4-byte
    payload checksum; the payload (the Event protobuf) is left to tensorboard's loader.
    """
    data = path.read_bytes()
    pos = count = 0
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 8], "little")
        end = pos + 12 + length + 4
        if end > len(data):
            break
        pos, count = end, count + 1
    return count, len(data) - pos


def read_lightning_csv(path: Path, run: str, source: str | None = None) -> tuple[list[CurvePoint], list[str]]:
    """Points of a PyTorch Lightning CSVLogger `metrics.csv` (sparse: one metric per column)."""
    source = source or path.name
    rows = _csv_rows(path)
    if not rows or "step" not in rows[0][1]:
        raise DatasetError("metrics.csv needs a 'step' column", path=path, line=1, field="step")
    points = []
    for line, row in rows:
        step = _int_cell(row.get("step"), path, line, "step")
        epoch = _float_cell(row.get("epoch"), path, line, "epoch")
        for key, cell in row.items():
            if key in ("step", "epoch") or cell in (None, ""):
                continue
            points.append(CurvePoint(run, source, step, epoch, None, key, _float_cell(cell, path, line, key)))  # type: ignore[arg-type]
    return points, []


def read_plain_log(path: Path, run: str, source: str | None = None) -> tuple[list[CurvePoint], list[str]]:
    """Points of plain step/metric/value rows (`.jsonl` or `.csv`; `epoch`, `wall_time` optional)."""
    source = source or path.name
    if path.suffix == ".jsonl":
        rows = []
        for n, text in enumerate(_read_text(path).splitlines(), start=1):
            if text.strip():
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"invalid JSON: {exc.msg}", path=path, line=n) from exc
                if not isinstance(obj, dict):
                    raise DatasetError("each line must be a JSON object", path=path, line=n)
                rows.append((n, obj))
    else:
        rows = _csv_rows(path)
    points = []
    for line, row in rows:
        for required in ("step", "metric", "value"):
            if required not in row:
                raise DatasetError(f"missing '{required}'", path=path, line=line, field=required)
        step = _int_cell(row["step"], path, line, "step")
        value = _float_cell(row["value"], path, line, "value")
        epoch = _float_cell(row.get("epoch"), path, line, "epoch")
        wall = _float_cell(row.get("wall_time"), path, line, "wall_time")
        points.append(CurvePoint(run, source, step, epoch, wall, str(row["metric"]), value))  # type: ignore[arg-type]
    return points, []


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; an unreadable file or bad bytes are a DatasetError naming the line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text (byte {exc.start}); logs are written as UTF-8", path=path,
                           line=data.count(b"\n", 0, exc.start) + 1) from exc


def _csv_rows(path: Path) -> list[tuple[int, dict]]:
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if None in row:
                raise DatasetError("more fields than the header", path=path, line=reader.line_num)
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DatasetError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from exc
    return rows


def _float_cell(cell: object, path: Path, line: int, name: str) -> float | None:
    if cell is None or cell == "":
        return None
    try:
        return float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{cell!r} is not a number", path=path, line=line, field=name) from None


def _int_cell(cell: object, path: Path, line: int, name: str) -> int:
    value = _float_cell(cell, path, line, name)
    if value is None or not value.is_integer():
        raise DatasetError(f"{cell!r} is not an integer step", path=path, line=line, field=name)
    return int(value)


def find_log_sources(folder: Path) -> list[Path]:
    """Log files under a run folder (or the file itself), most authoritative first."""
    if folder.is_file():
        return [folder]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name == TRAINER_STATE or name.startswith(TB_PREFIX) or name == LIGHTNING_CSV or name in PLAIN_LOGS:
                found.append(Path(dirpath) / name)

    def rank(p: Path) -> tuple:
        # The trainer_state.json with the most history first: checkpoint copies are its prefixes.
        if p.name == TRAINER_STATE:
            try:
                return (0, -p.stat().st_size, str(p))
            except OSError:
                return (0, 0, str(p))
        return (1 if p.name.startswith(TB_PREFIX) else 2, 0, str(p))

    return sorted(found, key=rank)


def _reader(path: Path):
    if path.name.startswith(TB_PREFIX):
        return read_tensorboard
    if path.name == TRAINER_STATE or (path.suffix == ".json"):
        return read_trainer_state
    if path.name == LIGHTNING_CSV:
        return read_lightning_csv
    if path.suffix in (".jsonl", ".csv"):
        return read_plain_log
    raise DatasetError(
        "not a training log: expected trainer_state.json, events.out.tfevents.*, metrics.csv, "
        "or step/metric/value .jsonl/.csv",
        path=path,
    )


def read_run_logs(path: Path | str, run: str | None = None, root: Path | None = None) -> CurveTable:
    """Read every log of a run folder (or one log file) into one merged table.

    Args:
        path: a run folder, a trainer_state.json, a TensorBoard log folder or event file, a
            metrics.csv, or a step/metric/value .jsonl/.csv.
        run: the run name to put on every point (default: the folder name).
        root: make `source` paths relative to this folder (the workspace).

    Raises:
        DatasetError: the path does not exist, holds no log, or a log cannot be parsed.

    Example:
        >>> table = read_run_logs(".demo_workspace/runs/support-ft")  # doctest: +SKIP
        >>> [p.value for p in table.series("eval_support_loss")][:2]
        [6.93, 5.49]
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError("training-log path does not exist", path=path)
    run = run or (path.name if path.is_dir() else path.parent.name)
    sources = find_log_sources(path)
    if not sources:
        raise DatasetError(
            "no training logs here (trainer_state.json, events.out.tfevents.*, metrics.csv)", path=path
        )
    merged: dict[tuple[str, int], CurvePoint] = {}
    warnings: list[str] = []
    for src in sources:
        label = src.relative_to(root).as_posix() if root and src.is_relative_to(root) else str(src)
        points, notes = _reader(src)(src, run, label)
        warnings += notes
        for p in points:
            key = (p.metric, p.step)
            have = merged.get(key)
            if have is None:
                merged[key] = p
            elif have.wall_time is None and p.wall_time is not None:
                merged[key] = replace(have, wall_time=p.wall_time)
    ordered = sorted(merged.values(), key=lambda p: (p.metric, p.step))
    return CurveTable(points=tuple(ordered), warnings=tuple(warnings), sources=tuple(str(s) for s in sources))


def merge_tables(tables: Iterable[CurveTable]) -> CurveTable:
    """Several runs' tables as one (runs keep their own points)."""
    tables = list(tables)
    return CurveTable(
        points=tuple(p for t in tables for p in t.points),
        warnings=tuple(w for t in tables for w in t.warnings),
        sources=tuple(s for t in tables for s in t.sources),
    )


def iter_csv(table: CurveTable) -> Iterator[str]:
    """The tidy table as CSV lines (header first)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["run", "source", "step", "epoch", "wall_time", "metric", "value"])
    writer.writeheader()
    yield buf.getvalue()
    for row in table.to_rows():
        buf.seek(0)
        buf.truncate()
        writer.writerow(row)
        yield buf.getvalue()
