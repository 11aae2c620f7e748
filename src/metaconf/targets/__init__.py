"""From sampled answers to training data: consistency, the calibration map, SFT sets, exports, data cards."""

from metaconf.io import read_jsonl
from metaconf.targets.calibration import CalibrationMap, bin_index
from metaconf.targets.config import TargetsConfig, TrainingSetSpec
from metaconf.targets.consistency import ConsistencyRecord, consistency_record, modal_answer, sample_consistency
from metaconf.targets.examples import (
    Example,
    build_training_set,
    eligible,
    pairwise_examples,
    select_pairs,
    single_examples,
    subsample_bins,
)
from metaconf.targets.export import (
    data_card,
    validate_hf_chat,
    validate_hosted,
    validate_hosted_file,
    write_training_set,
)
from metaconf.targets.stage import build_data, consistency_summary

__all__ = [
    "CalibrationMap",
    "ConsistencyRecord",
    "Example",
    "TargetsConfig",
    "TrainingSetSpec",
    "bin_index",
    "build_data",
    "build_training_set",
    "consistency_record",
    "consistency_summary",
    "data_card",
    "eligible",
    "modal_answer",
    "pairwise_examples",
    "read_jsonl",
    "sample_consistency",
    "select_pairs",
    "single_examples",
    "subsample_bins",
    "validate_hf_chat",
    "validate_hosted",
    "validate_hosted_file",
    "write_training_set",
]
