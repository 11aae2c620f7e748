"""The calibration map: consistency bin -> empirical accuracy of the modal answers, fitted on training questions.

Bins are equal-width over [0, 1]; bin k holds k/B <= consistency < (k+1)/B and consistency 1.0 lands in the last
bin. A bin with fewer than `min_bin_count` questions is padded up to `min_bin_count` with pseudo-observations at
the fallback accuracy: (correct + (m - count) * fallback) / m, where m = min_bin_count. The fallback is the pooled
accuracy of all questions for the pooled map, and the pooled map's value for the same bin for per-domain maps. An
empty bin therefore gets the fallback itself. Targets add seeded uniform noise and are clipped to [0, 1].
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metaconf.engines.base import stable_hash
from metaconf.errors import DataError
from metaconf.targets.consistency import ConsistencyRecord


def bin_index(consistency: float, n_bins: int) -> int:
    """Equal-width bin of a consistency in [0, 1] (1.0 in the last bin; tolerant of float round-off)."""
    return min(max(int(consistency * n_bins + 1e-9), 0), n_bins - 1)


@dataclass
class BinTable:
    """Counts, raw accuracy and calibrated target per bin for one group of questions."""

    count: list[int]
    correct: list[int]
    target: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "correct": self.correct, "target": self.target}


def _fit_bins(records: Sequence[ConsistencyRecord], n_bins: int, min_count: int, fallback: list[float]) -> BinTable:
    count, correct = [0] * n_bins, [0] * n_bins
    for r in records:
        k = bin_index(r.consistency, n_bins)
        count[k] += 1
        correct[k] += int(r.modal_correct)
    target = []
    for k in range(n_bins):
        pad = max(min_count - count[k], 0)
        total = count[k] + pad
        target.append((correct[k] + pad * fallback[k]) / total if total else fallback[k])
    return BinTable(count, correct, target)


@dataclass
class CalibrationMap:
    n_bins: int
    min_bin_count: int
    pooled_accuracy: float
    pooled: BinTable
    by_domain: dict[str, BinTable] = field(default_factory=dict)  # empty unless fitted with by_domain=True

    @classmethod
    def fit(
        cls, records: Sequence[ConsistencyRecord], n_bins: int = 10, by_domain: bool = False, min_bin_count: int = 5
    ) -> CalibrationMap:
        """Fit on training records only (never on held-out questions)."""
        if not records:
            raise DataError("calibration map: no consistency records to fit on")
        if n_bins < 1 or min_bin_count < 0:
            raise DataError(f"calibration map: n_bins must be >= 1 and min_bin_count >= 0 ({n_bins}, {min_bin_count})")
        accuracy = sum(r.modal_correct for r in records) / len(records)
        pooled = _fit_bins(records, n_bins, min_bin_count, [accuracy] * n_bins)
        domains: dict[str, BinTable] = {}
        if by_domain:
            for domain in sorted({r.domain for r in records}):
                group = [r for r in records if r.domain == domain]
                domains[domain] = _fit_bins(group, n_bins, min_bin_count, pooled.target)
        return cls(n_bins, min_bin_count, accuracy, pooled, domains)

    def table_for(self, domain: str | None = None) -> BinTable:
        return self.by_domain.get(domain, self.pooled) if domain is not None else self.pooled

    def bin_of(self, record: ConsistencyRecord) -> int:
        return bin_index(record.consistency, self.n_bins)

    def accuracy(self, record: ConsistencyRecord) -> float:
        """The calibrated (noise-free) target of a record: its bin's value in its domain's map (else pooled)."""
        return self.table_for(record.domain if self.by_domain else None).target[self.bin_of(record)]

    def target(self, record: ConsistencyRecord, noise: float = 0.05, seed: int = 0) -> float:
        """Bin accuracy + uniform noise in [-noise, +noise], clipped to [0, 1]. The noise is seeded per
        (seed, question id), so a question's target does not depend on which other questions are present."""
        rng = random.Random(int(stable_hash("target-noise", str(seed), record.id)[:15], 16))
        return min(max(self.accuracy(record) + rng.uniform(-noise, noise), 0.0), 1.0)

    # -- persistence and display -----------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "n_bins": self.n_bins,
                "min_bin_count": self.min_bin_count,
                "pooled_accuracy": self.pooled_accuracy,
                "pooled": self.pooled.to_dict(),
                "by_domain": {d: t.to_dict() for d, t in self.by_domain.items()},
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "calibration map") -> CalibrationMap:
        try:
            raw = json.loads(text)
            return cls(
                n_bins=int(raw["n_bins"]),
                min_bin_count=int(raw["min_bin_count"]),
                pooled_accuracy=float(raw["pooled_accuracy"]),
                pooled=BinTable(**raw["pooled"]),
                by_domain={d: BinTable(**t) for d, t in raw.get("by_domain", {}).items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{where}: not a calibration map ({exc})") from None

    def table(self, domain: str | None = None) -> list[dict[str, Any]]:
        """Rows (bin, range, count, accuracy, target) for the data card; accuracy is None in an empty bin."""
        t = self.table_for(domain)
        rows = []
        for k in range(self.n_bins):
            lo, hi = k / self.n_bins, (k + 1) / self.n_bins
            rows.append(
                {
                    "bin": k,
                    "range": f"[{lo:.2f}, {hi:.2f}{']' if k == self.n_bins - 1 else ')'}",
                    "count": t.count[k],
                    "accuracy": t.correct[k] / t.count[k] if t.count[k] else None,
                    "target": round(t.target[k], 4),
                }
            )
        return rows

    def markdown(self, domain: str | None = None) -> str:
        lines = ["| bin | consistency | count | accuracy | target |", "|---|---|---|---|---|"]
        for row in self.table(domain):
            acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
            lines.append(f"| {row['bin']} | {row['range']} | {row['count']} | {acc} | {row['target']:.3f} |")
        return "\n".join(lines)
