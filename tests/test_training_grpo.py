"""The grpo objective: its rewards on scripted replies, its prompts from a training set, guided generation, and a
short GRPO run on the tiny model."""

from __future__ import annotations

import json
import re

import pytest

from helpers.training_data import grpo_question, write_grpo_set
from metaconf.data.schema import Question
from metaconf.errors import DataError
from metaconf.tasks.task import get_task
from metaconf.training.grpo import (
    dataset_rows,
    load_grpo_prompts,
    pairwise_choice_reward,
    reply_limit,
    single_calibration_reward,
)
from metaconf.training.rewards import brier_reward, pairwise_reward, single_reward

SINGLE, PAIRWISE = get_task("single"), get_task("pairwise")
Q = Question.from_dict(grpo_question(0))  # gold: B
Q1, Q2 = Question.from_dict(grpo_question(1)), Question.from_dict(grpo_question(2))


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Answer: B\nConfidence: 80%", 1 - (0.8 - 1) ** 2),  # right and sure: 0.96
        ("Answer: B\nConfidence: 20%", 1 - (0.2 - 1) ** 2),  # right but unsure: 0.36
        ("Answer: A\nConfidence: 80%", 0 - (0.8 - 0) ** 2),  # wrong and sure: -0.64
        ("Answer: A\nConfidence: 0%", 0.0),  # wrong and says so: 0
        ("Answer: B\nConfidence: 100%", 1.0),
        ("Answer: B", 0.0),  # no confidence: unreadable
        ("I think it is 8.", 0.0),  # no answer, no confidence
        ("", 0.0),
    ],
)
def test_single_reward_is_correct_minus_brier(reply, expected):
    assert single_reward(reply, Q, SINGLE) == pytest.approx(expected)


def test_brier_reward_orders_right_above_wrong_and_is_proper():
    assert min(brier_reward(True, p / 10) for p in range(11)) >= max(brier_reward(False, p / 10) for p in range(11))
    # the expected reward of stating p when the answer is right with probability 0.7 peaks at p = 0.7
    expected = {p / 100: 0.7 * brier_reward(True, p / 100) + 0.3 * brier_reward(False, p / 100) for p in range(101)}
    assert max(expected, key=expected.get) == pytest.approx(0.7)


def test_pairwise_reward_pays_for_the_better_question_only():
    right = "Choice: Question 1\nAnswer 1: B\nAnswer 2: A"
    wrong = "Choice: Question 2\nAnswer 1: B\nAnswer 2: A"
    assert PAIRWISE.parse(right, Q1, Q2).parsed  # the scripted replies are in the bundled template's format
    assert pairwise_reward(right, (Q1, Q2), better=1, task=PAIRWISE) == 1.0
    assert pairwise_reward(wrong, (Q1, Q2), better=1, task=PAIRWISE) == 0.0
    assert pairwise_reward(wrong, (Q1, Q2), better=2, task=PAIRWISE) == 1.0
    assert pairwise_reward("Choice: Question 1", (Q1, Q2), better=1, task=PAIRWISE) == 0.0  # answers missing
    assert pairwise_reward("no idea", (Q1, Q2), better=1, task=PAIRWISE) == 0.0


def test_prompts_pair_train_and_examples_lines(tmp_path):
    train = write_grpo_set(tmp_path / "set", n_single=3, n_pairs=2)
    prompts = load_grpo_prompts(train)
    assert [p.task for p in prompts] == ["single"] * 3 + ["pairwise"] * 2
    chats = [json.loads(line)["messages"] for line in train.read_text().splitlines()]
    assert [p.messages for p in prompts] == [c[:-1] for c in chats]  # the reply is not in the prompt
    assert prompts[0].questions[0].answers == ["B"] and prompts[3].better == 1

    # a tied pair has no right choice: left out
    lines = (tmp_path / "set" / "examples.jsonl").read_text().splitlines()
    tied = json.loads(lines[3]) | {"better": None}
    (tmp_path / "set" / "examples.jsonl").write_text("\n".join([*lines[:3], json.dumps(tied), lines[4]]) + "\n")
    assert [p.task for p in load_grpo_prompts(train)] == ["single"] * 3 + ["pairwise"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda lines: lines[:-1], "4 lines for 5 examples"),
        (lambda lines: [json.dumps(json.loads(lines[0]) | {"question": "x"}), *lines[1:]], ":1: field 'question'"),
        (lambda lines: [*lines[:4], json.dumps(json.loads(lines[4]) | {"better": 3})], ":5: field 'better'"),
        (lambda lines: [json.dumps(json.loads(lines[0]) | {"template": None}), *lines[1:]], ":1: field 'template'"),
        (lambda lines: [json.dumps(json.loads(lines[0]) | {"task": "x"}), *lines[1:]], ":1: field 'task'"),
    ],
)
def test_bad_examples_file_is_one_line_naming_it(tmp_path, change, message):
    train = write_grpo_set(tmp_path / "set", n_single=3, n_pairs=2)
    examples = tmp_path / "set" / "examples.jsonl"
    examples.write_text("\n".join(change(examples.read_text().splitlines())) + "\n")
    with pytest.raises(DataError, match=re.escape(message)) as info:
        load_grpo_prompts(train)
    assert str(examples) in str(info.value) and "\n" not in str(info.value)


def test_missing_examples_file_is_refused(tmp_path):
    train = write_grpo_set(tmp_path / "set")
    (tmp_path / "set" / "examples.jsonl").unlink()
    with pytest.raises(DataError, match="examples.jsonl: not found"):
        load_grpo_prompts(train)


def test_reward_functions_score_each_task_and_skip_the_other(tmp_path):
    prompts = load_grpo_prompts(write_grpo_set(tmp_path / "set", n_single=1, n_pairs=1))
    rows = dataset_rows(prompts, reply_limit(prompts))
    assert re.fullmatch(rows[0]["guide"], "Answer: B\nConfidence: 80%")
    completions = [
        [{"role": "assistant", "content": "Answer: B\nConfidence: 80%"}],
        [{"role": "assistant", "content": "Choice: Question 2\nAnswer 1: B\nAnswer 2: B"}],
    ]
    columns = {k: [r[k] for r in rows] for k in ("task", "template", "questions", "better")}
    assert single_calibration_reward(completions, **columns) == [pytest.approx(0.96), None]
    assert pairwise_choice_reward(completions, **columns) == [None, 0.0]  # the pair's better question is 1


def test_guide_processor_keeps_generate_inside_each_rows_guide(tiny_model):
    """Random weights would never write the format by themselves: every reply matches its row's guide."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

    from metaconf.engines.guidance import Guidance
    from metaconf.training.grpo import guide_processor

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    limit = max(SINGLE.token_limit(guided=True), PAIRWISE.token_limit(guided=True))
    guides = [SINGLE.guide(Q, max_new_tokens=limit), PAIRWISE.guide(Q1, Q2, max_new_tokens=limit)]
    prompts = [SINGLE.messages(Q), PAIRWISE.messages(Q1, Q2)]
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
    eos = [tokenizer.eos_token_id]
    rows = Guidance(tokenizer, model.get_output_embeddings().weight.shape[0], eos).matchers(guides)
    torch.manual_seed(0)
    out = model.generate(
        **batch,
        do_sample=True,
        max_new_tokens=limit + 1,
        logits_processor=LogitsProcessorList([guide_processor(rows, eos)]),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
    )
    replies = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert all(re.fullmatch(g, r) for g, r in zip(guides, replies)), replies
    assert SINGLE.parse(replies[0], Q).parsed
    assert PAIRWISE.parse(replies[1], Q1, Q2).parsed


FAST = dict(rank=4, alpha=8.0, dropout=0.0, batch_size=2, logging_steps=1, learning_rate=2e-2, max_length=512)


def _lora_b(adapter_dir):
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(adapter_dir / "adapter_model.safetensors").items() if "lora_B" in k}


def test_grpo_condition_trains_changes_the_adapter_and_records_its_objective(tiny_model, tmp_path):
    from metaconf.conditions import Condition
    from metaconf.training import LoraTrainConfig, train_conditions

    run = tmp_path / "run"
    write_grpo_set(run / "training_sets" / "multitask", n_single=2, n_pairs=2)
    record = Condition(name="rl", training_set="multitask", objective="grpo")
    config = LoraTrainConfig(**FAST, max_steps=2, grpo_generations=2)
    (adapter,) = train_conditions(run, tiny_model, config, [record]).values()
    assert any(v.abs().sum() > 0 for v in _lora_b(adapter).values())  # LoRA B starts at zero: GRPO moved it
    info = json.loads((run / "training" / "rl" / "train_config.json").read_text())
    assert info["objective"] == "grpo" and info["result"]["global_step"] == 2
    assert info["objective_inputs"]["generations"] == 2 and len(info["objective_inputs"]["examples_sha256"]) == 64
    assert json.loads((adapter / "metaconf.json").read_text())["objective"] == "grpo"
    rows = [json.loads(line) for line in (run / "training" / "rl" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(-1 <= r["reward"] <= 1 for r in rows)


def test_interrupted_grpo_resumes_from_its_checkpoint(tiny_model, tmp_path):
    from transformers import TrainerCallback

    from metaconf.training import LoraTrainConfig, train_lora

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt

    train = write_grpo_set(tmp_path / "set", n_single=4, n_pairs=0)
    config = LoraTrainConfig(**FAST, max_steps=3, save_steps=1, grpo_generations=2)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        train_lora(train, out, tiny_model, config, callbacks=[Crash()], objective="grpo")
    assert (out / "checkpoints" / "checkpoint-1").is_dir() and not (out / "DONE").exists()
    train_lora(train, out, tiny_model, config, objective="grpo")
    info = json.loads((out / "train_config.json").read_text())
    assert info["result"]["resumed_from_step"] == 1 and info["result"]["global_step"] == 3
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    # finished: the same settings reuse it, another k retrains (the grpo settings are in its fingerprint)
    done = (out / "DONE").read_text()
    train_lora(train, out, tiny_model, config, objective="grpo")
    assert (out / "DONE").read_text() == done
    from metaconf.training.lora import LoraJob
    from metaconf.training.objectives import objective_inputs

    other = config.model_copy(update={"grpo_generations": 3})
    inputs = [objective_inputs(LoraJob(train, out, tiny_model, c, objective="grpo")) for c in (config, other)]
    assert inputs[0]["name"] == "grpo" and inputs[0] != inputs[1]


@pytest.mark.slow  # two fresh interpreters importing torch + transformers + TRL, then sampling and training
def test_grpo_trains_on_two_processes(tmp_path, tiny_model):
    """torchrun, two CPU ranks (gloo DDP): each rank samples its own prompts' replies, gradients are all-reduced,
    the adapter is written once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    worker = Path(__file__).parent / "fixtures" / "training" / "ddp_worker.py"
    train = write_grpo_set(tmp_path / "set", n_single=6, n_pairs=2)
    out, dump = tmp_path / "out", tmp_path / "dump"
    dump.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker)]
    proc = subprocess.run(
        [*run, str(tiny_model), str(train), str(out), str(dump), "grpo"], env=env, capture_output=True, text=True
    )
    errors = [line for line in proc.stderr.splitlines() if "Error" in line or "error" in line]
    assert proc.returncode == 0, "\n".join(errors[:20]) + proc.stderr[-2000:]
    infos = [json.loads((dump / f"info-rank{r}.json").read_text()) for r in (0, 1)]
    # 8 prompts, 2 per rank and step (4 replies each): 2 steps, every rank on its own share
    assert [(i["world_size"], i["global_step"], i["backend"]) for i in infos] == [(2, 2, "gloo")] * 2
    w0, w1 = (torch.load(dump / f"weights-rank{r}.pt") for r in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)  # synchronised
    assert any(k.endswith("lora_B.default.weight") and w0[k].abs().sum() > 0 for k in w0)  # and trained
    assert not (dump / "saves-rank1.txt").exists()  # written by rank 0 only
    info = json.loads((out / "train_config.json").read_text())
    assert info["world_size"] == 2 and info["objective"] == "grpo" and (out / "DONE").is_file()


@pytest.mark.slow  # the embedded 135M model samples 2 replies to each of 2 prompts: 5.6 min at load 14 on 2 cores
def test_a_few_grpo_steps_on_the_embedded_model(tmp_path):
    """The real model under guidance: every reply is readable (a reward of exactly 0 would be an unreadable one or
    a wrong answer at 0%), the rewards are RLCR's, and the adapter moves."""
    from metaconf.training import LoraTrainConfig, train_lora

    train = write_grpo_set(tmp_path / "set", n_single=1, n_pairs=1)
    config = LoraTrainConfig(
        rank=8, alpha=16.0, top_layers=4, batch_size=1, max_steps=3, logging_steps=1, grpo_generations=2
    )
    adapter = train_lora(train, tmp_path / "out", "embedded", config, objective="grpo")
    assert any(v.abs().sum() > 0 for v in _lora_b(adapter).values())
    rows = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(-1 <= r["reward"] <= 1 for r in rows)
    info = json.loads((tmp_path / "out" / "train_config.json").read_text())
    assert info["objective"] == "grpo" and info["result"]["global_step"] == 3


def test_a_built_training_set_gives_grpo_prompts_whose_guides_accept_its_replies(tmp_path):
    """build-data's examples.jsonl carries what re-asking each prompt needs: the questions, the template and, for
    pairs, the better question; each training reply (written in that template) fits the prompt's guide."""
    from metaconf.targets import CalibrationMap, TargetsConfig, TrainingSetSpec, build_training_set
    from metaconf.targets.export import write_training_set
    from test_targets_examples import make_data

    records, questions = make_data()
    for r in records:  # samples: the modal answer 3 times in 4, so every question's sampled accuracy is 3/4 or 0
        r.answers = [r.modal_answer] * 3 + [None]
    spec = TrainingSetSpec(name="multi", task="multitask", size=12, single_share=0.5)
    examples = build_training_set(spec, records, questions, CalibrationMap.fit(records), TargetsConfig(seed=1))
    write_training_set(tmp_path / "multi", "multi", examples)
    prompts = load_grpo_prompts(tmp_path / "multi" / "train.jsonl")
    kept = [e for e in examples if e.task == "single" or e.meta["better"] is not None]
    assert len(prompts) == len(kept) and {p.task for p in prompts} == {"single", "pairwise"}
    rows = dataset_rows(prompts, reply_limit(prompts))
    for example, prompt, row in zip(kept, prompts, rows):
        assert prompt.messages == example.messages[:-1] and prompt.template == example.task
        ids = [q.id for q in prompt.questions]
        assert ids == ([example.meta["id"]] if example.task == "single" else [example.meta["id1"], example.meta["id2"]])
        assert prompt.questions[0] == questions[ids[0]]  # gold answers included
        assert re.fullmatch(row["guide"], example.messages[-1]["content"]), example.messages[-1]["content"]


@pytest.mark.slow  # trains one sft and one grpo adapter on the tiny model and evaluates three conditions
def test_a_grpo_condition_lands_in_a_study(tmp_path, tiny_model):
    """`objective: grpo` in a study config: trained by GRPO (its record says so), evaluated on every task and dataset,
    in metrics.json with its objective, and compared with the sft condition on the same training set."""
    from metaconf.study.config import parse_config
    from test_study import SMALL, TinyModelStudy

    raw = {
        **SMALL,
        "model": {"engine": "hf", "name": str(tiny_model)},
        "targets": {"n_samples": 3, "max_new_tokens": 24, "sets": [{"name": "multitask", "task": "multitask"}]},
        "conditions": [
            "base",
            "multitask",
            {"name": "multitask_grpo", "training_set": "multitask", "objective": "grpo"},
        ],
        "training": {
            "lora": {
                "rank": 2,
                "alpha": 4,
                "max_steps": 2,
                "batch_size": 2,
                "top_layers": 1,
                "max_length": 1024,
                "logging_steps": 1,
            }
        },
        "evaluation": {"pairs_per_dataset": 3, "consistency_samples": 2, "n_boot": 50},
        "baselines": [],
    }
    run_dir = tmp_path / "run"
    TinyModelStudy(parse_config(raw), run_dir, quiet=True).run()
    info = json.loads((run_dir / "training" / "multitask_grpo" / "train_config.json").read_text())
    assert info["objective"] == "grpo" and info["result"]["global_step"] == 2
    assert all("reward" in json.loads(line) for line in (run_dir / "training" / "multitask_grpo" / "log.jsonl").open())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["objectives"] == {"multitask": "sft", "multitask_grpo": "grpo"}
    assert {(r["task"], r["dataset"]) for r in metrics["rows"] if r["condition"] == "multitask_grpo"} == {
        (t, d) for t in ("single", "pairwise") for d in ("mmlu_pro", "gsm8k", "truthfulqa")
    }
    assert any(c["condition"] == "multitask_grpo" for c in metrics["comparisons"])  # against the base model
    assert "multitask\\_grpo" in (run_dir / "report.md").read_text()


def test_the_objectives_example_compares_each_objective_with_sft_on_the_same_set():
    from pathlib import Path

    from metaconf.study.config import load_config

    config = load_config(Path(__file__).parents[1] / "examples" / "objectives.yaml")
    assert {(c.training_set, c.objective) for c in config.conditions if c.trained} == {
        (s, o) for s in ("single", "multitask") for o in ("sft", "brier", "grpo")
    }
    contrasts = set(config.contrasts())
    assert {("single_grpo", "single"), ("multitask_grpo", "multitask"), ("single_brier", "single")} <= contrasts
