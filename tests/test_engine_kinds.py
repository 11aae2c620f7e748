"""Engine kinds: the registry, the model config per kind (typed options), what each kind builds for a condition,
and the study's models asking capabilities instead of the engine's kind."""

from __future__ import annotations

import inspect
import json

import pytest

from helpers.study import SMALL
from metaconf.engines import KINDS, Adapter, Capabilities, EngineKind, engine_option_names, get_engine, register
from metaconf.engines.kinds import MODEL_KINDS, EmbeddedModel, HFModel, OpenAIModel, VLLMModel
from metaconf.engines.options import HFOptions, VLLMOptions
from metaconf.engines.scripted import ScriptedEngine
from metaconf.errors import ConfigError, EngineError
from metaconf.study.config import parse_config
from metaconf.study.models import StudyModels
from metaconf.study.runner import Study


class Recorder:
    """Stands for an engine class: records what the model config asked it to build."""

    built: list[dict] = []

    def __init__(self, **kw):
        Recorder.built.append(kw)
        self.kw = kw

    @classmethod
    def embedded(cls, **kw):
        return cls(preset="embedded", **kw)


@pytest.fixture
def recorded(monkeypatch):
    """Every study kind's engine class replaced by the Recorder (nothing loads)."""
    import metaconf.engines.kinds as kinds

    Recorder.built = []
    for name, kind in list(kinds.KINDS.items()):
        monkeypatch.setitem(kinds.KINDS, name, EngineKind(name, "scripted", "ScriptedEngine", kind.constructor))
    monkeypatch.setattr("metaconf.engines.scripted.ScriptedEngine", Recorder)
    return Recorder.built


def test_the_model_config_is_the_class_of_its_engine_and_dumps_what_was_written():
    config = parse_config({**SMALL, "model": {"engine": "vllm", "name": "m", "options": {"tensor_parallel_size": 2}}})
    assert isinstance(config.model, VLLMModel) and isinstance(config.model.options, VLLMOptions)
    assert config.model.options.tensor_parallel_size == 2 and config.model.options.batch_size == 256
    assert config.model_dump(mode="json")["model"]["options"] == {"tensor_parallel_size": 2}  # not every default
    assert isinstance(parse_config(SMALL).model, EmbeddedModel)
    assert parse_config(SMALL).model_dump()["model"] == {
        "engine": "embedded",
        "name": None,
        "base_url": None,
        "api_key_env": "OPENAI_API_KEY",
        "options": {},
        "dtype": "auto",
        "served_adapters": {},
        "local_path": None,
    }
    judged = parse_config(
        {
            **SMALL,
            "grading": {"method": "judge", "judge_model": {"engine": "openai", "name": "j", "base_url": "http://h/v1"}},
        }
    )
    assert isinstance(judged.grading.judge_model, OpenAIModel)


@pytest.mark.parametrize(
    "model, error",
    [
        ({"engine": "gpt"}, r"field 'model\.engine': Input should be 'embedded', 'hf', 'vllm' or 'openai'"),
        ({"engine": "hf"}, r"field 'model': Value error, engine 'hf' needs model\.name"),
        ({"engine": "openai", "name": "m"}, r"engine 'openai' needs model\.base_url"),
        (
            {"engine": "vllm", "name": "m", "options": {"tensor_parallel_size": 0}},
            r"field 'model\.options\.tensor_parallel_size': Input should be greater than or equal to 1",
        ),
        (
            {"engine": "hf", "name": "m", "options": {"tensor_parallel_size": 2}},
            r"field 'model\.options\.tensor_parallel_size': not an option of the hf engine \(options: device, ",
        ),
        ({"options": {"dtype": "float32"}}, r"model\.dtype, not model\.options\.dtype"),
    ],
)
def test_each_kind_checks_its_own_options(model, error):
    with pytest.raises(ConfigError, match=error):
        parse_config({**SMALL, "model": model}, source="X.yaml")


def test_each_kinds_options_are_its_engines_keywords():
    """The options model is the list of what the engine takes: no option the engine lacks, none it takes missing
    (besides what the study sets itself)."""
    set_by_study = {"self", "model", "adapter", "store", "quiet", "dtype", "shared_prefill", "base_url", "api_key_env"}
    for name, kind in MODEL_KINDS.items():
        if name == "vllm":  # takes **options, validated by VLLMOptions itself
            continue
        params = inspect.signature(KINDS[name].engine_class().__init__).parameters
        keywords = {p for p in params if p not in set_by_study}
        assert set(kind.option_names()) == keywords, name
    assert engine_option_names("embedded") == ["device", "max_batch_tokens", "merge_adapter", "share_prefix"]


def test_vllm_engine_validates_its_keyword_options():
    from metaconf.engines.vllm import VLLMEngine

    with pytest.raises(EngineError, match="vllm engine: option batch_size: Input should be greater than or equal"):
        VLLMEngine("org/model", batch_size=0)
    with pytest.raises(TypeError, match="unexpected option"):
        VLLMEngine("org/model", tensor_parralel_size=2)
    assert VLLMOptions.of("vllm", {"seed": "3"}).given() == {"seed": 3}
    assert HFOptions.of("hf", {}).given() == {}


def test_each_kind_builds_its_engine_for_the_base_model_and_for_an_adapter(recorded, tmp_path):
    adapter = Adapter("single", tmp_path / "adapter", "ft-single")
    EmbeddedModel(options={"max_batch_tokens": 64}).build("S", adapter, dtype="float32")
    assert recorded[-1] == {
        "preset": "embedded",
        "store": "S",
        "quiet": False,
        "adapter": adapter.path,
        "dtype": "float32",
        "max_batch_tokens": 64,
    }
    HFModel(name="m").build("S", None, dtype="bfloat16", max_adapter_rank=8)
    assert recorded[-1] == {"store": "S", "quiet": False, "model": "m", "adapter": None, "dtype": "bfloat16"}
    VLLMModel(name="m").build("S", adapter, dtype="float32", max_adapter_rank=16)
    assert recorded[-1]["max_lora_rank"] == 16 and recorded[-1]["adapter"] == adapter.path
    VLLMModel(name="m", options={"max_lora_rank": 64}).build("S", None, max_adapter_rank=16)
    assert recorded[-1]["max_lora_rank"] == 64  # the config's own wins
    OpenAIModel(name="m", base_url="http://h/v1", options={"send_seed": False}).build("S", adapter, dtype="float32")
    assert recorded[-1] == {
        "store": "S",
        "quiet": False,
        "base_url": "http://h/v1",
        "model": "ft-single",
        "api_key_env": "OPENAI_API_KEY",
        "send_seed": False,
    }


def test_study_models_ask_the_kind_not_its_name(recorded, tmp_path):
    raw = {
        **SMALL,
        "model": {
            "engine": "openai",
            "name": "m",
            "base_url": "http://h/v1",
            "served_adapters": {"single": "served-single"},
        },
    }
    models = StudyModels(parse_config(raw), tmp_path, lambda: "S", quiet=True)
    assert models.dtype() is None and models.run_info() == {"dtype": None} and models.model_label() == "m (openai)"
    assert models.adapter("base") is None
    assert models.adapter("single").served == "served-single" and models.adapter("pairwise").served == "pairwise"
    models.build("single")
    assert recorded[-1]["model"] == "served-single"
    hosted = parse_config({**raw, "training": {"backend": "hosted"}})
    (tmp_path / "training" / "multitask").mkdir(parents=True)
    (tmp_path / "training" / "multitask" / "hosted_job.json").write_text(json.dumps({"fine_tuned_model": "ft:x"}))
    assert StudyModels(hosted, tmp_path, lambda: "S").adapter("multitask").served == "ft:x"

    local = StudyModels(
        parse_config({**SMALL, "model": {"engine": "vllm", "name": "m"}, "training": {"lora": {"rank": 4}}}),
        tmp_path,
        lambda: "S",
        quiet=True,
    )
    assert local.dtype() is not None and local.model_path() == "m"
    local.build("pairwise")
    assert recorded[-1]["adapter"] == tmp_path / "training" / "pairwise" / "adapter"
    assert recorded[-1]["max_lora_rank"] == 4 and recorded[-1]["dtype"] == local.dtype().dtype


def test_capabilities_decide_the_shared_prefill_and_supports_guide(tmp_path):
    scripted = ScriptedEngine(["x"], quiet=True)
    assert scripted.capabilities == Capabilities() and scripted.supports_guide is False
    study = Study(parse_config(SMALL), tmp_path, quiet=True)
    assert study.models.shared_prefill(scripted) is None  # a scripted engine shares no prefill

    class Sharing(ScriptedEngine):
        @property
        def capabilities(self):
            return Capabilities(guide=True, shared_prefill=True)

    sharing = Sharing(["x"], quiet=True)
    assert sharing.supports_guide  # read from the capabilities
    assert study.models.shared_prefill(sharing) is None  # no adapter that leaves lower layers alone
    adapter = tmp_path / "training" / "single" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"layers_to_transform": [20, 21]}))
    for c in ("pairwise", "multitask"):
        (tmp_path / "training" / c / "adapter").mkdir(parents=True)
        (tmp_path / "training" / c / "adapter" / "adapter_config.json").write_text(
            json.dumps({"layers_to_transform": [18, 19, 20]})
        )
    assert study.models.shared_prefill(sharing).split == 18


def test_a_registered_kind_is_built_by_get_engine(monkeypatch):
    import metaconf.engines.kinds as kinds

    monkeypatch.setitem(kinds.KINDS, "echo", KINDS["scripted"])
    register(EngineKind("echo", "scripted", "ScriptedEngine"))
    engine = get_engine("echo", outputs=["hi"], name="echo", quiet=True)
    assert engine.generate([[{"role": "user", "content": "q"}]])[0][0].text == "hi"
