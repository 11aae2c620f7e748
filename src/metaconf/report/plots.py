"""Publication-quality figures (matplotlib, Agg backend), each saved as PNG (for the HTML) and PDF (for papers)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Okabe-Ito: distinguishable with colour-blindness and in greyscale print
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "axes.spines.top": False,
         "axes.spines.right": False, "figure.dpi": 100, "savefig.dpi": 160, "pdf.fonttype": 42}


def _save(fig: Any, plots_dir: Path, name: str) -> tuple[Path, Path]:
    """Save name.png and name.pdf atomically; returns both paths."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        target = plots_dir / f"{name}.{ext}"
        fd, tmp = tempfile.mkstemp(dir=plots_dir, prefix=f".{name}.", suffix=f".{ext}")
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext)  # layouts are tight already; a tight bbox would draw twice
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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


def reliability_diagrams(single: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], plots_dir: Path,
                         n_bins: int = 10) -> tuple[Path, Path] | None:
    """One panel per condition: accuracy vs mean confidence in equal-width bins, per domain group.

    `single`: condition -> group label (e.g. "in-domain") -> (confidence, correct) of parsed items.
    """
    if not single:
        return None
    with plt.rc_context(STYLE):
        fig, axes = _grid(len(single))
        for ax, (condition, groups) in zip(axes.flat, single.items()):
            ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="perfect calibration")
            for color, (label, (conf, correct)) in zip(PALETTE, groups.items()):
                if not len(conf):
                    continue
                bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
                counts = np.bincount(bins, minlength=n_bins)
                used = counts > 0
                mean_conf = np.bincount(bins, conf, n_bins)[used] / counts[used]
                acc = np.bincount(bins, correct, n_bins)[used] / counts[used]
                ax.plot(mean_conf, acc, "-", color=color, lw=1.2, label=f"{label} (n={len(conf)})")
                ax.scatter(mean_conf, acc, s=10 + 60 * counts[used] / counts.max(), color=color, zorder=3)
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="stated confidence", ylabel="accuracy", title=condition)
            ax.set_aspect("equal")
            ax.legend(loc="upper left", frameon=False, fontsize=7)
        fig.suptitle("Reliability, single-question task\n(marker area ~ items in the bin)", fontsize=9)
        fig.tight_layout()
        return _save(fig, plots_dir, "reliability")


def confidence_histograms(single: dict[str, tuple[np.ndarray, np.ndarray]], plots_dir: Path
                          ) -> tuple[Path, Path] | None:
    """One panel per condition: stated confidence of correct vs incorrect answers (all datasets)."""
    if not single:
        return None
    edges = np.linspace(0, 1, 21)
    with plt.rc_context(STYLE):
        fig, axes = _grid(len(single), height=2.2)
        for ax, (condition, (conf, correct)) in zip(axes.flat, single.items()):
            right, wrong = conf[correct == 1], conf[correct == 0]
            ax.hist(wrong, edges, color=PALETTE[5], alpha=0.6, label=f"incorrect (n={len(wrong)})")
            ax.hist(right, edges, color=PALETTE[0], alpha=0.6, label=f"correct (n={len(right)})")
            ax.set(xlim=(0, 1), xlabel="stated confidence", ylabel="answers", title=condition)
            ax.legend(frameon=False)
        fig.suptitle("Confidence of correct and incorrect answers")
        fig.tight_layout()
        return _save(fig, plots_dir, "confidence_histograms")


def metric_bars(rows: list[dict[str, Any]], metric: str, label: str, plots_dir: Path
                ) -> tuple[Path, Path] | None:
    """Grouped bars: one group per dataset (domain), one bar per condition, 95% intervals as error bars."""
    rows = [r for r in rows if metric in r]
    if not rows:
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    width = 0.8 / len(conditions)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(4.5, 1.5 * len(datasets) + 2.0), 3.2))
        for k, condition in enumerate(conditions):
            xs, ys, err = [], [], [[], []]
            for j, dataset in enumerate(datasets):
                row = next((r for r in rows if r["condition"] == condition and r["dataset"] == dataset), None)
                if row is None or row.get(metric) is None:
                    continue
                value, ci = row[metric], row.get(f"{metric}_ci") or [row[metric], row[metric]]
                xs.append(j + (k - (len(conditions) - 1) / 2) * width)
                ys.append(value)
                err[0].append(max(value - ci[0], 0))
                err[1].append(max(ci[1] - value, 0))
            ax.bar(xs, ys, width * 0.95, yerr=err, capsize=2, color=PALETTE[k % len(PALETTE)], label=condition,
                   error_kw={"lw": 0.8})
        if metric in ("auroc", "auc_a", "auc_c", "pairwise_auc"):
            ax.axhline(0.5, color="#999999", lw=0.8, ls="--")
        ax.set_xticks(range(len(datasets)))
        ax.set_xticklabels([_dataset_label(rows, d) for d in datasets])
        ax.set_ylabel(label)
        ax.set_title(f"{label} per condition and dataset (error bars: 95% bootstrap intervals)")
        ax.legend(frameon=False, title="condition", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        return _save(fig, plots_dir, f"bars_{metric}")


def _dataset_label(rows: list[dict[str, Any]], dataset: str) -> str:
    row = next(r for r in rows if r["dataset"] == dataset)
    where = "in-domain" if row.get("in_domain") else "new domain"
    return f"{dataset}\n{row.get('domain')}\n{where}"


def loss_curves(logs: dict[str, list[tuple[float, float]]], plots_dir: Path) -> tuple[Path, Path] | None:
    """Training loss per step, one line per trained condition."""
    logs = {k: v for k, v in logs.items() if v}
    if not logs:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5, 2.8))
        for color, (condition, points) in zip(PALETTE, logs.items()):
            steps, losses = zip(*points)
            ax.plot(steps, losses, color=color, lw=1.2, label=condition)
        ax.set(xlabel="step", ylabel="training loss", title="Training loss")
        ax.legend(frameon=False)
        fig.tight_layout()
        return _save(fig, plots_dir, "training_loss")
