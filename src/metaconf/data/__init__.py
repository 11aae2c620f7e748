"""Benchmark questions: one schema, loaders for the registered datasets and user files, bundled samples."""

from metaconf.data.loading import load_dataset, split_questions
from metaconf.data.registry import DatasetInfo, list_datasets
from metaconf.data.schema import Question

__all__ = ["DatasetInfo", "Question", "list_datasets", "load_dataset", "split_questions"]
