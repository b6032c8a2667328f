"""Safe loading on tiny real checkpoints: what loads matches what was saved; nothing runs."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from eval_core.errors import CheckpointError, UnsafeCheckpointError
from eval_core.model_loading import load_model, models_in_turn, open_model, release_model

IDS = torch.tensor([[5, 17, 42, 99, 3, 250]])


class Evil:
    """Unpickling this runs a shell command that creates a sentinel file."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def logits(model):
    with torch.no_grad():
        return model(IDS).logits


def test_full_checkpoint_loads_identical_weights(tiny_gpt2):
    folder, model = tiny_gpt2
    with open_model(folder) as lm:
        assert torch.equal(logits(lm.model), logits(model))
        assert not lm.model.training
        assert lm.tokenizer.eos_token == "<|endoftext|>"


def test_adapter_loads_over_the_named_base(tiny_adapter):
    folder, base_dir, peft_model = tiny_adapter
    with open_model(folder, base_model=base_dir) as lm:
        from peft import PeftModel

        assert isinstance(lm.model, PeftModel)
        assert torch.allclose(logits(lm.model), logits(peft_model), atol=1e-6)
        assert lm.tokenizer_source == base_dir  # the adapter folder has no tokenizer


def test_adapter_without_base_model_is_an_error_not_a_download(tiny_adapter):
    folder, _, _ = tiny_adapter
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "some-org/some-hub-model"
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="base model") as err:
        load_model(folder)
    assert err.value.field == "base_model"


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "model.ckpt"])
def test_pickle_weights_are_refused_before_unpickling(tiny_gpt2, tmp_path, name):
    folder, _ = tiny_gpt2
    sentinel = tmp_path / "pwned"
    (folder / "model.safetensors").unlink()
    torch.save({"w": Evil(sentinel)}, folder / name)
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle"):
        load_model(folder)
    assert not sentinel.exists()


def test_malicious_pickle_stays_inert_even_with_opt_in(tiny_gpt2, tmp_path):
    folder, _ = tiny_gpt2
    sentinel = tmp_path / "pwned"
    (folder / "model.safetensors").unlink()
    torch.save({"w": Evil(sentinel)}, folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="weights-only"):
        load_model(folder, allow_pickle=True)
    assert not sentinel.exists()


def test_plain_state_dict_loads_with_opt_in(tiny_gpt2):
    folder, model = tiny_gpt2
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with open_model(folder, allow_pickle=True) as lm:
        assert torch.equal(logits(lm.model), logits(model))


def test_force_no_weights_only_env_is_refused(tiny_gpt2, monkeypatch, tmp_path):
    folder, model = tiny_gpt2
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeCheckpointError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        load_model(folder, allow_pickle=True)


def test_remote_code_checkpoint_imports_nothing(tiny_gpt2, tmp_path):
    folder, _ = tiny_gpt2
    sentinel = tmp_path / "imported"
    (folder / "modeling_evil.py").write_text(f"open({str(sentinel)!r}, 'w').write('x')\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsafeCheckpointError, match="auto_map"):
        load_model(folder)
    assert not sentinel.exists()
    assert not any("modeling_evil" in m for m in sys.modules)


def test_unknown_architecture_is_a_clear_error(tiny_gpt2):
    folder, _ = tiny_gpt2
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "no_such_architecture"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="could not load"):
        load_model(folder)


def test_one_model_at_a_time(tiny_gpt2, tiny_adapter):
    import weakref

    folder, _ = tiny_gpt2
    first = load_model(folder)
    ref = weakref.ref(first.model)
    load_model(folder)
    assert first.model is None and ref() is None  # the first model was freed
    release_model()


def test_models_in_turn_still_frees_each_model_and_unfreezes_on_exit(tiny_gpt2):
    import gc
    import weakref

    folder, _ = tiny_gpt2
    assert gc.get_freeze_count() == 0
    refs = []
    with models_in_turn():
        assert gc.get_freeze_count() > 0
        with models_in_turn():  # nested use keeps the outer freeze
            pass
        assert gc.get_freeze_count() > 0
        for _ in range(3):
            with open_model(folder) as lm:
                refs.append(weakref.ref(lm.model))
            del lm
            # At most one model object alive: the released one, kept to load the next into.
            assert len({id(r()) for r in refs if r() is not None}) <= 1
    assert gc.get_freeze_count() == 0
    assert all(r() is None for r in refs)  # nothing is kept after the loop
    with pytest.raises(RuntimeError), models_in_turn():
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0


def test_identical_tokenizer_files_are_loaded_once(tiny_gpt2, tmp_path):
    import shutil

    folder, _ = tiny_gpt2
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with open_model(folder) as a:
        first = a.tokenizer
    with open_model(copy) as b:
        assert b.tokenizer is first  # same bytes: the tokenizer is reused
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 77
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    with open_model(copy) as c:
        assert c.tokenizer is not first and c.tokenizer.model_max_length == 77


def test_checkpoints_of_one_config_reuse_the_model_inside_models_in_turn(tiny_gpt2, tmp_path, tiny_tokenizer):
    import weakref

    from tests.conftest import make_tiny_gpt2

    folder, _ = tiny_gpt2
    other = tmp_path / "other"
    make_tiny_gpt2(other, tiny_tokenizer, seed=5)  # same config, different weights
    with open_model(other) as fresh:
        expected = logits(fresh.model)
    with models_in_turn():
        with open_model(folder) as a:
            first = a.model
            ref = weakref.ref(first)
            logits_a = logits(first)
        with open_model(other) as b:
            assert b.model is first  # the skeleton, with other's weights copied in
            assert torch.equal(logits(b.model), expected) and not torch.equal(logits_a, expected)
            # tied weights stay tied after the copy
            assert b.model.lm_head.weight.data_ptr() == b.model.transformer.wte.weight.data_ptr()
        del first, a, b
    assert ref() is None  # freed when the loop ends
