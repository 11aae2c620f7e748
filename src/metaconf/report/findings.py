"""The findings table: one group of rows per question the study asks, each row a claim tested per dataset.

A row holds, per dataset, the paired change (condition minus base, or multitask minus a single-task condition)
with its 95% bootstrap interval from metrics.json, and a verdict computed from those intervals by one rule
(`row_verdict`, documented in docs/report.md). Pooled cells are shown, labelled, and never vote.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from metaconf.conditions import BASE, conditions_of, paper_condition
from metaconf.metrics.registry import TASK_NAMES, better, headline_metrics, label

# an accuracy change whose whole interval lies within +-EQUIVALENCE counts as "unchanged"
EQUIVALENCE = 0.05
SUPPORTED, CONTRADICTED, NO_EVIDENCE = "supported", "contradicted", "no evidence"


def fmt(value: Any, signed: bool = False) -> str:
    """A number with 3 decimals and a true minus sign; an undefined value shows as an em dash."""
    if value is None:
        return "—"
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return text.replace("-", "−")


def fmt_ci(value: Any, ci: Any, signed: bool = False) -> str:
    if value is None:
        return "—"
    if not ci:
        return fmt(value, signed)
    return f"{fmt(value, signed)} ({fmt(ci[0], signed)}, {fmt(ci[1], signed)})"


def verdict(comparison: dict[str, Any]) -> str:
    """improved / worsened (interval excludes zero), no evidence (includes zero), or undefined."""
    diff, ci, metric = comparison.get("diff"), comparison.get("diff_ci"), comparison["metric"]
    if diff is None or not ci:
        return "undefined"
    if ci[0] <= 0 <= ci[1]:
        return "no evidence of a change"
    if better(metric) == "lower":
        return "improved" if diff < 0 else "worsened"
    if better(metric) == "higher":
        return "improved" if diff > 0 else "worsened"
    return "increased" if diff > 0 else "decreased"


# ----------------------------------------------------------------------------------------------- the claims
@dataclass(frozen=True)
class Claim:
    """One question of the study: which changes, on which task and datasets, and which direction supports it."""

    key: str
    title: str
    paper: str  # what Steyvers et al. (2025) report, for comparison
    expect: str  # "better" (ECE down, AUC up) or "unchanged" (interval within +-EQUIVALENCE)
    domains: str  # "in", "new" or "all": which datasets vote


CLAIMS = {
    "calibration_in": Claim(
        "calibration_in", "Calibration improves in the training domains", "improves", "better", "in"
    ),
    "calibration_new": Claim(
        "calibration_new",
        "Calibration improves in new domains",
        "improves, less than in the training domains",
        "better",
        "new",
    ),
    "discrimination": Claim(
        "discrimination", "Discrimination improves (AUROC; AUC_c and AUC_a for pairs)", "improves", "better", "all"
    ),
    "transfer": Claim(
        "transfer",
        "Training on one task (single or pairwise) improves the other task",
        "does not reliably transfer",
        "better",
        "all",
    ),
    "multitask": Claim(
        "multitask",
        "Multitask beats training on one task, on that task",
        "multitask gives the broadest gains",
        "better",
        "all",
    ),
    "accuracy": Claim(
        "accuracy",
        "Answer accuracy is unchanged",
        f"unchanged (here: interval within ±{EQUIVALENCE:.2f})",
        "unchanged",
        "all",
    ),
}


@dataclass
class Cell:
    """One dataset's change: diff, interval, and how it reads for the claim."""

    diff: float | None
    ci: list[float] | None
    reading: str  # "for", "against", "unclear", "undefined"


@dataclass
class FindingRow:
    claim: Claim
    condition: str  # "single", or "multitask − single" for a contrast
    task: str
    metric: str
    cells: dict[str, Cell] = field(default_factory=dict)  # dataset or pooled group -> cell
    verdict: str = NO_EVIDENCE
    reason: str = ""


def reading(diff: float | None, ci: list[float] | None, metric: str, expect: str) -> str:
    """How one interval reads for a claim: 'for', 'against', 'unclear' (includes zero) or 'undefined'."""
    if diff is None or not ci:
        return "undefined"
    if expect == "unchanged":
        if ci[0] >= -EQUIVALENCE and ci[1] <= EQUIVALENCE:
            return "for"
        return "unclear" if ci[0] <= 0 <= ci[1] else "against"
    if ci[0] <= 0 <= ci[1]:
        return "unclear"
    improved = diff < 0 if better(metric) == "lower" else diff > 0
    return "for" if improved else "against"


def row_verdict(readings: Iterable[str]) -> tuple[str, str]:
    """The rule: among datasets with a defined change, *supported* when at least half read for the claim and none
    against; *contradicted* when at least half read against and none for; otherwise *no evidence*."""
    votes = [r for r in readings if r != "undefined"]
    n_for, n_against = votes.count("for"), votes.count("against")
    if not votes:
        return NO_EVIDENCE, "all undefined"
    tally = f"✓{n_for} ✗{n_against} of {len(votes)}"
    if n_for and not n_against and 2 * n_for >= len(votes):
        return SUPPORTED, tally
    if n_against and not n_for and 2 * n_against >= len(votes):
        return CONTRADICTED, tally
    return NO_EVIDENCE, tally


def claim_verdict(rows: list[FindingRow]) -> str:
    """A claim over its rows: supported (contradicted) when some rows are and none the other way."""
    verdicts = {r.verdict for r in rows}
    if SUPPORTED in verdicts and CONTRADICTED not in verdicts:
        return SUPPORTED
    if CONTRADICTED in verdicts and SUPPORTED not in verdicts:
        return CONTRADICTED
    return NO_EVIDENCE


# ------------------------------------------------------------------------------------------ building the rows
def trained_tasks(condition: str, config: dict[str, Any]) -> set[str]:
    """Tasks a condition was trained on: its training set's task (the study's targets.sets), else its set's name."""
    record = next((c for c in conditions_of(config) if c.name == condition), paper_condition(condition))
    task = record.training_set or ""
    for spec in (config.get("targets") or {}).get("sets") or []:
        if isinstance(spec, dict) and spec.get("name") == record.training_set:
            task = str(spec.get("task"))
    return set(TASK_NAMES) if task == "multitask" else {task} & set(TASK_NAMES)


def dataset_columns(metrics: dict[str, Any]) -> list[tuple[str, bool, bool]]:
    """(dataset, in_domain, pooled) in display order: in-domain datasets, new-domain datasets, pooled groups."""
    seen = {r["dataset"]: bool(r.get("in_domain")) for r in metrics.get("rows", [])}
    pooled = {r["dataset"]: bool(r.get("in_domain")) for r in metrics.get("pooled") or []}
    return (
        [(d, True, False) for d, i in seen.items() if i]
        + [(d, False, False) for d, i in seen.items() if not i]
        + sorted(((d, i, True) for d, i in pooled.items()), key=lambda x: not x[1])
    )


def _row(
    claim: Claim,
    entries: list[dict[str, Any]],
    columns: list[tuple[str, bool, bool]],
    condition: str,
    label: str,
    task: str,
    metric: str,
) -> FindingRow | None:
    found = {c["dataset"]: c for c in entries if (c["condition"], c["task"], c["metric"]) == (condition, task, metric)}
    if not found:
        return None
    row = FindingRow(claim, label, task, metric)
    for dataset, in_domain, _ in columns:
        wanted = claim.domains == "all" or (claim.domains == "in") == in_domain
        if wanted and dataset in found:
            c = found[dataset]
            row.cells[dataset] = Cell(
                c.get("diff"), c.get("diff_ci"), reading(c.get("diff"), c.get("diff_ci"), metric, claim.expect)
            )
    row.verdict, row.reason = row_verdict(
        cell.reading for name, cell in row.cells.items() if not any(p and name == d for d, _, p in columns)
    )
    return row


def finding_rows(metrics: dict[str, Any], config: dict[str, Any] | None = None, base: str = BASE) -> list[FindingRow]:
    """Every row of the findings table, in the order of the study's questions; claims without data are absent."""
    config = config if config is not None else (metrics.get("config") or {})
    comparisons = metrics.get("comparisons") or []
    contrasts = metrics.get("contrasts") or []
    columns = dataset_columns(metrics)
    found = [c for c in dict.fromkeys(r["condition"] for r in metrics.get("rows", [])) if c != base]
    listed = [c.name for c in conditions_of(config) if c.name in found]
    conditions = listed + [c for c in found if c not in listed]  # the study's order
    tasks = {c: trained_tasks(c, config) for c in conditions}
    single_trained = [c for c in conditions if "single" in tasks[c]]
    pair_trained = [c for c in conditions if "pairwise" in tasks[c]]
    plan: list[tuple[str, list[dict[str, Any]], str, str, str, str]] = []  # claim, entries, cond, label, task, metric
    for key in ("calibration_in", "calibration_new"):
        plan += [(key, comparisons, c, c, "single", "ece") for c in single_trained]
    plan += [("discrimination", comparisons, c, c, "single", "auroc") for c in single_trained]
    plan += [
        ("discrimination", comparisons, c, c, task, m) for task, m in headline_metrics("pairwise") for c in pair_trained
    ]
    plan += [
        ("transfer", comparisons, c, c, task, m)
        for c in conditions
        if tasks[c] == {"single"}
        for task, m in headline_metrics("pairwise")
    ]
    plan += [
        ("transfer", comparisons, c, c, task, m)
        for c in conditions
        if tasks[c] == {"pairwise"}
        for task, m in headline_metrics("single")
    ]
    for entry in dict.fromkeys((c["condition"], c.get("reference")) for c in contrasts):
        condition, reference = entry
        own = tasks.get(reference, set()) if reference else set()
        for task in TASK_NAMES:
            if task in own and own != set(TASK_NAMES):
                plan += [
                    (
                        "multitask",
                        [c for c in contrasts if c.get("reference") == reference],
                        condition,
                        f"{condition} − {reference}",
                        task,
                        m,
                    )
                    for _, m in headline_metrics(task)
                ]
    plan += [("accuracy", comparisons, c, c, "single", "accuracy") for c in conditions]
    rows = [
        _row(CLAIMS[key], entries, columns, cond, label, task, metric)
        for key, entries, cond, label, task, metric in plan
    ]
    return [r for r in rows if r is not None]


def format_summary(metrics: dict[str, Any]) -> str | None:
    """'Format: guided targets, guided consistency, free evaluation' from metrics.json's optional `format`."""
    fmt_ = metrics.get("format")
    if not isinstance(fmt_, dict) or not fmt_:
        return None
    parts = [f"{v} {k}" for k, v in fmt_.items() if isinstance(v, (str, int, float, bool))]
    return (
        "Reply format: "
        + ", ".join(parts)
        + (
            " (guided: replies constrained to the template's format, "
            "the model still chooses every answer, number and choice)"
            if any(v == "guided" for v in fmt_.values())
            else ""
        )
    )


def read_rate_summary(metrics: dict[str, Any], threshold: float = 0.99) -> str | None:
    """How many condition x task x dataset rows read the confidence or choice on fewer than `threshold` of items."""
    rows = [r for r in metrics.get("rows", []) if isinstance(r.get("parse_rate"), (int, float))]
    if not rows:
        return None
    low = [r for r in rows if r["parse_rate"] < threshold]
    lowest = min(rows, key=lambda r: r["parse_rate"])
    if not low:
        return (
            f"Replies read (answer and confidence or choice) on at least {threshold:.0%} of items in all "
            f"{len(rows)} rows."
        )
    return (
        f"Replies read on fewer than {threshold:.0%} of items in {len(low)} of {len(rows)} rows (lowest: "
        f"{lowest['condition']} / {lowest['task']} / {lowest['dataset']}, {lowest['parse_rate']:.0%}); "
        f"metrics cover the items that were read, so a change in such a row may be undefined (—)."
    )


# --------------------------------------------------------------------------------------------- as a table
MARKS = {"for": " ✓", "against": " ✗", "unclear": "", "undefined": ""}


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return ""
    if cell.diff is None:
        return "—"
    interval = f"\n({fmt(cell.ci[0], True)}, {fmt(cell.ci[1], True)})" if cell.ci else ""
    return f"{fmt(cell.diff, True)}{MARKS[cell.reading]}{interval}"


def findings_table(rows: list[FindingRow], columns: list[tuple[str, bool, bool]]) -> Any:
    """The first-screen table: claim (with the paper's result and the claim's verdict on its first row), condition,
    task and metric, one cell per dataset, pooled cells last, the row's verdict."""
    from metaconf.report.document import Table

    headers = (
        ["claim", "condition", "metric"]
        + [
            f"POOLED {d.removeprefix('pooled ')}" if p else f"{d}\n{'in-domain' if i else 'new domain'}"
            for d, i, p in columns
        ]
        + ["verdict"]
    )
    body, styles, row_styles, spans = [], [], [], []
    for i, row in enumerate(rows):
        first = i == 0 or rows[i - 1].claim.key != row.claim.key
        group = [r for r in rows if r.claim.key == row.claim.key]
        claim = f"{row.claim.title}: {claim_verdict(group).upper()}\npaper: {row.claim.paper}" if first else ""
        body.append(
            [claim, row.condition, f"{label(row.metric)} ({row.task})"]
            + [_cell_text(row.cells.get(d)) for d, _, _ in columns]
            + [f"{row.verdict}\n{row.reason}"]
        )
        styles.append(
            ["claim", "", "nowrap"]
            + [f"num {row.cells[d].reading}" if d in row.cells else "blank" for d, _, _ in columns]
            + ["nowrap " + row.verdict.replace(" ", "")]
        )
        row_styles.append("first" if first else "")
        spans.append([len(group) if first else 0] + [1] * (len(columns) + 3))
    return Table(headers, body, styles, row_styles, css_class="findings", rowspans=spans)
