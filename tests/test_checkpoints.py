"""Checkpoint inspection on tiny real checkpoints: kinds, steps, parameters, refusals."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from eval_core.checkpoints import find_checkpoint_files, inspect_checkpoint, is_checkpoint_dir
from eval_core.errors import CheckpointError, UnsafeCheckpointError


def test_full_checkpoint_is_described_without_loading(tiny_gpt2, tmp_path):
    folder, model = tiny_gpt2
    ckpt = tmp_path / "run" / "checkpoint-40"
    shutil.copytree(folder, ckpt)
    rec = inspect_checkpoint(ckpt, root=tmp_path, name="checkpoint-40", run="run")
    assert (rec.kind, rec.weight_format, rec.step, rec.path) == ("full", "safetensors", 40, "run/checkpoint-40")
    # save_pretrained stores GPT-2's tied lm_head once, so the header count equals unique parameters.
    assert rec.parameter_count == model.num_parameters()
    assert rec.has_tokenizer and rec.model_type == "gpt2"
    assert rec.fingerprint.startswith("blake2b-128:")


def test_adapter_is_recognised_and_counts_only_its_own_parameters(tiny_adapter, tmp_path):
    folder, _, peft_model = tiny_adapter
    rec = inspect_checkpoint(folder, root=tmp_path, name="adapter", run=None)
    trainable = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert (rec.kind, rec.model_type, rec.parameter_count) == ("adapter", "LORA", trainable)


def test_step_comes_from_trainer_state_when_the_folder_name_has_none(tiny_gpt2):
    folder, _ = tiny_gpt2
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 77, "best_metric": float("nan")}))
    rec = inspect_checkpoint(folder, root=folder.parent, name="final", run="r")
    assert rec.step == 77


def test_fingerprint_ignores_location_and_trainer_pickles_but_not_weights(tiny_gpt2, tmp_path):
    folder, _ = tiny_gpt2
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(folder, copy)
    (copy / "optimizer.pt").write_bytes(b"not part of the model")
    a = inspect_checkpoint(folder, root=tmp_path, name="a", run=None).fingerprint
    b = inspect_checkpoint(copy, root=tmp_path, name="b", run=None).fingerprint
    assert a == b
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert inspect_checkpoint(copy, root=tmp_path, name="b", run=None).fingerprint != a


def test_pickle_only_checkpoint_is_recognised_as_pickle(tiny_gpt2):
    folder, model = tiny_gpt2
    import torch

    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    files = find_checkpoint_files(folder)
    assert files.weight_format == "pickle"
    assert [f.name for f in files.weight_files] == ["pytorch_model.bin"]
    rec = inspect_checkpoint(folder, root=folder.parent, name="p", run=None)
    assert rec.parameter_count is None  # counting would mean unpickling


def test_trainer_pickles_alone_are_not_weights(tiny_gpt2):
    folder, _ = tiny_gpt2
    (folder / "model.safetensors").unlink()
    for name in ("optimizer.pt", "training_args.bin", "rng_state.pth", "scheduler.pt"):
        (folder / name).write_bytes(b"x")
    assert not is_checkpoint_dir(folder)
    with pytest.raises(CheckpointError, match="no weights"):
        find_checkpoint_files(folder)


def test_auto_map_config_is_refused(tiny_gpt2):
    folder, _ = tiny_gpt2
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    with pytest.raises(UnsafeCheckpointError, match="trust_remote_code") as err:
        find_checkpoint_files(folder)
    assert err.value.field == "auto_map" and err.value.path.endswith("config.json")


def test_tokenizer_config_with_auto_map_is_refused(tiny_gpt2):
    folder, _ = tiny_gpt2
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    tok["auto_map"] = {"AutoTokenizer": ["tok_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    with pytest.raises(UnsafeCheckpointError):
        find_checkpoint_files(folder)


def test_malformed_config_names_file_and_line(tiny_gpt2):
    folder, _ = tiny_gpt2
    (folder / "config.json").write_text('{\n  "model_type": "gpt2",\n  "n_layer": 2,,\n}')
    with pytest.raises(CheckpointError) as err:
        find_checkpoint_files(folder)
    assert err.value.line == 3 and "config.json" in str(err.value)


def test_missing_config_and_missing_folder(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no config.json"):
        find_checkpoint_files(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint_files(tmp_path / "nope")


def test_sharded_index_with_missing_or_escaping_shard(tiny_gpt2):
    folder, _ = tiny_gpt2
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        find_checkpoint_files(folder)
    index["weight_map"]["b"] = "../../etc/passwd"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="outside"):
        find_checkpoint_files(folder)


def test_symlink_leaving_the_workspace_is_refused(tiny_gpt2, tmp_path):
    folder, _ = tiny_gpt2
    outside = tmp_path / "outside.safetensors"
    (folder / "model.safetensors").rename(outside)
    os.symlink(outside, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="links outside"):
        find_checkpoint_files(folder, root=folder)
