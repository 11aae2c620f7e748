"""Report sections from metrics.json's `baselines` and `metacognition`: one sentence per dataset (did fine-tuning
beat recalibration, how much of the teacher's signal it recovered), a methods table per dataset, the teacher gap,
meta-d′, and one plot (AUROC of every method and condition per dataset).

Kept apart from the rest of the report: `baseline_blocks(metrics, plots_dir)` returns blocks to append.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaconf.metrics.registry import better, method_metrics
from metaconf.metrics.registry import label as metric_label
from metaconf.report.document import Block, Bullets, Figure, Heading, Paragraph, Table
from metaconf.report.findings import fmt, fmt_ci

RECALIBRATION = "isotonic"  # the recalibration the sentences compare against (Platt is in the tables)
METHOD_LABELS = {
    "consistency": "consistency, modal answer (teacher)",
    "consistency_greedy": "consistency, greedy answer",
    "token_probability": "answer token probability",
    "p_true": "P(True)",
    "isotonic": "isotonic recalibration",
    "platt": "Platt recalibration",
    "constant": "constant predictor (training base rate)",
}


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.0f}%".replace("-", "−")


def _reading(c: dict[str, Any]) -> str:
    """better / worse when the interval of (condition − method) excludes zero, else no evidence."""
    if c.get("diff") is None or not c.get("diff_ci"):
        return "undefined"
    low, high = c["diff_ci"]
    if low <= 0 <= high:
        return "no evidence of a difference"
    return "better" if (c["diff"] < 0) == (better(c["metric"]) == "lower") else "worse"


def dataset_sentence(dataset: str, baselines: dict[str, Any]) -> str:
    """One sentence: each trained condition vs isotonic recalibration (ECE, AUROC) and its teacher-gap share."""
    comps = [c for c in baselines.get("comparisons", []) if c["dataset"] == dataset and c["method"] == RECALIBRATION]
    gaps = {g["condition"]: g for g in baselines.get("teacher_gap", []) if g["dataset"] == dataset}
    conditions = list(dict.fromkeys([c["condition"] for c in comps] + list(gaps)))
    if not conditions:
        return f"{dataset}: no trained condition to compare with the baselines."
    parts = []
    for condition in conditions:
        verdicts = []
        for metric in method_metrics(compared=True):
            c = next((c for c in comps if c["condition"] == condition and c["metric"] == metric), None)
            if c is not None:
                verdicts.append(f"{metric_label(metric)} {fmt_ci(c['diff'], c['diff_ci'], True)}: {_reading(c)}")
        vs = "; ".join(verdicts) if verdicts else "no recalibration to compare with"
        gap = gaps.get(condition)
        if gap is None:
            recovered = "teacher gap not computed"
        elif gap.get("recovered") is None:
            recovered = f"share of the teacher's signal undefined ({gap.get('undefined')})"
        else:
            ci = gap.get("recovered_ci")
            recovered = f"recovered {_pct(gap['recovered'])} of the teacher's AUROC above chance" + (
                f" ({_pct(ci[0])} to {_pct(ci[1])})" if ci else ""
            )
        parts.append(f"{condition} vs {RECALIBRATION} recalibration {vs}, and {recovered}")
    return f"{dataset}: " + "; ".join(parts) + "."


def _methods_table(dataset: str, metrics: dict[str, Any]) -> Table:
    baselines = metrics["baselines"]
    trained = list(dict.fromkeys(c["condition"] for c in baselines.get("comparisons", [])))
    compared = method_metrics(compared=True)
    names = [metric_label(m) for m in compared]
    headers = ["method / condition", "n scored", metric_label("accuracy"), *names] + [
        f"{c} − method: {', '.join(names)}" for c in trained
    ]
    body = []
    for r in baselines["rows"]:
        if r["dataset"] != dataset:
            continue
        cells = [
            METHOD_LABELS.get(r["method"], r["method"]),
            str(r.get("n_scored")),
            fmt(r.get("accuracy")),
            *(fmt_ci(r.get(m), r.get(f"{m}_ci")) for m in compared),
        ]
        for condition in trained:
            diffs = {
                c["metric"]: c
                for c in baselines["comparisons"]
                if (c["method"], c["condition"], c["dataset"]) == (r["method"], condition, dataset)
            }
            cells.append(
                ", ".join(fmt_ci(diffs[m]["diff"], diffs[m]["diff_ci"], True) if m in diffs else "—" for m in compared)
            )
        body.append(cells)
    for r in metrics.get("rows", []):
        if r["dataset"] == dataset and r["task"] == "single":
            body.append(
                [
                    f"condition: {r['condition']}",
                    str(r.get("n_scored", r.get("n"))),
                    fmt(r.get("accuracy")),
                    *(fmt_ci(r.get(m), r.get(f"{m}_ci")) for m in compared),
                ]
                + [""] * len(trained)
            )
    return Table(headers, body)


def _gap_table(baselines: dict[str, Any]) -> Table:
    body = [
        [
            g["condition"],
            g["dataset"],
            fmt(g.get("teacher_auroc")),
            fmt(g.get("condition_auroc")),
            _pct(g["recovered"])
            + (f" ({_pct(g['recovered_ci'][0])}, {_pct(g['recovered_ci'][1])})" if g.get("recovered_ci") else "")
            if g.get("recovered") is not None
            else f"undefined: {g.get('undefined')}",
        ]
        for g in baselines.get("teacher_gap", [])
    ]
    return Table(["condition", "dataset", "teacher AUROC", "condition AUROC", "recovered (95% CI)"], body)


def _metad_table(meta: dict[str, Any]) -> Table:
    body = [
        [
            r["condition"],
            r["dataset"],
            str(r["n"]),
            str(r["ratings_used"]),
            fmt(r.get("d_prime")),
            fmt_ci(r.get("meta_d"), r.get("meta_d_ci")),
            fmt_ci(r.get("m_ratio"), r.get("m_ratio_ci")),
            fmt_ci(r.get("type2_auroc"), r.get("type2_auroc_ci")),
        ]
        for r in meta.get("rows", [])
    ]
    return Table(["condition", "dataset", "n", "ratings used", "d′", "meta-d′", "M-ratio", "type-2 AUROC"], body)


def _plot(metrics: dict[str, Any], plots_dir: Path) -> tuple[Path, Path] | None:
    """AUROC per dataset: one bar per baseline method and per condition, 95% intervals as error bars."""
    entries = [(METHOD_LABELS.get(r["method"], r["method"]), r) for r in metrics["baselines"]["rows"]]
    entries += [(f"condition: {r['condition']}", r) for r in metrics.get("rows", []) if r["task"] == "single"]
    entries = [(label, r) for label, r in entries if r.get("auroc") is not None]
    if not entries:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metaconf.report.plots import EXTRA_COLORS, STYLE, _save, condition_colors, interval_bars

    datasets = list(dict.fromkeys(r["dataset"] for _, r in entries))
    labels = list(dict.fromkeys(label for label, _ in entries))
    width = 0.85 / len(labels)
    # conditions keep their colour of every other plot; the methods take the remaining colours in turn
    conditions = condition_colors([lab.removeprefix("condition: ") for lab in labels if lab.startswith("condition")])
    methods = iter(EXTRA_COLORS * (1 + len(labels) // len(EXTRA_COLORS)))
    colors = {
        lab: conditions[lab.removeprefix("condition: ")] if lab.startswith("condition") else next(methods)
        for lab in labels
    }
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(datasets) + 3.0), 3.4))
        for k, label in enumerate(labels):
            found = [next((r for lab, r in entries if lab == label and r["dataset"] == d), None) for d in datasets]
            shift, style = (k - (len(labels) - 1) / 2) * width, {"color": colors[label], "label": label}
            hatch = "//" if label.startswith("condition") else None
            interval_bars(
                ax, found, "auroc", shift, width * 0.95, capsize=1.5, hatch=hatch, error_kw={"lw": 0.7}, **style
            )
        ax.axhline(0.5, color="#999999", lw=0.8, ls="--")
        ax.set_xticks(range(len(datasets)))
        ax.set_xticklabels(datasets)
        ax.set_ylabel(metric_label("auroc"))
        ax.set_title(
            f"{metric_label('auroc')} of confidence methods and conditions (error bars: 95% bootstrap intervals)"
        )
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        return _save(fig, plots_dir, "baselines_auroc")


def baseline_blocks(metrics: dict[str, Any], plots_dir: Path) -> list[Block]:
    """The report's baselines and metacognition sections (empty when metrics.json has neither)."""
    blocks: list[Block] = []
    baselines = metrics.get("baselines")
    if baselines and baselines.get("rows"):
        datasets = list(dict.fromkeys(r["dataset"] for r in baselines["rows"]))
        blocks += [
            Heading(1, "Is fine-tuning worth it? Confidence without fine-tuning"),
            Paragraph(
                "Each method scores its own answer on the same evaluation questions as the conditions: the "
                "teacher (the base model's modal-answer share over the consistency samples, the signal the "
                "training targets are distilled from), the share agreeing with the greedy answer, the greedy "
                "answer's token probability, P(True), and the base model's stated confidence recalibrated "
                "on the training questions (isotonic, Platt). Differences are condition minus method on the "
                "questions both scored (95% paired bootstrap interval); the teacher gap is (AUROC_condition "
                "− 0.5) / (AUROC_teacher − 0.5).",
                note=True,
            ),
            Bullets([dataset_sentence(d, baselines) for d in datasets]),
        ]
        for dataset in datasets:
            blocks += [Heading(2, f"Methods on {dataset}"), _methods_table(dataset, metrics)]
        if baselines.get("teacher_gap"):
            blocks += [Heading(2, "Teacher gap"), _gap_table(baselines)]
        made = _plot(metrics, plots_dir)
        if made:
            blocks.append(
                Figure("AUROC of every confidence method and condition, per dataset (0.5 = chance).", made[0], made[1])
            )
    meta = metrics.get("metacognition")
    if meta and meta.get("rows"):
        edges = ", ".join(f"{e:g}" for e in meta.get("rating_edges", []))
        blocks += [
            Heading(1, "Metacognitive efficiency (meta-d′)"),
            Paragraph(
                f"Confidence binned into ratings at {edges} (a value on an edge goes up); {meta.get('model')}. "
                "M-ratio = meta-d′ / d′ (1 = the confidence uses all the information the answers carry); "
                "undefined (—) when every answer is right or wrong, one rating is used, or (M-ratio) "
                "d′ ≤ 0. "
                f"Intervals: {meta.get('n_boot')} bootstrap resamples of questions.",
                note=True,
            ),
            _metad_table(meta),
        ]
    return blocks
