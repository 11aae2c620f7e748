"""Answer extraction and grading: find a model's answer in its text and compare it with the gold answers.

Rules per answer type: docs/grading.md.
"""

from metaconf.grading.extract import (
    SHORT_ANSWER_TOKENS,
    answer_matches,
    extract_answer,
    extract_boolean,
    extract_mc,
    extract_numeric,
    extract_open,
    is_correct,
    open_matches,
)
from metaconf.grading.judge import DEFAULT_JUDGE_TEMPLATE, Grader, JudgeGrader, RuleGrader, parse_judge_reply
from metaconf.grading.normalize import answer_region, canonical_number, normalize_open, parse_number

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "SHORT_ANSWER_TOKENS",
    "Grader",
    "JudgeGrader",
    "RuleGrader",
    "answer_matches",
    "answer_region",
    "canonical_number",
    "extract_answer",
    "extract_boolean",
    "extract_mc",
    "extract_numeric",
    "extract_open",
    "is_correct",
    "normalize_open",
    "open_matches",
    "parse_judge_reply",
    "parse_number",
]
