"""Shared pieces of the model benchmarks: corpus, tokenizer, models, matmul peak, round-robin timing.

Everything is built offline in a folder the caller gives (a temporary one in the scripts):

- corpus: the paragraphs of the stdlib `pydoc_data.topics`, packed in order into documents with
  seeded log-uniform target lengths of 80-4000 characters; a seeded random `n_heldout` of them are
  the held-out eval set, the rest train the tokenizer (and the small model, briefly);
- tokenizer: byte-level BPE (`tokenizers`), vocab requested 6000 with min_frequency 2, which
  learns ~4.8k entries; `<|endoftext|>` is BOS, EOS and pad;
- models: GPT-2 "small" (n_embd 128, 4 layers, 4 heads, ctx 512, ~1.5M params; a few AdamW steps
  so it is not pure noise) and "medium" (n_embd 384, 6 layers, 6 heads, ctx 512, ~12.7M params,
  random init: speed does not depend on the weights).
"""

from __future__ import annotations

import math
import os
import random
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

EOS = "<|endoftext|>"
SIZES = {
    "small": {"n_embd": 128, "n_layer": 4, "n_head": 4},
    "medium": {"n_embd": 384, "n_layer": 6, "n_head": 6},
}
N_POSITIONS = 512


def cpu_pressure() -> str | None:
    """First line of /proc/pressure/cpu ("some avg10=... avg60=... avg300=..."), None if absent."""
    p = Path("/proc/pressure/cpu")
    return p.read_text().splitlines()[0] if p.exists() else None


def matmul_peak_gflops(n: int = 1024, threads: int = 2, batches: int = 7, min_s: float = 0.2) -> dict:
    """fp32 `torch.mm` on n x n: 2 n^3 / t, median over `batches` timed batches of >= min_s each."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        t = time.perf_counter()
        while time.perf_counter() - t < 0.5:  # warm-up: threads awake, clocks up
            torch.mm(a, b)
        t = time.perf_counter()
        reps = 0
        while time.perf_counter() - t < 0.05:
            torch.mm(a, b)
            reps += 1
        per = (time.perf_counter() - t) / reps
        reps = max(1, math.ceil(min_s / per))
        rates = []
        for _ in range(batches):
            t = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            rates.append(2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    finally:
        torch.set_num_threads(old)
    return {"n": n, "threads": threads, "median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def pydoc_documents(seed: int = 0, lo: int = 80, hi: int = 4000) -> list[str]:
    """pydoc_data.topics paragraphs, packed in order into documents of log-uniform target length."""
    from pydoc_data.topics import topics

    paragraphs = [p.strip() for t in sorted(topics) for p in re.split(r"\n\s*\n", topics[t]) if p.strip()]
    rng = random.Random(seed)
    docs, cur = [], ""
    target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    for p in paragraphs:
        cur = f"{cur}\n\n{p}" if cur else p
        if len(cur) >= target:
            docs.append(cur[: int(hi)] if len(cur) > hi else cur)
            cur = ""
            target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if len(cur) >= lo:
        docs.append(cur)
    return docs


def split_documents(n_heldout: int = 200, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, heldout): a seeded random n_heldout documents are held out."""
    docs = pydoc_documents(seed)
    idx = list(range(len(docs)))
    random.Random(seed + 1).shuffle(idx)
    held = set(idx[: min(n_heldout, len(docs) - 20)])
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]


def build_tokenizer(train_texts: list[str], vocab_size: int = 6000):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(train_texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS)
    tok.model_max_length = N_POSITIONS
    return tok


def build_model(size: str, tok, train_texts: list[str] | None = None, train_steps: int = 0, seed: int = 0):
    """GPT2LMHeadModel of the given size; optionally a few AdamW steps (16 x 128 tokens) on train_texts."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=N_POSITIONS, bos_token_id=tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id, **SIZES[size])
    model = GPT2LMHeadModel(cfg)
    if train_steps and train_texts:
        stream: list[int] = []
        for ids in tok(train_texts)["input_ids"]:
            stream.extend(ids + [tok.eos_token_id])
        blocks = [stream[i : i + 128] for i in range(0, len(stream) - 128 + 1, 128)]
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        rng = random.Random(seed)
        for _ in range(train_steps):
            batch = torch.tensor(rng.sample(blocks, 16))
            model(batch, labels=batch).loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    return model


def build_models(folder: Path, sizes: list[str], n_heldout: int = 200, train_steps: int = 40, seed: int = 0):
    """Tokenizer and models saved under folder/<size> (save_pretrained + tokenizer), and the held-out texts.

    Returns ({size: (model, tokenizer)}, heldout_texts, info).
    """
    t = time.perf_counter()
    train, heldout = split_documents(n_heldout, seed)
    tok = build_tokenizer(train)
    out, info = {}, {"documents": len(train) + len(heldout), "heldout_docs": len(heldout), "vocab": len(tok)}
    for size in sizes:
        model = build_model(size, tok, train, train_steps if size == "small" else 0, seed)
        model.save_pretrained(folder / size)
        tok.save_pretrained(folder / size)
        out[size] = (model, tok)
        info[f"{size}_params"] = sum(p.numel() for p in model.parameters())
    info["build_s"] = round(time.perf_counter() - t, 1)
    info["small_train_steps"] = train_steps if "small" in sizes else 0
    return out, heldout, info


def round_robin(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each variant `repeats` times, alternating A B C A B C ...; seconds per run."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def paired_ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of time(slow) / time(fast): >1 means `fast` is faster."""
    return statistics.median(s / f for s, f in zip(times[slow], times[fast], strict=True))
