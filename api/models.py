"""The API's response bodies."""

from dataclasses import dataclass, field
from datetime import datetime

import msgspec


class Price(msgspec.Struct, frozen=True):
    """One tick: a pair's price at a collection instant. A msgspec Struct, not a dataclass like
    the other bodies: a response holds 1,440 of them, and a Struct is built ~8x faster."""

    exchange: str
    symbol: str
    price: float
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PriceHistory:
    """A pair's last 24 hours, oldest first, and the sample standard deviation of those prices."""

    exchange: str
    symbol: str
    prices: list[Price]
    stdv: float | None
    rank: int | None = None  # place in the stored ranking by cv; None if not in it
    ranked: int = 0  # how many pairs are ranked


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the database answers, and how old the newest tick is."""

    status: str
    database: str
    newest_tick: datetime | None = None
    newest_tick_age_seconds: float | None = None
    storage_mode: str | None = None  # "timescale" (policies, aggregates) or "apache" (fallback)
    compression: str | None = None  # "available" in timescale mode, else "unavailable"
    response_cache: str | None = None  # "listening", "not listening" or "off" (api/cache.py)
    set_aside_cycles: int = 0  # cycles the collector could not write (set_aside_cycles)
    price_windows: int = 0  # pairs whose 24-hour window this worker holds (api/windows.py)
    price_windows_mb: float = 0.0  # what they take, counted against API_WINDOWS_MB
    price_window_loads: int = 0  # bulk loads of every window begun (start, reconnect, full drop)
    reason: str | None = None  # why the status is not "ok" (the answer is then 503)
    # TimescaleDB's jobs whose last run failed or that have not succeeded within twice their
    # schedule (api/jobs.py); always [] on the Apache edition, which has no jobs.
    jobs: list["JobHealth"] = field(default_factory=list)
    # With a standby as DATABASE_URL: how far its replay is behind what it received, in
    # seconds (api/replica.sql, replica_lag); None when the API reads from the primary.
    replica_lag_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class JobHealth:
    """A TimescaleDB job /health reports: its last run failed, or it is overdue."""

    job: str  # `<procedure>:<relation>`, or `<schema>.<procedure>:<job id>` for an action
    job_id: int
    schedule_seconds: float
    scheduled: bool  # False when paused
    last_run_started_at: datetime | None  # None: never run in the background
    last_run_status: str | None  # "Success", "Failed" or None (never run)
    last_success: datetime | None  # None: never succeeded
    consecutive_failures: int
    error: str | None  # the last run's error, when it failed
    overdue: bool  # not succeeded within twice its schedule


@dataclass(frozen=True, slots=True)
class RankedPair:
    """A pair's 24-hour statistics and its place in the volatility ranking."""

    exchange: str
    symbol: str
    rank: int
    stdv: float
    cv: float
    mean: float
    min: float
    max: float
    first: float
    last: float
    change_pct: float
    count: int


@dataclass(frozen=True, slots=True)
class Rankings:
    """One page of the ranking: `ranked` pairs match, `rankings` holds those from `offset` on.

    The ranking is the one stored after the latest collection cycle; `as_of` is the end of
    its 24-hour window (None before the first)."""

    by: str
    exchange: str | None
    ranked: int
    limit: int
    offset: int
    rankings: list[RankedPair]
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class Candle:
    """A pair's prices in one bucket starting at `time`: OHLC, count, mean and sample stdv."""

    time: datetime
    open: float
    high: float
    low: float
    close: float
    count: int
    mean: float
    stdv: float | None


@dataclass(frozen=True, slots=True)
class Candles:
    """A pair's candles of one interval starting in [start, end), oldest first."""

    exchange: str
    symbol: str
    interval: str
    start: datetime
    end: datetime
    candles: list[Candle]


@dataclass(frozen=True, slots=True)
class Problem:
    """An error response: the HTTP status and what went wrong."""

    status_code: int
    detail: str
