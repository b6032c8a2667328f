"""Shared fixtures: tiny REAL checkpoints (random-init GPT-2, a LoRA adapter over it) and a
reduced demo workspace built once per test session by the real demo builder."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_TEXT = [
    "The capital of France is Paris.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Customer: where is my order? Agent: it ships in three days.",
    "A list in Python holds items in order; len returns how many.",
] * 8


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A real byte-level BPE tokenizer, trained in well under a second."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TINY_TEXT, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False)
    eos = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos, pad_token=eos)


def make_tiny_gpt2(folder: Path, tokenizer, seed: int = 0):
    """Save a random-init 2-layer GPT-2 (about 40k parameters) with save_pretrained."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture
def tiny_gpt2(tmp_path, tiny_tokenizer):
    """(folder, in-memory model) of a freshly saved tiny GPT-2 checkpoint."""
    folder = tmp_path / "tiny-gpt2"
    return folder, make_tiny_gpt2(folder, tiny_tokenizer)


@pytest.fixture
def tiny_adapter(tmp_path, tiny_gpt2):
    """(adapter folder, base folder, in-memory PEFT model) of a LoRA adapter over tiny_gpt2."""
    import torch
    from peft import LoraConfig, get_peft_model

    base_dir, base = tiny_gpt2
    torch.manual_seed(1)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False))
    folder = tmp_path / "adapter"
    peft_model.save_pretrained(folder)
    return folder, base_dir, peft_model.eval()


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> Path:
    """A reduced-steps demo workspace, built once per session by the real builder."""
    from eval_core.demo import DemoSettings, build_demo_workspace

    root = tmp_path_factory.mktemp("quick_demo") / "ws"
    build_demo_workspace(root, DemoSettings.quick())
    return root


EVALUATED_CHECKPOINTS = ["base", "checkpoint-6", "checkpoint-36"]


@pytest.fixture(scope="session")
def evaluated_demo(quick_demo, tmp_path_factory) -> Path:
    """A copy of the quick demo with text metrics and completion perplexity of support_test stored
    for base, checkpoint-6 and checkpoint-36 (6 new tokens: fast). Read-only: copy it to change it."""
    import shutil

    from eval_core.evaluation import evaluate_workspace
    from eval_core.generation import GenerationConfig

    ws = tmp_path_factory.mktemp("evaluated_demo") / "ws"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*", "results.sqlite*"))
    evaluate_workspace(ws, checkpoint_names=EVALUATED_CHECKPOINTS, dataset_names=["support_test"],
                       metric_names=["bleu", "chrf", "rougeL", "exact_match", "completion_perplexity"],
                       generation_config=GenerationConfig(max_new_tokens=6))
    return ws


@pytest.fixture(scope="session")
def probed_demo(evaluated_demo, tmp_path_factory) -> Path:
    """The evaluated demo plus log-likelihood probes (mc_acc, mc_acc_norm) and general-text perplexity
    for its 3 models: what the forgetting analysis reads. Read-only: copy it to change it (reading
    the forgetting analysis through `forgetting_results` writes its cache row)."""
    import shutil

    from eval_core.evaluation import evaluate_workspace

    ws = tmp_path_factory.mktemp("probed_demo") / "ws"
    shutil.copytree(evaluated_demo, ws)
    evaluate_workspace(ws, checkpoint_names=EVALUATED_CHECKPOINTS, dataset_names=["general_knowledge", "general_text"],
                       metric_names=["mc_acc", "mc_acc_norm", "perplexity"])
    return ws


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL 15 cluster on a free localhost port, run as user postgres (skipped where
    the server binaries or root are missing, except under CI=true, where that fails)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins or os.geteuid() != 0 or not shutil.which("runuser"):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries (and root) are needed for this test in CI")
        pytest.skip("no PostgreSQL server binaries here (or not root to run them as 'postgres')")
    pg = bins[-1]
    data = tempfile.mkdtemp(prefix="ftlens-pg-")
    shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{pg}/initdb", "-D", f"{data}/db", "-U", "postgres", "-A", "trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_pg, f"{pg}/pg_ctl", "-D", f"{data}/db", "-l", f"{data}/log", "-w", "-t", "30", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, f"{pg}/pg_ctl", "-D", f"{data}/db", "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def fresh_postgres_db(postgres_url):
    """The URL of a new, empty database on the session's PostgreSQL server: for tests that read
    everything in the store (reports, summaries), which other tests' rows would otherwise slow down."""
    import uuid

    import sqlalchemy as sa

    name = f"ftl_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A database URL for a new, empty store, once per backend: a SQLite file in tmp_path, then a
    fresh database on the session's PostgreSQL server (skipped, or failed under CI, as `postgres_url`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("fresh_postgres_db")
