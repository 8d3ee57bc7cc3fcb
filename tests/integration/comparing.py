"""Comparing API answers whose floats may differ in their last bits (sums in another order)."""

import math

import httpx

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


async def mismatches(api: httpx.AsyncClient) -> list[str]:
    """Pairs whose ranking row disagrees with /prices: stdv beyond 1e-9, rank, or counts."""
    ranking = (await api.get("/rankings")).json()
    problems = []
    for row in ranking["rankings"]:
        prices = (await api.get(f"/prices/{row['exchange']}/{row['symbol']}")).json()
        values = [tick["price"] for tick in prices["prices"]]
        if abs(row["stdv"] - prices["stdv"]) >= 1e-9 * prices["stdv"]:
            problems.append(f"{row['symbol']}: stdv {row['stdv']} != {prices['stdv']}")
        seen = (row["rank"], ranking["ranked"], row["count"], row["first"], row["last"])
        wanted = (prices["rank"], prices["ranked"], len(values), values[0], values[-1])
        if seen != wanted or (row["min"], row["max"]) != (min(values), max(values)):
            problems.append(f"{row['exchange']} {row['symbol']}: {seen} != {wanted}")
    return problems
