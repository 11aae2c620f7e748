"""The report's controls appendix, from metrics.json: per dataset, how varied each condition's and method's stated
confidence is (collapse), the ECE a calibrated model would show with the same confidences (the noise floor), and
what selective answering gains (AURC, accuracy at 50% / 80% coverage), with the risk-coverage figure; then the
Bradley-Terry relative confidence of each condition's pairwise choices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaconf.conditions import condition_colors
from metaconf.report.document import Block, Figure, Heading, Paragraph, Table
from metaconf.report.findings import fmt, fmt_ci

FIGURE_METHODS = {"constant": ("#000000", "--"), "consistency": ("#666666", ":")}  # methods drawn in the figure


def _who(row: dict[str, Any]) -> str:
    return f"condition: {row['condition']}" if "condition" in row else f"method: {row['method']}"


def _floor(profile: dict[str, Any]) -> str:
    low_high = profile.get("ece_floor_range")
    if profile.get("ece_floor") is None:
        return "—"
    return fmt_ci(profile["ece_floor"], low_high)


def _cells(row: dict[str, Any]) -> list[str]:
    p = row.get("profile") or {}
    share = p.get("top_share")
    return [
        str(p.get("n_distinct", "—")),
        "—" if share is None else f"{100 * share:.0f}%",
        "collapsed" if p.get("collapsed") else "",
        fmt(row.get("ece")),
        _floor(p),
        fmt_ci(row.get("aurc"), row.get("aurc_ci")),
        fmt_ci(row.get("accuracy_at_50"), row.get("accuracy_at_50_ci")),
        fmt_ci(row.get("accuracy_at_80"), row.get("accuracy_at_80_ci")),
    ]


def controls_table(metrics: dict[str, Any]) -> Table | None:
    """One line per (dataset, condition or method) of the single task; None when no row has a profile."""
    rows = [r for r in metrics.get("rows") or [] if r.get("task") == "single" and r.get("profile")]
    rows += [r for r in (metrics.get("baselines") or {}).get("rows") or [] if r.get("profile")]
    if not rows:
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    headers = ["dataset", "condition / method", "n scored", "distinct values", "most common", "collapsed", "ECE"]
    headers += ["ECE noise floor (95% range)", "AURC", "accuracy at 50% coverage", "accuracy at 80% coverage"]
    body = [
        [dataset, _who(r), str(r.get("n_scored", r.get("n"))), *_cells(r)]
        for dataset in datasets
        for r in rows
        if r["dataset"] == dataset
    ]
    return Table(headers, body)


def risk_coverage_figure(metrics: dict[str, Any], plots_dir: Path) -> tuple[Path, Path] | None:
    """Risk-coverage curves per dataset: every condition in its colour, the constant predictor and the teacher."""
    section = metrics.get("selective") or {}
    curves = [c for c in section.get("curves") or [] if c.get("condition") or c.get("method") in FIGURE_METHODS]
    if not curves:
        return None
    from metaconf.report.plots import STYLE, _grid, _save, plt

    coverage = section["coverage"]
    datasets = list(dict.fromkeys(c["dataset"] for c in curves))
    colors = condition_colors(c["condition"] for c in curves if c.get("condition"))
    with plt.rc_context(STYLE):
        fig, axes = _grid(len(datasets), 2.8, 2.4)
        for ax, dataset in zip(axes.flat, datasets):
            for c in (c for c in curves if c["dataset"] == dataset):
                name = c.get("condition") or c["method"]
                color, style = (colors[name], "-") if c.get("condition") else FIGURE_METHODS[name]
                points = [(q, r) for q, r in zip(coverage, c["risk"]) if r is not None]
                if points:
                    ax.plot(*zip(*points), color=color, ls=style, lw=1.2, label=name)
            ax.set_title(dataset)
            ax.set_xlabel("coverage")
            ax.set_ylabel("risk")
            ax.set_xlim(0, 1)
            ax.set_ylim(-0.02, 1.02)
        legend = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
        fig.legend(list(legend.values()), list(legend), frameon=False, loc="upper right")
        fig.tight_layout(rect=(0, 0, 0.85, 1))
        return _save(fig, plots_dir, "risk_coverage")


def relative_table(metrics: dict[str, Any]) -> Table | None:
    """Bradley-Terry AUROC per (dataset, condition) beside the stated confidence's and the teacher's AUROC."""
    rows = (metrics.get("relative") or {}).get("rows") or []
    if not rows:
        return None
    teacher = {
        r["dataset"]: r for r in (metrics.get("baselines") or {}).get("rows") or [] if r["method"] == "consistency"
    }
    body = [
        [
            r["dataset"],
            r["condition"],
            f"{r['n_questions']} / {r['n_comparisons']}",
            fmt_ci(r.get("auroc"), r.get("auroc_ci")),
            fmt_ci(r.get("stated_auroc"), r.get("stated_auroc_ci")),
            fmt_ci(teacher.get(r["dataset"], {}).get("auroc"), teacher.get(r["dataset"], {}).get("auroc_ci")),
        ]
        for dataset in dict.fromkeys(r["dataset"] for r in rows)
        for r in rows
        if r["dataset"] == dataset
    ]
    headers = ["dataset", "condition", "questions / choices", "Bradley-Terry AUROC", "stated AUROC", "teacher AUROC"]
    return Table(headers, body)


def _relative_blocks(metrics: dict[str, Any]) -> list[Block]:
    table = relative_table(metrics)
    if table is None:
        return []
    alpha = (metrics.get("relative") or {}).get("alpha")
    return [
        Heading(2, "H. Relative confidence (Bradley-Terry)"),
        Paragraph(
            "Each read pairwise choice counts as a win of the chosen question; Bradley-Terry strengths are "
            f"fitted by penalised maximum likelihood (penalty {alpha} times the sum of squared strengths) and "
            "each question's strength is scored like a confidence: AUROC against the condition's own "
            "single-task grade, beside its stated confidence's AUROC on the same questions and the teacher's "
            "(0.5 = chance; — = one grade only). Intervals: 95% bootstrap over questions, strengths fixed.",
            note=True,
        ),
        table,
    ]


def _profile_blocks(metrics: dict[str, Any], plots_dir: Path) -> list[Block]:
    table = controls_table(metrics)
    if table is None:
        return []
    blocks: list[Block] = [
        Heading(2, "G. Controls: collapse, noise floor, selective answering"),
        Paragraph(
            "Distinct values: how many different confidences were stated; most common: the share of the most "
            "common one; collapsed: one value on at least 90% of the items (its AUROC then reads 'collapsed' in "
            "the findings). ECE noise floor: the median (95% range) ECE of a perfectly calibrated model stating "
            "the same confidences on the same number of items (outcomes drawn as Bernoulli(confidence), 1000 "
            "draws); an ECE inside that range is what calibration itself shows at this n. AURC: the mean error "
            "rate of the k most confident answers over k = 1..n (lower is better; a constant confidence gets the "
            "error rate); accuracy at 50% / 80% coverage: of the most confident half / 80% (ties broken at "
            "random, in expectation). Intervals: 95% bootstrap over questions.",
            note=True,
        ),
        table,
    ]
    made = risk_coverage_figure(metrics, plots_dir)
    if made:
        blocks.append(
            Figure(
                "Risk-coverage curves per dataset: the error rate of the answers kept when only the most confident "
                "share is answered (conditions in their colours; dashed: the constant predictor, dotted: the "
                "teacher). A flat curve: the confidence does not tell right answers from wrong ones.",
                made[0],
                made[1],
            )
        )
    return blocks


def control_blocks(metrics: dict[str, Any], plots_dir: Path) -> list[Block]:
    """The appendix sections of the controls (empty when metrics.json has none): G (collapse, noise floor,
    selective answering, with the risk-coverage figure) and H (Bradley-Terry relative confidence)."""
    return _profile_blocks(metrics, plots_dir) + _relative_blocks(metrics)
