"""VLLMEngine without vLLM: the pure translation functions, and the engine over a stand-in `vllm` module whose
objects are shaped like vLLM's (RequestOutput / CompletionOutput / Logprob, LLM.chat, SamplingParams)."""

import json
import sys
import types
from dataclasses import dataclass, field

import pytest

from metaconf.engines import get_engine
from metaconf.engines.types import SamplingParams
from metaconf.engines.vllm import (
    VLLMEngine,
    adapter_rank,
    cpu_has_bf16,
    cpu_settings,
    import_vllm,
    llm_kwargs,
    sampling_kwargs,
    to_completion,
)
from metaconf.errors import EngineError


# -- objects shaped like vLLM's (vllm/outputs.py, vllm/logprobs.py) -------------------------------------------
@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list
    prompt_logprobs: None
    outputs: list
    finished: bool = True


@dataclass
class FakeSamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    stop: list = field(default_factory=list)
    logprobs: int | None = None
    structured_outputs: object = None


class FakeLLM:
    instances: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.chats = []
        FakeLLM.instances.append(self)

    def chat(self, messages, sampling_params, use_tqdm=True, lora_request=None):
        assert len(messages) == len(sampling_params)
        self.chats.append((messages, sampling_params, lora_request))
        outs = []
        for conv, sp in zip(messages, sampling_params):
            samples = []
            for k in range(sp.n):  # without a seed (CPU backend), the k-th of n samples
                words = [conv[-1]["content"], str(sp.seed % 1000) if sp.seed is not None else f"r{k}", "end"][
                    : sp.max_tokens
                ]
                ids = list(range(len(words)))
                lps = None
                if sp.logprobs is not None:
                    lps = [
                        {i: Logprob(-0.1, 1, w), 100 + i: Logprob(-2.5, 2, w + "?"), 200 + i: Logprob(-3.0, 3, "z")}
                        for i, w in enumerate(words)
                    ]
                finish = "length" if sp.max_tokens < 3 else "stop"
                samples.append(CompletionOutput(k, " ".join(words), ids, None, lps, finish))
            outs.append(RequestOutput("r", "", [1, 2, 3, 4], None, samples))
        return outs


@dataclass
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@pytest.fixture
def fake_vllm(monkeypatch):
    FakeLLM.instances = []
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = FakeSamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    for name, mod in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    return vllm


@pytest.fixture
def adapter(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 12, "lora_alpha": 24}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def msgs(text):
    return [{"role": "user", "content": text}]


# -- pure functions ------------------------------------------------------------------------------------------
def test_llm_kwargs_plain_and_with_adapter(adapter):
    assert llm_kwargs("m") == {
        "model": "m",
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "dtype": "auto",
        "seed": 0,
    }
    kw = llm_kwargs("m", adapter, tensor_parallel_size=2, max_model_len=4096, extra={"enforce_eager": True})
    assert kw["enable_lora"] is True and kw["max_lora_rank"] == 16  # rank 12 rounded up to a size vLLM allows
    assert kw["max_model_len"] == 4096 and kw["tensor_parallel_size"] == 2 and kw["enforce_eager"] is True


def test_adapter_rank_errors(tmp_path):
    with pytest.raises(EngineError, match="adapter_config.json: missing"):
        adapter_rank(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"r": "big"}')
    with pytest.raises(EngineError, match="field 'r'"):
        adapter_rank(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"r": 1024}')
    with pytest.raises(EngineError, match="rank 1024 is above"):
        llm_kwargs("m", tmp_path)


def test_sampling_kwargs():
    params = SamplingParams(n=4, temperature=0.7, top_p=0.95, max_new_tokens=32, stop=("\n",), seed=1, logprobs=5)
    assert sampling_kwargs(params, seed=2**40 + 3) == {
        "n": 1,
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 32,
        "seed": 3,
        "stop": ["\n"],
        "logprobs": 5,
    }
    plain = sampling_kwargs(SamplingParams(), seed=9, n=3)
    assert plain["n"] == 3 and "stop" not in plain and "logprobs" not in plain


def test_to_completion_with_logprobs_and_stop():
    out = RequestOutput(
        "r",
        "",
        [5, 6, 7],
        None,
        [
            CompletionOutput(
                0,
                "A. then more",
                [11, 12],
                None,
                [
                    {11: Logprob(-0.2, 1, "A"), 40: Logprob(-1.9, 2, "B"), 41: Logprob(-2.2, 3, "C")},
                    {12: Logprob(-4.0, 7, "."), 13: Logprob(-0.1, 1, ",")},
                ],
                "length",
            )
        ],
    )
    c = to_completion(out, SamplingParams(stop=(".",), logprobs=2))
    assert c.text == "A" and c.finish_reason == "stop"  # cut at a stop string: not a length stop
    assert c.prompt_tokens == 3 and c.completion_tokens == 2
    assert c.logprobs[0].token == "A" and c.logprobs[0].top == {"A": -0.2, "B": -1.9}
    assert c.logprobs[1].token == "." and c.logprobs[1].logprob == -4.0 and c.logprobs[1].top == {",": -0.1}
    plain = to_completion(out, SamplingParams())
    assert plain.logprobs is None and plain.finish_reason == "length" and plain.text == "A. then more"


# -- the engine over the stand-in module ---------------------------------------------------------------------
def test_missing_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(EngineError, match=r"pip install 'metaconf\[vllm\]'"):
        import_vllm()
    with pytest.raises(EngineError, match=r"metaconf\[vllm\]"):
        VLLMEngine("some/model")


def test_engine_generates_one_seeded_request_per_sample(fake_vllm, tmp_path):
    engine = VLLMEngine("org/model", tensor_parallel_size=2, quiet=True, store=tmp_path / "c.sqlite")
    llm = FakeLLM.instances[-1]
    assert llm.kwargs["model"] == "org/model" and llm.kwargs["tensor_parallel_size"] == 2
    out = engine.generate([msgs("a"), msgs("b")], n=3, max_new_tokens=8, seed=5, logprobs=1)
    assert [[c.text.split()[0] for c in row] for row in out] == [["a"] * 3, ["b"] * 3]
    convs, sps, lora = llm.chats[0]
    assert len(convs) == 6 and lora is None and all(sp.n == 1 and sp.logprobs == 1 for sp in sps)
    assert len({sp.seed for sp in sps}) == 6
    assert out[0][0].logprobs[0].top == {"a": -0.1}
    # asking for more samples later: only the new ones reach vLLM, with the seeds an n=5 run would use
    more = engine.generate([msgs("a")], n=5, max_new_tokens=8, seed=5, logprobs=1)
    assert [c.text for c in more[0][:3]] == [c.text for c in out[0]]
    assert len(llm.chats[1][0]) == 2
    fresh = VLLMEngine("org/model", quiet=True).generate([msgs("a")], n=5, max_new_tokens=8, seed=5, logprobs=1)
    assert [c.text for c in fresh[0]] == [c.text for c in more[0]]
    assert engine.model_identity == "vllm:org/model"


def test_engine_with_adapter_and_local_model(fake_vllm, adapter, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"w")
    engine = get_engine("vllm", model=str(model), adapter=str(adapter), quiet=True)
    assert isinstance(engine, VLLMEngine)
    assert engine.model_identity.startswith(f"vllm:{model}@") and engine.adapter_identity.startswith("adapter@")
    engine.generate([msgs("a")], n=1, max_new_tokens=2)
    llm = FakeLLM.instances[-1]
    assert llm.kwargs["enable_lora"] is True and llm.kwargs["max_lora_rank"] == 16
    lora = llm.chats[0][2]
    assert (lora.lora_name, lora.lora_path) == (adapter.parent.name, str(adapter)) and lora.lora_int_id >= 1
    assert engine.generate([msgs("b")], n=1, max_new_tokens=2)[0][0].finish_reason == "length"


def test_vllm_errors_become_one_line(fake_vllm):
    engine = VLLMEngine("org/model", quiet=True)

    def boom(*a, **k):
        raise ValueError("The decoder prompt (length 9000) is longer than the maximum model length of 4096.\nmore")

    engine.llm.chat = boom
    with pytest.raises(EngineError, match=r"^vllm: generation failed for org/model: The decoder prompt .*4096\.$"):
        engine.generate([msgs("a")])


# -- vLLM's CPU backend: no per-request seeds, fp32 on AVX2, guided decoding --------------------------------------
@dataclass
class FakeStructured:
    regex: str | None = None


@pytest.fixture
def cpu_vllm(fake_vllm, monkeypatch):
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: True)
    sp = types.ModuleType("vllm.sampling_params")
    sp.StructuredOutputsParams = FakeStructured
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    for name in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        monkeypatch.delenv(name, raising=False)
    return fake_vllm


def test_cpu_settings():
    assert cpu_settings({"dtype": "auto", "tensor_parallel_size": 1}, bf16=False) == {
        "dtype": "float32",
        "tensor_parallel_size": 1,
        "distributed_executor_backend": "uni",
    }
    assert cpu_settings({"dtype": "auto", "tensor_parallel_size": 1}, bf16=True)["dtype"] == "auto"
    assert cpu_settings({"dtype": "bfloat16", "tensor_parallel_size": 2}, bf16=False) == {
        "dtype": "bfloat16",
        "tensor_parallel_size": 2,
    }
    assert cpu_has_bf16("flags: fpu avx2 amx_bf16") and not cpu_has_bf16("flags: fpu avx2 fma")


def test_cpu_backend_sends_no_per_request_seed_and_records_it(cpu_vllm, tmp_path):
    import os

    engine = VLLMEngine("org/model", quiet=True, seed=7)
    llm = FakeLLM.instances[-1]
    assert llm.kwargs["seed"] == 7 and llm.kwargs["distributed_executor_backend"] == "uni"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1" and os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    out = engine.generate([msgs("a"), msgs("b")], n=3, max_new_tokens=8)
    assert [c.text for c in out[1]] == ["b r0 end", "b r1 end", "b r2 end"]
    convs, sps, _ = llm.chats[0]
    assert len(convs) == 2 and all(sp.n == 3 and sp.seed is None for sp in sps)  # one request per prompt
    assert engine.determinism["per_sample_seeds"] is False and engine.determinism["engine_seed"] == 7
    assert VLLMEngine("org/model", quiet=True, per_sample_seeds=True).per_sample_seeds  # forced on


def test_guide_becomes_a_structured_outputs_regex(cpu_vllm):
    engine = VLLMEngine("org/model", quiet=True)
    assert engine.supports_guide
    engine.generate([msgs("a"), msgs("b")], n=1, max_new_tokens=8, guide=[r"[AB]\. \d+%", None])
    sps = FakeLLM.instances[-1].chats[0][1]
    assert sps[0].structured_outputs == FakeStructured(regex=r"[AB]\. \d+%") and sps[1].structured_outputs is None


def test_engines_on_one_model_share_one_llm(fake_vllm, adapter):
    base = VLLMEngine("org/model", quiet=True, max_lora_rank=12)
    tuned = VLLMEngine("org/model", adapter=adapter, quiet=True, max_lora_rank=12)
    assert base.llm is tuned.llm and len(FakeLLM.instances) == 1
    assert base.llm.kwargs["enable_lora"] is True and base.llm.kwargs["max_lora_rank"] == 16
    assert VLLMEngine("org/other", quiet=True).llm is not base.llm
