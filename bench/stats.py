"""Summaries of repeated measurements: medians with min-max, percentiles."""

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of the runs (NaN for none)."""
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "runs": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (NaN for none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def save(result: dict[str, object], path: Path | None) -> None:
    """Write the result as JSON when a path is given."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
