"""Metrics of calibration and discrimination, bootstrap intervals, and the metrics.json summary.

Definitions, tie and parse-failure rules: docs/metrics.md.
"""

from metaconf.metrics.bootstrap import bootstrap_ci, paired_bootstrap
from metaconf.metrics.calibration import adaptive_ece, brier, ece, overconfidence, smooth_bandwidth, smooth_ece
from metaconf.metrics.discrimination import accuracy, auc_a, auc_c, auroc, pairwise_auc, parse_rate
from metaconf.metrics.summary import summarize, write_metrics

__all__ = [
    "accuracy",
    "adaptive_ece",
    "auc_a",
    "auc_c",
    "auroc",
    "bootstrap_ci",
    "brier",
    "ece",
    "overconfidence",
    "paired_bootstrap",
    "pairwise_auc",
    "parse_rate",
    "smooth_bandwidth",
    "smooth_ece",
    "summarize",
    "write_metrics",
]
