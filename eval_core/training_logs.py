"""Training logs of every common format, read into one tidy table of `CurvePoint`s.

Sources:
- Hugging Face `trainer_state.json` (`log_history`): NaN and Infinity are read as floats; a step
  written twice (a resumed run re-logs the steps after its checkpoint) keeps the last write and the
  table says so in `warnings`;
- TensorBoard event files (`eval_core.tensorboard_logs`): HF's tag names are mapped back to the
  trainer_state names so the two sources merge; a damaged file gives a warning and the records
  read before the damage;
- PyTorch Lightning `CSVLogger` `metrics.csv` (one column per metric, sparse rows);
- plain step/metric/value rows as `.jsonl` or `.csv` (optional `epoch`, `wall_time`).

A run folder holding several sources merges them: a (metric, step) point is taken once, from the
most complete trainer_state.json first, then from the other sources; a TensorBoard point for the
same (metric, step) only lends its wall time. NaN and infinite values (`grad_norm` under mixed
precision) are kept as values, counted per file in the warnings and drawn as gaps. Each file is
read within the caps of `eval_core.data_files`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from eval_core import data_files
from eval_core.data_files import read_limited_text
from eval_core.errors import DatasetError
from eval_core.records import NOT_METRICS, CurvePoint, defuse
from eval_core.tensorboard_logs import read_tensorboard

CURVES_SCHEMA = "ftlens.curves"
CURVES_SCHEMA_VERSION = 1

TRAINER_STATE = "trainer_state.json"
TB_PREFIX = "events.out.tfevents."
LIGHTNING_CSV = "metrics.csv"
PLAIN_LOGS = ("metrics.jsonl", "log_history.jsonl")


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
    except (ValueError, RecursionError) as exc:  # an integer too long to convert; absurd nesting
        raise DatasetError(f"cannot read this JSON: {exc or 'nested too deeply'}", path=path) from None
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
            if key in NOT_METRICS or value is None:
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
    return read_limited_text(path, data_files.MAX_LOG_BYTES, "a training log")


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
        return _counting_gaps(read_tensorboard)
    if path.name == TRAINER_STATE or (path.suffix == ".json"):
        return _counting_gaps(read_trainer_state)
    if path.name == LIGHTNING_CSV:
        return _counting_gaps(read_lightning_csv)
    if path.suffix in (".jsonl", ".csv"):
        return _counting_gaps(read_plain_log)
    raise DatasetError(
        "not a training log: expected trainer_state.json, events.out.tfevents.*, metrics.csv, "
        "or step/metric/value .jsonl/.csv",
        path=path,
    )


def _counting_gaps(read):  # noqa: ANN001, ANN202 (one of the read_* functions above)
    """`read`, plus a warning that counts the file's NaN and infinite values."""

    def read_noting_gaps(path: Path, run: str, source: str | None = None) -> tuple[list[CurvePoint], list[str]]:
        points, warnings = read(path, run, source)
        bad = Counter(p.metric for p in points if not math.isfinite(p.value))
        if bad:
            each = ", ".join(f"{m}: {n}" for m, n in sorted(bad.items()))
            warnings = [*warnings, f"{path}: {sum(bad.values())} values are NaN or infinite ({each}); they "
                        "are kept and drawn as gaps in the curves"]
        return points, warnings

    return read_noting_gaps


def read_run_logs(path: Path | str, run: str | None = None, root: Path | None = None) -> CurveTable:
    """Read every log of a run folder (or one log file) into one merged table.

    Args:
        path: a run folder, a trainer_state.json, a TensorBoard log folder or event file, a
            metrics.csv, or a step/metric/value .jsonl/.csv.
        run: the run name to put on every point (default: the folder name).
        root: the workspace: `source` paths are made relative to it, and a path or log file
            resolving outside it (a symlink) is refused unread.

    Raises:
        DatasetError: the path does not exist, leaves `root`, holds no log, or a log cannot be parsed.

    Example:
        >>> table = read_run_logs(".demo_workspace/runs/support-ft")  # doctest: +SKIP
        >>> [p.value for p in table.series("eval_support_loss")][:2]
        [6.93, 5.49]
    """
    path = Path(path)
    real_root = root.resolve() if root is not None else None
    # Checked before anything is opened, and without naming the target: an answer about a path
    # outside the workspace would tell whether it exists.
    if real_root is not None and not path.resolve().is_relative_to(real_root):
        raise DatasetError("training-log path leaves the workspace; keep logs inside it", path=path)
    if not path.exists():
        raise DatasetError("training-log path does not exist", path=path)
    run = run or (path.name if path.is_dir() else path.parent.name)
    sources = find_log_sources(path)
    outside = [s for s in sources if real_root is not None and not s.resolve().is_relative_to(real_root)]
    if outside:
        raise DatasetError("this log is a link leading out of the workspace; copy the file in instead",
                           path=outside[0])
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
        writer.writerow({k: defuse(v) for k, v in row.items()})  # run and metric names come from the logs
        yield buf.getvalue()
