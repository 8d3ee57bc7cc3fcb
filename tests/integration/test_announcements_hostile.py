"""Announcements are data, not trust: any role that can connect may NOTIFY datatracker_changes
with any payload, and the API goes on answering what the database holds, its listener up."""

import asyncio
import random
import secrets
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from collector.ticks import Tick
from collector.writer import write_ticks
from datatracker.instants import micros_of
from tests.api_server import api_process

PAIRS = [("kraken", "btcusd", "BTC", "USD"), ("kraken", "ethusd", "ETH", "USD")]
PAIRS += [("binance", "solusdt", "SOL", "USDT")]
ROUNDS = 8
PAYLOADS_PER_ROLE = 60  # in each round, from each of the three roles
LONGEST_PAYLOAD = 7999  # bytes: PostgreSQL refuses 8,000 and more


def tick(at: datetime, pair: tuple[str, str, str, str], price: float) -> Tick:
    exchange, symbol, base, quote = pair
    return Tick(at, exchange, symbol, base, quote, price)


def hostile_payloads(rng: random.Random, now: datetime) -> list[str]:
    """Payloads no trigger sends: malformed, out of range, oversized, and random; plus the
    triggers' own forms sent by someone else, and sane-looking spans that lie."""
    now_us = micros_of(now)
    hour = 3_600 * 1_000_000
    fixed = [
        "ticks 99999999999999999999999/99999999999999999999999",  # the OverflowError
        "ticks 9223372036854775807/9223372036854775807",
        f"ticks {now_us}/{now_us - 2 * hour}",  # backwards over the stored ticks
        f"ticks 0/{now_us}",
        f"ticks {now_us + 400 * 86_400 * 1_000_000}/{now_us + 401 * 86_400 * 1_000_000}",
        f"ticks {now_us - 3 * hour}/{now_us - 2 * hour}",  # sane, and nothing was written
        "ticks",
        "ranking",
        "markets",
        "storage",  # apply_retention()'s: the API reads ticks_storage() again
        "ticks -1/1",
        "ticks 1_000/2_000",
        "ticks \u0661/\u0662",
        "x" * LONGEST_PAYLOAD,
        "ticks " + "9" * (LONGEST_PAYLOAD - 6),
        "é" * (LONGEST_PAYLOAD // 2),
        "ticks 1/2\nTraceback (most recent call last):",
    ]
    alphabet = string.printable + "é€\u0661"
    randoms = []
    for _ in range(PAYLOADS_PER_ROLE - len(fixed)):
        size = rng.choice([rng.randint(0, 40), rng.randint(0, LONGEST_PAYLOAD // 3)])
        head = rng.choice(["", "ticks ", f"ticks {now_us}/", "ranking "])
        randoms.append(head + "".join(rng.choices(alphabet, k=size)))
    return fixed + randoms


@pytest.fixture
def stranger_url(database_url: str) -> Iterator[str]:
    """A fresh LOGIN role with no privilege beyond PUBLIC's: anyone who can connect."""
    name = f"stranger_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
    yield make_conninfo(database_url, user=name, password=password)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name]
        )
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


async def stored(conn: psycopg.AsyncConnection, exchange: str, symbol: str) -> list[float]:
    """A pair's prices of the last 24 hours, as SQL has them."""
    cursor = await conn.execute(
        "SELECT price FROM prices WHERE exchange = %s AND symbol = %s"
        " AND time >= now() - interval '24 hours' AND time <= now() ORDER BY time",
        [exchange, symbol],
    )
    return [row[0] for row in await cursor.fetchall()]


async def served(client: httpx.AsyncClient, exchange: str, symbol: str) -> list[float]:
    response = await client.get(f"/prices/{exchange}/{symbol}")
    assert 200 == response.status_code, response.text
    return [point["price"] for point in response.json()["prices"]]


async def watch(client: httpx.AsyncClient, stop: asyncio.Event) -> list[tuple[int, str]]:
    """Ask /prices and /health until `stop`: each answer's status, and the cache's state."""
    seen = []
    while not stop.is_set():
        for exchange, symbol, _, _ in PAIRS:
            seen.append(((await client.get(f"/prices/{exchange}/{symbol}")).status_code, ""))
        health = await client.get("/health")
        seen.append((health.status_code, health.json().get("response_cache", "")))
    return seen


async def notify_all(url: str, payloads: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for payload in payloads:
            await conn.execute("SELECT pg_notify('datatracker_changes', %s)", [payload])


@pytest.mark.slow
async def test_hostile_announcements_leave_answers_right_and_the_listener_up(
    conn: psycopg.AsyncConnection,
    collector_url: str,
    api_url: str,
    grafana_url: str,
    stranger_url: str,
    tmp_path: Path,
) -> None:
    """Malformed, oversized, out-of-range and random payloads, from api, grafana and a fresh
    role, between real writes: every answer equals SQL, /health says `listening` throughout,
    the log holds no traceback and one rate-limited line about them."""
    rng = random.Random(20261206)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=99)
    async with await psycopg.AsyncConnection.connect(collector_url, autocommit=True) as writer:
        history = [
            tick(start + timedelta(minutes=m), pair, 100.0 + k + m / 7)
            for m in range(100)
            for k, pair in enumerate(PAIRS)
        ]
        await write_ticks(writer, history)
        log = tmp_path / "api.log"
        with api_process(api_url, log, API_WORKERS="1") as (port, _):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
                for exchange, symbol, _, _ in PAIRS:  # the windows are held from here on
                    assert await stored(conn, exchange, symbol) == await served(
                        api, exchange, symbol
                    )
                stop = asyncio.Event()
                watching = asyncio.create_task(watch(api, stop))
                mismatches = []
                for n in range(ROUNDS):
                    now = datetime.now(UTC)
                    await write_ticks(
                        writer,
                        [tick(now - timedelta(seconds=n), pair, 200.0 + n) for pair in PAIRS],
                    )
                    await asyncio.gather(
                        *(
                            notify_all(url, hostile_payloads(rng, now))
                            for url in (api_url, grafana_url, stranger_url)
                        )
                    )
                    for exchange, symbol, _, _ in PAIRS:
                        expected = await stored(conn, exchange, symbol)
                        answer = await served(api, exchange, symbol)
                        if answer != expected:
                            mismatches.append((n, exchange, symbol, len(expected), len(answer)))
                stop.set()
                seen = await watching

    output = log.read_text(errors="replace")
    assert [] == mismatches
    assert {(200, ""), (200, "listening")} == set(seen), set(seen)
    assert "Traceback" not in output
    assert 0 == output.count("response cache off")
    assert 1 == output.count("response cache on: listening")
    assert 1 == output.count("malformed announcement(s) on datatracker_changes"), output
