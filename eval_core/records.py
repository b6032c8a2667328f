"""Frozen, versioned records: what eval_core reports, stores and exports.

Everything that leaves eval_core as data (CLI JSON, the Overview page, later the results store and
reports) is one of these records. `to_dict()` gives plain JSON-ready values; a record that is
written out carries `schema` and `schema_version` so a reader years later knows what it holds.
Bump `WORKSPACE_SCHEMA_VERSION` when a field changes meaning or disappears (adding one is fine).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

WORKSPACE_SCHEMA = "ftlens.workspace"
WORKSPACE_SCHEMA_VERSION = 1

CheckpointKind = Literal["full", "adapter"]
WeightFormat = Literal["safetensors", "pickle"]
DatasetKind = Literal["generation", "text", "probe"]
LogKind = Literal["trainer_state", "tensorboard", "lightning_csv", "jsonl", "csv"]


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN or infinity (nested in dicts, lists, tuples) replaced by None, so
    `json.dumps(..., allow_nan=False)` accepts it: exported records are strict JSON.

    Example:
        >>> json_safe({"a": [1.0, float("nan")], "b": float("inf")})
        {'a': [1.0, None], 'b': None}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


# Keys of a log entry that place it (step, epoch) or count work (total_flos); not curves.
NOT_METRICS = frozenset({"step", "epoch", "total_flos"})


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


class Record:
    """Mixin: a dataclass record that turns itself into JSON-ready dicts."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class CheckpointRecord(Record):
    """One loadable model: a base model, a `checkpoint-*` folder, or a run's final model.

    Attributes:
        name: `checkpoint-500`, `final`, or `base` for the workspace's base model.
        run: the run it belongs to; None for the base model.
        step: global training step (from the folder name or trainer_state.json); None if unknown.
        path: folder, relative to the workspace root (POSIX separators).
        kind: `full` (config.json + weights) or `adapter` (PEFT adapter over the base model).
        weight_format: `safetensors`, or `pickle` (refused unless explicitly allowed).
        parameter_count: parameters stored in the weight files (an adapter's own parameters only);
            None when the weights are pickle (counting them would mean unpickling).
        size_bytes: bytes of the weight files.
        fingerprint: content hash of weights, config and tokenizer files (`blake2b-128:<hex>`).
        has_tokenizer: tokenizer files sit in the folder (otherwise the base model's are used).
        model_type: config.json `model_type` (for adapters, the adapter's `peft_type`).
    """

    name: str
    run: str | None
    step: int | None
    path: str
    kind: CheckpointKind
    weight_format: WeightFormat
    parameter_count: int | None
    size_bytes: int
    fingerprint: str
    has_tokenizer: bool
    model_type: str | None


@dataclass(frozen=True)
class LogFileRecord(Record):
    """A training-log file found in a run folder."""

    run: str
    path: str
    kind: LogKind
    size_bytes: int


@dataclass(frozen=True)
class RunRecord(Record):
    """A training run: a Trainer output folder with `checkpoint-*` folders and logs."""

    name: str
    path: str
    checkpoints: tuple[CheckpointRecord, ...]
    log_files: tuple[LogFileRecord, ...]


@dataclass(frozen=True)
class DatasetRecord(Record):
    """A held-out set as discovered: where it is, its shape and its column mapping.

    Attributes:
        kind: `generation` (prompt + reference), `text` (plain text for perplexity) or `probe`
            (general-knowledge items with prompt, answer and optional choices).
        columns: every column found, in file order.
        column_map: role (`prompt`, `reference`, `text`, `category`, `id`, ...) to column name.
        categories: rows per category (empty when the set has no category column).
        blank_values: per required role, how many rows hold an empty or whitespace-only value.
    """

    name: str
    path: str
    format: str
    kind: DatasetKind
    rows: int
    columns: tuple[str, ...]
    column_map: dict[str, str]
    categories: dict[str, int]
    fingerprint: str
    # Rows whose required text (prompt, reference, text, answer) is empty or blank, per role: kept
    # (a blank reference is data, not a parse error), and counted so a summary can say so.
    blank_values: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class ProblemRecord(Record):
    """Something in the workspace that could not be used, with where and what to do."""

    message: str
    path: str | None = None
    line: int | None = None
    field: str | None = None
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class WorkspaceSummary(Record):
    """Everything discovered in a workspace: the `workspace` CLI JSON and the Overview page.

    `problems` lists what could not be used; the rest of the workspace is still reported.
    """

    root: str
    name: str
    config_file: str | None
    base_model: CheckpointRecord | None
    runs: tuple[RunRecord, ...]
    datasets: tuple[DatasetRecord, ...]
    problems: tuple[ProblemRecord, ...] = ()
    training_sets: tuple[DatasetRecord, ...] = ()  # what the model was fine-tuned on (data diagnostics)
    app_version: str = ""
    schema: str = WORKSPACE_SCHEMA
    schema_version: int = WORKSPACE_SCHEMA_VERSION

    @property
    def checkpoints(self) -> tuple[CheckpointRecord, ...]:
        """All run checkpoints, run by run, in step order."""
        return tuple(c for r in self.runs for c in r.checkpoints)

    @property
    def log_files(self) -> tuple[LogFileRecord, ...]:
        return tuple(f for r in self.runs for f in r.log_files)


__all__ = [
    "CheckpointKind",
    "CheckpointRecord",
    "DatasetKind",
    "DatasetRecord",
    "LogFileRecord",
    "LogKind",
    "ProblemRecord",
    "Record",
    "RunRecord",
    "WORKSPACE_SCHEMA",
    "WORKSPACE_SCHEMA_VERSION",
    "WeightFormat",
    "WorkspaceSummary",
]


def defuse(cell: object) -> object:
    """A CSV cell a spreadsheet shows as text: formulas (= + - @, tab, CR first) get a leading '.

    Every CSV writer of Fine-Tune Lens passes its cells through this (formula injection: a model
    output, a comment or a metric name in a log can start with "="). Numbers, and strings that are
    numbers such as "-1.5" or "-Infinity", are left as they are: they cannot be a formula.

    Example:
        >>> defuse("=HYPERLINK(1)"), defuse("fine"), defuse(3), defuse("-1.5")
        ("'=HYPERLINK(1)", 'fine', 3, '-1.5')
    """
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(cell)
        except ValueError:
            return "'" + cell
    return cell
