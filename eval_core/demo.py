"""Build the demo workspace by a real training run on this machine.

Stages (each resumable: a finished stage leaves a marker and is skipped next time):
1. `tokenizer`: a byte-level BPE tokenizer trained on general English (Python's bundled
   documentation text plus the project's general-knowledge corpus), with a chat template.
2. `base_model`: a GPT-2-style model (~1.5M parameters) pretrained on that text with
   `transformers.Trainer`, saved with `save_pretrained` (safetensors).
3. `heldout`: held-out sets: the support test set (disjoint from training by id, prompt and
   13-gram), general text, general-knowledge probes, and `support_test_leak_check`: clean support test
   rows plus six leaks of training rows planted on purpose (exact, near, shared 13-grams), listed
   in the build record, so the Data page has known contamination to find.
4. `finetune`: the base model fine-tuned with `transformers.Trainer` on the narrow support set,
   evaluated on the support test set and on general text every `eval_every` steps and at the
   `early_saves` steps (5 and 10: forgetting starts within the first steps), saving a
   `checkpoint-*` folder (safetensors, tokenizer, trainer_state.json) each time and writing
   TensorBoard event files: exactly what a user's own run looks like. The high learning rate and
   many epochs over a small set make the model forget general text while it learns support: the
   demo has real forgetting to find.
5. `campaign`: support-set answers of the first, a middle and the last checkpoint are generated
   and stored (as `evaluate` does), and the blind rating campaign "demo" is created over them for
   the raters alice and bob, each item seen by both.

Everything is seeded; the same settings give the same weights. torch and transformers are imported
inside the functions that train, so importing eval_core stays fast.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eval_core.demo_corpus import DemoData, load_demo_data
from eval_core.demo_training import (
    CHAT_TEMPLATE,
    RUN_NAME,
    DemoSettings,
    Progress,
    finetune,
    pretrain_base_model,
    report_progress,
    train_tokenizer,
)
from eval_core.errors import WorkspaceError
from eval_core.version import __version__
from eval_core.workspace import STATE_DIR

STAGES = ("tokenizer", "base_model", "heldout", "finetune", "campaign")
# Part of the marker key of the stages from `heldout` on: bump it when the held-out files change, so
# a demo built before rebuilds them (and the run, which evaluates on support_test) while keeping its
# tokenizer and base model, which never see support data. 2: support_test cleaned of 13-gram
# overlaps with training, support_test_leak_check added.
DEMO_DATA_VERSION = 2
_DATA_STAGES = STAGES[STAGES.index("heldout"):]
DEMO_CAMPAIGN = "demo"
DEMO_RATERS = ("alice", "bob")
DEMO_CAMPAIGN_ITEMS = 24  # per rater with overlap 2: a few minutes of rating, enough for the statistics to show


class _Markers:
    """Stage markers in `.ftlens/demo/`: a stage is done when its marker holds our settings."""

    def __init__(self, root: Path, settings: DemoSettings) -> None:
        self.dir = root / STATE_DIR / "demo"
        key = {"version": __version__, **asdict(settings)}
        self.keys = {s: json.dumps({**key, "data_version": DEMO_DATA_VERSION} if s in _DATA_STAGES else key,
                                   sort_keys=True) for s in STAGES}

    def done(self, stage: str) -> bool:
        marker = self.dir / f"{stage}.done"
        return marker.is_file() and marker.read_text(encoding="utf-8") == self.keys[stage]

    def mark(self, stage: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"{stage}.done").write_text(self.keys[stage], encoding="utf-8")

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
        The build record (settings, seconds per stage, parameter count, the leaks planted in
        `support_test_leak_check` as {"id", "kind", "train_id"}), also written to `.ftlens/demo_build.json`.

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
        report_progress(progress, "done", 1.0, "demo workspace already built")
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
        report_progress(progress, "tokenizer", 0.0, "training the byte-level BPE tokenizer")
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
        report_progress(progress, "heldout", 0.0, "writing held-out sets")
        write_heldout_sets(root, data)
        write_workspace_config(root)
        markers.mark("heldout")
    timings["heldout"] = time.perf_counter() - t

    t = time.perf_counter()
    if not markers.done("finetune"):
        finetune(root, data, settings, progress, show_bars)
        markers.mark("finetune")
    timings["finetune"] = time.perf_counter() - t

    t = time.perf_counter()
    if not markers.done("campaign"):
        build_demo_campaign(root, progress)
        markers.mark("campaign")
    timings["campaign"] = time.perf_counter() - t

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
        "planted_leaks": data.planted_leaks,
    }
    del model
    record_path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    report_progress(progress, "done", 1.0, "demo workspace ready")
    return record


def build_demo_campaign(root: Path, progress: Progress | None = None) -> None:
    """Generate support-set answers of the first, a middle and the last checkpoint (stored with their
    text metrics, as `evaluate` does) and create the blind rating campaign "demo" for two raters."""
    from eval_core.errors import EvalCoreError
    from eval_core.evaluation import evaluate_workspace
    from eval_core.rating_setup import create_campaign, open_rating_store
    from eval_core.workspace import discover_workspace

    ckpts = [c for c in discover_workspace(root).checkpoints if c.step is not None]
    ckpts.sort(key=lambda c: c.step)
    chosen = list(dict.fromkeys([ckpts[0].name, ckpts[len(ckpts) // 2].name, ckpts[-1].name]))
    if len(chosen) < 2:  # a run with one checkpoint (tiny test builds): compare it with the base model
        chosen.insert(0, "base")
    report_progress(progress, "campaign", 0.0, f"generating support answers of {', '.join(chosen)}")
    evaluate_workspace(root, checkpoint_names=chosen, dataset_names=["support_test"], metric_names=["bleu", "chrf", "rougeL"])
    with open_rating_store(root) as store:
        exists = any(c.name == DEMO_CAMPAIGN for c in store.campaigns())
    if not exists:
        try:
            create_campaign(root, DEMO_CAMPAIGN, chosen, DEMO_RATERS, dataset="support_test", overlap=2,
                            max_items=DEMO_CAMPAIGN_ITEMS)
        except EvalCoreError as exc:  # a half-finished earlier build may have created it between the check and here
            if "exists" not in exc.message:
                raise
    report_progress(progress, "campaign", 1.0, "rating campaign 'demo' ready")


def write_heldout_sets(root: Path, data: DemoData) -> None:
    """The support test and leak-check sets, general held-out text, probes, and the training data
    (what the Data page compares them with)."""

    def dump(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    for name, rows in (("support_test", data.support_test), ("support_test_leak_check", data.support_test_leak_check)):
        dump(
            root / "heldout" / f"{name}.jsonl",
            [
                {"id": r["id"], "prompt": r["prompt"], "reference": r["response"],
                 "category": r["category"], "should_refuse": r["should_refuse"]}
                for r in rows
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

# A copy of clean support_test rows plus leaks of training rows the demo planted on purpose (ids
# planted-*, listed in .ftlens/demo_build.json), so the Data page has known contamination to find.
[[datasets]]
name = "support_test_leak_check"
path = "heldout/support_test_leak_check.jsonl"
kind = "generation"
columns = {{ id = "id", prompt = "prompt", reference = "reference", category = "category", should_refuse = "should_refuse" }}
""",
        encoding="utf-8",
    )


__all__ = ["CHAT_TEMPLATE", "DemoSettings", "RUN_NAME", "STAGES", "build_demo_workspace", "is_demo_built"]
