"""Evaluation: each condition's answers to the single and pairwise tasks on the evaluation questions, stored as
per-item predictions (`stage`), and `metaconf evaluate` (`cli`)."""

from metaconf.evaluation.stage import (
    CONFIDENCE_LOGPROBS,
    Pair,
    evaluate_condition,
    evaluate_pairwise,
    evaluate_single,
    load_predictions,
    make_pairs,
    prediction_path,
)

__all__ = [
    "CONFIDENCE_LOGPROBS",
    "Pair",
    "evaluate_condition",
    "evaluate_pairwise",
    "evaluate_single",
    "load_predictions",
    "make_pairs",
    "prediction_path",
]
