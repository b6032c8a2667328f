"""Negative log-likelihood of texts under a causal LM: the model side of perplexity.

Protocol (recorded with every number through `PerplexityConfig.to_dict()`):
- Texts are tokenized without special tokens. With `bos_policy="prepend"` the BOS token (EOS when
  the tokenizer has none, as GPT-2 uses) is put in front, so the first real token is scored too;
  with `"none"` the first token is only context.
- Documents longer than `max_length` are scored with a sliding window: each window feeds the model
  at most `max_length` tokens and scores at most `stride` new tokens (1 <= stride <= max_length),
  the tokens before them in the window being context, so every token is scored exactly once.
  stride = max_length (the default) gives disjoint windows in which the first scored token has one
  token of context: exactly lm-evaluation-harness's rolling windows (`loglikelihood_rolling`).
  A smaller stride gives every scored token at least `max_length - stride` tokens of context.
- Completion-only (conditional) scoring: the prompt (through the chat template when the tokenizer
  has one) is context, and only the reference's tokens are scored; prompt and reference are
  tokenized separately, the reference with a leading space when neither side supplies one.
- Windows from all documents are sorted by length and batched (short batches pad little; a batch
  holds at most `batch_size` rows and `token_budget` padded positions); padding
  positions are never scored, and position ids come from the attention mask, so results do not
  depend on batch size or padding side.
- The LM head and log-softmax (float32) run over the scored positions only; sums in float64.
- GPT-2's op-by-op tanh-GELU runs as torch's fused kernel while scoring (the same function; checked
  against the model's own logits on a probe, to 1e-5).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal

from eval_core.errors import EvalCoreError
from eval_core.perplexity import NllStats, count_bytes, count_words

PERPLEXITY_PROTOCOL_VERSION = 2  # 2: windows feed max_length tokens and score up to max_length
BOS_POLICIES: dict[str, str] = {
    "prepend": "BOS (EOS when the tokenizer has none) once before each document, so its first token is scored; "
               "windows after the first take the document's earlier tokens as context",
    "none": "no BOS: each document's first token is context only, never scored",
}
"""The `bos_policy` values, in words (recorded with every stored number)."""


@dataclass(frozen=True)
class PerplexityConfig:
    """How perplexity is computed. None means "the model's context length" / "max_length"."""

    max_length: int | None = None
    stride: int | None = None
    batch_size: int = 16
    bos_policy: Literal["prepend", "none"] = "prepend"
    use_chat_template: bool = True
    padding_side: Literal["right", "left"] = "right"
    token_budget: int = 2048

    def to_dict(self) -> dict:
        return {"protocol_version": PERPLEXITY_PROTOCOL_VERSION, **asdict(self)}

    def config_hash(self) -> str:
        """What changes the numbers: not batch size, padding side or token budget (proved equal by tests)."""
        key = {k: v for k, v in self.to_dict().items() if k not in ("batch_size", "padding_side", "token_budget")}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Doc:
    ids: list[int]
    first: int  # index of the first token that is scored
    text: str  # the scored text, for byte and word counts


def context_length(model) -> int:
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 1:
            return value
    raise EvalCoreError("cannot tell the model's context length; pass max_length")


def resolve_window(model, config: PerplexityConfig) -> tuple[int, int]:
    """(max_length, stride) actually used."""
    limit = context_length(model)
    max_length = config.max_length or limit
    if max_length < 2 or max_length > limit:
        raise EvalCoreError(f"max_length must be between 2 and the model's context ({limit}), got {max_length}")
    stride = config.stride or max_length
    if not 1 <= stride <= max_length:
        raise EvalCoreError(f"stride must be between 1 and max_length ({max_length}), got {stride}")
    return max_length, stride


def _prefix(tokenizer, policy: str) -> list[int]:
    if policy == "none":
        return []
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise EvalCoreError("bos_policy 'prepend' needs a BOS or EOS token; the tokenizer has neither")
    return [bos]


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def text_docs(tokenizer, texts: Sequence[str], config: PerplexityConfig) -> list[_Doc]:
    prefix = _prefix(tokenizer, config.bos_policy)
    docs = []
    for text in texts:
        ids = prefix + _encode(tokenizer, text)
        docs.append(_Doc(ids=ids, first=1, text=text))
    return docs


def completion_docs(
    tokenizer, prompts: Sequence[str], references: Sequence[str], config: PerplexityConfig
) -> list[_Doc]:
    from eval_core.generation import build_prompt

    if len(prompts) != len(references):
        raise EvalCoreError("prompts and references differ in length")
    prefix = _prefix(tokenizer, config.bos_policy)
    docs = []
    for prompt, reference in zip(prompts, references, strict=True):
        context = build_prompt(tokenizer, prompt, config.use_chat_template)
        joiner = " " if context and reference and not (context[-1].isspace() or reference[0].isspace()) else ""
        ctx_ids = prefix + _encode(tokenizer, context)
        if not ctx_ids:
            raise EvalCoreError("an empty prompt with bos_policy 'none' leaves the first token without context")
        docs.append(_Doc(ids=ctx_ids + _encode(tokenizer, joiner + reference), first=len(ctx_ids), text=reference))
    return docs


def _windows(doc_index: int, doc: _Doc, max_length: int, stride: int) -> list[tuple[int, list[int], int]]:
    """(doc, ids, first) covering each token once: the model reads ids[:-1] (at most max_length
    tokens) and the tokens ids[first:] are scored, each predicted from the ones before it."""
    out = []
    t0 = max(doc.first, 1)
    while t0 < len(doc.ids):
        t1 = min(len(doc.ids), t0 + stride)
        start = max(0, t1 - 1 - max_length)
        out.append((doc_index, doc.ids[start:t1], t0 - start))
        t0 = t1
    return out


def _batches(windows: list, batch_size: int, token_budget: int) -> list[list]:
    """Consecutive runs of the length-sorted windows: at most `batch_size` rows and, past the first
    row, at most `token_budget` padded positions. Padded batches of 16 x 512 positions fall out of
    the CPU cache; a position budget keeps the activations of one forward small (bench/README.md)."""
    batches: list[list] = []
    current: list = []
    for window in windows:
        width = max([len(window[1])] + [len(w[1]) for w in current[:1]]) - 1
        if current and (len(current) >= batch_size or (len(current) + 1) * width > token_budget):
            batches.append(current)
            current = []
        current.append(window)
    if current:
        batches.append(current)
    return batches


def _probe(model):
    import torch

    device = next(model.parameters()).device
    vocab = int(getattr(model.config, "vocab_size", 0) or 2)
    return torch.arange(1, 9, device=device)[None, :] % max(vocab, 2)


def _split_head(model, probe=None, reference=None):
    """(body, head) when logits are exactly `head(body(...).last_hidden_state)`, else None.

    Applying the head only to scored positions saves the full-vocabulary projection of every
    context and padding position. Models that rescale or soft-cap logits after the head (Gemma 2,
    Cohere, Granite, ...) or wrap it (PEFT) would break that identity, so it is checked once per
    model on a short probe (against `reference` logits when given) rather than trusted from a list
    of architectures.
    """
    import torch

    body = getattr(model, getattr(model, "base_model_prefix", "") or "", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if body is None or head is None or body is model or not isinstance(head, torch.nn.Linear):
        return None
    probe = _probe(model) if probe is None else probe
    try:
        with torch.inference_mode():
            full = model(input_ids=probe).logits.float() if reference is None else reference
            split = head(body(input_ids=probe).last_hidden_state).float()
    except Exception:  # noqa: BLE001 - any failure means "use the plain path"
        return None
    if full.shape != split.shape or not torch.allclose(full, split, rtol=1e-5, atol=1e-5):
        return None
    return body, head


# The tanh approximation of GELU, written as five element-wise Python ops (GPT-2's "gelu_new"):
# torch's fused kernel computes the same function in one pass (about 10% of a GPT-2 forward on CPU).
_FUSABLE_GELU = ("NewGELUActivation", "FastGELUActivation")


_CHECKED: dict[str, tuple[bool, bool]] = {}
"""architecture -> (fused GELU matches, head split matches): probed once per model class and
config, since both identities are structural; the checkpoints of a run share one entry."""


def _architecture(model) -> str:
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    return type(model).__module__ + "." + type(model).__qualname__ + json.dumps(config, sort_keys=True, default=str)


@contextmanager
def _fast_path(model) -> Iterator[tuple | None]:
    """While scoring: fused tanh-GELU kernels in place of op-by-op ones, and the (body, head) split.

    Both are checked once per model on a probe against the model's own logits and dropped if they
    differ beyond 1e-5; the model's modules are restored on exit.
    """
    import torch

    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if type(child).__name__ in _FUSABLE_GELU]
    arch = _architecture(model)
    known = _CHECKED.get(arch)
    try:
        if known is None:
            probe = _probe(model)
            with torch.inference_mode():
                reference = model(input_ids=probe).logits.float()
            fused_ok = False
            if swaps:
                _swap_in_fused(swaps)
                with torch.inference_mode():
                    fused_ok = torch.allclose(model(input_ids=probe).logits.float(), reference, rtol=1e-5, atol=1e-5)
                if not fused_ok:
                    _restore(swaps)
            split = _split_head(model, probe, reference)
            _CHECKED[arch] = (fused_ok, split is not None)
        else:
            fused_ok, split_ok = known
            if fused_ok:
                _swap_in_fused(swaps)
            split = _split_head_unchecked(model) if split_ok else None
        yield split
    finally:
        _restore(swaps)


def _swap_in_fused(swaps) -> None:
    from transformers.activations import GELUTanh

    for parent, name, _ in swaps:
        setattr(parent, name, GELUTanh())


def _restore(swaps) -> None:
    for parent, name, child in swaps:
        setattr(parent, name, child)


def _split_head_unchecked(model):
    return getattr(model, model.base_model_prefix), model.get_output_embeddings()


def score_docs(model, docs: Sequence[_Doc], config: PerplexityConfig, progress: Callable[[int], None] | None = None) -> list[NllStats]:
    """NLL statistics per document (see the module docstring for the protocol)."""
    import torch

    if config.batch_size < 1:
        raise EvalCoreError("batch_size must be at least 1")
    if config.token_budget < 1:
        raise EvalCoreError("token_budget must be at least 1")
    max_length, stride = resolve_window(model, config)
    windows = [w for i, d in enumerate(docs) for w in _windows(i, d, max_length, stride)]
    windows.sort(key=lambda w: len(w[1]), reverse=True)
    nll = [0.0] * len(docs)
    counts = [0] * len(docs)
    pad_id = 0  # any id: padded positions are masked out and never scored
    device = next(model.parameters()).device
    if not windows:
        return [NllStats(0.0, 0, count_bytes(d.text), count_words(d.text) if d.text else 0) for d in docs]
    with _fast_path(model) as split, torch.inference_mode():
        for batch in _batches(windows, config.batch_size, config.token_budget):
            width = max(len(w[1]) for w in batch) - 1
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            targets = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            score = torch.zeros((len(batch), width), dtype=torch.bool)
            for r, (_, tokens, first) in enumerate(batch):
                n_in = len(tokens) - 1
                off = width - n_in if config.padding_side == "left" else 0
                ids[r, off : off + n_in] = torch.tensor(tokens[:-1])
                targets[r, off : off + n_in] = torch.tensor(tokens[1:])
                mask[r, off : off + n_in] = 1
                score[r, off + first - 1 : off + n_in] = True
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            # transformers drops an all-ones mask itself, so unpadded batches take SDPA's causal path.
            inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}
            # Only the positions that predict a scored token need the LM head.
            rows, cols = score.nonzero(as_tuple=True)
            if split is not None:
                body, head = split
                hidden = body(**inputs).last_hidden_state
                picked = head(hidden[rows.to(device), cols.to(device)]).float()
            else:
                picked = model(**inputs).logits[rows.to(device), cols.to(device)].float()
            wanted = targets[rows, cols].to(device)
            token_nll = -torch.log_softmax(picked, dim=-1).gather(1, wanted[:, None])[:, 0]
            token_nll = token_nll.double().cpu()
            per_row = torch.zeros(len(batch), dtype=torch.float64).index_add_(0, rows, token_nll)
            for r, (doc_i, tokens, first) in enumerate(batch):
                nll[doc_i] += float(per_row[r])
                counts[doc_i] += len(tokens) - first
            if progress is not None:
                progress(sum(len(w[1]) - w[2] for w in batch))
    return [
        NllStats(nll_sum=nll[i], token_count=counts[i], byte_count=count_bytes(d.text), word_count=count_words(d.text) if d.text else 0)
        for i, d in enumerate(docs)
    ]


def score_texts(model, tokenizer, texts: Sequence[str], config: PerplexityConfig = PerplexityConfig(),
                progress: Callable[[int], None] | None = None) -> list[NllStats]:
    """Per-text NLL statistics of plain texts.

    Example:
        >>> stats = score_texts(lm.model, lm.tokenizer, ["Water boils at 100 degrees."])  # doctest: +SKIP
        >>> perplexity_per_token(total(stats))
    """
    return score_docs(model, text_docs(tokenizer, texts, config), config, progress)


def score_completions(model, tokenizer, prompts: Sequence[str], references: Sequence[str],
                      config: PerplexityConfig = PerplexityConfig(),
                      progress: Callable[[int], None] | None = None) -> list[NllStats]:
    """Per-example NLL statistics of each reference given its prompt (reference tokens only)."""
    return score_docs(model, completion_docs(tokenizer, prompts, references, config), config, progress)
