"""Recognise and inspect checkpoint folders without importing torch or running anything.

A folder is a checkpoint when it holds either
- a full model: `config.json` plus `model.safetensors`, a sharded `model.safetensors.index.json`,
  or (refused unless pickle is allowed) `pytorch_model.bin` / its index / a lone `*.pt`/`*.pth`; or
- a PEFT adapter: `adapter_config.json` plus `adapter_model.safetensors` (or a pickle `.bin`).

Inspection reads JSON and safetensors headers only. It refuses configs that would need remote
code (`auto_map`) at once, so a bad checkpoint is reported on the Overview before anyone tries to
load it. Loading itself lives in `model_loading.py`, the only module that builds torch models.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from eval_core.errors import CheckpointError, UnsafeCheckpointError
from eval_core.fingerprints import DigestCache, fingerprint_files
from eval_core.records import CheckpointKind, CheckpointRecord, WeightFormat
from eval_core.safetensors_header import read_safetensors_header

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "vocab.txt",
    "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "chat_template.jinja",
    "chat_template.json",
)
CONFIG_FILES = ("config.json", "generation_config.json", "adapter_config.json")
# Pickled trainer state that sits in every HF checkpoint; never weights, never loaded by us.
TRAINER_STATE_PICKLES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Config keys that name a file for a loader to open (RagConfig's retrieval index and passages).
EXTERNAL_FILE_KEYS = ("index_path", "passages_path")


@dataclass(frozen=True)
class CheckpointFiles:
    """The files that make up one checkpoint, as found on disk."""

    folder: Path
    kind: CheckpointKind
    weight_format: WeightFormat
    weight_files: tuple[Path, ...]
    config_files: tuple[Path, ...]
    tokenizer_files: tuple[Path, ...]


def is_checkpoint_dir(folder: Path) -> bool:
    """True when `folder` looks like a model or adapter folder (cheap: file names only)."""
    if not folder.is_dir():
        return False
    if (folder / "adapter_config.json").is_file():
        return True
    return (folder / "config.json").is_file() and bool(_weight_candidates(folder))


def _weight_candidates(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.name not in TRAINER_STATE_PICKLES
        and not p.name.startswith("rng_state")
        and (p.suffix == ".safetensors" or p.name.endswith(".index.json") or p.suffix in PICKLE_SUFFIXES)
    ]


def read_json_file(path: Path, *, error: type[CheckpointError] = CheckpointError) -> dict:
    """Parse a JSON object file; errors name the file and line.

    NaN and Infinity are accepted because Trainer writes them into trainer_state.json.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from exc
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", path=path) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno) from exc
    if not isinstance(data, dict):
        raise error("expected a JSON object at the top level", path=path, line=1)
    return data


def check_no_remote_code(config_path: Path) -> dict:
    """Read a config and refuse it when loading it would import code shipped with the checkpoint,
    or when it names an external file (a RAG-style retrieval index) that a loader would open."""
    config = read_json_file(config_path)
    if "auto_map" in config:
        raise UnsafeCheckpointError(
            "the config asks for custom code (auto_map), which would run Python shipped with the "
            "checkpoint. Fine-Tune Lens never sets trust_remote_code; convert the model to a "
            "standard transformers architecture first.",
            path=config_path,
            field="auto_map",
        )
    for key in EXTERNAL_FILE_KEYS:
        if config.get(key):
            raise UnsafeCheckpointError(
                f"the config names an external file ({key} = {str(config[key])[:200]!r}); a loader "
                "would open it (CVE-2023-6730 used this to load a pickle from elsewhere). "
                "Fine-Tune Lens only loads causal LMs and never opens files a config points to: "
                "remove the key.",
                path=config_path,
                field=key,
            )
    return config


MAX_LINK_CHECK_DEPTH = 3  # checkpoint folders are shallow; a deeper tree is not one transformers reads


def check_links(folder: Path, root: Path | None = None) -> None:
    """Refuse a folder entry that is a device, a pipe or a socket, or a symlink that resolves
    outside `root` (default: the folder itself) or to anything but a file or folder.

    Runs before any file of the folder is read, and over every entry rather than the names we
    load, because transformers and peft open further files by name (chat_template.jinja, ...).

    Raises:
        CheckpointError: naming the entry and where it leads.
    """
    real_root = (root if root is not None else folder).resolve()
    _check_entries(folder, folder, real_root, depth=0)


def _check_entries(folder: Path, top: Path, real_root: Path, depth: int) -> None:
    for entry in sorted(folder.iterdir()):
        try:
            target = entry.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            target = entry
        kind_ok = target.is_file() or target.is_dir()  # False for devices, pipes, sockets, dangling links
        if kind_ok and target.is_relative_to(real_root):
            # Subfolders too (additional_chat_templates/, ...): transformers reads some of them by name.
            if target.is_dir() and not entry.is_symlink() and depth < MAX_LINK_CHECK_DEPTH:
                _check_entries(entry, top, real_root, depth + 1)
            continue
        if not entry.is_symlink():
            why = "is not a regular file or folder (a device, pipe or socket)"
        elif not target.is_relative_to(real_root):
            # The same words whether the target exists or not: an error must not probe the disk outside.
            why = "links outside the workspace"
        else:
            why = f"links to {target}, which is a device, a pipe or missing"
        name = entry.relative_to(top).as_posix()
        raise CheckpointError(
            f"'{name}' {why}; it is never read. Copy the real file into the checkpoint "
            "folder instead of linking it.",
            path=top,
            field=name,
        )


def find_checkpoint_files(folder: Path, root: Path | None = None) -> CheckpointFiles:
    """Classify the files of a checkpoint folder.

    Args:
        folder: the checkpoint folder.
        root: the folder that symlinks may lead into (the workspace); default `folder` itself.

    Raises:
        CheckpointError: the folder has no config or no weights, a shard listed in an index is
            missing or outside the folder, or an entry links outside `root` or to a device.
        UnsafeCheckpointError: the config asks for remote code.
    """
    if not folder.is_dir():
        raise CheckpointError("checkpoint folder does not exist", path=folder)
    check_links(folder, root)
    adapter_cfg = folder / "adapter_config.json"
    kind: CheckpointKind = "adapter" if adapter_cfg.is_file() else "full"
    if kind == "full" and not (folder / "config.json").is_file():
        raise CheckpointError(
            "no config.json (full model) or adapter_config.json (PEFT adapter) in this folder; "
            "save the model with save_pretrained.",
            path=folder,
        )
    config_files = [folder / n for n in CONFIG_FILES if (folder / n).is_file()]
    for cfg in config_files:
        if cfg.name != "generation_config.json":
            check_no_remote_code(cfg)
    tok_cfg = folder / "tokenizer_config.json"
    if tok_cfg.is_file():
        check_no_remote_code(tok_cfg)

    stem = "adapter_model" if kind == "adapter" else "model"
    weights: list[Path] = []
    weight_format: WeightFormat = "safetensors"
    single, index = folder / f"{stem}.safetensors", folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        weights = [single]
    elif index.is_file():
        weights = [index, *_shards_of(index)]
    else:
        pickles = [p for p in _weight_candidates(folder) if p.suffix in PICKLE_SUFFIXES or p.name.endswith(".bin.index.json")]
        if kind == "full":
            pickles = [p for p in pickles if not p.name.startswith("adapter_model")]
        if not pickles:
            raise CheckpointError(
                f"no weights: expected {stem}.safetensors or {stem}.safetensors.index.json",
                path=folder,
            )
        weight_format = "pickle"
        weights = sorted(pickles)
    tokenizer_files = [folder / n for n in TOKENIZER_FILES if (folder / n).is_file()]
    return CheckpointFiles(
        folder=folder,
        kind=kind,
        weight_format=weight_format,
        weight_files=tuple(weights),
        config_files=tuple(config_files),
        tokenizer_files=tuple(tokenizer_files),
    )


def _shards_of(index: Path) -> list[Path]:
    data = read_json_file(index)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError("index has no 'weight_map' object", path=index, field="weight_map")
    shards = []
    for name in sorted(set(map(str, weight_map.values()))):
        shard = index.parent / name
        if "/" in name or "\\" in name or name.startswith(".") or not shard.is_file():
            raise CheckpointError(
                f"shard '{name}' listed in the index is missing or outside the checkpoint folder; "
                "the checkpoint is incomplete, copy every shard.",
                path=index,
                field="weight_map",
            )
        shards.append(shard)
    return shards


def check_safetensors_weights(files: CheckpointFiles) -> int:
    """Validate every safetensors header of a checkpoint and its shard index; the parameter count.

    Each header is checked by `read_safetensors_header` (offsets, dtype x shape, overlaps), and
    every tensor an index lists must be in the shard it names, so a sharded checkpoint missing
    part of its weights is refused instead of loaded with those weights left at random init.

    Raises:
        CheckpointError: naming the shard (and tensor) at fault.
    """
    headers = {f.name: read_safetensors_header(f) for f in files.weight_files if f.suffix == ".safetensors"}
    index = next((f for f in files.weight_files if f.name.endswith(".index.json")), None)
    if index is not None:
        for tensor, shard in read_json_file(index)["weight_map"].items():
            if tensor not in headers[str(shard)].tensors:
                raise CheckpointError(
                    f"tensor '{tensor}' is listed in the index for shard '{shard}', but that shard "
                    "does not hold it; the checkpoint is incomplete, copy every shard again.",
                    path=index,
                    field="weight_map",
                )
    return sum(h.parameter_count for h in headers.values())


def checkpoint_step(folder: Path) -> int | None:
    """The global step: from `checkpoint-<N>`, else from trainer_state.json's `global_step`."""
    m = CHECKPOINT_DIR.match(folder.name)
    if m:
        return int(m.group(1))
    state = folder / "trainer_state.json"
    if state.is_file():
        try:
            step = read_json_file(state).get("global_step")
            return int(step) if isinstance(step, int) else None
        except CheckpointError:
            return None
    return None


def inspect_checkpoint(
    folder: Path,
    *,
    root: Path,
    name: str,
    run: str | None,
    cache: DigestCache | None = None,
) -> CheckpointRecord:
    """Describe a checkpoint folder: kind, step, parameters, size and fingerprint.

    Reads only JSON and safetensors headers, so it is fast and cannot run code.

    Example:
        >>> rec = inspect_checkpoint(ws / "runs/a/checkpoint-10", root=ws, name="checkpoint-10",
        ...                          run="a")  # doctest: +SKIP
        >>> rec.kind, rec.step
        ('full', 10)
    """
    files = find_checkpoint_files(folder, root)
    params: int | None = None
    if files.weight_format == "safetensors":
        params = check_safetensors_weights(files)
    if files.kind == "adapter":
        model_type = read_json_file(folder / "adapter_config.json").get("peft_type")
    else:
        model_type = read_json_file(folder / "config.json").get("model_type")
    content = [*files.weight_files, *files.config_files, *files.tokenizer_files]
    return CheckpointRecord(
        name=name,
        run=run,
        step=checkpoint_step(folder),
        path=folder.relative_to(root).as_posix() if folder.is_relative_to(root) else str(folder),
        kind=files.kind,
        weight_format=files.weight_format,
        parameter_count=params,
        size_bytes=sum(f.stat().st_size for f in files.weight_files),
        fingerprint=fingerprint_files(folder, content, cache),
        has_tokenizer=bool(files.tokenizer_files),
        model_type=str(model_type) if model_type is not None else None,
    )
