"""SFT examples and training sets: pair rules (gap, balance, no self-pairs), mixes, domains, determinism."""

from __future__ import annotations

from collections import Counter

import pytest

from helpers.questions import mc, num, open_q
from metaconf.targets import (
    CalibrationMap,
    ConsistencyRecord,
    TargetsConfig,
    TrainingSetSpec,
    build_training_set,
    select_pairs,
    single_examples,
    subsample_bins,
)
from metaconf.targets.examples import short_answer
from metaconf.tasks import parse_pairwise, parse_single

DOMAINS = ["general", "math", "trivia"]


def make_data(n_per_domain: int = 12):
    """Questions whose modal answers are right exactly in the high-consistency bins."""
    records, questions = [], {}
    for d_i, domain in enumerate(DOMAINS):
        for i in range(n_per_domain):
            qid = f"{domain}/{i}"
            consistency = (i % 10 + 1) / 10
            correct = consistency >= 0.6
            if domain == "math":
                q = num(str(i + d_i), id=qid, dataset="gsm8k", domain=domain, question=f"What is {i} + {d_i}?")
                modal = str(i + d_i) if correct else str(i + d_i + 1)
            elif domain == "trivia":
                q = open_q(f"thing {i}", id=qid, dataset="triviaqa", domain=domain, question=f"Name thing {i}?")
                modal = f"thing {i}" if correct else "nothing"
            else:
                q = mc("B", ["x", "y", "z", "w"], id=qid, dataset="mmlu_pro", domain=domain, question=f"Pick {i}?")
                modal = "B" if correct else "C"
            questions[qid] = q
            records.append(
                ConsistencyRecord(
                    id=qid,
                    dataset=q.dataset,
                    domain=domain,
                    answer_type=q.answer_type,
                    samples=[],
                    answers=[],
                    modal_answer=modal,
                    modal_text=modal,
                    consistency=consistency,
                    modal_correct=correct,
                )
            )
    records.append(
        ConsistencyRecord(
            id="none/0",
            dataset="mmlu_pro",
            domain="general",
            answer_type="mc",
            samples=[],
            answers=[None],
            modal_answer=None,
            modal_text=None,
            consistency=0.0,
            modal_correct=False,
        )
    )
    questions["none/0"] = mc("A", ["a", "b"], id="none/0", dataset="mmlu_pro", question="?")
    return records, questions


def test_single_examples_target_the_calibrated_bin_accuracy():
    records, questions = make_data()
    cmap = CalibrationMap.fit(records, min_bin_count=0)
    examples = single_examples(records[:-1], questions, cmap, noise=0.05, seed=0)
    for ex, r in zip(examples, records):
        assert ex.messages[-1]["role"] == "assistant"
        parsed = parse_single(ex.messages[-1]["content"], questions[r.id])
        assert parsed.parsed and parsed.answer == r.modal_answer
        assert abs(parsed.confidence - cmap.accuracy(r)) <= 0.05 + 0.005
        assert parsed.correct == r.modal_correct


def test_pairs_respect_gap_and_never_pair_a_question_with_itself():
    records, _ = make_data()
    cmap = CalibrationMap.fit(records, min_bin_count=0)
    pairs = select_pairs(records[:-1], cmap, n_pairs=200, gap=0.3, seed=0)
    assert len(pairs) == 200
    assert all(a.id != b.id for a, b in pairs)
    assert all(cmap.accuracy(a) - cmap.accuracy(b) >= 0.3 for a, b in pairs)  # (higher, lower)
    assert len({frozenset((a.id, b.id)) for a, b in pairs}) == len(pairs)


def test_pairs_mix_within_and_across_domains():
    records, _ = make_data()
    cmap = CalibrationMap.fit(records, min_bin_count=0)
    pairs = select_pairs(records[:-1], cmap, n_pairs=100, gap=0.1, cross_domain_share=0.3, seed=0)
    across = sum(a.domain != b.domain for a, b in pairs)
    assert across == 30
    only_within = select_pairs(records[:-1], cmap, n_pairs=40, gap=0.1, cross_domain_share=0.0, seed=0)
    assert len(only_within) == 40 and all(a.domain == b.domain for a, b in only_within)


def test_pairs_top_up_when_one_kind_runs_short():
    records, _ = make_data()
    one_domain = [r for r in records if r.domain == "math"]
    cmap = CalibrationMap.fit(records, min_bin_count=0)
    pairs = select_pairs(one_domain, cmap, n_pairs=10, gap=0.1, cross_domain_share=1.0, seed=0)
    assert len(pairs) == 10 and all(a.domain == b.domain == "math" for a, b in pairs)


def test_pairwise_set_balances_positions_and_labels_the_higher_question():
    records, questions = make_data()
    cmap = CalibrationMap.fit(records, min_bin_count=0)
    config = TargetsConfig(pair_gap=0.2)
    examples = build_training_set(TrainingSetSpec(name="p", task="pairwise", size=31), records, questions, cmap, config)
    assert len(examples) == 31
    choices = Counter(ex.meta["choice"] for ex in examples)
    assert abs(choices[1] - choices[2]) <= 1
    for ex in examples:
        m = ex.meta
        assert m["id1"] != m["id2"] and "none/0" not in (m["id1"], m["id2"])
        higher = 1 if m["target1"] > m["target2"] else 2
        assert m["choice"] == higher and abs(m["target1"] - m["target2"]) >= 0.2
        p = parse_pairwise(ex.messages[-1]["content"], questions[m["id1"]], questions[m["id2"]])
        assert p.parsed and p.choice == higher


def test_multitask_mix_ratio_size_and_determinism():
    records, questions = make_data()
    cmap = CalibrationMap.fit(records)
    spec = TrainingSetSpec(name="multi", task="multitask", size=20, single_share=0.25)
    config = TargetsConfig(seed=3)
    examples = build_training_set(spec, records, questions, cmap, config)
    assert Counter(ex.task for ex in examples) == {"single": 5, "pairwise": 15}
    again = build_training_set(spec, records, questions, cmap, config)
    assert [ex.messages for ex in again] == [ex.messages for ex in examples]
    other = build_training_set(spec, records, questions, cmap, TargetsConfig(seed=4))
    assert [ex.messages for ex in other] != [ex.messages for ex in examples]


def test_default_sizes_and_domain_restriction():
    records, questions = make_data()
    cmap = CalibrationMap.fit(records)
    single = build_training_set(TrainingSetSpec(name="s", task="single"), records, questions, cmap, TargetsConfig())
    assert len(single) == len(records) - 1  # the question without a modal answer is skipped
    math = build_training_set(
        TrainingSetSpec(name="m", task="single", domains=["math"]), records, questions, cmap, TargetsConfig()
    )
    assert {ex.meta["domain"] for ex in math} == {"math"} and len(math) == 12
    pairs = build_training_set(
        TrainingSetSpec(name="pm", task="pairwise", domains=["math", "trivia"]),
        records,
        questions,
        cmap,
        TargetsConfig(),
    )
    assert {ex.meta["domain1"] for ex in pairs} | {ex.meta["domain2"] for ex in pairs} <= {"math", "trivia"}


def test_subsample_caps_each_bin():
    records, _ = make_data(20)
    cmap = CalibrationMap.fit(records)
    kept = subsample_bins(records, cmap, max_per_bin=3, seed=0)
    per_bin = Counter(cmap.bin_of(r) for r in kept)
    assert max(per_bin.values()) == 3 and set(per_bin) == {cmap.bin_of(r) for r in records}
    assert subsample_bins(records, cmap, None, 0) == records
    assert [r.id for r in kept] == [r.id for r in subsample_bins(records, cmap, 3, 0)]


def test_config_rejects_unknown_fields_and_duplicate_sets():
    with pytest.raises(ValueError, match="n_sample"):
        TargetsConfig(n_sample=3)
    with pytest.raises(ValueError, match="duplicate"):
        TargetsConfig(sets=[TrainingSetSpec(name="a", task="single"), TrainingSetSpec(name="a", task="pairwise")])
    assert all(f.description for f in TargetsConfig.model_fields.values())
    assert all(f.description for f in TrainingSetSpec.model_fields.values())


@pytest.mark.parametrize(
    "text, short",
    [
        ("The capital of Nevada is Carson City. It lies near Lake Tahoe.", "The capital of Nevada is Carson City"),
        (
            "Kim Campbell (born August 14, 1975) is a Canadian politician who",
            "Kim Campbell (born August 14, 1975) is a",
        ),
        ("Dr. Who is the answer.", "Dr. Who is the answer"),
        ("J. R. R. Tolkien", "J. R. R. Tolkien"),
        ("Tasmania", "Tasmania"),
        ("...", "..."),
    ],
)
def test_open_answers_in_targets_are_short(text, short):
    assert short_answer(text) == short


def test_shuffled_targets_keep_answers_format_and_size_and_permute_the_targets():
    records, questions = make_data()
    cmap = CalibrationMap.fit(records)
    config = TargetsConfig(seed=1)
    plain = build_training_set(TrainingSetSpec(name="s", task="single"), records, questions, cmap, config)
    spec = TrainingSetSpec(name="s_shuffled", task="single", shuffle_targets=True)
    shuffled = build_training_set(spec, records, questions, cmap, config)
    assert [ex.meta["id"] for ex in shuffled] == [ex.meta["id"] for ex in plain]  # same questions, same order
    for a, b in zip(plain, shuffled):
        q = questions[a.meta["id"]]
        pa, pb = parse_single(a.messages[-1]["content"], q), parse_single(b.messages[-1]["content"], q)
        assert pb.parsed and pa.answer == pb.answer and a.messages[:-1] == b.messages[:-1]
    targets = sorted(ex.meta["target"] for ex in plain)
    assert sorted(ex.meta["target"] for ex in shuffled) == targets  # a permutation of the same targets
    moved = sum(a.meta["target"] != b.meta["target"] for a, b in zip(plain, shuffled))
    assert moved > len(plain) // 2

    # the targets no longer follow the answers' correctness: the plain set's do (right exactly in high bins)
    def gap(examples):
        right = [ex.meta["target"] for ex in examples if ex.meta["modal_correct"]]
        wrong = [ex.meta["target"] for ex in examples if not ex.meta["modal_correct"]]
        return sum(right) / len(right) - sum(wrong) / len(wrong)

    assert gap(plain) > 0.3 and abs(gap(shuffled)) < gap(plain) / 2
    again = build_training_set(spec, records, questions, cmap, config)
    assert [ex.messages for ex in again] == [ex.messages for ex in shuffled]  # seeded


def test_shuffled_pairs_are_labelled_by_the_permuted_targets():
    records, questions = make_data()
    cmap = CalibrationMap.fit(records, min_bin_count=0)
    spec = TrainingSetSpec(name="p_shuffled", task="pairwise", size=20, shuffle_targets=True)
    examples = build_training_set(spec, records, questions, cmap, TargetsConfig(pair_gap=0.2))
    assert len(examples) == 20
    agree = sum(
        (ex.meta["choice"] == 1) == (ex.meta["target1"] > ex.meta["target2"]) for ex in examples
    )  # meta targets are the permuted ones, so the label follows them
    assert agree == len(examples)
    by_id = {r.id: r for r in records}
    follows_own = sum(
        (ex.meta["choice"] == 1) == (by_id[ex.meta["id1"]].consistency > by_id[ex.meta["id2"]].consistency)
        for ex in examples
    )
    assert follows_own < len(examples)
