"""Comparing API answers whose floats may differ in their last bits (sums in another order)."""

import math

RELATIVE_TOLERANCE = 1e-9


def differences(expected: object, actual: object, where: str = "") -> list[str]:
    """Where two JSON values differ, floats compared to within RELATIVE_TOLERANCE."""
    if isinstance(expected, float) or isinstance(actual, float):
        numbers = isinstance(expected, int | float) and isinstance(actual, int | float)
        if numbers and math.isclose(expected, actual, rel_tol=RELATIVE_TOLERANCE):  # type: ignore[arg-type]
            return []
        return [f"{where}: {expected!r} != {actual!r}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        if expected.keys() != actual.keys():
            return [f"{where}: keys {sorted(expected)} != {sorted(actual)}"]
        return [
            d for key in expected for d in differences(expected[key], actual[key], f"{where}/{key}")
        ]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} items != {len(actual)}"]
        return [
            d
            for i, pair in enumerate(zip(expected, actual, strict=False))
            for d in differences(*pair, f"{where}[{i}]")
        ]
    return [] if expected == actual else [f"{where}: {expected!r} != {actual!r}"]
