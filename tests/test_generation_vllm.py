"""The vLLM generation backend: its outputs are kept apart (hash, protocol), refusals are clear, and
`evaluate` routes generation cells through it. A deterministic fake `vllm` module (transformers
underneath, one prompt at a time) tests the plumbing on a CPU; the real engine runs only where vllm
and a CUDA GPU are (skipped elsewhere, with the reason in `pytest -rs`)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from eval_core.errors import CheckpointError, EvalCoreError
from eval_core.generation import GenerationConfig, with_backend
from eval_core.generation_vllm import (
    VllmGenerationConfig,
    check_vllm_checkpoint,
    open_vllm,
    require_vllm,
)
from eval_core.text_scoring import TextScoreConfig
from tests.conftest import TINY_TEXT, make_tiny_gpt2

GEN = GenerationConfig(max_new_tokens=4)
FAKE_VERSION = "0.0.0+fake"


def _why_no_real_vllm() -> str | None:
    """The skip reason of the real-engine test, or None where it can run."""
    import torch

    if importlib.util.find_spec("vllm") is None:
        return "vllm not installed (GPU only)"
    if not torch.cuda.is_available():
        return "vllm not installed (GPU only): vllm is, but torch sees no CUDA device"
    return None


def test_the_backend_changes_the_hash_and_hf_hashes_stay_as_they_were():
    # Golden: GenerationConfig().config_hash() as computed before backends existed, so outputs stored
    # then are still found in the store (commit before this change, same expression).
    assert GenerationConfig().config_hash() == "e972d00de1be13e1"
    assert "backend" not in GenerationConfig().to_dict() and GenerationConfig().backend == "hf"
    vllm = with_backend(GEN, "vllm")
    assert isinstance(vllm, VllmGenerationConfig) and vllm.backend == "vllm"
    assert vllm.to_dict() == {**GEN.to_dict(), "backend": "vllm"}
    assert vllm.config_hash() != GEN.config_hash() and vllm != GEN
    # Text scores of vLLM outputs are keyed apart too (their hash covers the generation's).
    assert TextScoreConfig("bleu", vllm).config_hash() != TextScoreConfig("bleu", GEN).config_hash()
    assert with_backend(vllm, "hf") == GEN and with_backend(GEN, "hf") is GEN


def test_from_dict_round_trips_the_backend_and_refuses_unknown_ones():
    vllm = with_backend(GenerationConfig(max_new_tokens=9, stop=("###",)), "vllm")
    again = GenerationConfig.from_dict(json.loads(json.dumps(vllm.to_dict())))
    assert again == vllm and type(again) is VllmGenerationConfig
    with pytest.raises(EvalCoreError, match="unknown generation backend 'tgi'; use one of hf, vllm"):
        GenerationConfig.from_dict({**GEN.to_dict(), "backend": "tgi"})
    assert dataclasses.replace(vllm, seed=3).backend == "vllm"  # replace keeps the backend


def test_without_vllm_or_a_gpu_the_error_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` meets where it is not installed
    with pytest.raises(EvalCoreError, match=r"needs the vllm package, which is not installed .*--backend hf"):
        require_vllm()
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setattr("eval_core.generation_vllm._cuda_available", lambda: False)
    with pytest.raises(EvalCoreError, match="needs a CUDA GPU and torch sees none; run on a GPU machine, or use --backend hf"):
        require_vllm()


def test_adapters_pickle_weights_and_missing_tokenizers_are_refused(tiny_adapter, tmp_path, tiny_tokenizer):
    adapter, base, _ = tiny_adapter
    with pytest.raises(CheckpointError, match="PEFT adapter, and the vllm backend serves full checkpoints only"):
        check_vllm_checkpoint(adapter)
    check_vllm_checkpoint(base)  # a full safetensors checkpoint with its tokenizer passes
    pickled = tmp_path / "pickled"
    shutil.copytree(base, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors weights only"):
        check_vllm_checkpoint(pickled)
    bare = tmp_path / "bare"
    shutil.copytree(base, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="takes the tokenizer from the checkpoint folder"):
        check_vllm_checkpoint(bare)


def _fake_vllm(calls: list) -> types.ModuleType:
    """A `vllm` stand-in: greedy transformers generation one prompt at a time, answering as vLLM does
    (completion token ids without the EOS, finish_reason "stop"/"length")."""
    import torch
    from transformers import AutoModelForCausalLM

    module = types.ModuleType("vllm")
    module.__version__ = FAKE_VERSION

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            calls.append(kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(kwargs["model"], use_safetensors=True).eval()

        def generate(self, prompts, params, use_tqdm=False):
            outs = []
            for prompt, p in zip(prompts, params, strict=True):
                assert p.temperature == 0.0 and p.seed is None  # greedy
                ids = torch.tensor([prompt["prompt_token_ids"]])
                with torch.inference_mode():
                    out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=p.max_tokens,
                                              do_sample=False, eos_token_id=p.stop_token_ids,
                                              pad_token_id=p.stop_token_ids[0])
                new = out[0, ids.shape[1]:].tolist()
                ended = any(t in p.stop_token_ids for t in new)
                new = [t for t in new if t not in p.stop_token_ids]
                completion = types.SimpleNamespace(token_ids=new, finish_reason="stop" if ended else "length",
                                                   stop_reason=None)
                outs.append(types.SimpleNamespace(outputs=[completion]))
            return outs

    module.LLM, module.SamplingParams = LLM, SamplingParams
    return module


@pytest.fixture
def gen_ws(tmp_path, tiny_tokenizer) -> Path:
    ws = tmp_path / "ws"
    make_tiny_gpt2(ws / "base_model", tiny_tokenizer, seed=0)
    make_tiny_gpt2(ws / "runs" / "ft" / "checkpoint-1", tiny_tokenizer, seed=1)
    (ws / "heldout").mkdir()
    rows = [{"id": f"g{i}", "prompt": t[:30], "reference": t[30:]} for i, t in enumerate(TINY_TEXT[:4])]
    (ws / "heldout" / "support.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ws


def test_evaluate_routes_generations_through_vllm_and_stores_them_apart(gen_ws, monkeypatch):
    from eval_core.evaluation import evaluate_workspace
    from eval_core.results_store import ResultsStore, database_url, generations

    calls: list = []
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(calls))
    monkeypatch.setattr("eval_core.generation_vllm._cuda_available", lambda: True)
    vllm_cfg = with_backend(GEN, "vllm")
    via_vllm = evaluate_workspace(gen_ws, metric_names=["generation", "exact_match"], generation_config=vllm_cfg)
    via_hf = evaluate_workspace(gen_ws, metric_names=["generation", "exact_match"], generation_config=GEN)
    assert via_vllm.computed == via_hf.computed == 2 * 4 * 2  # 2 models x 4 prompts x (outputs + exact match)
    # One engine per checkpoint, loaded safely, from the checkpoint's own folder and tokenizer.
    assert [Path(c["model"]).name for c in calls] == ["base_model", "checkpoint-1"]
    assert all(c["tokenizer"] == c["model"] and c["trust_remote_code"] is False and c["load_format"] == "safetensors"
               and c["generation_config"] == "vllm" and c["seed"] == 0 and c["dtype"] == "float32" for c in calls)
    store = ResultsStore(database_url(gen_ws))
    try:
        rows = store.read(generations)
        protocols = store.protocols()
    finally:
        store.close()
    by_hash: dict[str, dict] = {}
    for r in rows:
        by_hash.setdefault(r["config_hash"], {})[(r["checkpoint_fp"], r["example_id"])] = (
            r["text"], r["new_tokens"], r["finish_reason"])
    assert set(by_hash) == {vllm_cfg.config_hash(), GEN.config_hash()}  # never mixed in one table
    # The same model, prompts and greedy decoding: the same outputs, token counts and finish reasons.
    assert by_hash[vllm_cfg.config_hash()] == by_hash[GEN.config_hash()]
    proto = protocols[vllm_cfg.config_hash()]
    assert proto["config"]["backend"] == "vllm" and proto["libraries"]["vllm"] == FAKE_VERSION
    assert "vllm" not in protocols[GEN.config_hash()]["libraries"]
    # A second run finds everything: nothing is generated again, no engine is built.
    again = evaluate_workspace(gen_ws, metric_names=["generation", "exact_match"], generation_config=vllm_cfg)
    assert again.computed == 0 and len(calls) == 2


def test_evaluate_with_vllm_refuses_an_adapter_checkpoint_before_any_work(gen_ws, tiny_adapter, monkeypatch):
    from eval_core.evaluation import evaluate_workspace

    adapter, _, _ = tiny_adapter
    shutil.copytree(adapter, gen_ws / "runs" / "ft" / "checkpoint-2")
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(CheckpointError, match="checkpoint-2.*PEFT adapter"):
        evaluate_workspace(gen_ws, generation_config=with_backend(GEN, "vllm"))


def test_the_cli_backend_flag_reaches_evaluate(gen_ws, monkeypatch, capsys):
    from eval_core.cli import main

    monkeypatch.setitem(sys.modules, "vllm", None)
    assert main(["evaluate", "--workspace", str(gen_ws), "--backend", "vllm", "--metric", "generation"]) == 2
    assert "needs the vllm package, which is not installed" in capsys.readouterr().err


@pytest.mark.skipif(_why_no_real_vllm() is not None, reason=_why_no_real_vllm() or "")
def test_real_vllm_generates_greedy_outputs_that_respect_the_settings(tmp_path, tiny_tokenizer):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2-fp16"
    torch.manual_seed(0)
    # Head size 64 in float16: what vLLM's GPU attention kernels take (conftest's tiny GPT-2 has 16).
    config = GPT2Config(vocab_size=len(tiny_tokenizer), n_positions=128, n_embd=128, n_layer=2, n_head=2,
                        bos_token_id=tiny_tokenizer.eos_token_id, eos_token_id=tiny_tokenizer.eos_token_id)
    GPT2LMHeadModel(config).half().save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    prompts = [t[:40] for t in TINY_TEXT[:6]]
    settings = VllmGenerationConfig(max_new_tokens=8, stop=("\n", "."))
    with open_vllm(folder, settings) as engine:
        first, second = engine.generate(prompts), engine.generate(prompts)
    assert first == second and len(first) == len(prompts)  # greedy: the same outputs again
    for g in first:
        assert 0 <= g.new_tokens <= 8 and g.finish_reason in {"eos", "length", "stop"}
        assert "\n" not in g.text and "." not in g.text
