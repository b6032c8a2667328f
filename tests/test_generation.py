"""Batched generation on tiny real checkpoints: batching changes nothing, configs are honoured."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from eval_core.demo_training import CHAT_TEMPLATE
from eval_core.errors import EvalCoreError
from eval_core.generation import Generation, GenerationConfig, build_prompt, generate
from eval_core.model_loading import open_model

# Very different lengths (1 to ~50 tokens), including an empty prompt and one that is truncated.
PROMPTS = [
    "The",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Customer: where is my order?",
    "",
    "A list in Python holds items in order; len returns how many. " * 3,
    "Paris",
    "The capital of France is Paris. Water boils at one hundred degrees.",
    "len",
    "Customer: where is my order? Agent: it ships in three days. Customer: thanks",
    "A list",
    "The capital of France is Paris. " * 12,  # longer than 64 - max_new_tokens: cut on the left
]


def enliven(model, std: float = 0.1, seed: int = 0):
    """Re-draw the weight matrices wider than GPT-2's init (0.02), whose tiny random models repeat
    one token forever; varied outputs make batched-vs-alone comparisons meaningful."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and "wte" not in name:
                param.normal_(0, std)
    return model


def raw_greedy_ids(model, tok, prompt: str, n: int) -> list[int]:
    """Reference: transformers' own greedy generate on one unpadded prompt."""
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, ids["input_ids"].shape[1] :].tolist()


@pytest.fixture
def lm(tiny_gpt2, tiny_tokenizer):
    """(model, tokenizer) without a chat template."""
    return enliven(tiny_gpt2[1]), tiny_tokenizer


@pytest.fixture
def chat_lm(tiny_gpt2, tiny_tokenizer):
    """(model, tokenizer) with the demo chat template, saved and loaded through open_model."""
    folder, model = tiny_gpt2
    tokenizer = copy.deepcopy(tiny_tokenizer)  # the session tokenizer must stay template-free
    tokenizer.chat_template = CHAT_TEMPLATE
    enliven(model, seed=3).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with open_model(folder) as loaded:
        yield loaded.model, loaded.tokenizer


@pytest.mark.parametrize("batch_size", [16, 4])
def test_greedy_batched_equals_one_at_a_time(lm, batch_size):
    model, tok = lm
    config = GenerationConfig(max_new_tokens=10, batch_size=batch_size)
    batched = generate(model, tok, PROMPTS, config)
    alone = [generate(model, tok, [p], dataclasses.replace(config, batch_size=1))[0] for p in PROMPTS]
    assert batched == alone
    assert len({g.text for g in batched}) > 3  # the prompts really lead to different outputs


def test_greedy_batched_equals_alone_with_chat_template(chat_lm):
    model, tok = chat_lm
    config = GenerationConfig(max_new_tokens=8, batch_size=16)
    alone = [generate(model, tok, [p], dataclasses.replace(config, batch_size=1))[0] for p in PROMPTS]
    assert generate(model, tok, PROMPTS, config) == alone


def test_results_come_back_in_input_order_and_progress_counts_every_prompt(lm):
    model, tok = lm
    config = GenerationConfig(max_new_tokens=6, batch_size=3)
    seen: list[int] = []
    forward = generate(model, tok, PROMPTS, config, progress=seen.append)
    backward = generate(model, tok, PROMPTS[::-1], config)
    assert backward[::-1] == forward
    assert seen == [3, 3, 3, 2]


def test_empty_prompt_list_returns_empty(lm):
    assert generate(*lm, []) == []


def test_max_new_tokens_is_respected_and_reported_as_length(lm):
    model, tok = lm
    outs = generate(model, tok, PROMPTS[:3], GenerationConfig(max_new_tokens=5))
    assert [(g.new_tokens, g.finish_reason) for g in outs] == [(5, "length")] * 3
    assert all(isinstance(g, Generation) and g.text for g in outs)


def test_greedy_matches_transformers_generate_on_the_unpadded_prompt(lm):
    model, tok = lm
    for prompt in ["Water boils at", "The", "Customer: where is my order?"]:
        ids = raw_greedy_ids(model, tok, prompt, 12)
        out = generate(model, tok, [prompt], GenerationConfig(max_new_tokens=12))[0]
        assert out == Generation(text=tok.decode(ids), new_tokens=12, finish_reason="length")


def test_eos_from_generation_config_ends_the_output(lm):
    # Llama-3-style: the model's generation_config names an extra end token. Make it a token this
    # model greedily emits later on, so the output must end at its first occurrence with "eos".
    model, tok = lm
    prompt = "Water boils at"
    ids = raw_greedy_ids(model, tok, prompt, 8)
    k = next(i for i in range(2, 8) if ids[i] not in ids[:i])  # a token first seen at position k >= 2
    model.generation_config.eos_token_id = ids[k]
    out = generate(model, tok, [prompt], GenerationConfig(max_new_tokens=8))[0]
    assert out == Generation(text=tok.decode(ids[:k]), new_tokens=k, finish_reason="eos")


def test_model_that_always_says_eos_gives_empty_eos_output(lm):
    model, tok = lm
    eos = tok.eos_token_id
    with torch.no_grad():  # final hidden state = u, EOS embedding = 10 u: EOS wins every argmax
        u = torch.randn(model.config.n_embd)
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(u)
        model.transformer.wte.weight[eos] = 10 * u
    outs = generate(model, tok, ["The", "Water boils"], GenerationConfig(max_new_tokens=5))
    assert outs == [Generation(text="", new_tokens=0, finish_reason="eos")] * 2


def test_stop_string_cuts_the_text(lm):
    model, tok = lm
    prompt = ["Customer: where is"]
    full = generate(model, tok, prompt, GenerationConfig(max_new_tokens=20))[0]
    stop = full.text[len(full.text) // 2 :][:2]
    assert stop not in full.text[:4]  # the cut keeps some text
    cut = full.text[: full.text.index(stop)]
    steps: list[int] = []
    hook = model.register_forward_hook(lambda *_: steps.append(1))
    try:
        out = generate(model, tok, prompt, GenerationConfig(max_new_tokens=20, stop=("never-there", stop)))[0]
    finally:
        hook.remove()
    assert out.finish_reason == "stop"
    assert out.text == cut
    assert len(steps) < 20  # generation stopped at the stop string, not only cut afterwards
    ids = raw_greedy_ids(model, tok, prompt[0], 20)
    assert cut.startswith(tok.decode(ids[: out.new_tokens]))
    assert not cut.startswith(tok.decode(ids[: out.new_tokens + 1])) or out.new_tokens == len(ids)


def test_stop_string_that_never_appears_changes_nothing(lm):
    model, tok = lm
    plain = generate(*lm, PROMPTS, GenerationConfig(max_new_tokens=6))
    assert generate(model, tok, PROMPTS, GenerationConfig(max_new_tokens=6, stop=("\x00zz",))) == plain


def test_seeded_sampling_is_reproducible_and_seed_dependent(lm):
    model, tok = lm
    config = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.0, top_p=0.95, seed=7, batch_size=4)
    before = torch.get_rng_state()
    first = generate(model, tok, PROMPTS, config)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left alone
    torch.manual_seed(12345)  # the global seed does not matter either
    assert generate(model, tok, PROMPTS, config) == first
    other = generate(model, tok, PROMPTS, dataclasses.replace(config, seed=8))
    assert [g.text for g in other] != [g.text for g in first]
    greedy = generate(model, tok, PROMPTS, GenerationConfig(max_new_tokens=12, batch_size=4))
    assert [g.text for g in first] != [g.text for g in greedy]


def test_build_prompt_applies_chat_template_when_present(chat_lm, tiny_tokenizer):
    _, tok = chat_lm
    text = build_prompt(tok, "Where is my order?")
    assert "Customer: Where is my order?" in text and text.endswith("Agent:")
    assert build_prompt(tok, "Where is my order?", use_chat_template=False) == "Where is my order?"
    assert build_prompt(tiny_tokenizer, "Where is my order?") == "Where is my order?"


def test_generate_uses_the_template_unless_told_not_to(chat_lm):
    model, tok = chat_lm
    config = GenerationConfig(max_new_tokens=6)
    raw = dataclasses.replace(config, use_chat_template=False)
    templated = generate(model, tok, ["hi there"], config)
    assert templated == generate(model, tok, [build_prompt(tok, "hi there")], raw)
    assert templated != generate(model, tok, ["hi there"], raw)


def test_broken_chat_template_is_a_clear_error(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = "{{ messages[0]['content'] | nosuchfilter }}"
    with pytest.raises(EvalCoreError, match="use_chat_template=False"):
        build_prompt(tok, "hi")


def test_over_long_prompt_is_truncated_from_the_left(lm):
    model, tok = lm
    tail = "The capital of France is Paris. " * 20  # > 64 tokens on its own
    a = "Water boils at one hundred degrees Celsius. " * 3 + tail
    b = "A list in Python holds items in order. " * 5 + tail
    config = GenerationConfig(max_new_tokens=8)
    seen: list[torch.Tensor] = []
    real_generate = model.generate
    model.generate = lambda **kw: seen.append(kw["input_ids"]) or real_generate(**kw)
    out_a, out_b, out_tail = generate(model, tok, [a, b, tail], config)
    assert out_a.new_tokens == 8 and out_a.finish_reason == "length"
    assert out_a == out_b == out_tail  # only the end of the prompt was seen
    kept = tok(a)["input_ids"][-(64 - 8) :]
    assert seen[0].shape[1] == 64 - 8 and seen[0][0].tolist() == kept


def test_peft_adapter_generates_batched_like_alone(tiny_adapter, tiny_tokenizer):
    _, _, model = tiny_adapter
    config = GenerationConfig(max_new_tokens=6, batch_size=8)
    alone = [generate(model, tiny_tokenizer, [p], dataclasses.replace(config, batch_size=1))[0] for p in PROMPTS]
    assert generate(model, tiny_tokenizer, PROMPTS, config) == alone


def test_empty_prompt_generates_from_the_bos_token(lm):
    model, tok = lm
    config = GenerationConfig(max_new_tokens=6)
    assert generate(model, tok, [""], config) == generate(model, tok, [tok.eos_token], config)


def test_train_mode_model_is_run_in_eval_mode_and_restored(lm):
    model, tok = lm
    config = GenerationConfig(max_new_tokens=6)
    expected = generate(model, tok, PROMPTS[:4], config)
    model.config.resid_pdrop = 0.5
    model.train()
    assert generate(model, tok, PROMPTS[:4], config) == expected
    assert model.training


def test_config_hash_is_stable_and_sensitive_to_every_field():
    base = GenerationConfig()
    assert base.config_hash() == GenerationConfig().config_hash()
    assert len(base.config_hash()) == 16
    changed = {
        "max_new_tokens": 32, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "seed": 1,
        "stop": ("\n",), "batch_size": 8, "use_chat_template": False,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(GenerationConfig)}
    hashes = {dataclasses.replace(base, **{k: v}).config_hash() for k, v in changed.items()}
    assert len(hashes) == len(changed) and base.config_hash() not in hashes


def test_to_dict_round_trips_and_is_json_ready():
    import json

    config = GenerationConfig(max_new_tokens=9, do_sample=True, temperature=0.5, stop=("###", "\n"))
    d = config.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(GenerationConfig)]
    assert GenerationConfig.from_dict(json.loads(json.dumps(d))) == config
    assert GenerationConfig(stop="###").stop == ("###",)
    with pytest.raises(EvalCoreError, match="unknown"):
        GenerationConfig.from_dict({**d, "top_k": 5})


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"batch_size": 0}, "batch_size"),
        ({"do_sample": True, "temperature": 0.0}, "temperature"),
        ({"do_sample": True, "temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": ("",)}, "stop"),
    ],
)
def test_bad_configs_raise(kwargs, field):
    with pytest.raises(EvalCoreError) as info:
        GenerationConfig(**kwargs)
    assert info.value.field == field


def test_greedy_ignores_temperature_zero():
    assert GenerationConfig(temperature=0.0).temperature == 0.0  # only sampling needs temperature > 0


def test_max_new_tokens_beyond_the_context_raises(lm):
    with pytest.raises(EvalCoreError, match="lower max_new_tokens"):
        generate(*lm, ["The"], GenerationConfig(max_new_tokens=64))
