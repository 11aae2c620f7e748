""""What the numbers show": plain sentences generated from metrics.json, saying how sure each claim is.

Per-dataset discrimination comes first; pooled numbers come last and are labelled as pooled, because a pooled
AUROC also rewards confidence that merely tracks the datasets' different accuracies.
"""

from __future__ import annotations

from typing import Any

LOWER_IS_BETTER = {"ece", "adaptive_ece", "smooth_ece", "brier"}
HIGHER_IS_BETTER = {"auroc", "auc_c", "auc_a", "pairwise_auc"}
LABELS = {"ece": "ECE", "adaptive_ece": "adaptive ECE", "smooth_ece": "smooth ECE", "brier": "Brier score",
          "auroc": "AUROC", "auc_c": "AUC_c", "auc_a": "AUC_a", "pairwise_auc": "pairwise AUC",
          "accuracy": "accuracy", "parse_rate": "parse rate", "overconfidence": "overconfidence"}


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
    if metric in LOWER_IS_BETTER:
        return "improved" if diff < 0 else "worsened"
    if metric in HIGHER_IS_BETTER:
        return "improved" if diff > 0 else "worsened"
    return "increased" if diff > 0 else "decreased"


def _describe(comparisons: list[dict[str, Any]], condition: str, task: str, metric: str) -> str | None:
    found = [c for c in comparisons if c["condition"] == condition and c["task"] == task and c["metric"] == metric
             and not c.get("pooled")]
    if not found:
        return None
    tally: dict[str, int] = {}
    for c in found:
        tally[verdict(c)] = tally.get(verdict(c), 0) + 1
    counts = ", ".join(f"{v} on {k} of {len(found)}" for v, k in sorted(tally.items(), key=lambda kv: -kv[1]))
    detail = "; ".join(f"{c['dataset']} {fmt(c['base'])} → {fmt(c['value'])} (change {fmt_ci(c['diff'], c['diff_ci'], True)})"
                       for c in found)
    return f"{condition} vs base, {LABELS[metric]} ({task} task), per dataset: {counts}. {detail}."


def findings(metrics: dict[str, Any], base: str = "base") -> list[tuple[str, list[str]]]:
    """Sections of (heading, sentences) describing the changes vs base; empty list when there is no base."""
    comparisons = metrics.get("comparisons") or []
    conditions = list(dict.fromkeys(c["condition"] for c in comparisons))
    level = metrics.get("bootstrap", {}).get("alpha", 0.05)
    intro = [f"Each change is a trained condition minus the base model on the same questions (or pairs), with a "
             f"{100 * (1 - level):.0f}% bootstrap interval in parentheses. An interval that includes zero means "
             f"no evidence of a change at this sample size, not evidence of no change."]
    sections: list[tuple[str, list[str]]] = [("How to read this", intro)]
    if not conditions:
        sections.append(("Changes", [f"No trained condition was compared with the {base} model."]))
        return sections
    discrimination, calibration, accuracy = [], [], []
    for condition in conditions:
        for task, metric, bucket in (("single", "auroc", discrimination), ("pairwise", "auc_a", discrimination),
                                     ("pairwise", "auc_c", discrimination), ("single", "ece", calibration),
                                     ("single", "accuracy", accuracy)):
            line = _describe(comparisons, condition, task, metric)
            if line:
                bucket.append(line)
    sections.append(("Discrimination, per dataset", discrimination or ["No discrimination metric was defined."]))
    sections.append(("Calibration, per dataset", calibration or ["No calibration metric was defined."]))
    if accuracy:
        sections.append(("Answer accuracy (fine-tuning should leave it unchanged)", accuracy))
    pooled = []
    for c in comparisons:
        if c.get("pooled") and c["metric"] in ("ece", "auroc", "auc_a"):
            pooled.append(f"{c['dataset'].capitalize()}: {c['condition']} vs base, {LABELS[c['metric']]} ({c['task']}): "
                          f"{fmt(c['base'])} → {fmt(c['value'])}, change {fmt_ci(c['diff'], c['diff_ci'], True)}: "
                          f"{verdict(c)}.")
    if pooled:
        pooled.insert(0, "Pooled numbers mix datasets: a pooled AUROC can rise only because confidence follows "
                         "the datasets' different accuracies, so read the per-dataset lines above first.")
        sections.append(("Pooled over datasets (in-domain vs new-domain)", pooled))
    low_parse = [f"{r['condition']} / {r['task']} / {r['dataset']}: {fmt(r.get('parse_rate'))}"
                 for r in metrics.get("rows", []) if r.get("parse_rate") is not None and r["parse_rate"] < 0.9]
    if low_parse:
        sections.append(("Parse failures", [
            "Items whose confidence or choice could not be read are left out of calibration and discrimination "
            "metrics; these rows read fewer than 90% of outputs, so their metrics cover a subset: "
            + "; ".join(low_parse) + "."]))
    return sections
