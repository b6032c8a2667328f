"""Load checkpoints into torch models, safely, one at a time.

The only module that builds transformers models. Its promises:
- safetensors only by default; pickle weights (`.bin`, `.pt`, ...) are refused before any byte
  is unpickled, unless the caller opts in with `allow_pickle=True`, and even then they are read
  with `torch.load(weights_only=True)`, never through transformers' own pickle path;
- `trust_remote_code` is never set, and a config or tokenizer config with `auto_map` is refused;
- nothing is fetched: every load is `local_files_only`, and no file outside the checkpoint folder
  (or the `root` it may link into) is opened;
- safetensors headers are validated before any loader maps the file, and a model missing some of
  its weights is refused, never completed with random init;
- one model lives at a time: `open_model` frees the previous one (and itself on exit).
"""

from __future__ import annotations

import gc
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval_core.checkpoints import CheckpointFiles, check_safetensors_weights, find_checkpoint_files
from eval_core.errors import CheckpointError, UnsafeCheckpointError

PICKLE_OPT_IN_HELP = (
    "pickle weights can run arbitrary code when loaded, so they are refused. Convert them to "
    "safetensors (load in a sandbox, then save_pretrained(safe_serialization=True)), or, if you "
    "trust the file, pass allow_pickle=True to eval_core.load_model: it is then read with "
    "torch.load(weights_only=True)."
)
# torch.load(weights_only=True) runs code on torch < 2.6 (CVE-2025-32434), and its unpickler could
# corrupt memory up to 2.9.1 (GHSA-63cw-57p8-fm3p); transformers itself requires 2.6.
MIN_TORCH_FOR_PICKLE = (2, 10)
# The values torch.serialization reads as "set" for its TORCH_FORCE_* switches.
_TORCH_TRUE_VALUES = ("1", "y", "yes", "true")


@dataclass
class LoadedModel:
    """A model ready for inference, with the tokenizer that goes with it."""

    model: Any
    tokenizer: Any
    files: CheckpointFiles
    tokenizer_source: Path


_current: LoadedModel | None = None
_freeze_lock = threading.Lock()
_freeze_depth = 0
_skeleton: tuple[bytes, Any] | None = None  # (config.json bytes, model): kept only inside models_in_turn


def _check_torch_version(path: Path) -> None:
    import torch

    release = torch.__version__.split("+")[0].split(".")
    version = tuple(int(part) if part.isdigit() else 0 for part in (release + ["0", "0"])[:2])
    if version < MIN_TORCH_FOR_PICKLE:
        need = ".".join(map(str, MIN_TORCH_FOR_PICKLE))
        raise UnsafeCheckpointError(
            f"torch {torch.__version__} is too old to read pickle weights safely: its weights-only "
            f"unpickler can run code or corrupt memory (CVE-2025-32434). Install torch>={need}, "
            "or convert the file to safetensors.",
            path=path,
        )


def _check_torch_archive(path: Path) -> None:
    """Refuse what is not a plain torch zip archive, reading only its central directory.

    torch.save writes every entry stored (uncompressed), so a compressed entry can only be a
    zip bomb (safetensors' attacks/torch_dos_create.py: 40 GB of zeros in a few MB); and stored
    entries cannot together be larger than the file. The legacy pre-1.6 format is refused
    because it declares storage sizes in the pickle, which torch allocates before reading.
    """
    import zipfile

    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UnsafeCheckpointError(
            "not a torch zip archive (a legacy torch format or another pickle); re-save it with "
            "a current torch, or convert it to safetensors.",
            path=path,
        ) from exc
    packed = [e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if packed or sum(e.file_size for e in entries) > size:
        raise UnsafeCheckpointError(
            f"the archive declares {sum(e.file_size for e in entries)} bytes in a {size}-byte file"
            + (f" and compresses {packed[0]!r}" if packed else "")
            + "; torch.save never does, so it is a zip bomb or crafted. It was not unpacked.",
            path=path,
        )


def _torch_load_weights_only(path: Path) -> dict:
    import torch

    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "").lower() in _TORCH_TRUE_VALUES:
        raise UnsafeCheckpointError(
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set, which would turn off torch's safe unpickler; "
            "unset it to load pickle weights.",
            path=path,
        )
    _check_torch_version(path)
    _check_torch_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for hostile files
        raise UnsafeCheckpointError(
            f"refused by torch's weights-only unpickler ({type(exc).__name__}): the file holds "
            "more than tensors. It may be malicious; do not load it outside a sandbox.",
            path=path,
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError("pickle weights are not a state dict", path=path)
    return state


def _tokenizer_dir(files: CheckpointFiles, base: Path | None) -> Path:
    if files.tokenizer_files:
        return files.folder
    if base is not None and any((base / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return base
    raise CheckpointError(
        "no tokenizer files in the checkpoint and no base model to take them from; save the "
        "tokenizer with the checkpoint (Trainer does when given processing_class)",
        path=files.folder,
    )


def _load_state(model, state: dict, folder: Path) -> None:
    """Copy `state` into `model`'s parameters; every parameter must come from it."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A tied parameter (GPT-2's lm_head is the embedding) is stored once; it is not missing.
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded_ids = {id(params[k]) for k in state if k in params}
    missing = [k for k in missing if k not in params or id(params[k]) not in loaded_ids]
    if unexpected or missing:
        raise CheckpointError(
            f"weights do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}", path=folder
        )


def _reuse_skeleton(files: CheckpointFiles):
    """Inside `models_in_turn`: the previous model, with this checkpoint's weights copied in, when
    both have byte-identical config.json files (the checkpoints of one run); else None.

    Building a model object costs more than copying a small checkpoint's weights, and that fixed
    cost per checkpoint dominates a re-evaluation where few examples are missing (bench/README.md).
    """
    global _skeleton
    if _skeleton is None or files.kind != "full" or files.weight_format != "safetensors":
        return None
    config = files.folder / "config.json"
    key, model = _skeleton
    if not config.is_file() or config.read_bytes() != key:
        return None
    _skeleton = None
    from safetensors.torch import load_file

    state: dict = {}
    for f in files.weight_files:
        if f.name.endswith(".safetensors"):
            state.update(load_file(f, device=str(next(model.parameters()).device)))
    _load_state(model, state, files.folder)
    return model


def _load_full(files: CheckpointFiles, allow_pickle: bool):
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        if files.weight_format == "safetensors":
            check_safetensors_weights(files)
        reused = _reuse_skeleton(files)
        if reused is not None:
            return reused
        if files.weight_format == "safetensors":
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                files.folder, use_safetensors=True, trust_remote_code=False, local_files_only=True,
                output_loading_info=True,
            )
            model, info = loaded
            # transformers fills missing weights with random init and only logs it.
            lacking = sorted(info["missing_keys"]) + sorted(str(k) for k in info["mismatched_keys"])
            if lacking:
                raise CheckpointError(
                    f"the weights lack or mis-shape {len(lacking)} tensor(s) the config needs, e.g. "
                    f"{lacking[:3]}; the checkpoint is incomplete or belongs to another config.",
                    path=files.folder,
                )
            return model
        if not allow_pickle:
            raise UnsafeCheckpointError(PICKLE_OPT_IN_HELP, path=files.weight_files[0])
        config = AutoConfig.from_pretrained(files.folder, trust_remote_code=False, local_files_only=True)
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
        state: dict = {}
        for f in files.weight_files:
            if not f.name.endswith(".json"):
                state.update(_torch_load_weights_only(f))
        model.tie_weights()
        _load_state(model, state, files.folder)
        return model
    except (ValueError, KeyError, OSError, SafetensorError) as exc:
        raise CheckpointError(f"transformers could not load the model: {exc}", path=files.folder) from exc


def _load_adapter(files: CheckpointFiles, base_model: Path | None, allow_pickle: bool, root: Path | None):
    from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model, set_peft_model_state_dict

    if base_model is None:
        raise CheckpointError(
            "a PEFT adapter needs the workspace's base model (set base_model in ftlens.toml); "
            "the adapter's own base_model_name_or_path is never fetched",
            path=files.folder,
            field="base_model",
        )
    base = _load_full(find_checkpoint_files(base_model, root), allow_pickle)
    try:
        if files.weight_format == "safetensors":
            check_safetensors_weights(files)
            # peft only warns when the file lacks adapter tensors; those would stay at their
            # initial values (LoRA B = 0: the base model, silently). Refuse instead.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = PeftModel.from_pretrained(base, files.folder, is_trainable=False)
            for w in caught:
                if "missing adapter keys" in str(w.message):
                    raise CheckpointError(f"the adapter file lacks tensors its config needs: {str(w.message)[:400]}",
                                          path=files.weight_files[0])
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            return model
        if not allow_pickle:
            raise UnsafeCheckpointError(PICKLE_OPT_IN_HELP, path=files.weight_files[0])
        config = PeftConfig.from_pretrained(str(files.folder))
        if not isinstance(config, LoraConfig):
            raise CheckpointError("only LoRA adapters can be loaded from pickle weights", path=files.folder)
        model = get_peft_model(base, config)
        result = set_peft_model_state_dict(model, _torch_load_weights_only(files.weight_files[0]))
        missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
        if missing:
            raise CheckpointError(f"the adapter file lacks tensors its config needs: {missing[:5]}",
                                  path=files.weight_files[0])
        return model
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"peft could not load the adapter: {exc}", path=files.folder) from exc


def load_model(
    folder: Path | str,
    *,
    base_model: Path | str | None = None,
    allow_pickle: bool = False,
    root: Path | str | None = None,
) -> LoadedModel:
    """Load a full checkpoint or a PEFT adapter (over `base_model`) in eval mode on CPU.

    Prefer `open_model`, which frees the model afterwards. A symlink in a loaded folder must
    resolve inside `root` (the workspace); without one, inside that folder itself.

    Raises:
        UnsafeCheckpointError: pickle weights without `allow_pickle`, a hostile pickle, or a
            config asking for remote code.
        CheckpointError: missing files, mismatched or missing weights, a malformed header, a
            link leaving `root`, a tokenizer that cannot be built.

    Example:
        >>> with open_model("runs/a/checkpoint-30") as lm:  # doctest: +SKIP
        ...     lm.model.config.n_layer
        4
    """
    global _current
    release_model()
    from transformers import AutoTokenizer

    folder = Path(folder)
    base = Path(base_model) if base_model is not None else None
    fence = Path(root) if root is not None else None
    files = find_checkpoint_files(folder, fence)
    if files.kind == "adapter":
        model = _load_adapter(files, base, allow_pickle, fence)
    else:
        model = _load_full(files, allow_pickle)
    tok_dir = _tokenizer_dir(files, base)
    tokenizer = _tokenizer(tok_dir, AutoTokenizer)
    model.eval()
    _current = LoadedModel(model=model, tokenizer=tokenizer, files=files, tokenizer_source=tok_dir)
    return _current


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                    "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja", "chat_template.json")
_last_tokenizer: tuple[str, Any] | None = None


def _tokenizer(folder: Path, auto_tokenizer) -> Any:
    """The folder's tokenizer; the previous one again when its files have the same bytes.

    Every checkpoint of a run carries a copy of the same tokenizer, and loading it is a fixed cost
    per checkpoint that dominates re-evaluations where little is missing (bench/README.md).
    """
    global _last_tokenizer
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for name in _TOKENIZER_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    key = digest.hexdigest()
    if _last_tokenizer is not None and _last_tokenizer[0] == key:
        return _last_tokenizer[1]
    try:
        tokenizer = auto_tokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # transformers raises ValueError, OSError, TypeError, ... for broken files
        raise CheckpointError(
            f"the tokenizer cannot be built ({type(exc).__name__}: {str(exc)[:300]}); save it with "
            "tokenizer.save_pretrained into this folder.",
            path=folder,
        ) from exc
    _last_tokenizer = (key, tokenizer)
    return tokenizer


def release_model() -> None:
    """Drop the loaded model so its memory can be reused before the next one loads."""
    global _current, _skeleton
    if _current is None:
        return
    files = _current.files
    config = files.folder / "config.json"
    if _freeze_depth > 0 and files.kind == "full" and files.weight_format == "safetensors" and config.is_file():
        _skeleton = (config.read_bytes(), _current.model)  # replaces (and frees) any earlier one
    _current.model = None
    _current.tokenizer = None
    _current = None
    # Models hold reference cycles; a full collection frees their tensors now, not someday.
    gc.collect()


@contextmanager
def models_in_turn() -> Iterator[None]:
    """Wrap a loop that opens many models: each release then scans only objects made inside it.

    A full `gc.collect()` walks every live object, and torch and transformers create hundreds of
    thousands at import; with 7 checkpoints that walk cost 3.4 s of a 5.2 s cached re-run
    (bench/README.md). `gc.freeze()` parks the objects alive on entry, and the outermost exit
    returns them to the collector, so nothing is kept from collection for longer than the loop.
    Inside, a released full checkpoint stays as the skeleton the next checkpoint with the same
    config.json is loaded into (still one model in memory at a time); the exit frees it.
    """
    global _freeze_depth, _skeleton
    with _freeze_lock:
        _freeze_depth += 1
        if _freeze_depth == 1:
            gc.freeze()
    try:
        yield
    finally:
        with _freeze_lock:
            _freeze_depth -= 1
            if _freeze_depth == 0:
                _skeleton = None
                gc.collect()
                gc.unfreeze()


@contextmanager
def open_model(
    folder: Path | str,
    *,
    base_model: Path | str | None = None,
    allow_pickle: bool = False,
    root: Path | str | None = None,
) -> Iterator[LoadedModel]:
    """`load_model` as a context manager that releases the model on exit."""
    loaded = load_model(folder, base_model=base_model, allow_pickle=allow_pickle, root=root)
    try:
        yield loaded
    finally:
        release_model()
