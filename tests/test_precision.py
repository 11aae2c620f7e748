"""bf16 where the hardware has bf16 matrix units: the run-time choice, where it is recorded, the engine and LoRA
training in bf16 on the tiny random Llama (correct anywhere; fast only on AMX / AVX512-BF16 CPUs and GPUs)."""

from __future__ import annotations

import json
import math

import pytest

import metaconf.precision as precision
from metaconf.errors import ConfigError
from metaconf.precision import choose_dtype, cpu_bf16_unit, parse_cpu_flags

AMX = {"fpu", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
AVX512_BF16 = {"fpu", "avx2", "avx512f", "avx512_bf16"}  # e.g. AMD Zen 4, Intel Cooper Lake
AVX512 = {"fpu", "avx2", "avx512f", "avx512bw"}  # Skylake-X: AVX-512 but no bf16 instructions
AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}
PROMPT = [{"role": "user", "content": "Name a colour of the sky on a clear day, and say why it has that colour."}]


@pytest.mark.parametrize(
    "flags, dtype, unit",
    [
        (AMX, "bfloat16", "amx_bf16"),
        (AVX512_BF16, "bfloat16", "avx512_bf16"),
        (AVX512, "float32", None),
        (AVX2, "float32", None),
        (set(), "float32", None),
    ],
)
def test_auto_picks_bf16_only_on_cpus_with_bf16_units(flags, dtype, unit):
    choice = choose_dtype("auto", device="cpu", flags=flags)
    assert (choice.dtype, choice.requested, choice.device) == (dtype, "auto", "cpu")
    assert cpu_bf16_unit(flags) == unit
    assert (unit or "no bf16 matrix units") in choice.reason


@pytest.mark.parametrize("cuda_bf16, dtype", [(True, "bfloat16"), (False, "float16")])
def test_auto_on_gpus(cuda_bf16, dtype):
    choice = choose_dtype("auto", device="cuda:0", flags=AVX2, cuda_bf16=cuda_bf16)
    assert (choice.dtype, choice.device) == (dtype, "cuda")


def test_a_configured_dtype_is_kept_and_a_bad_one_refused():
    assert choose_dtype("float32", device="cpu", flags=AMX).dtype == "float32"
    assert choose_dtype("bfloat16", device="cpu", flags=AVX2).reason == "as configured"
    with pytest.raises(ConfigError, match="bf17"):
        choose_dtype("bf17", device="cpu", flags=AVX2)


def test_cpu_flags_are_read_from_cpuinfo_text():
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\nprocessor\t: 1\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd sve bf16\nCPU implementer\t: 0x41\n"
    assert parse_cpu_flags(x86) == {"fpu", "avx2", "amx_bf16", "avx512_bf16"}
    assert parse_cpu_flags(arm) == {"fp", "asimd", "sve", "bf16"}
    assert cpu_bf16_unit(parse_cpu_flags(arm)) is None  # ARM bf16 is left on fp32 (not measured)
    assert parse_cpu_flags("") == frozenset()


def test_this_machines_flags_decide_auto(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(AMX))
    assert choose_dtype("auto", device="cpu").dtype == "bfloat16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(AVX2))
    assert choose_dtype("auto", device="cpu").dtype == "float32"


def test_announced_once(capsys):
    choice = precision.DtypeChoice("bfloat16", "auto", "cpu", "auto: the CPU has test_unit")
    precision.announce(choice)
    precision.announce(choice)
    # the same resolved dtype passed on (e.g. study -> engine) is not announced a second time
    precision.announce(precision.DtypeChoice("bfloat16", "bfloat16", "cpu", "as configured"))
    err = capsys.readouterr().err
    assert err.count("test_unit") == 1 and "as configured" not in err


def test_study_records_the_choice_in_the_run_folder(tmp_path, monkeypatch):
    from helpers.study import SMALL, ScriptedStudy
    from metaconf.study.config import parse_config

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(AMX))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    ScriptedStudy(parse_config({**SMALL, "conditions": ["base"]}), tmp_path / "run", quiet=True).run(("data",))
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["dtype"] == {
        "dtype": "bfloat16",
        "requested": "auto",
        "device": "cpu",
        "reason": "auto: the CPU has amx_bf16",
        "cpu_bf16_flags": ["amx_bf16", "avx512_bf16"],
    }
    config = parse_config({**SMALL, "model": {"engine": "embedded", "dtype": "float32"}})
    assert ScriptedStudy(config, tmp_path / "run2", quiet=True).dtype().dtype == "float32"
    with pytest.raises(ConfigError, match="model.dtype"):
        parse_config({**SMALL, "model": {"engine": "embedded", "options": {"dtype": "bfloat16"}}})
    with pytest.raises(ConfigError, match="model.dtype"):
        parse_config({**SMALL, "model": {"engine": "embedded", "dtype": "bf16"}})


# -- the engine ---------------------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_bf16_logits_agree_with_fp32_within_bf16_tolerance(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_model).apply_chat_template(PROMPT, add_generation_prompt=True)
    ids = torch.tensor([list(ids["input_ids"] if hasattr(ids, "keys") else ids)])
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)(ids).logits
    assert got.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits (relative step 2^-8 = 0.4%); two layers of rounding stay within a few steps
    scale = float(want.abs().max())
    gap = float((got.float() - want).abs().max())
    assert 0 < gap <= 0.03 * scale, (gap, scale)
    # the next-token distributions agree too
    p, q = torch.log_softmax(want[0, -1], -1), torch.log_softmax(got[0, -1].float(), -1)
    assert float((p.exp() * (p - q)).sum()) < 1e-3


def test_engine_runs_in_bf16_and_keeps_its_samples_apart_from_fp32(tiny_model, tmp_path, monkeypatch):
    import metaconf.engines.hf as hf
    from metaconf.engines import kv_cache
    from metaconf.engines.store import CompletionStore

    store = CompletionStore(tmp_path / "c.sqlite")
    fp32 = hf.HFEngine(tiny_model, store=store, quiet=True, dtype="float32")
    bf16 = hf.HFEngine(tiny_model, store=store, quiet=True, dtype="bfloat16")
    assert fp32.model_identity.endswith(fp32._fingerprint)  # fp32 keys are the ones stored before dtypes counted
    assert bf16.model_identity == fp32.model_identity + "#bfloat16"
    assert hf.HFEngine(tiny_model, quiet=True, dtype=torch.bfloat16).model_identity == bf16.model_identity
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}

    caches = []
    new_cache = kv_cache.new_cache
    monkeypatch.setattr(kv_cache, "new_cache", lambda *a, **k: caches.append(new_cache(*a, **k)) or caches[-1])
    kw = dict(n=3, temperature=1.0, max_new_tokens=6, seed=1, logprobs=2)
    a = fp32.generate([PROMPT], **kw)[0]
    b = bf16.generate([PROMPT], **kw)[0]
    assert bf16.forward_calls > 0  # the fp32 samples in the store were not served to the bf16 engine
    assert not any(c.cached for c in b) and len(b) == 3
    assert caches[-1].layers[0].keys.dtype == torch.bfloat16  # the KV cache is bf16
    for c in b:  # sampled from fp32 log-probabilities of bf16 logits
        assert c.completion_tokens == len(c.logprobs) >= 1
        assert all(math.isfinite(t.logprob) and t.logprob <= 0 for t in c.logprobs)
    assert store.count() == 6
    again = bf16.generate([PROMPT], **kw)[0]
    assert [c.text for c in again] == [c.text for c in b] and all(c.cached for c in again)
    assert fp32.generate([PROMPT], **kw)[0][0].text == a[0].text


# -- LoRA training ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["weights", "autocast"])
@pytest.mark.parametrize("cached", [False, True])
def test_lora_trains_in_both_bf16_modes(tiny_model, tmp_path, mode, cached):
    pytest.importorskip("trl")
    from helpers.training_data import write_train_file
    from metaconf.training import LoraTrainConfig, train_lora
    from metaconf.training.lora import LoraJob, build_trainer

    train = write_train_file(tmp_path / "train.jsonl", n=8)
    config = LoraTrainConfig(
        rank=4,
        alpha=8.0,
        dropout=0.0,
        batch_size=4,
        logging_steps=1,
        learning_rate=5e-3,
        max_length=256,
        max_steps=2,
        bf16_mode=mode,
        top_layers=1,
        cache_frozen_layers=cached,
    )
    trainer = build_trainer(LoraJob(train, tmp_path / "t", tiny_model, config, dtype="bfloat16"))
    lora = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = [p for n, p in trainer.model.named_parameters() if not p.requires_grad and p.dim() == 2]
    assert lora and all(p.dtype == torch.float32 for p in lora.values())  # LoRA weights (and AdamW state) fp32
    assert {p.dtype for p in frozen} == {torch.bfloat16 if mode == "weights" else torch.float32}
    assert trainer.args.bf16 == (mode == "autocast")
    if cached:
        assert next(iter(trainer.data_collator.frozen.states.values())).dtype == torch.bfloat16

    out = tmp_path / "out"
    train_lora(train, out, tiny_model, config, dtype="bfloat16")
    losses = [json.loads(r)["loss"] for r in (out / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    info = json.loads((out / "train_config.json").read_text())
    assert info["device"]["precision"] == "bf16" and info["device"]["bf16_mode"] == mode
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(out / "adapter" / "adapter_model.safetensors")).values()} == {torch.float32}


def test_training_precision_follows_model_dtype_and_counts_in_the_fingerprint():
    from metaconf.training import LoraTrainConfig
    from metaconf.training.lora import _device_settings, _fingerprint

    auto = LoraTrainConfig()
    assert _device_settings(auto, "bfloat16")["precision"] == "bf16"
    assert _device_settings(auto, "float32")["precision"] == "fp32"
    assert _device_settings(auto.model_copy(update={"precision": "fp32"}), "bfloat16")["precision"] == "fp32"
    fps = {
        _fingerprint(c, "m", "sha", _device_settings(c, d))
        for c, d in [
            (auto, "float32"),
            (auto, "bfloat16"),
            (auto.model_copy(update={"bf16_mode": "autocast"}), "bfloat16"),
        ]
    }
    assert len(fps) == 3
    # fp32 runs keep the fingerprints they had before bf16 existed (finished adapters stay reused)
    assert auto.model_copy(update={"bf16_mode": "autocast"}).fingerprint() == auto.fingerprint()


def test_flags_can_be_pinned_by_environment(monkeypatch):
    monkeypatch.setenv(precision.FLAGS_ENV, "avx2 amx_bf16")
    precision.cpu_flags.cache_clear()
    try:
        assert precision.cpu_flags() == {"avx2", "amx_bf16"}
        assert choose_dtype("auto", device="cpu").dtype == "bfloat16"
    finally:
        monkeypatch.undo()
        precision.cpu_flags.cache_clear()
    assert choose_dtype("auto", device="cpu").dtype == "float32"  # the suite's pin (conftest.py)


def test_one_vocabulary_for_engine_training_and_cache():
    """resolve_dtype is the one entry: names, torch dtypes and an already resolved choice (kept with its reason);
    the choice says itself in the Trainer's words and as a torch dtype."""
    from metaconf.errors import EngineError

    study = choose_dtype("auto", device="cpu", flags=AMX)
    assert precision.resolve_dtype(study) is study  # training keeps the study's reason, not "as configured"
    assert precision.resolve_dtype(torch.bfloat16, device="cpu") == choose_dtype("bfloat16", device="cpu")
    assert (
        precision.resolve_dtype(
            None,
            device="cpu",
        ).requested
        == "auto"
    )
    with pytest.raises(EngineError, match="hf: unknown dtype 'float7'"):
        precision.resolve_dtype("float7", device="cpu", engine="hf")
    assert (study.precision, study.torch) == ("bf16", torch.bfloat16)
    assert choose_dtype("float16", device="cpu").precision == "fp16"
    assert precision.run_record(None) is None
    assert precision.run_record(choose_dtype("float32", device="cuda", cuda_bf16=True)) == {
        "dtype": "float32",
        "requested": "float32",
        "device": "cuda",
        "reason": "as configured",
    }


def test_training_follows_the_studys_resolved_choice():
    from metaconf.training.config import LoraTrainConfig
    from metaconf.training.lora import _device_settings

    study = choose_dtype("auto", device="cpu", flags=AMX)
    settings = _device_settings(LoraTrainConfig(precision="auto"), study)
    assert (settings["precision"], settings["why"]) == ("bf16", "auto: the CPU has amx_bf16")
