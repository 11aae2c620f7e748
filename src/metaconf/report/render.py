"""write_report(run_dir): report.md and a self-contained report.html (plots inline) from a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from metaconf.conditions import BASE, condition_colors, conditions_of
from metaconf.io import write_text_atomic
from metaconf.metrics.registry import TASK_NAMES, columns, headline_metrics, headline_names, label, metric_info
from metaconf.records import SinglePrediction
from metaconf.report import plots
from metaconf.report.document import (
    Block,
    Bullets,
    Figure,
    Heading,
    Paragraph,
    Preformatted,
    Table,
    to_html,
    to_markdown,
)
from metaconf.report.findings import (
    EQUIVALENCE,
    dataset_columns,
    finding_rows,
    findings_table,
    fmt,
    fmt_ci,
    format_summary,
    read_rate_summary,
    verdict,
)
from metaconf.report.run_folder import RunData, load_run

POOLED_COLUMNS = 4  # the pooled results tables show the first columns of each task's table
BARS = (("single", "ece"), ("single", "auroc"), ("pairwise", "auc_a"))  # (task, metric): the per-dataset bars
EXAMPLE_CHARS = 300


def _model_name(data: RunData) -> str:
    model = data.metrics.get("model") or data.config.get("model") or "unknown model"
    if isinstance(model, dict):
        model = model.get("name") or model.get("engine") or json.dumps(model, sort_keys=True)
    return str(model)


def _config(data: RunData) -> dict[str, Any]:
    """The study config: config.yaml, else the copy inside metrics.json."""
    return {**(data.metrics.get("config") or {}), **data.config}


def _conditions(data: RunData) -> list[str]:
    """Conditions in the study's order (base first), then any others found in metrics.json."""
    found = list(dict.fromkeys(r["condition"] for r in data.metrics["rows"]))
    listed = [c.name for c in conditions_of(_config(data)) if c.name in found]
    return sorted(listed + [c for c in found if c not in listed], key=lambda c: c != BASE)  # stable sort


def _overview(data: RunData) -> list[Block]:
    """The lines above the findings: what was run, in which reply format, and how many replies were read."""
    rows = data.metrics["rows"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    n_items = max((r["n"] for r in rows if r["task"] == "single"), default=0)
    lines = [
        f"Model: {_model_name(data)}. Conditions: {', '.join(_conditions(data))}. "
        f"{len(datasets)} datasets, up to {n_items} questions each; 95% intervals from "
        f"{data.metrics.get('bootstrap', {}).get('n_boot', '?')} paired bootstrap resamples."
    ]
    for line in (format_summary(data.metrics), read_rate_summary(data.metrics)):
        if line:
            lines.append(line)
    return [Paragraph(" ".join(lines), note=True)]


def _findings(data: RunData) -> list[Block]:
    rows = finding_rows(data.metrics, _config(data))
    blocks: list[Block] = [Heading(1, "Findings")]
    if not rows:
        return blocks + [
            Paragraph("No trained condition was compared with the base model, so there is nothing to test yet.")
        ]
    level = 100 * (1 - float(data.metrics.get("bootstrap", {}).get("alpha", 0.05)))
    blocks += [
        Paragraph(
            "Each cell: the change on one dataset (condition minus base on the same items; for multitask, "
            f"minus the single-task condition) and its {level:.0f}% interval. ✓ the interval excludes zero in the "
            "claim's direction, ✗ in the other; POOLED cells mix datasets and do not vote.",
            note=True,
        ),
        findings_table(rows, dataset_columns(data.metrics)),
        Paragraph(
            "Verdict per row (✓n ✗m of k: counts among the k datasets with a defined change): supported "
            "when at least half read ✓ and none ✗; contradicted when at least half read ✗ and none ✓; "
            "otherwise no evidence (an interval that includes zero is no evidence of a change, not evidence of "
            "no change). A claim is supported when some of its rows are and none are contradicted. For accuracy, "
            f"✓ means the whole interval lies within ±{EQUIVALENCE:.2f}.",
            note=True,
        ),
    ]
    return blocks


def _setup(data: RunData) -> list[Block]:
    rows = data.metrics["rows"]
    blocks: list[Block] = [
        Heading(2, "A. Setup"),
        Bullets(
            [
                f"Model: {_model_name(data)}",
                f"Study: {_config(data).get('name', data.run_dir.name)}",
                f"Conditions: {', '.join(_conditions(data))}",
                f"Bootstrap: {data.metrics.get('bootstrap', {}).get('n_boot', '?')} resamples of questions "
                f"(single task) or pairs (pairwise task); intervals are percentile intervals.",
            ]
        ),
    ]
    sizes: dict[str, dict[str, Any]] = {}
    cfg_data = _config(data).get("data") or {}
    for entry in cfg_data.get("train") or []:
        if isinstance(entry, dict):
            sizes[str(entry.get("label") or entry.get("name"))] = {
                "train": entry.get("train"),
                "test": entry.get("held_out"),
            }
    for entry in cfg_data.get("eval") or []:
        if isinstance(entry, dict):
            sizes[str(entry.get("label") or entry.get("name"))] = {"train": 0, "test": entry.get("n")}
    table = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        row = next(r for r in rows if r["dataset"] == dataset)
        evaluated = {
            t: max((r["n"] for r in rows if r["dataset"] == dataset and r["task"] == t), default=0) for t in TASK_NAMES
        }
        size = sizes.get(dataset, {})
        table.append(
            [
                dataset,
                str(row.get("domain")),
                "in-domain" if row.get("in_domain") else "new domain",
                str(size.get("train", "?")),
                str(evaluated["single"]),
                str(evaluated["pairwise"]),
            ]
        )
    return blocks + [
        Table(["dataset", "domain", "role", "training questions", "evaluated questions", "evaluated pairs"], table)
    ]


TEMPLATE_PARTS = {
    "system": "System message",
    "user": "User message",
    "question": "How each question is shown inside the pairwise prompt",
    "output": "The reply the model is trained to give (and the parser reads)",
}
ANSWER_TYPES = {"mc": "multiple-choice", "numeric": "numeric", "open": "open-ended", "boolean": "yes/no"}


def _template(t: dict[str, Any]) -> list[Block]:
    """One prompt template as readable text: description, each message per answer type, then the settings."""
    blocks: list[Block] = [Heading(3, f"{t.get('name', '?')} (version {t.get('version', '?')})")]
    if t.get("description"):
        blocks.append(Paragraph(str(t["description"]), note=True))
    if isinstance(t.get("text"), str):  # a template stored as one text
        blocks.append(Preformatted(t["text"]))
    for key, part in TEMPLATE_PARTS.items():
        value = t.get(key)
        if isinstance(value, str) and value:
            blocks += [Paragraph(f"{part}:"), Preformatted(value)]
        elif isinstance(value, dict):
            for kind, text in value.items():
                blocks += [
                    Paragraph(f"{part}, {ANSWER_TYPES.get(str(kind), str(kind))} questions:"),
                    Preformatted(text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)),
                ]
    rest = {
        k: v
        for k, v in t.items()
        if k not in {"name", "version", "description", "text", *TEMPLATE_PARTS} and v not in (None, "", [], {})
    }
    if rest:
        blocks.append(
            Paragraph(
                "Settings: "
                + "; ".join(f"{k.replace('_', ' ')} {json.dumps(v, ensure_ascii=False)}" for k, v in rest.items())
            )
        )
    return blocks


def _templates(data: RunData) -> list[Block]:
    templates = data.templates
    if isinstance(templates, dict):
        templates = [{"name": k, **(v if isinstance(v, dict) else {"text": v})} for k, v in templates.items()]
    if not isinstance(templates, list) or not templates:
        return []
    blocks: list[Block] = [Heading(2, "E. Prompt templates")]
    for t in templates:
        if isinstance(t, dict):
            blocks += _template(t)
    return blocks


def _results(rows: list[dict[str, Any]], task: str, columns: tuple[str, ...], pooled: bool = False) -> Table:
    headers = ["condition", "dataset", "domain", "n", "parse rate"] + [label(c) for c in columns]
    body = []
    for r in rows:
        if r["task"] != task:
            continue
        body.append(
            [r["condition"], r["dataset"], str(r.get("domain")), str(r.get("n")), fmt(r.get("parse_rate"))]
            + [fmt_ci(r.get(c), r.get(f"{c}_ci")) for c in columns]
        )
    return Table(headers, body)


def _pooled_datasets(pooled: list[dict[str, Any]], group: str) -> str:
    names = dict.fromkeys(d for r in pooled if r["dataset"] == group for d in r.get("datasets") or [])
    return "over " + ", ".join(names) if names else "datasets not listed"


def _transfer(comparisons: list[dict[str, Any]], pooled: list[dict[str, Any]]) -> list[Block]:
    blocks: list[Block] = []
    for group in dict.fromkeys(c["dataset"] for c in comparisons if c.get("pooled")):
        conditions = list(dict.fromkeys(c["condition"] for c in comparisons if c["dataset"] == group))
        body = []
        for condition in conditions:
            cells = [condition]
            for task, metric in headline_metrics():
                c = next(
                    (
                        c
                        for c in comparisons
                        if (c["condition"], c["task"], c["dataset"], c["metric"]) == (condition, task, group, metric)
                    ),
                    None,
                )
                cells.append(
                    "—"
                    if c is None
                    else fmt_ci(c["diff"], c["diff_ci"], True)
                    + ("" if verdict(c) in ("no evidence of a change", "undefined") else f" {verdict(c)}")
                )
            body.append(cells)
        blocks += [
            Paragraph(f"POOLED: {group} ({_pooled_datasets(pooled, group)})"),
            Table(["trained on"] + [f"{task} task: change in {label(m)}" for task, m in headline_metrics()], body),
        ]
    return blocks


def _changes(comparisons: list[dict[str, Any]]) -> Table:
    """Per-dataset changes (condition minus its reference: base, or for contrasts a single-task condition)."""
    body = [
        [
            c["condition"],
            c.get("reference", BASE),
            c["task"],
            c["dataset"],
            label(c["metric"]),
            str(c["n"]),
            fmt(c["base"]),
            fmt(c["value"]),
            fmt_ci(c["diff"], c["diff_ci"], True),
            "—" if c.get("p_value") is None else f"{c['p_value']:.3f}",
            verdict(c),
        ]
        for c in comparisons
        if not c.get("pooled") and c["metric"] in headline_names()
    ]
    return Table(
        [
            "condition",
            "vs",
            "task",
            "dataset",
            "metric",
            "n",
            "reference value",
            "condition value",
            "change (95% CI)",
            "p",
            "reading",
        ],
        body,
    )


def _single_arrays(data: RunData) -> tuple[dict, dict]:
    """condition -> group -> (confidence, correct) of parsed single-task items; and condition -> pooled arrays."""
    in_domain = {r["dataset"]: bool(r.get("in_domain")) for r in data.metrics["rows"]}
    by_group: dict[str, dict[str, list[list[float]]]] = {}
    for (condition, task, dataset), rows in data.predictions.items():
        if task != "single":
            continue
        group = "in-domain" if in_domain.get(dataset) else "new domain"
        target = by_group.setdefault(condition, {}).setdefault(group, [[], []])
        for row in rows:
            if row.parsed and row.confidence is not None:
                target[0].append(float(row.confidence))
                target[1].append(float(row.correct))
    order = list(dict.fromkeys(r["condition"] for r in data.metrics["rows"]))
    ranked = sorted(by_group.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    grouped = {c: {g: (np.array(v[0]), np.array(v[1])) for g, v in sorted(groups.items())} for c, groups in ranked}
    pooled = {
        c: (np.concatenate([v[0] for v in groups.values()]), np.concatenate([v[1] for v in groups.values()]))
        for c, groups in grouped.items()
    }
    return grouped, pooled


def _headline_figures(data: RunData, colors: dict[str, str]) -> list[Block]:
    """The paper-style summary figure and the transfer heatmap (pooled groups)."""
    plots_dir = data.run_dir / "plots"
    metrics = data.metrics
    pooled = metrics.get("pooled") or []
    blocks: list[Block] = []
    made = plots.headline(pooled, metrics["rows"], plots_dir, colors, _conditions(data))
    if made:
        shown = {task: " and ".join(label(m) for _, m in headline_metrics(task)) for task in TASK_NAMES}
        blocks.append(
            Figure(
                f"{shown['single']} (single-question task), {shown['pairwise']} (pairwise task) for "
                "every condition, in-domain vs new-domain: bars are POOLED over each group's datasets "
                "with 95% intervals, dots are the single datasets, n/a = undefined.",
                *made,
            )
        )
    trained = [c for c in _conditions(data) if c != BASE]
    cells = {
        (c["dataset"], c["condition"], f"{c['task']}:{c['metric']}"): c
        for c in metrics.get("comparisons") or []
        if c.get("pooled")
    }
    made = plots.transfer_heatmap(cells, trained, list(headline_metrics()), plots_dir)
    if made:
        blocks.append(
            Figure(
                "Transfer matrix: change vs base (POOLED) by the condition trained (rows) and the task "
                "evaluated (columns); blue = better, bold = the 95% interval excludes zero.",
                *made,
            )
        )
    return blocks


def _figures(data: RunData, colors: dict[str, str]) -> list[Block]:
    plots_dir = data.run_dir / "plots"
    grouped, pooled = _single_arrays(data)
    logs = {
        cond: [
            (float(r["step"]), float(r["loss"]))
            for r in rows_
            if isinstance(r.get("step"), (int, float)) and isinstance(r.get("loss"), (int, float))
        ]
        for cond, rows_ in data.training_logs.items()
    }
    made = [
        (
            "Reliability diagrams per condition (single-question task; in-domain solid, new domain dashed).",
            plots.reliability_diagrams(grouped, plots_dir, colors=colors),
        ),
        (
            "Stated confidence of correct (filled) vs incorrect (outline) answers, per condition.",
            plots.confidence_histograms(pooled, plots_dir, colors=colors),
        ),
        ("Training loss per step, per trained condition.", plots.loss_curves(logs, plots_dir, colors=colors)),
    ]
    return [Figure(caption, paths[0], paths[1]) for caption, paths in made if paths]


def _bar_figures(data: RunData, colors: dict[str, str]) -> list[Block]:
    plots_dir = data.run_dir / "plots"
    rows = data.metrics["rows"]
    made = []
    for task, metric in BARS:
        info = metric_info(metric)
        reads = "lower is better" if info.better == "lower" else f"{info.chance:g} = chance"
        made.append(
            (
                f"{info.label} per condition and dataset ({'pairwise task; ' * (task == 'pairwise')}{reads}).",
                plots.metric_bars([r for r in rows if r["task"] == task], metric, plots_dir, colors),
            )
        )
    return [Figure(caption, paths[0], paths[1]) for caption, paths in made if paths]


def _examples(data: RunData, per_condition: int = 2) -> Table | None:
    body = []
    for (condition, task, dataset), rows in data.predictions.items():
        shown = sum(1 for b in body if b[0] == condition and b[1] == task)
        for row in rows[: max(0, per_condition - shown)]:
            raw = "" if row.raw is None else row.raw
            raw = raw if len(raw) <= EXAMPLE_CHARS else raw[:EXAMPLE_CHARS] + "…"
            if isinstance(row, SinglePrediction):
                conf = "None" if row.confidence is None else f"{row.confidence:.3g}"
                item, read = row.id, f"answer {row.answer!s}, confidence {conf}"
                graded = "correct" if row.correct else "incorrect"
            else:
                item, read = f"{row.id1} vs {row.id2}", f"choice {row.choice!s}"
                graded = f"Q1 {'right' if row.correct1 else 'wrong'}, Q2 {'right' if row.correct2 else 'wrong'}"
            body.append([condition, task, dataset, item, raw, read if row.parsed else "not parsed", graded])
    if not body:
        return None
    return Table(["condition", "task", "dataset", "item", "model output", "read as", "graded"], body)


def build_blocks(data: RunData) -> list[Block]:
    """The whole report as blocks (shared by the Markdown and the HTML rendering): overview and findings first,
    then the headline figures and plots, then the appendix (setup, tables, templates, examples)."""
    metrics = data.metrics
    rows, pooled = metrics["rows"], metrics.get("pooled") or []
    comparisons, contrasts = metrics.get("comparisons") or [], metrics.get("contrasts") or []
    colors = condition_colors(_conditions(data), conditions_of(_config(data)))
    blocks = _overview(data) + _findings(data)
    figures = _headline_figures(data, colors) + _figures(data, colors)
    if figures:
        blocks += [
            Heading(1, "Figures"),
            Paragraph(
                "Each plot is also saved as PNG and PDF in plots/; one colour per condition throughout.", note=True
            ),
        ] + figures
    from metaconf.report.baselines import baseline_blocks  # baselines, teacher gap, meta-d′ (own module)

    blocks += baseline_blocks(metrics, data.run_dir / "plots")
    blocks += [Heading(1, "Appendix")] + _setup(data)
    blocks += [
        Heading(2, "B. Results per condition, task and dataset"),
        Paragraph(
            "Values with 95% bootstrap intervals in parentheses; — = undefined (e.g. AUROC when every "
            "answer has the same grade).",
            note=True,
        ),
    ]
    if any(r["task"] == "single" for r in rows):
        blocks += [Heading(3, "Single-question confidence"), _results(rows, "single", columns("single"))]
    if any(r["task"] == "pairwise" for r in rows):
        blocks += [Heading(3, "Pairwise comparison"), _results(rows, "pairwise", columns("pairwise"))]
    if pooled:
        blocks += [
            Heading(3, "In-domain vs new-domain (POOLED over datasets)"),
            Paragraph(
                "Pooled rows concatenate the items of every dataset in the group: a pooled AUROC also "
                "rewards confidence that merely follows the datasets' different accuracies, so read "
                "the per-dataset rows first.",
                note=True,
            ),
        ]
        for task in TASK_NAMES:
            if any(r["task"] == task for r in pooled):
                blocks.append(_results(pooled, task, columns(task)[:POOLED_COLUMNS]))
    if comparisons:
        blocks += [
            Heading(2, "C. Changes"),
            Heading(3, "Transfer matrix (POOLED)"),
            Paragraph(
                "Change vs base (condition minus base, 95% interval) by the condition trained on (rows) "
                "and the task evaluated (columns); a reading is shown only when the interval excludes "
                "zero.",
                note=True,
            ),
        ]
        blocks += _transfer(comparisons, pooled)
        blocks += [Heading(3, "Changes per dataset, with p-values"), _changes(comparisons + contrasts)]
    bars = _bar_figures(data, colors)
    if bars:
        blocks += [Heading(2, "D. Per-dataset bars")] + bars
    blocks += _templates(data)
    examples = _examples(data)
    if examples:
        blocks += [
            Heading(2, "F. Example outputs"),
            Paragraph(
                f"The first items of each condition and task, model text shown verbatim (escaped, cut "
                f"at {EXAMPLE_CHARS} characters).",
                note=True,
            ),
            examples,
        ]
    from metaconf.report.controls import control_blocks  # collapse, noise floor, selective answering (own module)

    blocks += control_blocks(metrics, data.run_dir / "plots")
    return blocks


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write RUN/report.md, RUN/report.html and RUN/plots/*.{png,pdf} from the run folder's files."""
    data = load_run(run_dir)
    blocks = build_blocks(data)
    title = f"metaconf report: {_config(data).get('name', data.run_dir.name)}"
    md_path = write_text_atomic(data.run_dir / "report.md", to_markdown(title, blocks, data.run_dir))
    html_path = write_text_atomic(data.run_dir / "report.html", to_html(title, blocks))
    return md_path, html_path
