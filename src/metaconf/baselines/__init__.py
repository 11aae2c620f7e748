"""Confidence without fine-tuning, scored on the same questions as the conditions: sampling consistency (the
teacher), answer token probability, P(True), and post-hoc recalibration of the base model's stated confidence."""

from metaconf.baselines.recalibration import apply_map, fit_map
from metaconf.baselines.stage import BASELINES, GROUPS, TEACHER, load_baselines, methods_of, run_baselines

__all__ = ["BASELINES", "GROUPS", "TEACHER", "apply_map", "fit_map", "load_baselines", "methods_of", "run_baselines"]
