"""Batched, reproducible text generation for evaluation.

Promises:
- greedy outputs do not depend on `batch_size`: prompts are left-padded with an attention mask and
  transformers' `generate` derives position ids from that mask, so a padded prompt sees the same
  positions as it would alone (tests check batch 16 == batch 1 token for token in fp32);
- sampling is seeded per batch from `GenerationConfig.seed` and the batch index, inside a forked
  RNG, so the same config and prompt list give the same outputs and the global RNG is untouched;
- a prompt longer than the model's context minus `max_new_tokens` is truncated from the LEFT:
  the end of the prompt (with a chat template, the `Agent:` cue) is what the model must continue;
- only the config given here drives decoding: sampling knobs a checkpoint's own
  `generation_config.json` may carry (top_k, repetition penalty, ...) are overridden;
- an empty prompt generates from the tokenizer's BOS token (EOS when there is no BOS), as GPT-2
  generates unconditionally.

torch and transformers are imported inside the functions, so importing eval_core stays fast.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from eval_core.errors import CheckpointError, EvalCoreError, UnsafeCheckpointError

# Bump when the way outputs are produced changes (prompt building, truncation, seeding), so cached
# generations made by an older protocol are not mistaken for current ones.
GENERATION_PROTOCOL_VERSION = 1
# The engines that can produce outputs: "hf" is this module (transformers); "vllm" is
# eval_core.generation_vllm (GPU only). The backend is part of a config's hash, so their outputs
# are never mixed in one table.
GENERATION_BACKENDS = ("hf", "vllm")
_CONTEXT_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate; validated on construction, hashed to key cached outputs.

    Attributes:
        max_new_tokens: most tokens generated per prompt.
        do_sample: sample instead of greedy decoding.
        temperature: softmax temperature (sampling only; must be > 0 then).
        top_p: nucleus sampling mass in (0, 1] (sampling only).
        seed: seeds sampling; recorded (and hashed) always.
        stop: the output is cut before the first occurrence of any of these strings.
        batch_size: prompts per `model.generate` call.
        use_chat_template: format prompts with the tokenizer's chat template when it has one.

    Example:
        >>> GenerationConfig(max_new_tokens=8, stop=("\\n",)).to_dict()["stop"]
        ['\\n']
    """

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    batch_size: int = 16
    use_chat_template: bool = True

    def __post_init__(self) -> None:
        # A bare string would otherwise be read as one stop string per character.
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        object.__setattr__(self, "stop", stop)
        problems = [
            ("max_new_tokens", self.max_new_tokens < 1, "must be at least 1"),
            ("batch_size", self.batch_size < 1, "must be at least 1 (16 suits a CPU)"),
            ("temperature", self.do_sample and self.temperature <= 0,
             "must be > 0 when sampling; for deterministic output set do_sample=False instead"),
            ("top_p", not 0 < self.top_p <= 1, "must be in (0, 1]; 1.0 turns nucleus sampling off"),
            ("stop", any(not isinstance(s, str) or s == "" for s in stop),
             "must hold non-empty strings only; an empty stop string would cut every output to ''"),
        ]
        for name, bad, fix in problems:
            if bad:
                raise EvalCoreError(f"generation {name}={getattr(self, name)!r} {fix}", field=name)

    @property
    def backend(self) -> str:
        """The engine that produces the outputs: "hf" (transformers, this module).

        `eval_core.generation_vllm.VllmGenerationConfig`, the same settings produced by vLLM, says
        "vllm"; `with_backend` converts between them.
        """
        return "hf"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields in declaration order (`stop` as a list), then `backend` unless it is "hf"."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        # "hf" is left out so outputs stored before there were backends keep their hash (and stay cached).
        if self.backend != "hf":
            d["backend"] = self.backend
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        """The inverse of `to_dict`; unknown keys are refused so a typo is not silently ignored."""
        data = dict(data)
        backend = data.pop("backend", "hf")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise EvalCoreError(f"unknown generation settings {sorted(unknown)}; remove them", field=sorted(unknown)[0])
        return with_backend(cls(**data), backend)

    def config_hash(self) -> str:
        """First 16 hex chars of sha256 over the protocol version and the sorted-key JSON config."""
        payload = f"v{GENERATION_PROTOCOL_VERSION}\n" + json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def with_backend(config: GenerationConfig, backend: str) -> GenerationConfig:
    """The same settings, produced by `backend` ("hf" or "vllm"); a new hash unless it is unchanged.

    Raises:
        EvalCoreError: an unknown backend name.

    Example:
        >>> c = GenerationConfig(max_new_tokens=8)
        >>> with_backend(c, "vllm").backend, with_backend(c, "vllm").config_hash() != c.config_hash()
        ('vllm', True)
    """
    if backend not in GENERATION_BACKENDS:
        raise EvalCoreError(f"unknown generation backend '{backend}'; use one of {', '.join(GENERATION_BACKENDS)}",
                            field="backend")
    if backend == config.backend:
        return config
    settings = {f.name: getattr(config, f.name) for f in fields(GenerationConfig)}
    if backend == "vllm":
        from eval_core.generation_vllm import VllmGenerationConfig  # no vllm import: it is imported on use

        return VllmGenerationConfig(**settings)
    return GenerationConfig(**settings)


@dataclass(frozen=True)
class Generation:
    """One prompt's output.

    Attributes:
        text: the new tokens decoded (special tokens skipped), cut before the first stop string.
        new_tokens: tokens kept; EOS is not counted. After a stop-string cut: the leading tokens
            whose decoded text lies wholly inside the kept text (a token straddling the cut is
            not counted, so this can be one less than the tokens that produced `text`).
        finish_reason: "eos" (the model ended), "length" (max_new_tokens hit) or "stop".
    """

    text: str
    new_tokens: int
    finish_reason: str


def build_prompt(tokenizer: Any, prompt: str, use_chat_template: bool = True) -> str:
    """The text the model continues: the chat template around one user turn, or the raw prompt.

    The template is rendered only by `tokenizer.apply_chat_template` (a sandboxed Jinja
    environment), since a checkpoint's template is untrusted input.

    Raises:
        UnsafeCheckpointError: the template reached for Python internals (`__globals__`, ...) and
            the sandbox stopped it (jinja2's SecurityError); nothing ran.
        CheckpointError: the template fails to render for another reason.

    Example:
        >>> build_prompt(demo_tokenizer, "Where is my order?")  # doctest: +SKIP
        'Customer: Where is my order?\\nAgent:'
    """
    if not (use_chat_template and getattr(tokenizer, "chat_template", None)):
        return prompt
    try:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    except Exception as exc:  # jinja2 raises TemplateError, SecurityError, ... for broken templates
        from jinja2.exceptions import SecurityError

        folder = getattr(tokenizer, "name_or_path", None) or None
        if isinstance(exc, SecurityError):
            raise UnsafeCheckpointError(
                f"the tokenizer's chat template tries to reach Python internals and was stopped by "
                f"the sandbox ({exc}); nothing ran. Do not render this template elsewhere; replace "
                "it in tokenizer_config.json, or set use_chat_template=False",
                path=folder,
                field="chat_template",
            ) from exc
        raise CheckpointError(
            f"the tokenizer's chat template failed to render ({type(exc).__name__}: {exc}); fix the "
            "template in tokenizer_config.json or set use_chat_template=False",
            path=folder,
            field="chat_template",
        ) from exc


def _context_length(model: Any) -> int | None:
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    # Chat models often end turns with a token other than the tokenizer's EOS (Llama 3's
    # <|eot_id|>); their generation_config lists it, so both count as the end.
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(extra) if isinstance(extra, list | tuple) else ({extra} if extra is not None else set())
    return ids


def _encode(tokenizer: Any, prompts: Sequence[str], config: GenerationConfig, limit: int | None) -> list[list[int]]:
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    # A rendered template already holds whatever special tokens it wants (e.g. Llama's BOS).
    templated = config.use_chat_template and bool(getattr(tokenizer, "chat_template", None))
    encoded = []
    for prompt in prompts:
        text = build_prompt(tokenizer, prompt, config.use_chat_template)
        ids = list(tokenizer(text, add_special_tokens=not templated)["input_ids"])
        if not ids:
            if start is None:
                raise EvalCoreError("an empty prompt needs a BOS or EOS token to start from; give the tokenizer one")
            ids = [start]
        encoded.append(ids[-limit:] if limit is not None else ids)  # keep the end of the prompt
    return encoded


def _batch_seed(seed: int, batch_index: int) -> int:
    # Hashing (not seed + index) keeps batch streams of neighbouring seeds from overlapping.
    digest = hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _stop_criterion(tokenizer: Any, stop: tuple[str, ...], width: int):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnStrings(StoppingCriteria):
        """Ends a row once its decoded new text holds a stop string (it is cut afterwards)."""

        def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001
            import torch

            texts = tokenizer.batch_decode(input_ids[:, width:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stop) for t in texts], device=input_ids.device)

    return StoppingCriteriaList([StopOnStrings()])


def _finish(tokenizer: Any, ids: list[int], eos: set[int], stop: tuple[str, ...]) -> Generation:
    ended = next((i for i, t in enumerate(ids) if t in eos), None)
    kept = ids if ended is None else ids[:ended]  # a finished row is padded, with EOS here
    text = tokenizer.decode(kept, skip_special_tokens=True)
    cuts = [text.find(s) for s in stop if s in text]
    if cuts:
        text = text[: min(cuts)]
        n = 0  # leading tokens whose decoded text lies wholly inside the kept text
        while n < len(kept) and text.startswith(tokenizer.decode(kept[: n + 1], skip_special_tokens=True)):
            n += 1
        return Generation(text=text, new_tokens=n, finish_reason="stop")
    return Generation(text=text, new_tokens=len(kept), finish_reason="length" if ended is None else "eos")


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    config: GenerationConfig = GenerationConfig(),  # noqa: B008 - frozen, so sharing is safe
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Generate for every prompt, in batches, returning results in the order of `prompts`.

    Prompts are sorted by token length (longest first) so batches pad little. Sampled outputs
    depend on the whole prompt list and `batch_size` (they decide which rows share a batch seed);
    greedy outputs depend on neither.

    Args:
        model: a causal LM (transformers or PEFT), e.g. `LoadedModel.model`. Run in eval mode.
        tokenizer: its tokenizer; not modified.
        prompts: user prompts; formatted with `build_prompt`.
        config: decoding settings.
        progress: called with the number of prompts finished after each batch.

    Raises:
        EvalCoreError: max_new_tokens leaves no room in the model's context, or the tokenizer has
            no token to pad with.

    Example:
        >>> with open_model("runs/a/checkpoint-30") as lm:  # doctest: +SKIP
        ...     generate(lm.model, lm.tokenizer, ["Where is my order?"], GenerationConfig(max_new_tokens=8))
        [Generation(text=' It ships in three days.', new_tokens=7, finish_reason='eos')]
    """
    if not prompts:
        return []
    import torch

    context = _context_length(model)
    limit = None
    if context is not None:
        limit = context - config.max_new_tokens
        if limit < 1:
            raise EvalCoreError(
                f"max_new_tokens={config.max_new_tokens} leaves no room for the prompt in the model's "
                f"{context}-token context; lower max_new_tokens",
                field="max_new_tokens",
            )
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise EvalCoreError("the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token")
    encoded = _encode(tokenizer, prompts, config, limit)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    sampling = {"temperature": config.temperature, "top_p": config.top_p, "top_k": 0} if config.do_sample else {}
    results: list[Generation | None] = [None] * len(encoded)
    device = model.device
    was_training = model.training
    model.eval()  # dropout in train mode would make even greedy outputs random
    try:
        for b, first in enumerate(range(0, len(order), config.batch_size)):
            rows = order[first : first + config.batch_size]
            width = max(len(encoded[i]) for i in rows)
            # Left padding: every row's last prompt token sits at the same column, where generation starts.
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[r, width - len(encoded[i]) :] = 1
            criteria = _stop_criterion(tokenizer, config.stop, width) if config.stop else None
            rng_devices = [] if device.type == "cpu" else [device.index or 0]
            with torch.inference_mode(), torch.random.fork_rng(
                rng_devices, enabled=config.do_sample, device_type=device.type
            ):
                if config.do_sample:
                    torch.manual_seed(_batch_seed(config.seed, b))
                out = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=config.max_new_tokens,
                    min_new_tokens=0,
                    do_sample=config.do_sample,
                    num_beams=1,
                    repetition_penalty=1.0,
                    no_repeat_ngram_size=0,
                    pad_token_id=pad,
                    eos_token_id=sorted(eos) or None,
                    stopping_criteria=criteria,
                    **sampling,
                )
            for r, i in enumerate(rows):
                results[i] = _finish(tokenizer, out[r, width:].tolist(), eos, config.stop)
            if progress is not None:
                progress(len(rows))
    finally:
        if was_training:
            model.train()
    return [g for g in results if g is not None]
