"""`metaconf datasets`: the registered datasets with domain, answer type, sizes, source and licence."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from metaconf.flags import Command


class DatasetsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_json: bool = Field(False, alias="json", description="Print JSON instead of a table.")
    data_dir: Path | None = Field(None, description="A folder holding the full files; count what is really there.")


def count_files(data_dir: Path) -> dict[str, dict[str, int | None]]:
    """{dataset: {split: questions loaded from data_dir, or None when that split's files are missing}}."""
    from metaconf.data.loading import load_registered
    from metaconf.data.registry import list_datasets
    from metaconf.errors import DataError

    counts: dict[str, dict[str, int | None]] = {}
    for info in list_datasets():
        counts[info.name] = {}
        for split in info.splits:
            try:
                counts[info.name][split] = len(load_registered(info, split, data_dir / info.folder))
            except DataError:
                counts[info.name][split] = None
    return counts


def _fmt_splits(splits: dict[str, int | None]) -> str:
    return ", ".join(f"{s}={'missing' if n is None else n}" for s, n in splits.items())


def _datasets(args: DatasetsOptions) -> int:
    from metaconf.data.registry import list_datasets
    from metaconf.errors import DataError

    if args.data_dir is not None and not args.data_dir.is_dir():
        raise DataError(f"{args.data_dir}: data folder not found")
    counted = count_files(args.data_dir) if args.data_dir is not None else None
    infos = list_datasets()
    if args.as_json:
        rows = []
        for info in infos:
            row = info.to_dict()
            if counted is not None:
                row["found"] = counted[info.name]
            rows.append(row)
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    header = ["name", "domain", "type", "bundled", "full splits", "licence"]
    if counted is not None:
        header.append(f"found in {args.data_dir}")
    table = [header]
    for info in infos:
        row = [
            info.name,
            info.domain,
            info.answer_type,
            str(info.bundled),
            _fmt_splits(dict(info.splits)),
            info.licence.split(";")[0].split(" (")[0],
        ]
        if counted is not None:
            row.append(_fmt_splits(counted[info.name]))
        table.append(row)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    print("\nSources, licences and citations: metaconf datasets --json, or docs/data.md.")
    return 0


COMMANDS = [
    Command(
        "datasets",
        help="list the registered datasets (domain, answer type, sizes, source, licence)",
        description="List the registered benchmark datasets. Sizes are the question counts of the full files; "
        "'bundled' is the sample shipped with metaconf (used when no data folder is given). With --data_dir, "
        "also count the questions actually found in that folder (laid out like <dir>/<dataset folder>/...).",
        options=DatasetsOptions,
        run=_datasets,
    ),
]
