"""Agreement of the rule grader with hand-checked grades of real SmolLM2-135M-Instruct outputs.

The fixture (tests/fixtures/grading/real_outputs.jsonl) comes from scripts/make_grading_fixture.py; every row's
`expected_answer` / `expected_correct` was decided by reading the raw output, not copied from the code.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from metaconf.data.schema import Question
from metaconf.grading import extract_answer, is_correct

FIXTURE = Path(__file__).parent / "fixtures" / "grading" / "real_outputs.jsonl"
MIN_AGREEMENT = 0.97


def load_rows() -> list[dict]:
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("expected_correct") is not None]


def test_fixture_is_labelled_and_covers_every_style_and_type() -> None:
    rows = load_rows()
    assert len(rows) >= 200
    assert {r["style"] for r in rows} == {"plain", "answer", "single"}
    assert {r["question"]["answer_type"] for r in rows} >= {"mc", "numeric", "open"}
    assert sum(r["expected_correct"] for r in rows) >= 10  # some right answers, not only wrong ones


def test_is_correct_agrees_with_hand_grades() -> None:
    rows = load_rows()
    per_dataset: dict[str, list[bool]] = defaultdict(list)
    disagreements = []
    for r in rows:
        q = Question.from_dict(r["question"])
        agree = is_correct(r["raw"], q) == r["expected_correct"]
        per_dataset[r["dataset"]].append(agree)
        if not agree:
            disagreements.append(f"{q.id} [{r['style']}] expected {r['expected_correct']}: {r['raw']!r}")
    for name, agreed in sorted(per_dataset.items()):
        print(f"{name}: {sum(agreed)}/{len(agreed)} = {sum(agreed) / len(agreed):.3f}")
    print("\n".join(disagreements))
    total = sum(len(a) for a in per_dataset.values())
    agreement = sum(sum(a) for a in per_dataset.values()) / total
    assert agreement >= MIN_AGREEMENT, f"agreement {agreement:.3f} < {MIN_AGREEMENT}:\n" + "\n".join(disagreements)


@pytest.mark.parametrize("kind", ["mc", "numeric", "open"])
def test_extraction_agrees_with_hand_extraction(kind: str) -> None:
    rows = [r for r in load_rows() if r["question"]["answer_type"] == kind]
    agreed = [extract_answer(r["raw"], Question.from_dict(r["question"])) == r["expected_answer"] for r in rows]
    assert sum(agreed) / len(agreed) >= MIN_AGREEMENT
