"""Publication-quality figures (matplotlib, Agg backend), each saved as PNG (for the HTML) and PDF (for papers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metaconf.conditions import BASE, EXTRA_COLORS, condition_colors  # noqa: E402, F401 (EXTRA_COLORS: report.baselines)
from metaconf.io import atomic_path  # noqa: E402
from metaconf.metrics.registry import better, headline_metrics, label, metric_info  # noqa: E402

# Colours are the conditions' own (metaconf.conditions: Okabe-Ito, distinguishable with colour-blindness and in
# greyscale print; base grey), one per condition in every plot.


STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 160,
    "pdf.fonttype": 42,
}


def _save(fig: Any, plots_dir: Path, name: str) -> tuple[Path, Path]:
    """Save name.png and name.pdf atomically; returns both paths."""
    paths = []
    for ext in ("png", "pdf"):
        target = plots_dir / f"{name}.{ext}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext)  # layouts are tight already; a tight bbox would draw twice
        paths.append(target)
    plt.close(fig)
    return paths[0], paths[1]


def _grid(n: int, width: float = 2.6, height: float = 2.6) -> tuple[Any, np.ndarray]:
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def reliability_diagrams(
    single: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    plots_dir: Path,
    n_bins: int = 10,
    colors: dict[str, str] | None = None,
) -> tuple[Path, Path] | None:
    """One panel per condition: accuracy vs mean confidence in equal-width bins, per domain group.

    `single`: condition -> group label (e.g. "in-domain") -> (confidence, correct) of parsed items.
    """
    if not single:
        return None
    with plt.rc_context(STYLE):
        fig, axes = _grid(len(single))
        colors = colors or condition_colors(list(single))
        for ax, (condition, groups) in zip(axes.flat, single.items()):
            ax.plot([0, 1], [0, 1], color="#BBBBBB", lw=1, ls=":", label="perfect calibration")
            color = colors[condition]
            for k, (label, (conf, correct)) in enumerate(groups.items()):
                if not len(conf):
                    continue
                bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
                counts = np.bincount(bins, minlength=n_bins)
                used = counts > 0
                mean_conf = np.bincount(bins, conf, n_bins)[used] / counts[used]
                acc = np.bincount(bins, correct, n_bins)[used] / counts[used]
                ax.plot(mean_conf, acc, ("-", "--", "-.")[k % 3], color=color, lw=1.2, label=f"{label} (n={len(conf)})")
                ax.scatter(
                    mean_conf,
                    acc,
                    s=10 + 60 * counts[used] / counts.max(),
                    color=color,
                    zorder=3,
                    marker=("o", "s", "^")[k % 3],
                    facecolors=color if k == 0 else "white",
                )
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="stated confidence", ylabel="accuracy", title=condition)
            ax.set_aspect("equal")
            ax.legend(loc="upper left", frameon=False, fontsize=7)
        fig.suptitle("Reliability, single-question task\n(marker area ~ items in the bin)", fontsize=9)
        fig.tight_layout()
        return _save(fig, plots_dir, "reliability")


def confidence_histograms(
    single: dict[str, tuple[np.ndarray, np.ndarray]], plots_dir: Path, colors: dict[str, str] | None = None
) -> tuple[Path, Path] | None:
    """One panel per condition: stated confidence of correct vs incorrect answers (all datasets)."""
    if not single:
        return None
    edges = np.linspace(0, 1, 21)
    with plt.rc_context(STYLE):
        fig, axes = _grid(len(single), height=2.2)
        colors = colors or condition_colors(list(single))
        for ax, (condition, (conf, correct)) in zip(axes.flat, single.items()):
            right, wrong = conf[correct == 1], conf[correct == 0]
            ax.hist(right, edges, color=colors[condition], alpha=0.75, label=f"correct (n={len(right)})")
            ax.hist(wrong, edges, histtype="step", color="#333333", lw=1.2, label=f"incorrect (n={len(wrong)})")
            ax.set(xlim=(0, 1), xlabel="stated confidence", ylabel="answers", title=condition)
            ax.legend(frameon=False)
        fig.suptitle("Confidence of correct and incorrect answers")
        fig.tight_layout()
        return _save(fig, plots_dir, "confidence_histograms")


def interval_bars(
    ax: Any, rows: list[dict[str, Any] | None], metric: str, shift: float, width: float, **style: Any
) -> None:
    """Draw one series of bars of `metric`: the j-th row's bar at x = j + `shift`, with its `<metric>_ci` as the
    error bar (none without an interval); a missing row or value draws no bar. `style`: passed to `ax.bar`."""
    xs: list[float] = []
    ys: list[float] = []
    err: list[list[float]] = [[], []]
    for j, row in enumerate(rows):
        if row is None or row.get(metric) is None:
            continue
        value = row[metric]
        low, high = row.get(f"{metric}_ci") or (value, value)
        xs.append(j + shift)
        ys.append(value)
        err[0].append(max(value - low, 0))
        err[1].append(max(high - value, 0))
    ax.bar(xs, ys, width, yerr=err, **style)


def metric_bars(
    rows: list[dict[str, Any]], metric: str, plots_dir: Path, colors: dict[str, str] | None = None
) -> tuple[Path, Path] | None:
    """Grouped bars: one group per dataset (domain), one bar per condition, 95% intervals as error bars."""
    rows = [r for r in rows if metric in r]
    name = label(metric)
    if not rows:
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    width = 0.8 / len(conditions)
    colors = colors or condition_colors(conditions)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(4.5, 1.5 * len(datasets) + 2.0), 3.2))
        for k, condition in enumerate(conditions):
            found = [
                next((r for r in rows if r["condition"] == condition and r["dataset"] == d), None) for d in datasets
            ]
            shift, style = (k - (len(conditions) - 1) / 2) * width, {"color": colors[condition], "label": condition}
            interval_bars(ax, found, metric, shift, width * 0.95, capsize=2, error_kw={"lw": 0.8}, **style)
        _chance_line(ax, metric)
        ax.set_xticks(range(len(datasets)))
        ax.set_xticklabels([_dataset_label(rows, d) for d in datasets])
        ax.set_ylabel(name)
        ax.set_title(f"{name} per condition and dataset (error bars: 95% bootstrap intervals)")
        ax.legend(frameon=False, title="condition", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        return _save(fig, plots_dir, f"bars_{metric}")


def _dataset_label(rows: list[dict[str, Any]], dataset: str) -> str:
    row = next(r for r in rows if r["dataset"] == dataset)
    where = "in-domain" if row.get("in_domain") else "new domain"
    return f"{dataset}\n{row.get('domain')}\n{where}"


def loss_curves(
    logs: dict[str, list[tuple[float, float]]], plots_dir: Path, colors: dict[str, str] | None = None
) -> tuple[Path, Path] | None:
    """Training loss per step, one line per trained condition."""
    logs = {k: v for k, v in logs.items() if v}
    if not logs:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5, 2.8))
        colors = colors or condition_colors(list(logs))
        for condition, points in logs.items():
            steps, losses = zip(*points)
            ax.plot(steps, losses, color=colors[condition], lw=1.2, label=condition)
        ax.set(xlabel="step", ylabel="training loss", title="Training loss")
        ax.legend(frameon=False)
        fig.tight_layout()
        return _save(fig, plots_dir, "training_loss")


def _chance_line(ax: Any, metric: str) -> None:
    """A dashed line at the metric's chance value (AUROC and the pairwise AUCs: 0.5), if it has one."""
    info = metric_info(metric)
    if info is not None and info.chance is not None:
        ax.axhline(info.chance, color="#999999", lw=0.8, ls="--")


TASK_TITLES = {"single": "single question", "pairwise": "pairwise"}
HEADLINE = tuple(
    (task, metric, f"{label(metric)} ({TASK_TITLES[task]})\n{metric_info(metric).note}")
    for task, metric in headline_metrics()
)


def headline(
    pooled: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    plots_dir: Path,
    colors: dict[str, str] | None = None,
    order: list[str] | None = None,
) -> tuple[Path, Path] | None:
    """The paper-style summary: per metric a panel, in-domain vs new-domain groups, one bar per condition (the
    POOLED value with its 95% interval), each dataset's own value as a small dot; undefined values marked n/a."""
    if not pooled:
        return None
    found = list(dict.fromkeys(r["condition"] for r in pooled))
    conditions = [c for c in order or [] if c in found] + [c for c in found if c not in (order or [])]
    colors = colors or condition_colors(conditions)
    groups = (("in-domain", True), ("new domain", False))
    width = 0.8 / len(conditions)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(HEADLINE), figsize=(2.55 * len(HEADLINE) + 1.2, 2.9), squeeze=False)
        for ax, (task, metric, title) in zip(axes.flat, HEADLINE):
            for j, (_, in_domain) in enumerate(groups):
                for k, condition in enumerate(conditions):
                    x = j + (k - (len(conditions) - 1) / 2) * width
                    row = next(
                        (
                            r
                            for r in pooled
                            if (r["condition"], r["task"], bool(r.get("in_domain"))) == (condition, task, in_domain)
                        ),
                        None,
                    )
                    value = None if row is None else row.get(metric)
                    if value is None:
                        ax.text(x, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="#777777")
                    else:
                        ci = row.get(f"{metric}_ci") or [value, value]
                        ax.bar(
                            x,
                            value,
                            width * 0.92,
                            color=colors[condition],
                            yerr=[[max(value - ci[0], 0)], [max(ci[1] - value, 0)]],
                            capsize=2,
                            error_kw={"lw": 0.8},
                        )
                    dots = [
                        r.get(metric)
                        for r in rows
                        if (r["condition"], r["task"], bool(r.get("in_domain"))) == (condition, task, in_domain)
                        and r.get(metric) is not None
                    ]
                    ax.scatter([x] * len(dots), dots, s=7, facecolors="white", edgecolors="#333333", lw=0.6, zorder=3)
            _chance_line(ax, metric)
            ax.set(ylim=(0, 1), xticks=range(len(groups)), title=title)
            ax.set_xticklabels([g for g, _ in groups])
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[c]) for c in conditions]
        handles.append(
            plt.Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="#333333", markersize=4)
        )
        fig.legend(handles, conditions + ["one dataset"], loc="center right", frameon=False, title="condition")
        fig.suptitle(
            "Bars: POOLED over the datasets of each group, with 95% bootstrap intervals; dots: each dataset",
            fontsize=8,
            y=0.995,
        )
        fig.tight_layout(rect=(0, 0, 1 - 1.1 / (2.55 * len(HEADLINE) + 1.2), 0.97))
        return _save(fig, plots_dir, "headline")


def transfer_heatmap(
    cells: dict[tuple[str, str, str], dict[str, Any]],
    conditions: list[str],
    columns: list[tuple[str, str]],
    plots_dir: Path,
) -> tuple[Path, Path] | None:
    """Rows: the condition trained; columns: task / metric evaluated; one panel per pooled group. Colour: the
    change vs base signed so that blue is better (ECE down, AUC up); text: change and 95% interval; a bold value
    means the interval excludes zero. `cells`: (group, condition, metric) -> comparison entry."""
    groups = list(dict.fromkeys(g for g, _, _ in cells))
    if not groups or not conditions:
        return None
    limit = 0.5
    cmap = plt.get_cmap("RdBu")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1,
            len(groups),
            figsize=(4.9 * len(groups) + 1.0, 0.55 * len(conditions) + 1.4),
            squeeze=False,
            layout="constrained",
        )
        for ax, group in zip(axes.flat, groups):
            grid = np.full((len(conditions), len(columns)), np.nan)
            for i, condition in enumerate(conditions):
                for j, (task, metric) in enumerate(columns):
                    c = cells.get((group, condition, f"{task}:{metric}"))
                    diff = None if c is None else c.get("diff")
                    if diff is None:
                        ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="#777777")
                        continue
                    gain = -diff if better(metric) == "lower" else diff
                    grid[i, j] = gain
                    ci = c.get("diff_ci")
                    sure = bool(ci) and not ci[0] <= 0 <= ci[1]
                    text = f"{diff:+.2f}" + (f"\n({ci[0]:+.2f}, {ci[1]:+.2f})" if ci else "")
                    ax.text(
                        j,
                        i,
                        text.replace("-", "\u2212"),
                        ha="center",
                        va="center",
                        fontsize=6,
                        fontweight="bold" if sure else "normal",
                        color="white" if abs(gain) > 0.6 * limit else "#222222",
                    )
            image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
            ax.set_facecolor("#EEEEEE")
            ax.set_xticks(range(len(columns)))
            ax.set_xticklabels([f"{label(metric)}\n{task}" for task, metric in columns], fontsize=7)
            ax.set_yticks(range(len(conditions)))
            ax.set_yticklabels([f"trained: {c}" for c in conditions], fontsize=7.5)
            ax.set_title(f"POOLED {group.removeprefix('pooled ')}", fontsize=9)
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02)
        bar.set_label("change vs base\n(blue = better)", fontsize=7)
        fig.suptitle("Transfer: change vs base by training condition (rows) and task evaluated (columns)", fontsize=9)
        return _save(fig, plots_dir, "transfer")
