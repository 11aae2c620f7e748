"""The findings table: one group of rows per question the study asks, each row a claim tested per dataset.

A row holds, per dataset, the paired change (condition minus base, or multitask minus a single-task condition)
with its 95% bootstrap interval from metrics.json, and a verdict computed from those intervals by one rule
(`row_verdict`, documented in docs/report.md). Pooled cells are shown, labelled, and never vote.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metaconf.conditions import BASE, conditions_of, objective_pairs, paper_condition, shuffled_controls
from metaconf.metrics.controls import CONSTANT
from metaconf.metrics.registry import TASK_NAMES, better, headline_metrics, label

# an accuracy change whose whole interval lies within +-EQUIVALENCE counts as "unchanged"
EQUIVALENCE = 0.05
SUPPORTED, CONTRADICTED, NO_EVIDENCE = "supported", "contradicted", "no evidence"
COLLAPSED = "collapsed"  # a discrimination row whose condition states one value on most datasets' items
BELOW_FLOOR = "smaller than the noise floor"  # an ECE change within what calibration itself shows at this n


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
    "objective": Claim(
        "objective",
        "Another objective beats SFT on the same training set (condition − its sft twin)",
        "not tested (objectives added here: docs/training.md)",
        "better",
        "all",
    ),
    "targets": Claim(
        "targets",
        "The gain comes from the targets (condition − its shuffled-target control)",
        "not tested (a control added here)",
        "better",
        "all",
    ),
    "constant": Claim(
        "constant",
        "Calibration beats the constant predictor (condition − the training base rate stated everywhere)",
        "not tested (a control added here)",
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
    reading: str  # "for", "against", "unclear", "undefined", or COLLAPSED (does not vote)
    note: str = ""  # BELOW_FLOOR: an ECE change smaller than the noise floor (labelled; still votes)


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
    """The rule: *collapsed* when the condition states one value on at least 90% of the items of at least half of
    the row's datasets (a collapsed cell never votes); else, among datasets with a defined change, *supported*
    when at least half read for the claim and none against; *contradicted* when at least half read against and
    none for; otherwise *no evidence*."""
    readings = list(readings)
    n_collapsed = readings.count(COLLAPSED)
    votes = [r for r in readings if r not in ("undefined", COLLAPSED)]
    n_for, n_against = votes.count("for"), votes.count("against")
    tally = f"✓{n_for} ✗{n_against} of {len(votes)}" + (f", collapsed on {n_collapsed}" if n_collapsed else "")
    if n_collapsed and 2 * n_collapsed >= len(readings):
        return COLLAPSED, tally
    if n_for and not n_against and 2 * n_for >= len(votes):
        return SUPPORTED, tally
    if n_against and not n_for and 2 * n_against >= len(votes):
        return CONTRADICTED, tally
    return NO_EVIDENCE, tally if votes or n_collapsed else "all undefined"


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


Ref = tuple[str, str]  # ("condition", name) or ("method", name): whose row a change is measured against
Profiles = dict[tuple[str, str, str], dict[str, Any]]  # (kind, name, dataset) -> the row's profile


def _profiles(metrics: dict[str, Any]) -> Profiles:
    """Every single-task row's profile (collapse, noise floor), conditions' and baseline methods' alike."""
    found: Profiles = {}
    for r in (metrics.get("rows") or []) + (metrics.get("pooled") or []):
        if r.get("task") == "single" and r.get("profile"):
            found[("condition", r["condition"], r["dataset"])] = r["profile"]
    for r in (metrics.get("baselines") or {}).get("rows") or []:
        if r.get("profile"):
            found[("method", r["method"], r["dataset"])] = r["profile"]
    return found


def _floor_note(diff: float | None, floors: list[Any]) -> str:
    """BELOW_FLOOR when |diff| is smaller than the larger noise floor of the two compared rows."""
    known = [f for f in floors if isinstance(f, (int, float))]
    return BELOW_FLOOR if diff is not None and known and abs(diff) < max(known) else ""


def _cell(claim: Claim, c: dict[str, Any], metric: str, own: dict[str, Any], ref: dict[str, Any]) -> Cell:
    """One dataset's cell: its reading, COLLAPSED for an AUROC of a condition collapsed there, and the floor note
    for an ECE change (`own`, `ref`: the profiles of the condition's and the reference's rows)."""
    diff, ci = c.get("diff"), c.get("diff_ci")
    cell = Cell(diff, ci, reading(diff, ci, metric, claim.expect))
    if metric == "auroc" and own.get("collapsed"):
        cell.reading = COLLAPSED
    if metric == "ece":
        cell.note = _floor_note(diff, [own.get("ece_floor"), ref.get("ece_floor")])
    return cell


def _row(
    claim: Claim,
    entries: list[dict[str, Any]],
    columns: list[tuple[str, bool, bool]],
    condition: str,
    label: str,
    task: str,
    metric: str,
    ref: Ref = ("condition", BASE),
    profiles: Profiles | None = None,
) -> FindingRow | None:
    found = {c["dataset"]: c for c in entries if (c["condition"], c["task"], c["metric"]) == (condition, task, metric)}
    if not found:
        return None
    row, profiles = FindingRow(claim, label, task, metric), profiles or {}
    for dataset, in_domain, _ in columns:
        wanted = claim.domains == "all" or (claim.domains == "in") == in_domain
        if wanted and dataset in found:
            own = profiles.get(("condition", condition, dataset), {})
            row.cells[dataset] = _cell(claim, found[dataset], metric, own, profiles.get((*ref, dataset), {}))
    row.verdict, row.reason = row_verdict(
        cell.reading for name, cell in row.cells.items() if not any(p and name == d for d, _, p in columns)
    )
    return row


Plan = list[tuple[str, list[dict[str, Any]], str, str, str, str, Ref]]  # claim, entries, cond, label, task, metric


def _base_plan(
    comparisons: list[dict[str, Any]], conditions: list[str], tasks: dict[str, set[str]], tested: list[str]
) -> Plan:
    """Calibration and discrimination: every trained condition against the base model; transfer: the `tested`
    ones (not the shuffled-target controls)."""
    base: Ref = ("condition", BASE)
    single = [c for c in conditions if "single" in tasks[c]]
    pair = [c for c in conditions if "pairwise" in tasks[c]]
    plan: Plan = []
    for key in ("calibration_in", "calibration_new"):
        plan += [(key, comparisons, c, c, "single", "ece", base) for c in single]
    plan += [("discrimination", comparisons, c, c, "single", "auroc", base) for c in single]
    plan += [("discrimination", comparisons, c, c, t, m, base) for t, m in headline_metrics("pairwise") for c in pair]
    for own, other in (({"single"}, "pairwise"), ({"pairwise"}, "single")):
        plan += [
            ("transfer", comparisons, c, c, t, m, base)
            for c in tested
            if tasks[c] == own
            for t, m in headline_metrics(other)
        ]
    return plan


def _contrast_plan(
    contrasts: list[dict[str, Any]],
    tasks: dict[str, set[str]],
    controls: list[tuple[str, str]],
    twins: Sequence[tuple[str, str]] = (),
) -> Plan:
    """Multitask against each single-task condition, each condition against its shuffled-target control, and each
    other objective against its sft twin (`twins`), on the tasks the reference was trained on."""
    plan: Plan = []
    for condition, reference in dict.fromkeys((c["condition"], c.get("reference")) for c in contrasts):
        own = tasks.get(reference, set()) if reference else set()
        pair = (condition, reference)
        key = "targets" if pair in controls else "objective" if pair in twins else "multitask"
        if key == "multitask" and own == set(TASK_NAMES):
            continue
        entries = [c for c in contrasts if c.get("reference") == reference]
        plan += [
            (key, entries, condition, f"{condition} − {reference}", task, m, ("condition", reference))
            for task in TASK_NAMES
            if task in own
            for _, m in headline_metrics(task)
        ]
    return plan


def _constant_plan(metrics: dict[str, Any], conditions: list[str]) -> Plan:
    """ECE of each trained condition against the constant predictor (metrics.json baselines.comparisons)."""
    entries = [
        {**c, "task": "single"}
        for c in (metrics.get("baselines") or {}).get("comparisons") or []
        if c.get("method") == CONSTANT and c.get("metric") == "ece"
    ]
    return [("constant", entries, c, f"{c} − constant", "single", "ece", ("method", CONSTANT)) for c in conditions]


def finding_rows(metrics: dict[str, Any], config: dict[str, Any] | None = None, base: str = BASE) -> list[FindingRow]:
    """Every row of the findings table, in the order of the study's questions; claims without data are absent."""
    config = config if config is not None else (metrics.get("config") or {})
    comparisons = metrics.get("comparisons") or []
    columns = dataset_columns(metrics)
    found = [c for c in dict.fromkeys(r["condition"] for r in metrics.get("rows", [])) if c != base]
    listed = [c.name for c in conditions_of(config) if c.name in found]
    conditions = listed + [c for c in found if c not in listed]  # the study's order
    tasks = {c: trained_tasks(c, config) for c in conditions}
    controls = shuffled_controls(config)
    tested = [c for c in conditions if c not in {control for _, control in controls}]  # controls: fewer rows
    plan = _base_plan(comparisons, conditions, tasks, tested)
    plan += _contrast_plan(metrics.get("contrasts") or [], tasks, controls, objective_pairs(config))
    plan += _constant_plan(metrics, [c for c in conditions if "single" in tasks[c]])
    plan += [("accuracy", comparisons, c, c, "single", "accuracy", ("condition", base)) for c in tested]
    profiles = _profiles(metrics)
    rows = [
        _row(CLAIMS[key], entries, columns, cond, label, task, metric, ref, profiles)
        for key, entries, cond, label, task, metric, ref in plan
    ]
    order = list(CLAIMS)
    return sorted((r for r in rows if r is not None), key=lambda r: order.index(r.claim.key))


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
MARKS = {"for": " ✓", "against": " ✗", "unclear": "", "undefined": "", COLLAPSED: " (collapsed)"}


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return ""
    if cell.diff is None:
        return "—"
    interval = f"\n({fmt(cell.ci[0], True)}, {fmt(cell.ci[1], True)})" if cell.ci else ""
    floor = " < floor" if cell.note == BELOW_FLOOR else ""
    return f"{fmt(cell.diff, True)}{MARKS[cell.reading]}{floor}{interval}"


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
