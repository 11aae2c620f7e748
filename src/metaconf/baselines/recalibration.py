"""Post-hoc recalibration of stated confidence: isotonic regression and Platt scaling (scikit-learn), fitted on
training questions only and stored as plain numbers so that applying a map needs no pickle and no scikit-learn.

A stored map: {"method": "isotonic", "x": [...], "y": [...]} (piecewise linear through the fitted thresholds,
clipped at the ends: exactly `IsotonicRegression(out_of_bounds="clip").predict`), or {"method": "platt", "a": ..,
"b": ..} (confidence -> 1 / (1 + exp(-(a * confidence + b)))).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from metaconf.errors import DataError

METHODS = ("isotonic", "platt")


def fit_map(method: str, confidence: Sequence[float], correct: Sequence[float]) -> dict[str, Any]:
    """Fit one recalibration map; {"method", ..., "n"} or {"method", "error"} when it cannot be fitted."""
    x = np.asarray(confidence, dtype=float)
    y = np.asarray(correct, dtype=float)
    if x.size < 2:
        return {"method": method, "n": int(x.size), "error": "fewer than 2 training answers with a stated confidence"}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        return {"method": method, "n": int(x.size), "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    if method == "platt":
        if len(set(y.tolist())) < 2:
            return {"method": method, "n": int(x.size), "error": "training answers all right or all wrong"}
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=np.inf).fit(x.reshape(-1, 1), y)  # unpenalised: the maximum-likelihood fit
        return {"method": method, "n": int(x.size), "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    raise DataError(f"recalibration: unknown method {method!r} (choose from {', '.join(METHODS)})")


def apply_map(mapping: dict[str, Any], confidence: float | None) -> float | None:
    """A stated confidence through a fitted map (None stays None, as does an unfitted map)."""
    if confidence is None or "error" in mapping:
        return None
    if mapping["method"] == "isotonic":
        return float(np.interp(confidence, mapping["x"], mapping["y"]))
    if mapping["method"] == "platt":
        z = mapping["a"] * confidence + mapping["b"]
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    raise DataError(f"recalibration map: unknown method {mapping.get('method')!r}")
