"""Training for the demo workspace: tokenizer, base-model pretraining and the fine-tuning run.

Used by `demo.py`. torch and transformers are imported inside the functions, so importing
eval_core stays fast. Everything is seeded: the same settings give the same weights.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eval_core.demo_corpus import DemoData, Paragraph
from eval_core.workspace import STATE_DIR

EOS = "<|endoftext|>"
# The chat template the demo tokenizer ships: later stages apply it to held-out prompts exactly as
# the fine-tuning data was formatted.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}Customer: {{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}Agent: {{ message['content'] }}" + EOS + "\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Agent:{% endif %}"
)
RUN_NAME = "support-ft"


Progress = Callable[[str, float, str], None]
"""progress(stage, fraction_done_of_stage, message)."""


@dataclass(frozen=True)
class DemoSettings:
    """What the demo builds. Defaults finish in about two minutes on 2 CPU cores."""

    seed: int = 20261125
    vocab_size: int = 4096  # a 1.5M-parameter model cannot use a bigger vocabulary well
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_positions: int = 256
    block_size: int = 128  # pretraining sequence length: a paragraph; short keeps CPU steps cheap
    pretrain_steps: int = 200
    pretrain_batch: int = 16
    pretrain_lr: float = 3e-3
    finetune_steps: int = 180
    finetune_batch: int = 16
    finetune_lr: float = 1e-3  # high on purpose: a real over-fine-tune, so forgetting is visible
    eval_every: int = 30  # 180 / 30 = 6 checkpoints
    # Extra early checkpoints (saved and evaluated): forgetting starts within the first steps, so a run
    # that only saves every `eval_every` steps may offer no checkpoint that still keeps 95% of its base.
    early_saves: tuple[int, ...] = (5, 10)
    max_example_tokens: int = 112
    general_eval_blocks: int = 48

    @classmethod
    def quick(cls) -> DemoSettings:
        """A reduced build for tests: same data and shape, far fewer steps (6 checkpoints)."""
        return cls(pretrain_steps=30, finetune_steps=36, eval_every=6, general_eval_blocks=12, early_saves=())


def report_progress(progress: Progress | None, stage: str, fraction: float, message: str) -> None:
    if progress is not None:
        progress(stage, fraction, message)


def train_tokenizer(data: DemoData, settings: DemoSettings):
    """A byte-level BPE tokenizer over the pretraining text, wrapped for transformers."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [p.text for p in data.pretrain],
        vocab_size=settings.vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        show_progress=False,
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = settings.n_positions
    return tok


def _pack_blocks(tokenizer, paragraphs: list[Paragraph], block: int) -> list[list[int]]:
    """Concatenate paragraphs (EOS-separated) and cut into equal blocks, as GPT-2 pretraining does."""
    stream: list[int] = []
    for ids in tokenizer([p.text for p in paragraphs])["input_ids"]:
        stream.extend(ids + [tokenizer.eos_token_id])
    return [stream[i : i + block] for i in range(0, len(stream) - block + 1, block)]


class _ListDataset:
    """A map-style dataset over precomputed examples (Trainer needs __len__ and __getitem__)."""

    def __init__(self, examples: list[dict]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]


def _collate(pad_id: int):
    import torch

    def collate(batch: list[dict]) -> dict:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = ids[i, :n]  # pad positions stay -100: never scored
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def _progress_callback(progress: Progress | None, stage: str, total: int):
    from transformers import TrainerCallback

    class ReportProgress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            report_progress(progress, stage, state.global_step / total, f"step {state.global_step}/{total}")

    return ReportProgress()


def _early_save_callback(steps: tuple[int, ...]):
    from transformers import TrainerCallback

    class SaveEarly(TrainerCallback):
        """Save and evaluate at these steps too (Trainer's save_steps is one fixed interval)."""

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step in steps:
                control.should_save = True
                control.should_evaluate = True
            return control

    return SaveEarly()


def _training_args(output_dir: Path, settings: DemoSettings, show_bars: bool, **overrides):
    from transformers import TrainingArguments

    base = dict(
        output_dir=str(output_dir),
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=not show_bars,
        weight_decay=0.01,
        logging_steps=5,
        remove_unused_columns=False,
    )
    base.update(overrides)
    return TrainingArguments(**base)


def pretrain_base_model(
    root: Path, data: DemoData, settings: DemoSettings, progress: Progress | None, show_bars: bool
) -> None:
    """Pretrain the GPT-2-style base model and save it (with the tokenizer) to base_model/."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, Trainer, set_seed

    base_dir = root / "base_model"
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    set_seed(settings.seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=settings.n_positions,
        n_embd=settings.n_embd,
        n_layer=settings.n_layer,
        n_head=settings.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    blocks = _pack_blocks(tokenizer, data.pretrain, settings.block_size)
    report_progress(progress, "base_model", 0.0, f"pretraining on {len(blocks)} blocks of {settings.block_size} tokens")
    work = root / STATE_DIR / "pretrain"
    args = _training_args(
        work,
        settings,
        show_bars,
        max_steps=settings.pretrain_steps,
        per_device_train_batch_size=settings.pretrain_batch,
        learning_rate=settings.pretrain_lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, settings.pretrain_steps // 20),
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset([{"input_ids": b} for b in blocks]),
        data_collator=_collate(tokenizer.pad_token_id),
        callbacks=[_progress_callback(progress, "base_model", settings.pretrain_steps)],
    )
    trainer.train()
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    shutil.rmtree(work, ignore_errors=True)


def _format_support(tokenizer, row: dict) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}],
        tokenize=False,
    )


def finetune(
    root: Path, data: DemoData, settings: DemoSettings, progress: Progress | None, show_bars: bool
) -> None:
    """Fine-tune the base model on support data with Trainer, as a user's run would."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, set_seed

    base_dir = root / "base_model"
    out = root / "runs" / RUN_NAME
    shutil.rmtree(out, ignore_errors=True)  # a half-written run is redone from the start
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    set_seed(settings.seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True, use_safetensors=True)

    def encode(rows: list[dict]) -> list[dict]:
        texts = [_format_support(tokenizer, r) for r in rows]
        enc = tokenizer(texts, truncation=True, max_length=settings.max_example_tokens)
        return [{"input_ids": ids} for ids in enc["input_ids"]]

    general_blocks = _pack_blocks(tokenizer, data.general_heldout, settings.block_size)
    eval_sets = {
        "support": _ListDataset(encode(data.support_test)),
        "general": _ListDataset([{"input_ids": b} for b in general_blocks[: settings.general_eval_blocks]]),
    }
    report_progress(progress, "finetune", 0.0, f"fine-tuning on {len(data.support_train)} support examples")
    args = _training_args(
        out,
        settings,
        show_bars,
        max_steps=settings.finetune_steps,
        per_device_train_batch_size=settings.finetune_batch,
        per_device_eval_batch_size=16,
        learning_rate=settings.finetune_lr,
        lr_scheduler_type="linear",
        warmup_steps=max(1, settings.finetune_steps // 20),
        eval_strategy="steps",
        eval_steps=settings.eval_every,
        eval_on_start=True,
        save_strategy="steps",
        save_steps=settings.eval_every,
        report_to=["tensorboard"],
        logging_first_step=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset(encode(data.support_train)),
        eval_dataset=eval_sets,
        data_collator=_collate(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[_progress_callback(progress, "finetune", settings.finetune_steps),
                   _early_save_callback(settings.early_saves)],
    )
    trainer.train()
    trainer.save_state()
