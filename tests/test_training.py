"""LoRA training on a tiny random Llama that uses the embedded model's real tokenizer and chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from helpers.training_data import write_train_file  # noqa: E402
from metaconf.errors import DataError  # noqa: E402
from metaconf.training import LoraTrainConfig, train_conditions, train_lora  # noqa: E402
from metaconf.training.lora import LoraJob, build_trainer  # noqa: E402

FAST = dict(rank=4, alpha=8.0, dropout=0.0, batch_size=4, logging_steps=1, learning_rate=5e-3, max_length=256)


def test_only_assistant_tokens_carry_labels(tiny_model, tmp_path):
    train = write_train_file(tmp_path / "train.jsonl", n=6)
    trainer = build_trainer(LoraJob(train, tmp_path / "out", tiny_model, LoraTrainConfig(**FAST, max_steps=1)))
    tok = trainer.processing_class
    rows = [json.loads(line)["messages"] for line in train.read_text().splitlines()]
    for i, messages in enumerate(rows):
        ex = trainer.train_dataset[i]
        ids, labels = ex["input_ids"], ex["labels"]
        assert len(ids) == len(labels)
        first = next(j for j, label in enumerate(labels) if label != -100)
        # everything before the reply (system, user turn, assistant header) is masked ...
        prompt = tok.decode(ids[:first])
        assert prompt.endswith("<|im_start|>assistant\n")
        assert messages[-2]["content"] in prompt
        # ... and every token from the reply on is trained, the end-of-turn token included (the model learns to stop)
        assert all(label != -100 for label in labels[first:])
        assert labels[first:] == ids[first:]
        assert tok.decode(ids[first:]).startswith(messages[-1]["content"] + "<|im_end|>")


def test_top_layers_puts_lora_on_the_upper_layers_only(tiny_model, tmp_path):
    train = write_train_file(tmp_path / "train.jsonl", n=4)
    config = LoraTrainConfig(**FAST, top_layers=1, max_steps=1)
    trainer = build_trainer(LoraJob(train, tmp_path / "out", tiny_model, config))
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n for n in names)
    assert {n.split(".layers.1.")[1].split(".lora")[0] for n in names} == {
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    }


def test_bad_training_file_names_line_and_field(tmp_path, tiny_model):
    bad = tmp_path / "train.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
        '{"messages": [{"role": "user", "content": "q"}]}\n'
    )
    with pytest.raises(DataError, match=r"train.jsonl:2: 'messages' must end with an assistant reply"):
        train_lora(bad, tmp_path / "out", tiny_model, LoraTrainConfig(**FAST))
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match=r"train.jsonl:1: invalid JSON"):
        train_lora(bad, tmp_path / "out", tiny_model, LoraTrainConfig(**FAST))


def test_training_lowers_loss_and_writes_outputs(tiny_model, tmp_path):
    train = write_train_file(tmp_path / "train.jsonl", n=16)
    config = LoraTrainConfig(**{**FAST, "learning_rate": 2e-2}, epochs=3, save_steps=1000)
    adapter = train_lora(train, tmp_path / "out", tiny_model, config)
    out = tmp_path / "out"
    assert adapter == out / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert set(rows[0]) == {"step", "epoch", "loss", "learning_rate"}
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first - 0.1
    info = json.loads((out / "train_config.json").read_text())
    assert info["config"]["rank"] == 4 and info["device"]["precision"] == "fp32"
    assert (out / "loss.png").stat().st_size > 1000
    assert (out / "DONE").read_text().strip() == info["fingerprint"]
    assert not (out / "checkpoints").exists()


def test_training_prints_its_own_progress_line_not_raw_dicts_or_library_warnings(tiny_model, tmp_path, capfd):
    import warnings

    train = write_train_file(tmp_path / "train.jsonl", n=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a warning already shown earlier in the session would show again
        train_lora(train, tmp_path / "single", tiny_model, LoraTrainConfig(**FAST, max_steps=3))
    out, err = capfd.readouterr()
    assert "{'loss'" not in out + err and "'train_runtime'" not in out + err  # transformers' PrinterCallback
    assert "Tokenizing train dataset" not in err and "Loading weights" not in err  # library progress bars
    lines = [line for line in err.splitlines() if line.startswith("metaconf train single:")]
    assert [line.split("  ")[0] for line in lines[:3]] == [f"metaconf train single: step {s}/3" for s in (1, 2, 3)]
    assert "loss " in lines[0] and "it/s" in lines[1] and lines[-1].startswith("metaconf train single: done, 3 steps")
    library = [
        w
        for w in caught
        if issubclass(w.category, (FutureWarning, DeprecationWarning))
        and any(lib in w.filename for lib in ("transformers", "trl", "peft", "accelerate", "datasets"))
    ]
    assert not library, [str(w.message) for w in library]


def test_finished_adapter_is_reused_and_changed_config_retrains(tiny_model, tmp_path, monkeypatch):
    import metaconf.training.lora as lora

    train = write_train_file(tmp_path / "train.jsonl", n=8)
    config = LoraTrainConfig(**FAST, max_steps=2)
    train_lora(train, tmp_path / "out", tiny_model, config)
    stamp = (tmp_path / "out" / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns

    def no_training(*a, **k):
        raise AssertionError("a finished adapter was retrained")

    monkeypatch.setattr(lora, "build_trainer", no_training)
    assert train_lora(train, tmp_path / "out", tiny_model, config) == tmp_path / "out" / "adapter"
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError, match="retrained"):  # other settings: not the same adapter
        train_lora(train, tmp_path / "out", tiny_model, config.model_copy(update={"rank": 2}))
    assert not (tmp_path / "out" / "DONE").exists()


@pytest.mark.parametrize("cached", [False, True], ids=["full-model", "cached-lower-layers"])
def test_interrupted_training_resumes_from_last_checkpoint(tiny_model, tmp_path, cached):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    train = write_train_file(tmp_path / "train.jsonl", n=12)
    config = LoraTrainConfig(**FAST, max_steps=5, save_steps=2)
    if cached:
        config = config.model_copy(update={"top_layers": 1, "cache_frozen_layers": True})
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        train_lora(train, out, tiny_model, config, callbacks=[Crash()])
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "DONE").exists()
    train_lora(train, out, tiny_model, config)
    info = json.loads((out / "train_config.json").read_text())
    assert info["result"]["resumed_from_step"] == 2 and info["result"]["global_step"] == 5
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # rows after the checkpoint were logged again, not twice
    assert (out / "DONE").is_file()
    if cached:
        assert json.loads((out / "adapter" / "adapter_config.json").read_text())["layers_to_transform"] == [1]


def test_resume_skips_a_checkpoint_whose_state_was_cut_short(tmp_path):
    """A kill while transformers writes trainer_state.json (last, not atomically) leaves a checkpoint that must not
    be resumed from: the last one written to the end is taken."""
    from metaconf.training.lora import _last_checkpoint

    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_step": 4, "log_hi'), (6, None), (8, "")):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert _last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert _last_checkpoint(tmp_path / "none") is None


def test_adapter_reloads_with_peft_and_merges(tiny_model, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from metaconf.training import merge_adapter

    train = write_train_file(tmp_path / "train.jsonl", n=8)
    adapter = train_lora(train, tmp_path / "out", tiny_model, LoraTrainConfig(**FAST, max_steps=3))
    ids = torch.tensor([[1, 20, 300, 4000]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        base_logits = base(ids).logits
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(adapter))
    with torch.no_grad():
        tuned_logits = tuned(ids).logits
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-6)  # the adapter changes the model

    merged_dir = merge_adapter(tiny_model, adapter, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, tuned_logits, atol=1e-4)
    assert (merged_dir / "tokenizer_config.json").is_file()


def test_hf_engine_loads_the_adapter(tiny_model, tmp_path):
    hf = pytest.importorskip("metaconf.engines.hf")
    train = write_train_file(tmp_path / "train.jsonl", n=8)
    adapter = train_lora(train, tmp_path / "out", tiny_model, LoraTrainConfig(**FAST, max_steps=2))
    engine = hf.HFEngine(model=str(tiny_model), adapter=str(adapter), quiet=True)
    out = engine.generate([[{"role": "user", "content": "2 + 2?"}]], n=1, temperature=0.0, max_new_tokens=4)
    assert len(out) == 1 and len(out[0]) == 1 and isinstance(out[0][0].text, str)


def test_train_conditions_trains_each_condition_into_the_run_folder(tiny_model, tmp_path):
    run = tmp_path / "run"
    write_train_file(run / "training_sets" / "single" / "train.jsonl", n=6)
    write_train_file(run / "training_sets" / "pairwise" / "train.jsonl", n=6, kind="pairwise")
    adapters = train_conditions(
        run,
        tiny_model,
        LoraTrainConfig(**FAST, max_steps=1),
        ["single", "pairwise"],
        configs={"pairwise": LoraTrainConfig(**FAST, max_steps=2)},
    )
    assert set(adapters) == {"single", "pairwise"}
    for cond, steps in (("single", 1), ("pairwise", 2)):
        assert (run / "training" / cond / "DONE").is_file()
        assert json.loads((run / "training" / cond / "train_config.json").read_text())["result"]["global_step"] == steps
    with pytest.raises(DataError, match="multitask"):
        train_conditions(run, tiny_model, LoraTrainConfig(**FAST, max_steps=1), ["multitask"])


def test_config_rejects_unknown_fields_and_picks_top_layers():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        LoraTrainConfig(rnak=4)
    assert LoraTrainConfig(top_layers=3).lora_layers(30) == [27, 28, 29]
    assert LoraTrainConfig(layers_to_transform=[0, 5]).lora_layers(30) == [0, 5]
    assert LoraTrainConfig().lora_layers(30) is None
    assert LoraTrainConfig().fingerprint() != LoraTrainConfig(rank=4).fingerprint()
    demo = LoraTrainConfig.for_cpu_demo()
    # the documented demo settings (docs/training.md): LoRA on the top 8 of SmolLM2-135M's 30 layers, lower ones cached
    assert demo.precision == "auto" and demo.lora_layers(30) == list(range(22, 30)) and demo.cache_frozen_layers


def _adapter_weights(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def test_cached_lower_layers_train_the_same_adapter(tiny_model, tmp_path):
    """Training the upper layer on cached lower-layer states is the same computation as training the full model."""
    import torch

    train = write_train_file(tmp_path / "train.jsonl", n=12)
    config = LoraTrainConfig(**FAST, top_layers=1, max_steps=4)
    plain = train_lora(train, tmp_path / "plain", tiny_model, config)
    cached = train_lora(train, tmp_path / "cached", tiny_model, config.model_copy(update={"cache_frozen_layers": True}))
    want, got = _adapter_weights(plain), _adapter_weights(cached)
    assert sorted(got) == sorted(want) and all(".layers.1." in k for k in got)  # renumbered onto the full model
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-5), k
    assert not torch.allclose(want[next(iter(want))], torch.zeros(1))  # it trained
    assert json.loads((cached / "adapter_config.json").read_text())["layers_to_transform"] == [1]
    losses = [
        [json.loads(r)["loss"] for r in (tmp_path / d / "log.jsonl").read_text().splitlines()]
        for d in ("plain", "cached")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert not (tmp_path / "cached" / "adapter.upper-layers").exists()
    result = json.loads((tmp_path / "cached" / "train_config.json").read_text())["result"]
    assert result["frozen_layers"]["layers"] == 1 and result["frozen_layers"]["tokens_computed"] > 0


def test_frozen_states_are_computed_once_and_match_the_full_model(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from metaconf.training.frozen import FrozenLowerLayers, split_model

    full = AutoModelForCausalLM.from_pretrained(tiny_model)

    def full_hidden(s):
        return reference(torch.tensor([s]), output_hidden_states=True).hidden_states[1][0]

    reference = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = [[1, 20, 300, 4000, 5], [7, 8, 9]]
    with torch.no_grad():
        hidden = [full_hidden(s) for s in ids]
        logits = full(torch.tensor([ids[0]])).logits
    lower, upper = split_model(full, 1)
    shared: dict = {}
    frozen = FrozenLowerLayers(lower, 1, pad_token_id=0, states=shared)
    states = frozen.hidden(ids)  # one padded batch of two lengths
    for got, want in zip(states, hidden):
        assert torch.allclose(got, want, atol=1e-5)
    assert frozen.computed_tokens == 8
    again = FrozenLowerLayers(lower, 1, pad_token_id=0, states=shared)  # a later training of the same model
    again.hidden([ids[1], ids[0]])
    assert again.computed_tokens == 0
    # Precomputing the new ones shares prefixes: [1, 20, 300] is run once for itself and [1, 20, 300, 9, 9]
    more = [[1, 20, 300, 9, 9], [1, 20, 300], [7, 8, 9, 10], [1, 20, 300, 4000, 5]]
    with torch.no_grad():
        want = [full_hidden(s) for s in more]
    again.precompute(more)
    assert again.computed_tokens == 3 + 2 + 4
    for s, w in zip(more, want):
        assert torch.allclose(shared[tuple(s)], w, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(upper(inputs_embeds=states[0][None]).logits, logits, atol=1e-5)


def test_cache_checks_the_split_model_against_the_full_one(tiny_model, tmp_path, monkeypatch):
    """A split that does not reproduce the full model's logits is refused; one that does (Gemma, whose embedding
    scale lives in the embedding module, not in the model's forward) trains the upper layers only."""
    import torch
    from transformers import AutoTokenizer, GemmaConfig, GemmaForCausalLM

    import metaconf.training.frozen as frozen
    from metaconf.errors import ConfigError, MetaconfError

    tok = AutoTokenizer.from_pretrained(tiny_model)
    gemma = tmp_path / "gemma"
    GemmaForCausalLM(
        GemmaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        )
    ).save_pretrained(gemma)
    tok.save_pretrained(gemma)
    train = write_train_file(tmp_path / "train.jsonl", n=4)
    config = LoraTrainConfig(**FAST, top_layers=1, max_steps=1, cache_frozen_layers=True)
    trainer = build_trainer(LoraJob(train, tmp_path / "out", gemma, config))
    assert trainer.frozen_split == 1 and trainer.model.config.num_hidden_layers == 1

    split_model = frozen.split_model

    def off_by_a_little(model, split):
        lower, upper = split_model(model, split)
        with torch.no_grad():
            upper.get_decoder().norm.weight.mul_(1.01)
        return lower, upper

    monkeypatch.setattr(frozen, "split_model", off_by_a_little)
    with pytest.raises(MetaconfError, match="set cache_frozen_layers: false"):
        build_trainer(LoraJob(train, tmp_path / "out", tiny_model, config))
    with pytest.raises(ConfigError, match="upper layers only"):
        build_trainer(LoraJob(train, tmp_path / "out", tiny_model, config.model_copy(update={"top_layers": None})))


def test_isolated_conditions_train_the_same_adapters_and_share_their_lower_layer_states(tiny_model, tmp_path):
    """train_conditions(isolate=True): each condition in a child process, the same adapters as in this process; the
    states the first child cached reach the second (which then computes none) and the shared file goes at the end."""
    import torch

    from metaconf.training.lora import FROZEN_STATES, _train_in_child

    config = LoraTrainConfig(**FAST, top_layers=1, max_steps=2, cache_frozen_layers=True)
    adapters = {}
    for name, isolate in (("here", False), ("apart", True)):
        run = tmp_path / name
        write_train_file(run / "training_sets" / "single" / "train.jsonl", n=6)
        sets = {"single": "single", "again": "single"}  # two conditions, one set: the same prompts
        adapters[name] = train_conditions(
            run, tiny_model, config, ["single", "again"], training_sets=sets, isolate=isolate
        )
        assert not (run / "training" / FROZEN_STATES).exists()
    for cond in ("single", "again"):
        want, got = _adapter_weights(adapters["here"][cond]), _adapter_weights(adapters["apart"][cond])
        assert sorted(got) == sorted(want)
        assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want), cond
    # the hand-over itself, in this process: the second training of the same prompts adds no state, so no rewrite
    run, shared = tmp_path / "apart", tmp_path / "states.pt"
    options = {"dtype": "auto", "redo": True, "objective": "sft"}
    train = run / "training_sets" / "single" / "train.jsonl"
    _train_in_child((train, tmp_path / "one", tiny_model, config), options, shared)
    written = shared.stat().st_mtime_ns
    states = torch.load(shared, weights_only=True)
    assert len(states) == 1 and len(next(iter(states.values()))) > 0
    _train_in_child((train, tmp_path / "two", tiny_model, config), options, shared)
    assert shared.stat().st_mtime_ns == written
