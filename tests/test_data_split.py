"""split_questions: deterministic by id, disjoint, independent of input order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.questions import open_q
from metaconf.data import Question, split_questions
from metaconf.errors import DataError


def make(n: int) -> list[Question]:
    return [open_q("a", id=f"d/{i}", dataset="d", domain="x", question=f"q{i}") for i in range(n)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(0, 60), seed=st.integers(0, 5), shuffle_seed=st.integers(0, 99))
def test_split_is_disjoint_complete_and_order_independent(n, k, seed, shuffle_seed):
    qs = make(n)
    k = min(k, n)
    train, held = split_questions(qs, k, seed=seed)
    assert len(held) == k and len(train) == n - k
    assert {q.id for q in train} | {q.id for q in held} == {q.id for q in qs}
    assert not {q.id for q in train} & {q.id for q in held}
    shuffled = qs[:]
    random.Random(shuffle_seed).shuffle(shuffled)
    train2, held2 = split_questions(shuffled, k, seed=seed)
    assert [q.id for q in held2] == [q.id for q in held] and [q.id for q in train2] == [q.id for q in train]


def test_seed_and_stability():
    qs = make(100)
    train, held = split_questions(qs, 20)
    assert len(held) == 20 and len(train) == 80
    assert [q.id for q in held] != [f"d/{i}" for i in range(20)]  # not the first rows
    assert [q.id for q in split_questions(qs, 20, seed=1)[1]] != [q.id for q in held]
    # ranking by (seed, id): a larger held-out set contains the smaller one
    assert {q.id for q in held} <= {q.id for q in split_questions(qs, 30)[1]}


def test_bad_arguments():
    qs = make(5)
    with pytest.raises(DataError, match="a count of questions"):
        split_questions(qs, 0.5)  # a fraction (metaconf 0.1) is refused, not silently read as a count
    with pytest.raises(DataError, match="held_out=9 is outside 0..5"):
        split_questions(qs, 9)
    with pytest.raises(DataError, match="not unique"):
        split_questions(qs + qs[:1], 1)
    with pytest.raises(DataError, match="a count of questions"):
        split_questions(qs, "2")
