"""Workspace discovery: from a folder (and its optional `ftlens.toml`) to a `WorkspaceSummary`.

What the config names is used as named; what it leaves out is discovered:
- base model: the first of `base_model/`, `base/`, `base-model/` that is a checkpoint folder;
- runs: folders (up to three levels down) holding `checkpoint-<N>/` folders or a
  `trainer_state.json`; a run folder that is itself a model adds a `final` checkpoint;
- datasets: `.jsonl`, `.csv` and `.parquet` files outside runs and models, kind and columns
  inferred from column names;
- training logs: `trainer_state.json`, TensorBoard `events.out.tfevents.*`, Lightning
  `metrics.csv` and `*.jsonl` metric logs inside each run.

A broken config or a missing folder raises `WorkspaceError`. A broken checkpoint or dataset does
not stop discovery: it becomes a `ProblemRecord` and the rest of the workspace is still shown.
Nothing here imports torch or reads more than JSON and safetensors headers.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from eval_core.checkpoints import CHECKPOINT_DIR, inspect_checkpoint, is_checkpoint_dir
from eval_core.errors import EvalCoreError, WorkspaceError
from eval_core.fingerprints import DigestCache, fingerprint_files
from eval_core.heldout_sets import DATASET_SUFFIXES, read_heldout_set
from eval_core.records import (
    CheckpointRecord,
    DatasetRecord,
    LogFileRecord,
    LogKind,
    ProblemRecord,
    RunRecord,
    WorkspaceSummary,
)
from eval_core.version import __version__
from eval_core.workspace_config import (
    CONFIG_FILE_NAME,
    URL_PATTERN,
    DatasetSpec,
    RunSpec,
    WorkspaceConfig,
    parse_workspace_config,
)

BASE_MODEL_DIRS = ("base_model", "base", "base-model")
STATE_DIR = ".ftlens"
_MAX_DEPTH = 3
_METRIC_LOG_NAMES = ("metrics.jsonl", "log_history.jsonl", "metrics.csv")


def load_config(root: Path) -> WorkspaceConfig:
    """The workspace's config, or an empty one (discover everything) when there is no file."""
    path = root / CONFIG_FILE_NAME
    return parse_workspace_config(path) if path.is_file() else WorkspaceConfig()


def check_workspace_root(root: Path | str) -> Path:
    """Resolve `root` and check it is a folder; raise a WorkspaceError that says what to do."""
    text = str(root)
    # Lexical checks first: a NUL would crash the filesystem calls, and a URL is never fetched.
    if any(ord(ch) < 32 for ch in text):
        raise WorkspaceError("the workspace folder contains a control character (such as NUL)", field="workspace")
    if URL_PATTERN.match(text):
        raise WorkspaceError("the workspace must be a local folder, not a URL; nothing is downloaded",
                             field="workspace")
    path = Path(root).expanduser()
    if not path.exists():
        raise WorkspaceError(
            "workspace folder does not exist; pick an existing folder or build the demo with "
            "`python -m eval_core demo --workspace DIR`",
            path=path,
        )
    if not path.is_dir():
        raise WorkspaceError("the workspace must be a folder, not a file", path=path)
    return path.resolve()


def is_workspace(root: Path) -> bool:
    """True when `root` holds an ftlens.toml, a `.ftlens/` state folder, a base model folder or a run.

    Only such a folder gets files written into it (the fingerprint cache, the results database), so
    opening a wrong folder, say a home folder, leaves it as it was.
    """
    if (root / CONFIG_FILE_NAME).is_file() or (root / STATE_DIR).is_dir():
        return True
    if any(is_checkpoint_dir(root / d) and not (root / d).is_symlink() for d in BASE_MODEL_DIRS):
        return True
    return bool(discover_runs(root, set()))


def _inside(root: Path, rel: str, field: str) -> Path:
    """`root/rel`, refusing a symlink that resolves outside the workspace.

    The message never names the target: it would tell where, and whether, a file exists outside.
    """
    target = (root / rel).resolve()
    if not target.is_relative_to(root):
        raise WorkspaceError(
            f"'{rel}' resolves outside the workspace (a link leading out of it); keep files inside it",
            path=root / CONFIG_FILE_NAME,
            field=field,
        )
    return target


def _walk_dirs(root: Path, skip: set[Path]) -> list[Path]:
    """Folders under root up to _MAX_DEPTH, skipping hidden ones and `skip` subtrees."""
    found: list[Path] = []

    def visit(folder: Path, depth: int) -> None:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for child in children:
            if child.name.startswith(".") or child in skip or child.name == "__pycache__":
                continue
            found.append(child)
            if depth < _MAX_DEPTH:
                visit(child, depth + 1)

    visit(root, 1)
    return found


def _is_run_dir(folder: Path) -> bool:
    if (folder / "trainer_state.json").is_file():
        return True
    try:
        return any(CHECKPOINT_DIR.match(p.name) and p.is_dir() for p in folder.iterdir())
    except OSError:
        return False


def discover_runs(root: Path, skip: set[Path]) -> list[RunSpec]:
    """Run folders under root (not nested in each other), named by their relative path."""
    if _is_run_dir(root):  # the workspace is itself a Trainer output folder
        return [RunSpec(name=root.name, path=".")]
    runs: list[RunSpec] = []
    taken: list[Path] = []
    for folder in _walk_dirs(root, skip):
        if any(folder.is_relative_to(t) for t in taken) or CHECKPOINT_DIR.match(folder.name):
            continue
        if _is_run_dir(folder):
            taken.append(folder)
            rel = folder.relative_to(root).as_posix()
            runs.append(RunSpec(name=rel.removeprefix("runs/"), path=rel))
    return runs


def _log_kind(path: Path) -> LogKind | None:
    if path.name == "trainer_state.json":
        return "trainer_state"
    if path.name.startswith("events.out.tfevents."):
        return "tensorboard"
    if path.name == "metrics.csv":
        return "lightning_csv"
    if path.name in _METRIC_LOG_NAMES and path.suffix == ".jsonl":
        return "jsonl"
    return None


def _natural(name: str) -> tuple:
    """Sort key that puts checkpoint-30 before checkpoint-120."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def find_log_files(root: Path, run: RunSpec, run_dir: Path) -> tuple[LogFileRecord, ...]:
    """Training-log files anywhere in the run folder, in path order."""
    logs = []
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=_natural)
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            kind = _log_kind(path)
            if kind is not None and not path.is_symlink():
                logs.append(
                    LogFileRecord(
                        run=run.name,
                        path=path.relative_to(root).as_posix(),
                        kind=kind,
                        size_bytes=path.stat().st_size,
                    )
                )
    return tuple(logs)


def _checkpoints_of(
    root: Path, run: RunSpec, run_dir: Path, cache: DigestCache, problems: list[ProblemRecord]
) -> tuple[CheckpointRecord, ...]:
    folders = sorted(
        (p for p in run_dir.iterdir() if p.is_dir() and CHECKPOINT_DIR.match(p.name)),
        key=lambda p: int(CHECKPOINT_DIR.match(p.name).group(1)),  # type: ignore[union-attr]
    )
    named = [(p.name, p) for p in folders]
    if is_checkpoint_dir(run_dir):
        named.append(("final", run_dir))
    records = []
    for name, folder in named:
        try:
            records.append(inspect_checkpoint(folder, root=root, name=name, run=run.name, cache=cache))
        except EvalCoreError as exc:
            problems.append(_problem(exc))
    return tuple(records)


TRAINING_FOLDERS = ("train", "train_data", "training", "training_data")


def discover_datasets(root: Path, skip: set[Path]) -> list[DatasetSpec]:
    """Data files outside runs and models, named by their stem (or relative path on a clash)."""
    files: list[Path] = []
    for folder in [root, *_walk_dirs(root, skip)]:
        if is_checkpoint_dir(folder) or any(folder.is_relative_to(s) for s in skip):
            continue
        for p in sorted(folder.iterdir()):
            # A link is listed whatever it points at, and refused when described: skipping a dangling
            # one would tell whether its target outside the workspace exists.
            if (p.is_symlink() or p.is_file()) and p.suffix.lower() in DATASET_SUFFIXES and p.name not in _METRIC_LOG_NAMES:
                files.append(p)
    stems = [p.stem for p in files]
    specs = []
    for p in files:
        rel = p.relative_to(root).as_posix()
        name = p.stem if stems.count(p.stem) == 1 else rel.rsplit(".", 1)[0]
        specs.append(DatasetSpec(name=name, path=rel))
    return specs


def discover_training_sets(root: Path) -> list[DatasetSpec]:
    """Data files under the workspace's training folders (`train/`, `train_data/`, `training/`,
    `training_data/`): what the model was fine-tuned on, never scored as held-out sets."""
    specs = []
    for name in TRAINING_FOLDERS:
        folder = root / name
        if folder.is_dir() and not folder.is_symlink():
            specs += [DatasetSpec(name=s.name, path=f"{name}/{s.path}") for s in discover_datasets(folder, set())]
    return specs


def _describe_all(root: Path, specs: list[DatasetSpec], cache: DigestCache,
                  problems: list[ProblemRecord]) -> list[DatasetRecord]:
    records = []
    for spec in specs:
        try:
            record = describe_dataset(root, spec, cache)
        except EvalCoreError as exc:
            problems.append(_problem(exc))
            continue
        records.append(record)
        for role, n in record.blank_values.items():
            problems.append(ProblemRecord(
                f"{n} of {record.rows} rows have an empty {role}; they are kept and scored as empty text. "
                f"Fill them in or remove them if that is not intended", path=str(root / record.path), field=role,
                severity="warning"))
    return records


def describe_dataset(root: Path, spec: DatasetSpec, cache: DigestCache) -> DatasetRecord:
    """Read a dataset and describe it (rows, columns, category balance, fingerprint)."""
    path = _inside(root, spec.path, f"datasets.{spec.name}.path")
    ds = read_heldout_set(path, kind=spec.kind, columns=spec.column_map)  # type: ignore[arg-type]
    return DatasetRecord(
        name=spec.name,
        path=spec.path,
        format=ds.format,
        kind=ds.kind,
        rows=len(ds.rows),
        columns=ds.columns,
        column_map=ds.column_map,
        categories=ds.category_counts(),
        fingerprint=fingerprint_files(path.parent, [path], cache),
        blank_values={role: len(lines) for role, lines in ds.blank_lines().items()},
    )


def _problem(exc: EvalCoreError, severity: str = "error") -> ProblemRecord:
    return ProblemRecord(
        message=exc.message, path=exc.path, line=exc.line, field=exc.field, severity=severity  # type: ignore[arg-type]
    )


def discover_workspace(root: Path | str) -> WorkspaceSummary:
    """Discover everything in a workspace folder.

    Raises:
        WorkspaceError: the folder is missing or `ftlens.toml` is malformed.

    Example:
        >>> ws = discover_workspace(".demo_workspace")  # doctest: +SKIP
        >>> [c.name for c in ws.checkpoints][:2]
        ['checkpoint-20', 'checkpoint-40']
    """
    root = check_workspace_root(root)
    config = load_config(root)
    real = is_workspace(root)
    if real:
        with contextlib.suppress(OSError):  # read-only workspaces are fine: the state is a cache
            (root / STATE_DIR).mkdir(exist_ok=True)
    # A folder that is not a workspace is only looked at: its digests stay in memory.
    cache = DigestCache(root / STATE_DIR / "fingerprints.json" if real else None)
    problems: list[ProblemRecord] = []

    base_record: CheckpointRecord | None = None
    base_dir: Path | None = None
    if config.base_model is not None:
        base_dir = _inside(root, config.base_model, "base_model")
    else:
        # A base_model/ link leading out of the workspace is not followed (nor said where it leads).
        base_dir = next((root / d for d in BASE_MODEL_DIRS if (root / d).resolve().is_relative_to(root)
                         and is_checkpoint_dir(root / d)), None)
    if base_dir is not None:
        try:
            base_record = inspect_checkpoint(base_dir, root=root, name="base", run=None, cache=cache)
        except EvalCoreError as exc:
            problems.append(_problem(exc))
    else:
        problems.append(
            ProblemRecord(
                message="no base model found: name its folder in ftlens.toml (base_model = "
                "\"path\") or call it base_model/. Forgetting probes need it.",
                path=str(root / CONFIG_FILE_NAME),
                field="base_model",
                severity="warning",
            )
        )

    skip = {base_dir} if base_dir is not None else set()
    run_specs = list(config.runs) if config.runs is not None else discover_runs(root, skip)
    runs = []
    for spec in run_specs:
        run_dir = _inside(root, spec.path, f"runs.{spec.name}.path")
        if not run_dir.is_dir():
            problems.append(
                ProblemRecord(
                    message=f"run folder '{spec.path}' does not exist",
                    path=str(root / CONFIG_FILE_NAME),
                    field=f"runs.{spec.name}.path",
                )
            )
            continue
        checkpoints = _checkpoints_of(root, spec, run_dir, cache, problems)
        runs.append(
            RunRecord(
                name=spec.name,
                path=spec.path,
                checkpoints=checkpoints,
                log_files=find_log_files(root, spec, run_dir),
            )
        )

    skip |= {root / r.path for r in runs} | {root / name for name in TRAINING_FOLDERS}
    dataset_specs = (
        list(config.datasets) if config.datasets is not None else discover_datasets(root, skip)
    )
    training_specs = (
        list(config.training_sets) if config.training_sets is not None else discover_training_sets(root)
    )
    datasets = _describe_all(root, dataset_specs, cache, problems)
    training_sets = _describe_all(root, training_specs, cache, problems)
    cache.save()
    return WorkspaceSummary(
        root=str(root),
        name=config.name or root.name,
        config_file=str(config.source) if config.source else None,
        base_model=base_record,
        runs=tuple(runs),
        datasets=tuple(datasets),
        training_sets=tuple(training_sets),
        problems=tuple(problems),
        app_version=__version__,
    )
