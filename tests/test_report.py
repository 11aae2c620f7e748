"""write_report / `metaconf report` on a synthetic run folder: every file present, hostile text escaped,
HTML self-contained, findings generated from the numbers."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from metaconf.cli import main
from metaconf.errors import DataError
from metaconf.metrics import summarize, write_metrics
from metaconf.report import write_report
from metaconf.report.document import md_escape
from metaconf.report.findings import findings, verdict

HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>', "a | b | c",
           "[click](http://evil.example/x)", "# heading\n- list\n```"]
INFO = {"mmlu": {"domain": "general", "in_domain": True},
        "medqa<script>": {"domain": "medical", "in_domain": False}}


def _rows(condition, dataset, rng, good):
    single, pairs = [], []
    for i in range(16):
        y = bool(rng.uniform() < 0.5)
        conf = (0.85 if y else 0.15) if good else 0.9
        single.append({"id": f"{dataset}/{i}", "dataset": dataset, "domain": INFO[dataset]["domain"],
                       "condition": condition, "task": "single", "raw": HOSTILE[i % len(HOSTILE)],
                       "answer": "<b>A</b>", "confidence": conf, "correct": y, "parsed": True})
    for i in range(8):
        y1, y2 = bool(i % 2), not bool(i % 2)
        pairs.append({"id1": f"{dataset}/{i}", "id2": f"{dataset}/{i + 8}", "dataset": dataset, "domain": "x",
                      "condition": condition, "task": "pairwise", "raw": HOSTILE[i % len(HOSTILE)],
                      "choice": (1 if y1 else 2) if good else 1, "answer1": "a", "answer2": "b",
                      "correct1": y1, "correct2": y2, "consistency1": 0.9 if y1 else 0.2,
                      "consistency2": 0.9 if y2 else 0.2, "p_first": None, "parsed": True})
    return single, pairs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A synthetic run folder with its report written once (plots are the slow part); tests only read it."""
    tmp_path = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    preds = {}
    for condition in ("base", "multitask"):
        for dataset in INFO:
            single, pairs = _rows(condition, dataset, rng if condition == "base" else np.random.default_rng(0),
                                 condition != "base")
            preds[(condition, "single", dataset)] = single
            preds[(condition, "pairwise", dataset)] = pairs
    # same questions and grades for both conditions
    for dataset in INFO:
        for b, m in zip(preds[("base", "single", dataset)], preds[("multitask", "single", dataset)]):
            m["correct"] = b["correct"]
            m["confidence"] = 0.85 if b["correct"] else 0.15
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    for (c, t, d), rows in preds.items():
        (run / "predictions" / f"{c}__{t}__{d}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    write_metrics(run / "metrics.json", summarize(preds, INFO, n_boot=200, model="tiny<script>x</script>"))
    (run / "config.yaml").write_text(
        "name: 'study <script>alert(3)</script>'\nmodel: {engine: embedded}\n"
        "data:\n  train: [{name: mmlu, train: 40, held_out: 16}]\n  eval: [{name: 'medqa<script>', n: 16}]\n")
    (run / "templates.json").write_text(json.dumps(
        [{"name": "single", "version": 2, "text": "Question: {question}\n</pre><script>alert(4)</script>"}]))
    (run / "training" / "multitask").mkdir(parents=True)
    (run / "training" / "multitask" / "log.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "loss": 2.0 / (s + 1), "lr": 1e-4}) for s in range(10)) + "\n")
    assert write_report(run) == (run / "report.md", run / "report.html")
    return run


def test_writes_report_files_and_plots(run_dir):
    md_path = run_dir / "report.md"
    names = {p.name for p in (run_dir / "plots").iterdir()}
    for stem in ("reliability", "confidence_histograms", "bars_ece", "bars_auroc", "bars_auc_a", "training_loss"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names
        assert (run_dir / "plots" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    assert not [p for p in run_dir.rglob("*.tmp")]
    md = md_path.read_text()
    for section in ("Setup", "What the numbers show", "Single-question confidence", "Pairwise comparison",
                    "POOLED", "Transfer matrix", "Plots", "Example outputs", "Prompt templates"):
        assert section in md
    assert "(plots/reliability.png)" in md


def test_html_is_self_contained_and_escapes_every_hostile_text(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "onerror=alert(2)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;A&lt;/b&gt;" in html
    # no external references: every src / href is inline data, no stylesheet or script links
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert attr.startswith("data:image/png;base64,")
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count("data:image/png;base64,") == 6


def test_markdown_escapes_tables_links_and_html(run_dir):
    md = (run_dir / "report.md").read_text()
    text = "\n".join(line for line in md.splitlines() if not line.startswith("    "))  # outside code blocks
    assert "<script" not in text.lower() and "<img" not in text.lower() and "<b>" not in text
    assert "](http://evil" not in md
    table_lines = [line for line in md.splitlines() if line.startswith("| ")]
    example_header = next(line for line in table_lines if line.startswith("| condition | task | dataset | item"))
    expected = len(re.split(r"(?<!\\)\|", example_header))
    start = md.index(example_header)
    for line in md[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        assert len(re.split(r"(?<!\\)\|", line)) == expected
    # template text is shown literally in an indented code block
    assert "    </pre><script>alert(4)</script>" in md


def test_md_escape_rules():
    assert md_escape("a|b") == r"a\|b"
    assert md_escape("<script>") == "&lt;script&gt;"
    assert md_escape("[x](y)") == r"\[x\](y)"
    assert md_escape("# title") == r"\# title"
    assert md_escape("- item") == r"\- item"
    assert md_escape("1. first") == r"1\. first"
    assert md_escape("line\nbreak") == "line break"
    assert md_escape("0.123 (−0.1, +0.2)") == "0.123 (−0.1, +0.2)"


def test_findings_say_how_sure_and_put_per_dataset_first(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    sections = findings(metrics)
    headings = [h for h, _ in sections]
    assert headings.index("Discrimination, per dataset") < headings.index(
        "Pooled over datasets (in-domain vs new-domain)")
    text = " ".join(" ".join(s) for _, s in sections)
    assert "includes zero means no evidence of a change" in text
    assert "multitask vs base, AUROC (single task), per dataset: improved on 2 of 2" in text
    assert "read the per-dataset lines above first" in text


def test_verdict_follows_the_interval_and_direction():
    assert verdict({"metric": "ece", "diff": -0.2, "diff_ci": [-0.3, -0.1]}) == "improved"
    assert verdict({"metric": "ece", "diff": 0.2, "diff_ci": [0.1, 0.3]}) == "worsened"
    assert verdict({"metric": "auroc", "diff": 0.2, "diff_ci": [0.1, 0.3]}) == "improved"
    assert verdict({"metric": "auroc", "diff": 0.1, "diff_ci": [-0.05, 0.3]}) == "no evidence of a change"
    assert verdict({"metric": "auroc", "diff": None, "diff_ci": None}) == "undefined"


def _bare_run(run: Path) -> Path:
    """metrics.json only: no predictions, config, templates or training logs."""
    preds = {("base", "single", "mmlu"): [
        {"id": f"m/{i}", "dataset": "mmlu", "domain": "general", "condition": "base", "task": "single",
         "raw": "x", "answer": "A", "confidence": 0.5, "correct": bool(i % 2), "parsed": True} for i in range(6)]}
    write_metrics(run / "metrics.json", summarize(preds, {"mmlu": {"domain": "general", "in_domain": True}},
                                                  n_boot=50))
    return run


def test_report_without_optional_files(tmp_path):
    md_path, html_path = write_report(_bare_run(tmp_path / "bare"))
    assert "No trained condition was compared" in md_path.read_text()
    assert html_path.is_file()


def test_missing_or_broken_inputs_are_one_line_errors(tmp_path, run_dir):
    with pytest.raises(DataError, match="metrics.json: missing"):
        write_report(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir / "predictions", copy / "predictions")
    shutil.copy(run_dir / "metrics.json", copy / "metrics.json")
    bad = copy / "predictions" / "base__single__mmlu.jsonl"
    bad.write_text(bad.read_text() + "{not json\n")
    with pytest.raises(DataError, match=r"base__single__mmlu.jsonl: line 17: not valid JSON"):
        write_report(copy)


def test_cli_regenerates_the_report(tmp_path, capsys):
    run = _bare_run(tmp_path / "bare")
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (run / "report.md").is_file() and (run / "plots" / "bars_ece.pdf").is_file()
    assert main(["report", str(run / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
