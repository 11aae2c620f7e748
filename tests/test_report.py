"""write_report / `metaconf report` on a synthetic run folder: every file present, hostile text escaped,
HTML self-contained, findings generated from the numbers."""

import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from helpers.browser import PageCheck
from metaconf.cli import main
from metaconf.errors import DataError
from metaconf.metrics import summarize, write_metrics
from metaconf.report import write_report
from metaconf.report.document import md_escape
from metaconf.report.findings import CLAIMS, finding_rows, format_summary, reading, row_verdict, verdict
from metaconf.report.plots import condition_colors

PLOTS = (
    "headline",
    "transfer",
    "reliability",
    "confidence_histograms",
    "bars_ece",
    "bars_auroc",
    "bars_auc_a",
    "training_loss",
)
# model text that would run, or fetch from outside, if it reached the page unescaped (top.PWNED: see the
# browser harness in tests/helpers/browser.py)
HOSTILE = [
    "<script>top.PWNED.push(1)</script>",
    '"><img src=x onerror="top.PWNED.push(2)">',
    "a | b | c",
    "[click](http://evil.example/x)",
    "# heading\n- list\n```",
    "</script><svg onload=top.PWNED.push(3)>",
    '<img src="http://evil.example/i.png">',
]
INFO = {"mmlu": {"domain": "general", "in_domain": True}, "medqa<script>": {"domain": "medical", "in_domain": False}}


# which task each condition is good at: base neither, each single-task condition its own task, multitask both
GOOD = {"base": (False, False), "single": (True, False), "pairwise": (False, True), "multitask": (True, True)}
FORMAT = {"targets": "guided", "consistency": "guided", "evaluation": "guided"}


def _rows(condition, dataset, grades):
    """Every metric defined: the same answers (and grades) for every condition; confidence and choices follow the
    grades where the condition is good at that task, otherwise a flat 0.9 and always question 1."""
    good_single, good_pairs = GOOD[condition]
    single, pairs = [], []
    for i, y in enumerate(grades):
        conf = (0.85 if y else 0.15) if good_single else 0.9
        single.append(
            {
                "id": f"{dataset}/{i}",
                "dataset": dataset,
                "domain": INFO[dataset]["domain"],
                "condition": condition,
                "task": "single",
                "raw": "\n".join(HOSTILE[i:] + HOSTILE[:i]),
                "answer": "<b>A</b>",
                "confidence": conf,
                "correct": bool(y),
                "parsed": True,
            }
        )
    for i in range(8):
        y1, y2 = bool(i % 2), not bool(i % 2)
        pairs.append(
            {
                "id1": f"{dataset}/{i}",
                "id2": f"{dataset}/{i + 8}",
                "dataset": dataset,
                "domain": "x",
                "condition": condition,
                "task": "pairwise",
                "raw": "\n".join(HOSTILE[i:] + HOSTILE[:i]),
                "choice": (1 if y1 else 2) if good_pairs else 1,
                "answer1": "a",
                "answer2": "b",
                "correct1": y1,
                "correct2": y2,
                "consistency1": 0.9 if y1 else 0.2,
                "consistency2": 0.9 if y2 else 0.2,
                "p_first": None,
                "parsed": True,
            }
        )
    return single, pairs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A synthetic run folder (four conditions, every metric defined) with its report written once (plots are
    the slow part); tests only read it."""
    tmp_path = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    preds = {}
    for dataset in INFO:
        grades = [bool(v) for v in rng.uniform(size=16) < 0.5]
        for condition in GOOD:
            single, pairs = _rows(condition, dataset, grades)
            preds[(condition, "single", dataset)] = single
            preds[(condition, "pairwise", dataset)] = pairs
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    for (c, t, d), rows in preds.items():
        (run / "predictions" / f"{c}__{t}__{d}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    metrics = summarize(preds, INFO, n_boot=200, model="tiny<script>x</script>")
    write_metrics(run / "metrics.json", {**metrics, "format": FORMAT})
    (run / "config.yaml").write_text(
        "name: 'study <script>alert(3)</script>'\nmodel: {engine: embedded}\n"
        "conditions: [base, single, pairwise, multitask]\n"
        "data:\n  train: [{name: mmlu, train: 40, held_out: 16}]\n  eval: [{name: 'medqa<script>', n: 16}]\n"
    )
    (run / "templates.json").write_text(
        json.dumps(
            {
                "single": {
                    "name": "single",
                    "version": 2,
                    "description": "confidence <b>task</b>",
                    "user": {"mc": "Question: {question}\n</pre><script>alert(4)</script>", "numeric": "N: {question}"},
                    "output": "Answer: {answer}\nConfidence: {confidence}%",
                    "max_new_tokens": 40,
                    "stop": ["\n\n"],
                    "system": None,
                }
            }
        )
    )
    for condition in ("single", "pairwise", "multitask"):
        (run / "training" / condition).mkdir(parents=True)
        (run / "training" / condition / "log.jsonl").write_text(
            "\n".join(json.dumps({"step": s, "loss": 2.0 / (s + 1), "lr": 1e-4}) for s in range(10)) + "\n"
        )
    assert write_report(run) == (run / "report.md", run / "report.html")
    return run


def test_writes_report_files_and_plots(run_dir):
    md_path = run_dir / "report.md"
    names = {p.name for p in (run_dir / "plots").iterdir()}
    for stem in PLOTS:
        assert f"{stem}.png" in names and f"{stem}.pdf" in names
        assert (run_dir / "plots" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    assert not list(run_dir.rglob("*.tmp"))
    md = md_path.read_text()
    order = [
        "Findings",
        "Figures",
        "Appendix",
        "Setup",
        "Single-question confidence",
        "Pairwise comparison",
        "POOLED over datasets",
        "Transfer matrix",
        "Per-dataset bars",
        "Prompt templates",
        "Example outputs",
    ]
    headings = [line for line in md.splitlines() if line.startswith("#")]
    positions = [next(i for i, h in enumerate(headings) if section in h) for section in order]
    assert positions == sorted(positions)  # findings first, templates and examples in the appendix
    assert md.index("(plots/headline.png)") < md.index("(plots/transfer.png)") < md.index("Appendix")


def test_html_is_self_contained_and_escapes_every_hostile_text(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "<script" not in html.lower() and "<svg" not in html.lower()
    assert "<img src=x" not in html and 'onerror="top' not in html and '<img src="http' not in html
    assert "&lt;script&gt;top.PWNED.push(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;A&lt;/b&gt;" in html
    # no external references: every src / href is inline data, no stylesheet or script links
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert attr.startswith("data:image/png;base64,")
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count("data:image/png;base64,") == len(PLOTS)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install -y chromium)")
def test_report_in_a_real_browser(run_dir, tmp_path):
    """Every image loads, the page asks no other host for anything, hostile text stays inert, and the browser
    (its own service calls included) reaches nothing but the test's loopback server. A control page with the
    same text unescaped shows that the harness would catch a page that fetches from outside."""
    shutil.copy(run_dir / "report.html", tmp_path / "report.html")
    (tmp_path / "control.html").write_text("<!DOCTYPE html><title>control</title>" + "".join(HOSTILE))
    with PageCheck(tmp_path) as check:
        control, report = check.load("control.html"), check.load("report.html")
    assert sorted(control.result["pwned"]) == [1, 2, 3]
    assert "evil.example" in {urlsplit(url).hostname for url in control.page_urls}, control.page_urls
    assert report.result["pwned"] == [] and report.result["scripts"] == 0
    assert report.result["title"] == "metaconf report: study <script>alert(3)</script>"  # shown as text
    assert len(report.result["images"]) == len(PLOTS)
    assert all(complete and width > 0 for complete, width in report.result["images"])
    assert {urlsplit(url).netloc for url in report.page_urls} == {check.host}, report.page_urls
    assert {urlsplit(url).path for url in report.page_urls} <= {"/harness-report.html", "/report.html", "/favicon.ico"}
    assert any(urlsplit(host).hostname == "~notfound" for host in control.refused), control.refused  # the rule
    for load in (control, report):  # nothing reached outside, whoever asked
        assert set(load.connections) == {check.host}, (load.connections, load.browser_urls)
        assert set(load.resolved) <= {f"http://{check.host}"}, (load.resolved, load.browser_urls)
    assert {urlsplit(path).path for path in check.requests} <= {
        "/harness-control.html",
        "/control.html",
        "/x",
        "/harness-report.html",
        "/report.html",
        "/favicon.ico",
    }


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install -y chromium)")
def test_screenshot_script_saves_the_first_screen(run_dir, tmp_path):
    import struct
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "scripts" / "screenshot_report.py"
    run = shutil.copytree(run_dir, tmp_path / "run")
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            str(run),
            "--no-rebuild",
            "--out",
            str(tmp_path / "shot.png"),
            "--width",
            "900",
            "--height",
            "600",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    png = (tmp_path / "shot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (900, 600)
    assert (
        subprocess.run([sys.executable, str(script), str(tmp_path / "nope")], capture_output=True, text=True).returncode
        == 2
    )


def test_markdown_escapes_tables_links_and_html(run_dir):
    md = (run_dir / "report.md").read_text()
    text = "\n".join(line for line in md.splitlines() if not line.startswith("    "))  # outside code blocks
    assert "<script" not in text.lower() and "<img" not in text.lower() and "<b>" not in text
    assert "\\[click\\](http://evil" in md and not re.search(r"(?<!\\)\]\(http://evil", md)  # no live link
    table_lines = [line for line in md.splitlines() if line.startswith("| ")]
    example_header = next(line for line in table_lines if line.startswith("| condition | task | dataset | item"))
    expected = len(re.split(r"(?<!\\)\|", example_header))
    start = md.index(example_header)
    for line in md[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        assert len(re.split(r"(?<!\\)\|", line)) == expected
    # template text is shown literally in an indented code block, as text rather than JSON
    assert "    </pre><script>alert(4)</script>" in md
    assert "User message, multiple-choice questions:" in md and "    Confidence: {confidence}%" in md
    assert '"user":' not in md and "{\\n" not in md
    assert "Settings: max new tokens 40; stop" in md


def test_md_escape_rules():
    assert md_escape("a|b") == r"a\|b"
    assert md_escape("<script>") == "&lt;script&gt;"
    assert md_escape("[x](y)") == r"\[x\](y)"
    assert md_escape("# title") == r"\# title"
    assert md_escape("- item") == r"\- item"
    assert md_escape("1. first") == r"1\. first"
    assert md_escape("line\nbreak") == "line break"
    assert md_escape("0.123 (−0.1, +0.2)") == "0.123 (−0.1, +0.2)"


def test_findings_table_leads_with_a_verdict_per_claim(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = finding_rows(metrics, {"conditions": list(GOOD)})
    by = {(r.claim.key, r.condition, r.metric): r for r in rows}
    # no shuffled-target condition, no constant predictor, no objective but sft in this study
    controls = ("targets", "constant", "objective")
    assert list(dict.fromkeys(r.claim.key for r in rows)) == [k for k in CLAIMS if k not in controls]  # in order
    # calibration and discrimination: trained conditions improve on every dataset, per domain group
    ece_in = by[("calibration_in", "single", "ece")]
    assert set(ece_in.cells) == {"mmlu", "pooled in-domain"} and ece_in.verdict == "supported"
    assert ece_in.cells["mmlu"].diff < 0 and ece_in.cells["mmlu"].ci[1] < 0
    assert set(by[("calibration_new", "multitask", "ece")].cells) == {"medqa<script>", "pooled new-domain"}
    assert by[("discrimination", "pairwise", "auc_a")].verdict == "supported"
    # transfer: single-task conditions do not help the other task (the same flat confidences / choices as base)
    assert by[("transfer", "single", "auc_c")].verdict == "no evidence"
    assert by[("transfer", "pairwise", "auroc")].verdict == "collapsed"  # one stated value: nothing to rank
    assert ("transfer", "multitask", "ece") not in by
    # multitask vs each single-task condition on that condition's task: as good, so no evidence either way
    assert by[("multitask", "multitask − single", "ece")].verdict == "no evidence"
    assert ("multitask", "multitask − pairwise", "auc_c") in by
    # accuracy: the same answers everywhere, so every interval is [0, 0]
    assert by[("accuracy", "pairwise", "accuracy")].verdict == "supported"
    assert all(not r.cells.get("pooled in-domain") or r.verdict for r in rows)


def test_first_screen_shows_format_findings_then_figures(run_dir):
    md = (run_dir / "report.md").read_text()
    top = md[: md.index("Figures")]
    assert "Reply format: guided targets, guided consistency, guided evaluation" in top
    assert "at least 99% of items in all 16 rows" in top
    assert "| claim | condition | metric | mmlu in-domain | medqa&lt;script&gt; new domain | POOLED in-domain" in top
    assert "Calibration improves in the training domains: SUPPORTED" in top
    html = (run_dir / "report.html").read_text()
    assert html.index('<table class="findings">') < html.index("<h2>Figures</h2>") < html.index("Appendix")
    assert "rowspan=" in html and 'class="num for"' in html


def test_format_line_names_each_stage():
    line = format_summary({"format": {"targets": "free", "consistency": "free", "evaluation": "free"}})
    assert line == "Reply format: free targets, free consistency, free evaluation"
    assert "constrained" in format_summary({"format": {"targets": "guided", "evaluation": "free"}})
    assert format_summary({}) is None and format_summary({"format": "guided"}) is None


@pytest.mark.parametrize(
    "readings, expected",
    [
        (["for", "for", "unclear"], "supported"),
        (["for", "unclear", "undefined", "undefined"], "supported"),
        (["for", "unclear", "unclear"], "no evidence"),
        (["for", "against", "for"], "no evidence"),
        (["against", "against", "unclear"], "contradicted"),
        (["undefined"], "no evidence"),
        ([], "no evidence"),
    ],
)
def test_row_verdict_rule(readings, expected):
    assert row_verdict(readings)[0] == expected


def test_reading_of_one_interval():
    assert reading(-0.2, [-0.3, -0.1], "ece", "better") == "for"
    assert reading(-0.2, [-0.3, -0.1], "auroc", "better") == "against"
    assert reading(0.1, [-0.1, 0.3], "auroc", "better") == "unclear"
    assert reading(None, None, "auroc", "better") == "undefined"
    assert reading(0.01, [-0.04, 0.04], "accuracy", "unchanged") == "for"
    assert reading(0.01, [-0.2, 0.2], "accuracy", "unchanged") == "unclear"
    assert reading(0.3, [0.1, 0.5], "accuracy", "unchanged") == "against"


def test_each_condition_has_its_own_colour():
    colors = condition_colors(["base", "single", "pairwise", "multitask", "mine", "other"])
    assert len(set(colors.values())) == 6
    assert colors == {**colors, **condition_colors(["multitask", "base", "single", "pairwise"])}  # fixed colours


def test_verdict_follows_the_interval_and_direction():
    assert verdict({"metric": "ece", "diff": -0.2, "diff_ci": [-0.3, -0.1]}) == "improved"
    assert verdict({"metric": "ece", "diff": 0.2, "diff_ci": [0.1, 0.3]}) == "worsened"
    assert verdict({"metric": "auroc", "diff": 0.2, "diff_ci": [0.1, 0.3]}) == "improved"
    assert verdict({"metric": "auroc", "diff": 0.1, "diff_ci": [-0.05, 0.3]}) == "no evidence of a change"
    assert verdict({"metric": "auroc", "diff": None, "diff_ci": None}) == "undefined"


def _bare_run(run: Path) -> Path:
    """metrics.json only: no predictions, config, templates or training logs."""
    preds = {
        ("base", "single", "mmlu"): [
            {
                "id": f"m/{i}",
                "dataset": "mmlu",
                "domain": "general",
                "condition": "base",
                "task": "single",
                "raw": "x",
                "answer": "A",
                "confidence": 0.5,
                "correct": bool(i % 2),
                "parsed": True,
            }
            for i in range(6)
        ]
    }
    write_metrics(run / "metrics.json", summarize(preds, {"mmlu": {"domain": "general", "in_domain": True}}, n_boot=50))
    return run


def test_report_without_optional_files(tmp_path):
    md_path, html_path = write_report(_bare_run(tmp_path / "bare"))
    assert "No trained condition was compared" in md_path.read_text()
    assert "Reply format" not in md_path.read_text()  # metrics.json without "format"
    assert html_path.is_file()


def test_missing_or_broken_inputs_are_one_line_errors(tmp_path, run_dir):
    with pytest.raises(DataError, match="metrics.json: missing"):
        write_report(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir / "predictions", copy / "predictions")
    shutil.copy(run_dir / "metrics.json", copy / "metrics.json")
    bad = copy / "predictions" / "base__single__mmlu.jsonl"
    bad.write_text(bad.read_text() + "{not json\n")
    with pytest.raises(DataError, match=r"base__single__mmlu.jsonl:17: invalid JSON"):
        write_report(copy)
    lines = bad.read_text().splitlines()[:16]  # a row that parses but holds a wrong value: file, line and field
    lines[4] = lines[4].replace('"correct": false', '"correct": "no"').replace('"correct": true', '"correct": "yes"')
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"base__single__mmlu.jsonl:5: field 'correct': expected true/false, got '"):
        write_report(copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["comparisons"][2]["n"] = "many"
    (copy / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(DataError, match=r"metrics.json: field 'comparisons.2.n': Input should be a valid integer"):
        write_report(copy)


def test_cli_regenerates_the_report(tmp_path, capsys):
    run = _bare_run(tmp_path / "bare")
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (run / "report.md").is_file() and (run / "plots" / "bars_ece.pdf").is_file()
    assert main(["report", str(run / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
