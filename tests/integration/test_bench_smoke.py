"""The benchmarks at a tiny scale, so they never rot: each completes and yields numbers.

No timing is asserted: CI machines are too noisy for that, and bench/RESULTS.md holds the figures.
"""

import math
import os
import shutil
from pathlib import Path

import pytest

from bench import (
    backfill,
    first_seconds,
    footprint,
    generate,
    hot_read,
    metrics_overhead,
    outage,
    outside,
    profile_summary,
    read_path,
    soak,
    write_path,
)


def finite(value: object) -> bool:
    """Whether a figure is a real, finite number."""
    return isinstance(value, int | float) and math.isfinite(value)


def test_write_path_reports_rates_and_ratios(database_url: str) -> None:
    """The write benchmark writes tiny cycles the tracker's, ORM and raw ways, with their ratios."""
    result = write_path.main(
        ["--database-url", database_url, "--ticks", "200", "--cycles", "2", "--runs", "1",
         "--original-rows", "50"]
    )  # fmt: skip
    sizes = result["sizes"]
    assert [200] == [size["ticks"] for size in sizes]
    assert finite(sizes[0]["tracker_ticks_per_second"])
    for way in ("orm", "raw"):
        assert finite(sizes[0][f"original_{way}_ticks_per_second"]["median"])
        assert finite(sizes[0][f"original_{way}_ratio"])


def test_outage_reports_refusals_and_the_time_to_serve_again(edition: str) -> None:
    """The outage benchmark stops and starts its own cluster under load once, and reports the
    503s while it was stopped and when the API served again."""
    result = outage.main(
        ["--edition", edition, "--runs", "1", "--outage-seconds", "3", "--after-seconds", "5",
         "--clients", "2", "--workers", "1", "--pairs", "2"]
    )  # fmt: skip
    run = result["runs"][0]
    assert run["during_statuses"].get(503, 0) > 0
    assert finite(run["during_p99_ms"])
    assert finite(run["first_200_s"])


def test_backfill_reports_the_process_against_raw_copies(database_url: str) -> None:
    """The backfill benchmark times `collector backfill` as a process and raw COPYs of the
    rows it wrote, with their ratios."""
    result = backfill.main(
        ["--database-url", database_url, "--pairs", "10", "--hours", "0.5",
         "--exchanges", "kraken", "binance"]
    )  # fmt: skip
    assert 10 * 30 == result["ticks"]
    for way in ("backfill", "copy_as_written", "copy_minute_by_minute"):
        assert finite(result[f"{way}_ticks_per_second"]["median"])
    assert finite(result["backfill_over_copy_as_written"])


@pytest.mark.slow
def test_read_path_reports_latencies(database_url: str) -> None:
    """With generated data, the read benchmark loads both APIs and reports rates and p50/p99."""
    generated = generate.main(
        ["--database-url", database_url, "--pairs", "20", "--days", "0.05", "--original"]
    )
    assert 20 * 72 == generated["ticks"]
    result = read_path.main(
        ["--database-url", database_url, "--clients", "1", "2", "--seconds", "1", "--runs", "1",
         "--pairs", "5", "--query-repeats", "3", "--grace", "10"]
    )  # fmt: skip
    for key in ("prices@1", "prices@2", "original_prices@1", "original_prices@2"):
        assert finite(result["http"][key]["p50_ms"]["median"])
        assert finite(result["http"][key]["requests_per_second"]["median"])
    assert all(finite(timing["median"]) for timing in result["queries_ms"].values())


@pytest.mark.slow
def test_footprint_reports_memory_and_bytes_per_tick(database_url: str) -> None:
    """The footprint benchmark reports each process's RSS and bytes per tick at two scales."""
    result = footprint.main(
        ["--database-url", database_url, "--pairs", "10", "20", "--hours", "0.1",
         "--api-requests", "20"]
    )  # fmt: skip
    assert [10, 20] == [scale["pairs"] for scale in result["disk"]]
    assert all(finite(scale["bytes_per_tick"]) for scale in result["disk"])
    assert all(value > 0 for value in result["memory"].values())


@pytest.mark.slow
def test_soak_loads_both_endpoints_while_the_collector_writes(database_url: str) -> None:
    """The soak runs the API and the collector, loads both endpoints and reports no failure."""
    result = soak.main(
        ["--database-url", database_url, "--pairs", "10", "--clients", "4", "--seconds", "2",
         "--collect-interval", "1", "--sample", "5", "--grace", "10"]
    )  # fmt: skip
    assert [] == result["failures"]
    assert all(finite(result["http"][name]["p50_ms"]) for name in ("prices", "rankings"))


@pytest.mark.slow
def test_hot_read_reports_latencies_rates_and_memory(database_url: str) -> None:
    """With generated data and cycles committing, the hot-window benchmark loads the API, the
    minimal app and two workers and reports finite figures."""
    generate.main(["--database-url", database_url, "--pairs", "20", "--days", "0.05"])
    result = hot_read.main(
        ["--database-url", database_url, "--pairs", "20", "--seconds", "3", "--short-seconds",
         "1", "--cycle-every", "1", "--clients", "2", "--etag-pairs", "5", "--grace", "10"]
    )  # fmt: skip
    one = result["one_worker"]
    for run in (one["prices"], one["rankings"], one["not_modified"], result["minimal"]):
        assert finite(run["p50_ms"])
        assert finite(run["requests_per_second"])
    assert finite(one["prices"]["minute_after"]["p99_ms"])
    assert finite(result["one_worker_vs_minimal"])
    assert finite(result["many_workers_gain"])
    assert one["rss_after_warm_bytes"] > 0
    assert finite(one["health_after_warm"]["price_windows_mb"])


def test_metrics_overhead_reports_both_apis_and_their_ratio(database_url: str) -> None:
    """The metrics benchmark loads the API with metrics on and off and reports finite rates,
    CPU per request and their ratios."""
    generate.main(["--database-url", database_url, "--pairs", "20", "--days", "0.05"])
    result = metrics_overhead.main(
        ["--database-url", database_url, "--pairs", "20", "--seconds", "1", "--runs", "2",
         "--clients", "2", "--grace", "10", "--in-process-rounds", "2",
         "--in-process-requests", "50"]
    )  # fmt: skip
    for name in ("on", "off"):
        assert finite(result["http"][name]["requests_per_second"]["median"])
        assert finite(result["http"][name]["server_cpu_us_per_request"]["median"])
        assert finite(result["in_process"][name]["median"])
    assert finite(result["http"]["ratio_on_off"])
    assert finite(result["http"]["cpu_ratio_off_on"])
    assert finite(result["in_process"]["cpu_ratio_off_on"])
    assert [200, 200] == [scrape["status"] for scrape in result["http"]["scrapes"]]
    assert {200: 4 * 50} == result["in_process"]["statuses"]


def test_outside_compares_wrk_and_our_generator_on_both_servers(database_url: str) -> None:
    """The outside benchmark loads the API and the minimal app with wrk and with our Python
    generator, a cycle committing in each run, and reports rates, latencies, each generator's
    CPU per request and the ratios."""
    if shutil.which("wrk") is None:  # a CI run fails without it (.ci/run installs it)
        message = "wrk is not installed: apt-get install -y --no-install-recommends wrk"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    generate.main(["--database-url", database_url, "--pairs", "20", "--days", "0.05"])
    result = outside.main(
        ["--database-url", database_url, "--pairs", "20", "--seconds", "1", "--rounds", "1",
         "--connections", "2"]
    )  # fmt: skip
    assert {"gzip/wrk", "gzip/python", "identity/wrk", "identity/python"} == set(result["compared"])
    for compared in result["compared"].values():
        for side in ("api", "minimal"):
            assert finite(compared[side]["requests_per_second"]["median"])
            assert finite(compared[side]["p99_ms"]["median"])
            assert finite(compared[side]["generator_cpu_us_per_request"]["median"])
            assert 0 == compared[side]["errors"]
        assert finite(compared["ratio"])
    assert result["cycles_error"] is None


def test_first_seconds_times_the_start_and_a_compression_with_wrk(
    database_url: str, edition: str
) -> None:
    """wrk right after /health answers (and, on the Timescale-License edition, right after the
    oldest chunk is compressed, which is decompressed again), then a second-by-second
    timeline: rates and latencies, no errors."""
    if shutil.which("wrk") is None:  # a CI run fails without it (.ci/run installs it)
        message = "wrk is not installed: apt-get install -y --no-install-recommends wrk"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    generate.main(["--database-url", database_url, "--pairs", "20", "--days", "0.05"])
    compress = "--compress" if edition == "timescale" else "--no-compress"
    result = first_seconds.main(
        ["--database-url", database_url, "--seconds", "1", "--timeline", "2",
         "--connections", "2", compress]
    )  # fmt: skip
    runs = [result["start"]["wrk"], *result["timeline"]]
    if edition == "timescale":
        runs.append(result["start"]["compression"]["wrk"])
    else:
        assert "compression" not in result["start"]
    for run in runs:
        assert run["requests"] > 0
        assert 0 == run["errors"]
        assert finite(run["p50_ms"])
        assert finite(run["p99_ms"])
    assert 2 == len(result["timeline"])


def test_profile_summary_ranks_frames(tmp_path: Path) -> None:
    """Collapsed stacks are summarised into inclusive and exclusive shares of samples."""
    profile = tmp_path / "profile.txt"
    profile.write_text("main;write;adapt 3\nmain;write;send 1\n")
    frames = profile_summary.main([str(profile), "--top", "2"])
    assert [("main", 100.0), ("write", 100.0)] == frames["inclusive"]
    assert ("adapt", 75.0) == frames["exclusive"][0]
