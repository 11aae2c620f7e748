"""The brier objective on a tiny random Llama with the embedded model's tokenizer: its loss against a hand
computation, its gradient, its labels, and training that resumes."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("trl")

from helpers.training_data import write_labelled_sets  # noqa: E402
from metaconf.errors import DataError  # noqa: E402
from metaconf.training import LoraTrainConfig, train_lora  # noqa: E402
from metaconf.training.brier import (  # noqa: E402
    LEVELS,
    PAIRWISE,
    SINGLE,
    build_brier_trainer,
    choice_log_loss,
    expected_brier,
    nearest_level,
)
from metaconf.training.lora import LoraJob  # noqa: E402

FAST = dict(rank=4, alpha=8.0, dropout=0.0, batch_size=4, logging_steps=1, learning_rate=5e-3, max_length=256)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite(path, change):
    path.write_text("".join(json.dumps(change(row)) + "\n" for row in _rows(path)))


def _trainer(tiny_model, tmp_path, train, **settings):
    job = LoraJob(train, tmp_path / "out", tiny_model, LoraTrainConfig(**{**FAST, **settings}), objective="brier")
    return build_brier_trainer(job)


def _hand_loss(batch, logits, trainer):
    """The loss by its definition, one term at a time in plain Python."""
    level_ids, choice_ids = trainer.level_ids.tolist(), trainer.choice_ids.tolist()
    total, items = 0.0, 0
    for b in range(batch["labels"].shape[0]):
        labels, position = batch["labels"][b].tolist(), int(batch["score_position"][b])
        kind, y = int(batch["score_kind"][b]), float(batch["score_target"][b])
        for t in range(1, len(labels)):
            if labels[t] == -100:
                continue
            items += 1
            row = logits[b, t - 1].double()
            if t != position:
                total += float(-(row.log_softmax(-1)[labels[t]]))
            elif kind == SINGLE:
                weights = [math.exp(float(row[i])) for i in level_ids]
                total += sum(w / sum(weights) * (v / 100 - y) ** 2 for w, v in zip(weights, LEVELS))
            else:
                p1 = math.exp(float(row[choice_ids[0]])) / sum(math.exp(float(row[i])) for i in choice_ids)
                total += -math.log(p1 if y == 1.0 else 1 - p1)
    return total / items


def test_brier_loss_is_the_hand_computed_one(tiny_model, tmp_path):
    import torch

    run = write_labelled_sets(tmp_path / "run", n=12, sets=("multitask",))
    train = run / "training_sets" / "multitask" / "train.jsonl"
    trainer = _trainer(tiny_model, tmp_path, train)
    tokens = trainer.processing_class.convert_ids_to_tokens
    assert tokens(trainer.level_ids.tolist()) == [str(v)[0] for v in LEVELS]  # one digit token per level here
    assert tokens(trainer.choice_ids.tolist()) == ["1", "2"]
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    assert {SINGLE, PAIRWISE} <= set(batch["score_kind"].tolist())
    for b, k in enumerate(batch["score_position"].tolist()):  # the scored token is the confidence / choice
        if k >= 0:
            allowed = trainer.level_ids if batch["score_kind"][b] == SINGLE else trainer.choice_ids
            assert int(batch["input_ids"][b, k]) in allowed.tolist()
    model = trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert float(loss) == pytest.approx(_hand_loss(batch, logits, trainer), rel=1e-4)


def test_single_replies_state_the_level_nearest_the_label_and_ties_are_not_scored(tiny_model, tmp_path):
    run = write_labelled_sets(tmp_path / "run", n=12, sets=("single", "pairwise"))
    single = run / "training_sets" / "single"
    trainer = _trainer(tiny_model, tmp_path, single / "train.jsonl")
    labels = _rows(single / "examples.jsonl")
    decoded = [trainer.processing_class.decode(r["input_ids"]) for r in trainer.train_dataset]
    for row, text in zip(labels, decoded):  # the level of the sft target, so that its continuation is trained
        assert f"Confidence: {nearest_level(row['target'])}%" in text
    assert len({nearest_level(r["target"]) for r in labels} - {0, 95}) >= 2  # levels besides the labels' 0 / 95
    assert trainer.train_dataset["score_target"] == [float(r["modal_correct"]) for r in labels]
    soft = _trainer(tiny_model, tmp_path, single / "train.jsonl", brier_soft_labels=True)
    assert soft.train_dataset["score_target"] == pytest.approx([r["sampled_accuracy"] for r in labels])

    pairs = run / "training_sets" / "pairwise"
    _rewrite(pairs / "examples.jsonl", lambda row: {**row, "better": None if row["id1"] == "q5" else row["better"]})
    tied = [i for i, r in enumerate(_rows(pairs / "examples.jsonl")) if r["better"] is None]
    assert tied
    trainer = _trainer(tiny_model, tmp_path, pairs / "train.jsonl")
    for i, row in enumerate(trainer.train_dataset):
        assert (row["score_position"] < 0) == (i in tied)
        if i in tied:  # neither scored nor trained at its choice: the trained tokens are the answers only
            completion = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
            assert "Choice: Question \nAnswer 1:" in trainer.processing_class.decode(completion)


def test_the_gradient_moves_the_stated_confidence_towards_the_label():
    import torch

    values = torch.tensor([v / 100 for v in LEVELS])
    ids = torch.arange(len(LEVELS))
    for y in (1.0, 0.0, 0.4):
        logits = torch.zeros(1, len(LEVELS), requires_grad=True)
        before = float((logits.detach().softmax(-1) * values).sum())
        expected_brier(logits, ids, values, torch.tensor([y])).sum().backward()
        after = float(((logits.detach() - 5.0 * logits.grad).softmax(-1) * values).sum())
        assert abs(after - y) < abs(before - y)
    logits = torch.zeros(2, 2, requires_grad=True)
    choice_log_loss(logits, torch.tensor([0, 1]), torch.tensor([1.0, 0.0])).sum().backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1] and logits.grad[1, 1] < 0 < logits.grad[1, 0]


def _expected_confidence(trainer, model):
    import torch

    rows = [r for r in trainer.train_dataset if r["score_kind"] == SINGLE]
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    at = batch["score_position"] - 1
    p = logits[torch.arange(len(rows)), at][:, trainer.level_ids].softmax(-1)
    return float((p * trainer.level_values).sum(-1).mean())


def test_through_the_model_the_label_pushes_the_stated_confidence_its_way(tiny_model, tmp_path):
    """One gradient step on the same examples labelled correct, or wrong: only the Brier terms differ (the
    cross-entropy terms are identical), and the step raises the expected stated confidence for correct."""
    import torch

    run = write_labelled_sets(tmp_path / "run", n=8, sets=("single",))
    trainer = _trainer(tiny_model, tmp_path, run / "training_sets" / "single" / "train.jsonl")
    model = trainer.model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    rows = list(trainer.train_dataset)
    before = _expected_confidence(trainer, model)
    after = {}
    for y in (1.0, 0.0):
        batch = trainer.data_collator(rows)
        batch["score_target"] = torch.full_like(batch["score_target"], y)
        grads = torch.autograd.grad(trainer.compute_loss(model, dict(batch)), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 20.0 * g
            after[y] = _expected_confidence(trainer, model)
            for p, g in zip(params, grads):
                p += 20.0 * g
    assert _expected_confidence(trainer, model) == pytest.approx(before)
    assert after[1.0] > after[0.0] + 1e-3, (before, after)


def test_labels_must_be_there_and_line_up(tiny_model, tmp_path):
    run = write_labelled_sets(tmp_path / "run", n=6, sets=("single",))
    single = run / "training_sets" / "single"
    lines = (single / "examples.jsonl").read_text().splitlines(keepends=True)
    (single / "examples.jsonl").write_text("".join(lines[:-1]))
    with pytest.raises(DataError, match=r"examples\.jsonl: 5 label rows for 6 examples"):
        train_lora(single / "train.jsonl", tmp_path / "out", tiny_model, LoraTrainConfig(**FAST), objective="brier")
    (single / "examples.jsonl").write_text("".join(lines).replace('"sampled_accuracy"', '"sampled"'))
    config = LoraTrainConfig(**FAST, brier_soft_labels=True)
    with pytest.raises(DataError, match=r"examples\.jsonl:1: field 'sampled_accuracy' missing"):
        train_lora(single / "train.jsonl", tmp_path / "out", tiny_model, config, objective="brier")
    (single / "examples.jsonl").unlink()
    with pytest.raises(DataError, match="labels of objective brier not found"):
        train_lora(single / "train.jsonl", tmp_path / "out", tiny_model, LoraTrainConfig(**FAST), objective="brier")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_interrupted_brier_training_resumes_and_records_its_objective(tiny_model, tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    run = write_labelled_sets(tmp_path / "run", n=12, sets=("multitask",))
    train = run / "training_sets" / "multitask" / "train.jsonl"
    config = LoraTrainConfig(**FAST, max_steps=4, save_steps=2, top_layers=1, cache_frozen_layers=True)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        train_lora(train, out, tiny_model, config, callbacks=[Crash()], objective="brier")
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "DONE").exists()
    train_lora(train, out, tiny_model, config, objective="brier")
    info = json.loads((out / "train_config.json").read_text())
    assert info["result"]["resumed_from_step"] == 2 and info["result"]["global_step"] == 4
    assert info["objective"] == "brier" and info["objective_inputs"]["soft_labels"] is False
    assert info["objective_inputs"]["stated"] == "nearest the sft target"  # brier adapters of the old rule retrain
    assert json.loads((out / "adapter" / "metaconf.json").read_text())["objective"] == "brier"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all("confidence_brier" in r for r in log)
    # the same data trained by sft is another run: not reused, replaced
    sft = train_lora(train, out, tiny_model, config)
    assert json.loads((sft / "metaconf.json").read_text())["objective"] == "sft"


def test_training_sets_carry_the_labels_of_the_losses(tmp_path):
    """examples.jsonl (line by line with train.jsonl, which stays a plain chat file): a single example's sampled
    accuracy and where its confidence starts; a pair's better question by sampled accuracy, and where its choice is."""
    run = write_labelled_sets(tmp_path / "run", n=12, sets=("multitask",))
    folder = run / "training_sets" / "multitask"
    chats, labels = _rows(folder / "train.jsonl"), _rows(folder / "examples.jsonl")
    assert len(chats) == len(labels) and all(set(c) == {"messages"} for c in chats)
    right = {f"q{i}": (i % 11) / 10 for i in range(12)}  # question i: i % 11 of 10 samples right (helper)
    for chat, row in zip(chats, labels):
        reply = chat["messages"][-1]["content"]
        if row["task"] == "single":
            assert row["sampled_accuracy"] == pytest.approx(right[row["id"]])
            assert row["modal_correct"] == (right[row["id"]] > 0.5)
            assert reply[row["score_at"] :] == f"{round(row['target'] * 100)}%"
        else:
            a1, a2 = right[row["id1"]], right[row["id2"]]
            assert (row["sampled_accuracy1"], row["sampled_accuracy2"]) == pytest.approx((a1, a2))
            assert row["better"] == (None if a1 == a2 else 1 if a1 > a2 else 2)
            assert reply[row["score_at"]] == str(row["choice"]) and reply[: row["score_at"]] == "Choice: Question "
