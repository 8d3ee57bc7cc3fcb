"""Settings for both services, read once from the environment and `.env`."""

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from datatracker.conninfo import check_conninfo
from datatracker.symbols import normalise_exchange


class Settings(BaseSettings):
    """Every setting of datatracker; the README's settings table documents each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = Field(min_length=1)
    # A hot standby as DATABASE_URL (api/replica.py): the API listens for changes on the
    # primary named here (None: DATABASE_URL) and waits this long for the standby to replay
    # what the primary holds before a read, then answers 503.
    api_listen_url: str | None = None
    api_replica_wait_seconds: float = Field(default=2, gt=0, le=60)
    supported_exchanges: Annotated[tuple[str, ...], NoDecode] = (
        "binance",
        "coinbase",
        "kraken",
        "bitstamp",
        "okx",
    )
    price_source: Literal["live", "simulated"] = "live"
    collect_interval_seconds: int = Field(default=60, ge=1, le=3600)
    exchange_timeout_seconds: float = Field(default=20, gt=0)
    markets_reload_seconds: int = Field(default=3600, ge=60)
    exchange_base_url: str | None = None
    simulated_pairs_per_exchange: int = Field(default=50, ge=1, le=10_000)
    simulated_seed: int = 42
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # The collector's spool of cycles not yet written (collector/spool.py).
    spool_dir: Path = Path("spool")
    spool_max_mb: float = Field(default=256, gt=0)
    stop_grace_seconds: float = Field(default=10, ge=0, le=600)
    gap_fill_max_hours: float = Field(default=6, ge=0, le=168)
    db_pool_max_size: int = Field(default=10, ge=1, le=100)
    # The API's memory (api/cache.py, api/windows.py), per worker: response bodies kept, and
    # the pairs' 24-hour windows of prices (16 bytes a tick; 10k pairs of minute ticks take
    # about 230 MB). 0 turns either off.
    api_cache_mb: int = Field(default=64, ge=0, le=65_536)
    api_windows_mb: float = Field(default=256, ge=0, le=65_536)
    # Each API worker's helper process that builds the first answers of the windows after a
    # bulk load (api/prebuild.py).
    api_prebuild: bool = True
    # API processes; 0 (the default) means one per core.
    api_workers: int = Field(default=0, ge=0, le=256)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Storage lifecycle (db/init.sql, docs/sql.md). Values like `7 days`, `36h`, `P730D`.
    raw_retention: timedelta = Field(default=timedelta(days=7), ge=timedelta(days=2))
    compress_after: timedelta = Field(default=timedelta(days=1), ge=timedelta(days=1))
    candles_5m_retention: timedelta = Field(default=timedelta(days=90), ge=timedelta(days=2))
    candles_1h_retention: timedelta = Field(default=timedelta(days=730), ge=timedelta(days=2))
    # Apache mode only: how often the collector drops expired chunks.
    retention_check_seconds: int = Field(default=3600, ge=60)
    # The API's sockets (api/server.py): open connections at once (503 past it), seconds a
    # connection may stay idle between requests, and seconds to send a request's headers.
    api_max_connections: int = Field(default=4096, ge=1, le=1_000_000)
    api_keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    api_header_timeout_seconds: float = Field(default=10, gt=0, le=3600)
    # A log line per request (uvicorn's access log, at INFO): ~30 µs of a worker's CPU each.
    api_access_log: bool = False
    # /health answers 503 once a TimescaleDB job has failed this many times in a row.
    health_job_failures: int = Field(default=3, ge=1, le=1000)
    # Prometheus metrics (README, Metrics): the API's /metrics, and the collector's own port
    # (0: none).
    api_metrics: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9101, ge=0, le=65535)

    @field_validator("supported_exchanges", mode="before")
    @classmethod
    def _split_exchanges(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            names = tuple(dict.fromkeys(normalise_exchange(str(part)) for part in value))
            if not names:
                raise ValueError("name at least one exchange")
            return names
        return value

    @field_validator("api_listen_url")
    @classmethod
    def _parse_listen_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # `API_LISTEN_URL=` (as in .env.example): DATABASE_URL
        check_conninfo(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _parse_database_url(cls, value: str) -> str:
        # Checked here so that a malformed URL stops the program with one line, and without
        # the password that psycopg's own message would quote.
        check_conninfo(value)
        return value

    @field_validator("exchange_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # `EXCHANGE_BASE_URL=` (as in .env.example) leaves it unset
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname or value != value.strip():
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class SettingsError(SystemExit):
    """Raised at start when a setting is missing or invalid; its message names the variable."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one readable line per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"{str(e['loc'][0]).upper()}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise SettingsError(f"configuration error: {problems}") from None
