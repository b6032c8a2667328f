"""vLLM as the generation engine of `evaluate` (optional, GPU only).

Chosen with `evaluate --backend vllm` (or `GenerationConfig.backend == "vllm"`, through
`generation.with_backend`). Promises:
- the same prompts as the transformers path: `generation` builds and tokenizes them (chat template,
  left truncation to the context minus `max_new_tokens`), and vLLM receives the token ids;
- the same decoding settings: greedy is temperature 0; `max_new_tokens`, stop strings and the EOS
  ids (the tokenizer's and the checkpoint's generation_config.json) as there; sampling is seeded per
  prompt from `seed`; nothing else from the checkpoint's generation_config.json is applied;
- the same post-processing: each output's token ids are decoded and cut at the first stop string by
  `generation`'s own code, so `text`, `new_tokens` and `finish_reason` mean what they mean there;
- the same safety as `model_loading`: safetensors only (headers validated first, then
  `load_format="safetensors"`), `trust_remote_code=False`, a config with `auto_map` refused, the
  tokenizer from the checkpoint folder. PEFT adapters are refused: merge them, or use `--backend hf`;
- outputs kept apart: the backend is part of the config hash and the vLLM version is recorded in
  the protocol, so transformers and vLLM outputs are never mixed in one table.
Outputs are not promised equal to the transformers path's: kernels and batching differ, so greedy
near-ties may break differently. Probe cloze completions and likelihood metrics stay on transformers.

vllm and torch are imported inside the functions: importing this module needs neither.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval_core.checkpoints import check_safetensors_weights, find_checkpoint_files, read_json_file
from eval_core.errors import CheckpointError, EvalCoreError
from eval_core.generation import Generation, GenerationConfig, with_backend

if TYPE_CHECKING:
    from eval_core.heldout_sets import HeldoutSet
    from eval_core.results_store import ResultsStore

VLLM_INSTALL_HINT = ("install it on a Linux machine with an NVIDIA GPU (`pip install vllm`, in the same "
                     "environment as requirements.txt), or use --backend hf")
# Prompts per vLLM call: vLLM batches a whole call itself, so a chunk only bounds what a killed run
# loses (each chunk's outputs are stored in one transaction before the next starts).
VLLM_CHUNK = 512
_CONTEXT_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")


@dataclass(frozen=True)
class VllmGenerationConfig(GenerationConfig):
    """A `GenerationConfig` whose outputs vLLM produces; its hash differs from the same settings on "hf".

    `batch_size` is kept (and hashed) for symmetry but does not steer vLLM, which schedules prompts itself.

    Example:
        >>> VllmGenerationConfig(max_new_tokens=8).to_dict()["backend"]
        'vllm'
    """

    @property
    def backend(self) -> str:
        return "vllm"


def require_vllm() -> Any:
    """The `vllm` module, once it is importable and torch sees a CUDA device.

    Raises:
        EvalCoreError: vllm is not installed, or no GPU is visible.
    """
    try:
        vllm = importlib.import_module("vllm")
    except ImportError as exc:
        raise EvalCoreError(f"the vllm generation backend needs the vllm package, which is not installed "
                            f"({exc}); {VLLM_INSTALL_HINT}", field="backend") from None
    if not _cuda_available():
        raise EvalCoreError("the vllm generation backend needs a CUDA GPU and torch sees none; run on a GPU "
                            "machine, or use --backend hf", field="backend")
    return vllm


def vllm_version() -> str:
    """The installed vLLM's version (recorded in every vLLM generation protocol)."""
    return str(getattr(require_vllm(), "__version__", "unknown"))


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_vllm_checkpoint(folder: Path, root: Path | None = None) -> None:
    """Refuse what the vLLM backend will not load, before vLLM is imported or a GPU is touched.

    Raises:
        CheckpointError: a PEFT adapter, pickle weights, missing tokenizer files, or a bad header.
        UnsafeCheckpointError: the config asks for remote code.
    """
    files = find_checkpoint_files(Path(folder), root)
    if files.kind == "adapter":
        raise CheckpointError(
            "this is a PEFT adapter, and the vllm backend serves full checkpoints only; merge it "
            "(peft's merge_and_unload, then save_pretrained(safe_serialization=True)) or use --backend hf",
            path=folder)
    if files.weight_format != "safetensors":
        raise CheckpointError("the vllm backend loads safetensors weights only; convert the weights to "
                              "safetensors or use --backend hf", path=folder)
    if not files.tokenizer_files:
        raise CheckpointError("the vllm backend takes the tokenizer from the checkpoint folder, and it has "
                              "none; save the tokenizer with the checkpoint or use --backend hf", path=folder)
    check_safetensors_weights(files)


def _context_and_dtype(folder: Path) -> tuple[int | None, str]:
    config = read_json_file(folder / "config.json")
    context = next((config[k] for k in _CONTEXT_KEYS if isinstance(config.get(k), int) and config[k] > 0), None)
    # transformers loads a checkpoint in the dtype it was saved in; vLLM's "auto" would run a float32
    # checkpoint in float16, so the saved dtype is passed on explicitly.
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    return context, str(dtype)


def _eos_ids(folder: Path, tokenizer: Any) -> set[int]:
    # As generation._eos_ids: the tokenizer's EOS and the checkpoint's generation_config.json ones.
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_cfg = folder / "generation_config.json"
    extra = read_json_file(gen_cfg).get("eos_token_id") if gen_cfg.is_file() else None
    ids |= set(extra) if isinstance(extra, list) else ({extra} if isinstance(extra, int) else set())
    return ids


class VllmEngine:
    """One checkpoint loaded in vLLM, generating with one config (see `open_vllm`)."""

    def __init__(self, llm: Any, vllm: Any, tokenizer: Any, config: VllmGenerationConfig,
                 eos: set[int], limit: int | None) -> None:
        self.llm, self.vllm, self.tokenizer, self.config, self.eos, self.limit = llm, vllm, tokenizer, config, eos, limit

    def _params(self, index: int) -> Any:
        from eval_core.generation import _batch_seed

        c = self.config
        return self.vllm.SamplingParams(
            n=1, max_tokens=c.max_new_tokens, min_tokens=0, repetition_penalty=1.0,
            temperature=c.temperature if c.do_sample else 0.0, top_p=c.top_p if c.do_sample else 1.0,
            # Per prompt, not per batch as in generation.py: vLLM has no batches the caller can see.
            seed=_batch_seed(c.seed, index) if c.do_sample else None,
            stop=list(c.stop) or None, stop_token_ids=sorted(self.eos) or None, skip_special_tokens=True,
        )

    def generate(self, prompts: Sequence[str]) -> list[Generation]:
        """One `Generation` per prompt, in order (see the module promises)."""
        from eval_core.generation import _encode, _finish

        if not prompts:
            return []
        encoded = _encode(self.tokenizer, prompts, self.config, self.limit)
        outs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded],
                                 [self._params(i) for i in range(len(encoded))], use_tqdm=False)
        results = []
        for out in outs:
            c = out.outputs[0]
            g = _finish(self.tokenizer, list(c.token_ids), self.eos, self.config.stop)
            if g.finish_reason != "stop":
                # vLLM may leave the EOS (or a matched stop string's tokens) out of token_ids, so
                # its own reason decides between the end of the model and the length limit.
                reason = "length" if c.finish_reason == "length" else (
                    "stop" if isinstance(getattr(c, "stop_reason", None), str) else "eos")
                g = replace(g, finish_reason=reason)
            results.append(g)
        return results


@contextmanager
def open_vllm(folder: Path | str, config: GenerationConfig, *, root: Path | None = None) -> Iterator[VllmEngine]:
    """Load a full safetensors checkpoint in vLLM; free the GPU on exit.

    Raises:
        CheckpointError, UnsafeCheckpointError: see `check_vllm_checkpoint`.
        EvalCoreError: vllm missing, no GPU, or `max_new_tokens` leaving no room in the context.

    Example:
        >>> with open_vllm("runs/a/checkpoint-30", VllmGenerationConfig(max_new_tokens=8)) as engine:  # doctest: +SKIP
        ...     engine.generate(["Where is my order?"])[0].finish_reason
        'eos'
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    check_vllm_checkpoint(folder, root)
    vllm = require_vllm()
    context, dtype = _context_and_dtype(folder)
    limit = None if context is None else context - config.max_new_tokens
    if limit is not None and limit < 1:
        raise EvalCoreError(f"max_new_tokens={config.max_new_tokens} leaves no room for the prompt in the model's "
                            f"{context}-token context; lower max_new_tokens", field="max_new_tokens")
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    _free_gpu()  # a transformers model released just before may still hold cached blocks
    llm = vllm.LLM(model=str(folder), tokenizer=str(folder), trust_remote_code=False, load_format="safetensors",
                   dtype=dtype, seed=config.seed, max_model_len=context,
                   generation_config="vllm")  # "vllm": ignore the checkpoint's sampling defaults
    engine = VllmEngine(llm, vllm, tokenizer, with_backend(config, "vllm"), _eos_ids(folder, tokenizer), limit)
    del llm
    try:
        yield engine
    finally:
        # The caller's `as` name outlives the block: drop the engine's reference so the GPU is freed now.
        core = getattr(getattr(engine.llm, "llm_engine", None), "engine_core", None)
        if callable(getattr(core, "shutdown", None)):
            # vLLM's V1 engine runs in a child process holding the GPU: stop it now rather than at
            # some later garbage collection. Best effort: a failure here must not hide the run's result.
            with contextlib.suppress(Exception):
                core.shutdown()
        engine.llm = None
        _free_gpu()


def _free_gpu() -> None:
    import torch

    gc.collect()  # vLLM's engine holds reference cycles; collect them before the cache is emptied
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class VllmTask:
    """One generation cell's missing outputs, as `evaluate_workspace` hands them over."""

    ds: HeldoutSet
    all_ids: Sequence[str]
    missing: Sequence[tuple[str, str]]  # (example id, example hash), in the order to generate
    config: GenerationConfig
    config_hash: str
    dataset: str
    cell: Any  # evaluation.CellResult: counts what was computed


def run_vllm_generations(
    store: ResultsStore,
    folder: Path,
    tasks: Sequence[VllmTask],
    checkpoint_fp: str,
    *,
    root: Path | None = None,
    progress_factory: Callable[[str, int], Callable[[int], None]] | None = None,
) -> None:
    """Generate and store the missing outputs of one checkpoint's vLLM generation cells.

    The engine is built once for all of them (one generation config per evaluation); each chunk of
    `VLLM_CHUNK` outputs is written in one transaction, as the transformers path writes its chunks.
    """
    if not tasks:
        return
    with open_vllm(folder, tasks[0].config, root=root) as engine:
        for t in tasks:
            index = {eid: i for i, eid in enumerate(t.all_ids)}
            prompts = [t.ds.rows[index[eid]][t.ds.column_map["prompt"]] for eid, _ in t.missing]
            advance = progress_factory(f"{t.dataset} · generation (vllm)", len(t.missing)) if progress_factory else None
            key = {"checkpoint_fp": checkpoint_fp, "dataset": t.dataset, "config_hash": t.config_hash}
            for start in range(0, len(prompts), VLLM_CHUNK):
                keys = t.missing[start : start + VLLM_CHUNK]
                outs = engine.generate(prompts[start : start + VLLM_CHUNK])
                store.add_generations([
                    {**key, "example_id": eid, "example_hash": eh, "text": g.text, "new_tokens": g.new_tokens,
                     "finish_reason": g.finish_reason}
                    for (eid, eh), g in zip(keys, outs, strict=True)])
                t.cell.computed += len(keys)
                if advance is not None:
                    advance(len(keys))
