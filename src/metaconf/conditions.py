"""The study's conditions, named once: the base model and the three fine-tuned ones of the paper."""

BASE = "base"
TRAINED_CONDITIONS = ("single", "pairwise", "multitask")  # each trained on the training set of its name
CONDITIONS = (BASE, *TRAINED_CONDITIONS)
