"""Build the demo workspace by a real training run on this machine.

Stages (each resumable: a finished stage leaves a marker and is skipped next time):
1. `tokenizer`: a byte-level BPE tokenizer trained on general English (Python's bundled
   documentation text plus the project's general-knowledge corpus), with a chat template.
2. `base_model`: a GPT-2-style model (~1.5M parameters) pretrained on that text with
   `transformers.Trainer`, saved with `save_pretrained` (safetensors).
3. `heldout`: held-out sets: the support test set (disjoint from training), general text, and
   general-knowledge probes.
4. `finetune`: the base model fine-tuned with `transformers.Trainer` on the narrow support set,
   evaluated on the support test set and on general text every `eval_every` steps, saving a
   `checkpoint-*` folder (safetensors, tokenizer, trainer_state.json) each time and writing
   TensorBoard event files: exactly what a user's own run looks like. The high learning rate and
   many epochs over a small set make the model forget general text while it learns support: the
   demo has real forgetting to find.

Everything is seeded; the same settings give the same weights. torch and transformers are imported
inside the functions that train, so importing eval_core stays fast.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eval_core.demo_corpus import DemoData, Paragraph, load_demo_data
from eval_core.errors import WorkspaceError
from eval_core.version import __version__
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
STAGES = ("tokenizer", "base_model", "heldout", "finetune")

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
    max_example_tokens: int = 112
    general_eval_blocks: int = 48

    @classmethod
    def quick(cls) -> "DemoSettings":
        """A reduced build for tests: same data and shape, far fewer steps (6 checkpoints)."""
        return cls(pretrain_steps=30, finetune_steps=36, eval_every=6, general_eval_blocks=12)


def _log(progress: Progress | None, stage: str, fraction: float, message: str) -> None:
    if progress is not None:
        progress(stage, fraction, message)


class _Markers:
    """Stage markers in `.ftlens/demo/`: a stage is done when its marker holds our settings."""

    def __init__(self, root: Path, settings: DemoSettings) -> None:
        self.dir = root / STATE_DIR / "demo"
        self.key = json.dumps({"version": __version__, **asdict(settings)}, sort_keys=True)

    def done(self, stage: str) -> bool:
        marker = self.dir / f"{stage}.done"
        return marker.is_file() and marker.read_text(encoding="utf-8") == self.key

    def mark(self, stage: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"{stage}.done").write_text(self.key, encoding="utf-8")

    def clear_from(self, stage: str) -> None:
        for later in STAGES[STAGES.index(stage):]:
            (self.dir / f"{later}.done").unlink(missing_ok=True)


def is_demo_built(root: Path, settings: DemoSettings | None = None) -> bool:
    """True when every stage of the demo in `root` finished with these settings."""
    markers = _Markers(Path(root), settings or DemoSettings())
    return all(markers.done(s) for s in STAGES)


def build_demo_workspace(
    root: Path | str,
    settings: DemoSettings | None = None,
    progress: Progress | None = None,
    show_bars: bool = False,
) -> dict[str, Any]:
    """Build (or finish building) the demo workspace in `root`; idempotent.

    Args:
        root: the workspace folder; created when missing. A non-empty folder that is not a demo
            workspace is refused, so nothing of the user's is overwritten.
        settings: DemoSettings (default) or DemoSettings.quick().
        progress: called as progress(stage, fraction, message) while building.
        show_bars: show tqdm bars (the CLI); the app passes `progress` instead.

    Returns:
        The build record (settings, seconds per stage, parameter count), also written to
        `.ftlens/demo_build.json`.

    Example:
        >>> build_demo_workspace("/tmp/demo", DemoSettings.quick())  # doctest: +SKIP
    """
    settings = settings or DemoSettings()
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise WorkspaceError("the demo workspace path is a file; pick a folder", path=root)
    root.mkdir(parents=True, exist_ok=True)
    markers = _Markers(root, settings)
    record_path = root / STATE_DIR / "demo_build.json"
    if all(markers.done(s) for s in STAGES) and record_path.is_file():
        _log(progress, "done", 1.0, "demo workspace already built")
        return json.loads(record_path.read_text(encoding="utf-8"))
    is_ours = (root / STATE_DIR / "demo").is_dir()
    if not is_ours and any(p for p in root.iterdir() if p.name != STATE_DIR):
        raise WorkspaceError(
            "folder is not empty and is not a demo workspace; give an empty or new folder so "
            "nothing of yours is overwritten",
            path=root,
        )

    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    data = load_demo_data(settings.seed)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    base_dir = root / "base_model"
    if not markers.done("tokenizer"):
        markers.clear_from("tokenizer")
        _log(progress, "tokenizer", 0.0, "training the byte-level BPE tokenizer")
        shutil.rmtree(base_dir, ignore_errors=True)
        train_tokenizer(data, settings).save_pretrained(base_dir)
        markers.mark("tokenizer")
    timings["tokenizer"] = time.perf_counter() - t

    t = time.perf_counter()
    if not markers.done("base_model"):
        markers.clear_from("base_model")
        pretrain_base_model(root, data, settings, progress, show_bars)
        markers.mark("base_model")
    timings["base_model"] = time.perf_counter() - t

    t = time.perf_counter()
    if not markers.done("heldout"):
        markers.clear_from("heldout")
        _log(progress, "heldout", 0.0, "writing held-out sets")
        write_heldout_sets(root, data)
        write_workspace_config(root)
        markers.mark("heldout")
    timings["heldout"] = time.perf_counter() - t

    t = time.perf_counter()
    if not markers.done("finetune"):
        finetune(root, data, settings, progress, show_bars)
        markers.mark("finetune")
    timings["finetune"] = time.perf_counter() - t

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    record = {
        "schema": "ftlens.demo_build",
        "schema_version": 1,
        "app_version": __version__,
        "settings": asdict(settings),
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "torch": torch.__version__,
    }
    del model
    record_path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    _log(progress, "done", 1.0, "demo workspace ready")
    return record


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
            _log(progress, stage, state.global_step / total, f"step {state.global_step}/{total}")

    return ReportProgress()


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
    _log(progress, "base_model", 0.0, f"pretraining on {len(blocks)} blocks of {settings.block_size} tokens")
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


def write_heldout_sets(root: Path, data: DemoData) -> None:
    """The support test set, general held-out text, probes, and the training data for reference."""

    def dump(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    dump(
        root / "heldout" / "support_test.jsonl",
        [
            {"id": r["id"], "prompt": r["prompt"], "reference": r["response"],
             "category": r["category"], "should_refuse": r["should_refuse"]}
            for r in data.support_test
        ],
    )
    dump(
        root / "heldout" / "general_text.jsonl",
        [{"id": p.id, "category": p.category, "text": p.text} for p in data.general_heldout],
    )
    dump(
        root / "heldout" / "general_knowledge.jsonl",
        [{k: r[k] for k in ("id", "category", "prompt", "answer", "choices")} for r in data.probes],
    )
    dump(root / "train_data" / "support_train.jsonl", data.support_train)


def write_workspace_config(root: Path) -> None:
    (root / "ftlens.toml").write_text(
        f"""# Fine-Tune Lens workspace: built by `python -m eval_core demo` (Fine-Tune Lens {__version__}).
schema_version = 1
name = "Demo: Brightleaf customer-support fine-tune"
base_model = "base_model"

[[runs]]
name = "{RUN_NAME}"
path = "runs/{RUN_NAME}"

[[datasets]]
name = "support_test"
path = "heldout/support_test.jsonl"
kind = "generation"
columns = {{ id = "id", prompt = "prompt", reference = "reference", category = "category", should_refuse = "should_refuse" }}

[[datasets]]
name = "general_text"
path = "heldout/general_text.jsonl"
kind = "text"
columns = {{ id = "id", text = "text", category = "category" }}

[[datasets]]
name = "general_knowledge"
path = "heldout/general_knowledge.jsonl"
kind = "probe"
columns = {{ id = "id", prompt = "prompt", answer = "answer", choices = "choices", category = "category" }}
""",
        encoding="utf-8",
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
    _log(progress, "finetune", 0.0, f"fine-tuning on {len(data.support_train)} support examples")
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
        callbacks=[_progress_callback(progress, "finetune", settings.finetune_steps)],
    )
    trainer.train()
    trainer.save_state()


def quick_settings_if(quick: bool) -> DemoSettings:
    return DemoSettings.quick() if quick else DemoSettings()


__all__ = [
    "CHAT_TEMPLATE",
    "DemoSettings",
    "RUN_NAME",
    "build_demo_workspace",
    "is_demo_built",
    "quick_settings_if",
]
