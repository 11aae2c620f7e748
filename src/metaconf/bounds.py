"""Upper bounds shared by config fields. Every count, size, rate and seed of a config has one (`le=` on its field,
shown in docs/cli.md and docs/study.md), checked when the config loads, before anything is deleted or computed:
a typo such as `--training.lora.rank 99999999999999999999` is one line, not a deleted adapter and a torch crash."""

SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are 32-bit
