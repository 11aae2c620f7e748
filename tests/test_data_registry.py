"""Registry sizes against the real files, the bundled samples and their rule, and `metaconf datasets`."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

from metaconf.cli import main
from metaconf.data import DatasetInfo, list_datasets, load_dataset
from metaconf.data.loading import bundled_path, load_registered
from metaconf.errors import DataError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} not present")
NAMES = ["mmlu_pro", "mmlu", "gsm8k", "triviaqa", "truthfulqa", "truthfulqa_gen", "metamedqa", "medqa", "legalbench"]
DOMAINS = {
    "mmlu_pro": "general",
    "mmlu": "general",
    "gsm8k": "math",
    "triviaqa": "trivia",
    "metamedqa": "medical",
    "medqa": "medical",
    "legalbench": "legal",
    "truthfulqa": "truthfulness",
    "truthfulqa_gen": "truthfulness",
}


def bundle_script():
    spec = importlib.util.spec_from_file_location("make_bundled_data", REPO / "scripts/make_bundled_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registry_names_domains_and_fields():
    infos = list_datasets()
    assert [i.name for i in infos] == NAMES
    for info in infos:
        assert isinstance(info, DatasetInfo) and info.domain == DOMAINS[info.name]
        assert info.source and info.licence and info.citation and "median length" in info.description
        assert info.default_split in info.splits


@needs_data
@pytest.mark.parametrize("info", list_datasets(), ids=lambda i: i.name)
def test_registry_split_sizes_match_the_full_files(info):
    for split, n in info.splits.items():
        assert len(load_registered(info, split, DATA / info.folder)) == n, (info.name, split)


@pytest.mark.parametrize("name", NAMES)
def test_bundled_sample_loads_with_registry_size(name):
    info = next(i for i in list_datasets() if i.name == name)
    qs = load_dataset(name)
    assert len(qs) == info.bundled == 300
    assert len({q.id for q in qs}) == len(qs) and {q.dataset for q in qs} == {name}
    assert all(q.id.startswith(f"{name}/") and q.domain == info.domain and q.answers for q in qs)
    assert [q.id for q in load_dataset(name, limit=10)] == [q.id for q in load_dataset(name, limit=10)]


def test_bundle_total_size_is_small():
    assert sum(bundled_path(n).stat().st_size for n in NAMES) < 1.5e6


@needs_data
@pytest.mark.parametrize("name", ["gsm8k", "truthfulqa", "legalbench"])
def test_bundle_follows_the_rule_and_is_reproducible(name):
    script = bundle_script()
    info = next(i for i in list_datasets() if i.name == name)
    full = load_registered(info, None, DATA / info.folder)
    median = statistics.median(script.text_length(q) for q in full)
    bundled = load_dataset(name)
    assert all(script.text_length(q) <= median for q in bundled)
    by_id = {q.id: q for q in full}
    assert all(by_id[q.id] == q for q in bundled)  # same records as the loader makes today
    redrawn = script.draw(script.short_half(full), 300, 0, "task" if name == "legalbench" else None)
    assert [q.id for q in redrawn] == [q.id for q in bundled]
    if name == "legalbench":
        assert len({q.meta["task"] for q in bundled}) >= 40


def test_bundled_sample_has_only_the_default_split():
    with pytest.raises(DataError, match="bundled sample has only split 'test'"):
        load_dataset("gsm8k", split="train")


def test_cli_datasets_json(capsys):
    assert main(["datasets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == NAMES
    assert rows[0]["splits"] == {"test": 12032, "validation": 70} and rows[0]["bundled"] == 300


def test_cli_datasets_table(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "legalbench" in out and "test=23385" in out and "CC-BY-4.0" in out


def test_cli_datasets_counts_a_data_dir(tmp_path, capsys):
    gsm = tmp_path / "gsm8k"
    gsm.mkdir()
    (gsm / "test.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    assert main(["datasets", "--json", "--data-dir", str(tmp_path)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["gsm8k"]["found"] == {"test": 1, "train": None}
    assert rows["mmlu"]["found"] == {"test": None, "validation": None, "dev": None}
    assert main(["datasets", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "data folder not found" in capsys.readouterr().err
