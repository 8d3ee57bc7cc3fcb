"""Two API hosts (`python -m api` processes on their own ports) behind Debian's nginx with the
shipped config (nginx/datatracker.conf.template): a committed cycle is served through the
proxy within a stated bound, cached answers are renewed by 304s, each client gets its own
coding, /health is never cached, load is spread and a stopped host is skipped."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from api.routes import accepts_gzip
from tests.api_server import api_process
from tests.integration.history import refresh_rankings
from tests.integration.test_prices_fresh import commit_cycle
from tests.integration.test_prices_hot import STDDEV_SAMP, pairs, write_cycle
from tests.nginx_proxy import ROOT, Proxy, nginx, nginx_proxy

# The API hosts' COLLECT_INTERVAL_SECONDS: their cycles' instants fall on multiples of it.
INTERVAL = 10
# How long after a cycle's commit the proxy may still serve the answer before it (README,
# "Behind a reverse proxy"): an answer waiting for its cycle is fresh for 1 s (max-age=1),
# which nginx, counting whole seconds, keeps for up to 2 s; then the API's own delay (its
# announcement: milliseconds) and this test's polling, with room for a busy machine.
BOUND_SECONDS = 3.0
# Accept-Encoding headers whose coding nginx must decide as the API does (api/routes.py).
SPELLINGS = [
    "br, gzip",
    "GZIP",
    "x-gzip;q=0.5",
    "deflate, gzip;q=0.001",
    "gzip;q=0",
    "gzip ; q=0.000",
    "gzip;q=0, br",
    "gzipx",
    "identity;q=1, *;q=0",
    "*",
    "",
    "br",
]
PRICES_24H = """
SELECT time, price FROM prices
WHERE exchange = %s AND symbol = %s AND time >= now() - interval '24 hours' AND time <= now()
ORDER BY time
"""


@dataclass
class Hosts:
    """The proxy and the API hosts behind it (their ports and process ids)."""

    proxy: Proxy
    ports: list[int]
    pids: list[int]


def until_listening_for_changes(port: int) -> None:
    """Wait until the API host on `port` says its response cache listens (20 s at most: the
    machine may be busy)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        if health.get("response_cache") == "listening":
            return
        time.sleep(0.05)
    raise AssertionError(f"the API on {port} did not listen for changes within 20 s")


@pytest.fixture
def hosts(history: str, api_url: str, tmp_path: Path) -> Iterator[Hosts]:
    """Two API hosts, one worker each, as the role `api`, and nginx in front of them."""
    settings = {"API_WORKERS": "1", "COLLECT_INTERVAL_SECONDS": str(INTERVAL)}
    with contextlib.ExitStack() as stack:
        apis = [
            stack.enter_context(api_process(api_url, tmp_path / f"api-{n}.log", **settings))
            for n in range(2)
        ]
        for port, _ in apis:
            until_listening_for_changes(port)
        proxy = stack.enter_context(nginx_proxy([port for port, _ in apis]))
        yield Hosts(proxy, [port for port, _ in apis], [pid for _, pid in apis])


@dataclass
class Answer:
    """A response through the proxy with its body as sent (`raw`) and decoded (`body`)."""

    response: httpx.Response
    raw: bytes

    @property
    def body(self) -> bytes:
        if self.response.headers.get("content-encoding") == "gzip":
            return zlib.decompress(self.raw, 31)
        return self.raw

    @property
    def newest(self) -> tuple[float, datetime]:
        price = json.loads(self.body)["prices"][-1]
        return price["price"], datetime.fromisoformat(price["updated_at"])

    @property
    def cache_status(self) -> str | None:
        return self.response.headers.get("x-cache-status")


async def fetch(
    client: httpx.AsyncClient, path: str, accept: str = "gzip", **headers: str
) -> Answer:
    """GET `path` through the proxy with this Accept-Encoding, the bytes as they came."""
    async with client.stream("GET", path, headers={"Accept-Encoding": accept, **headers}) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    return Answer(r, raw)


async def after_next_instant() -> datetime:
    """Sleep until just after the API hosts' next cycle instant; that instant."""
    now = time.time()
    instant = (int(now) // INTERVAL + 1) * INTERVAL
    await asyncio.sleep(instant - now + 0.2)
    return datetime.fromtimestamp(instant, UTC)


async def first_path(history: str, index: int = 0) -> str:
    exchange, symbol = (await pairs(history))[index]
    return f"/prices/{exchange}/{symbol}"


def upstream_lines(proxy: Proxy, uri: str) -> list[list[str]]:
    """The access log's requests of `uri` that went to an API host."""
    return [line for line in proxy.log() if line[0] == uri and line[1] != "-"]


async def test_a_cycle_is_served_through_the_proxy_within_the_bound_after_its_commit(
    hosts: Hosts, history: str, collector_url: str
) -> None:
    """Between a cycle's instant and its commit a client sees the previous cycle, which the API
    marks fresh for 1 s only (so nginx serves it from cache but asks again soon); once the
    cycle commits, gzip and identity clients both get it within BOUND_SECONDS, cycle after
    cycle."""
    path = await first_path(history)
    async with httpx.AsyncClient(base_url=hosts.proxy.url, timeout=10) as client:
        for step in range(2):
            instant = await after_next_instant()
            price = 5000.0 + step
            for accept in ("gzip", "identity"):
                before = await fetch(client, path, accept)
                assert before.newest[1] < instant
                assert "HIT" == (await fetch(client, path, accept)).cache_status
            await write_cycle(collector_url, instant, price)
            committed = time.monotonic()
            await refresh_rankings(history)  # as the collector does after each cycle
            for accept in ("gzip", "identity"):
                while (await fetch(client, path, accept)).newest != (price, instant):
                    assert time.monotonic() - committed < BOUND_SECONDS
                    await asyncio.sleep(0.05)
    marked = [line[5] for line in upstream_lines(hosts.proxy, path)]
    assert "max-age=1" in marked  # the answers of the seconds before the commits
    assert any(int(mark.removeprefix("max-age=")) > 1 for mark in marked)  # after


async def test_a_settled_answer_is_cached_until_the_next_instant_then_renewed_by_a_304(
    hosts: Hosts, history: str, collector_url: str
) -> None:
    """Once the current instant's cycle is in an answer, nginx serves it from its cache alone
    until the next instant (its ETag answering a client's If-None-Match with a 304 there);
    then it asks the API with If-None-Match, and the API's 304 renews the same bytes, for
    1 s while the next cycle is not in."""
    path = await first_path(history, 1)
    async with httpx.AsyncClient(base_url=hosts.proxy.url, timeout=10) as client:
        instant = await after_next_instant()
        await write_cycle(collector_url, instant, 6000.0)
        await refresh_rankings(history)  # the cycle is settled once it is ranked too
        first = await fetch(client, path)
        while first.newest != (6000.0, instant):
            first = await fetch(client, path)
        asked = len(upstream_lines(hosts.proxy, path))
        age = int(upstream_lines(hosts.proxy, path)[-1][5].removeprefix("max-age="))
        assert 1 < age <= INTERVAL

        cached = [await fetch(client, path) for _ in range(5)]
        tag = first.response.headers["etag"]
        conditional = await fetch(client, path, **{"If-None-Match": tag})
        assert asked == len(upstream_lines(hosts.proxy, path))  # none of these reached a host
        assert {"HIT"} == {answer.cache_status for answer in cached}
        assert {first.raw} == {answer.raw for answer in cached}
        assert (304, b"", "HIT") == (
            conditional.response.status_code,
            conditional.raw,
            conditional.cache_status,
        )

        await asyncio.sleep(instant.timestamp() + INTERVAL + 0.3 - time.time())
        renewed = await fetch(client, path)
        # The next cycle is not in yet: renewed for 1 s (counted by nginx in whole seconds).
        await asyncio.sleep(2.1)
        again = await fetch(client, path)
        host = await client.get(
            f"http://127.0.0.1:{hosts.ports[0]}{path}",
            headers={"Accept-Encoding": "gzip", "If-None-Match": tag},
        )
    assert ("REVALIDATED", first.raw, tag) == (
        renewed.cache_status,
        renewed.raw,
        renewed.response.headers["etag"],
    )
    assert "304" == upstream_lines(hosts.proxy, path)[-2][2]
    assert (304, "max-age=1") == (host.status_code, host.headers["cache-control"])
    assert ("REVALIDATED", first.raw) == (again.cache_status, again.raw)


async def test_the_rank_a_proxy_serves_follows_the_ranking_refresh_within_the_bound(
    hosts: Hosts, history: str, collector_url: str
) -> None:
    """The collector stores the ranking after a cycle's ticks commit. Until it has, an answer
    holding the cycle is marked fresh for 1 s only, so once the refresh commits a client gets
    the pair's new rank through the proxy within BOUND_SECONDS, not at the next instant."""
    async with httpx.AsyncClient(base_url=hosts.proxy.url, timeout=10) as client:
        ranking = (await client.get("/rankings", params={"limit": 1000})).json()
        last = ranking["rankings"][-1]  # the least volatile pair: a huge price ranks it first
        path, spike = f"/prices/{last['exchange']}/{last['symbol']}", 1e6
        instant = await after_next_instant()
        async with await psycopg.AsyncConnection.connect(collector_url) as collector:
            await commit_cycle(collector, [(last["exchange"], last["symbol"])], instant, spike)
        committed = time.monotonic()
        while (answer := await fetch(client, path)).newest != (spike, instant):
            assert time.monotonic() - committed < BOUND_SECONDS
            await asyncio.sleep(0.05)
        assert last["rank"] == json.loads(answer.body)["rank"]  # the ranking before the cycle
        await refresh_rankings(history)
        refreshed = time.monotonic()
        while json.loads((await fetch(client, path)).body)["rank"] != 1:
            assert time.monotonic() - refreshed < BOUND_SECONDS
            await asyncio.sleep(0.05)
    marked = [line[5] for line in upstream_lines(hosts.proxy, path)]
    assert "max-age=1" in marked  # the answers holding the cycle but not yet its rank


def sql_prices(history: str, path: str) -> tuple[list[tuple[datetime, float]], float]:
    """A pair's prices of the last 24 hours and their stddev_samp, read with SQL."""
    _, _, exchange, symbol = path.split("/")
    with psycopg.connect(history) as conn:
        rows = conn.execute(PRICES_24H, (exchange, symbol)).fetchall()
        stdv = conn.execute(STDDEV_SAMP, (exchange, symbol)).fetchone()
    assert stdv is not None
    return [(time_, price) for time_, price in rows], stdv[0]


def prices_of(body: bytes) -> tuple[list[tuple[datetime, float]], float]:
    answer: dict[str, Any] = json.loads(body)
    prices = [(datetime.fromisoformat(p["updated_at"]), p["price"]) for p in answer["prices"]]
    return prices, answer["stdv"]


async def test_gzip_and_identity_clients_each_get_their_own_coding_with_sqls_prices(
    hosts: Hosts, history: str
) -> None:
    """Whichever coding nginx caches first, a client accepting gzip gets gzip bytes and any
    other plain JSON (never the other's), both SQL's prices and stddev_samp; other spellings
    share the cached answer of the coding the API itself would choose for them."""
    async with httpx.AsyncClient(base_url=hosts.proxy.url, timeout=10) as client:
        for index, order in enumerate((("gzip", "identity"), ("identity", "gzip"))):
            path = await first_path(history, 2 + index)
            answers = {accept: await fetch(client, path, accept) for accept in order}
            gzipped, plain = answers["gzip"], answers["identity"]
            assert {"MISS"} == {answer.cache_status for answer in answers.values()}
            assert "gzip" == gzipped.response.headers["content-encoding"]
            assert gzipped.raw.startswith(b"\x1f\x8b")
            assert "content-encoding" not in plain.response.headers
            assert plain.raw.startswith(b"{")
            assert gzipped.body == plain.raw
            assert "Accept-Encoding" == gzipped.response.headers["vary"]
            expected, stdv = sql_prices(history, path)
            prices, answered = prices_of(plain.raw)
            assert expected == prices
            assert answered == pytest.approx(stdv, rel=1e-9)
            for accept in SPELLINGS:
                answer = await fetch(client, path, accept)
                same = gzipped if accepts_gzip(accept) else plain
                assert ("HIT", same.raw) == (answer.cache_status, answer.raw), accept


async def test_health_and_metrics_are_never_cached(
    hosts: Hosts, history: str, collector_url: str
) -> None:
    """Every /health and /metrics request through the proxy goes to an API host (no cache
    status), so /health shows a cycle as soon as the hosts do."""
    async with httpx.AsyncClient(base_url=hosts.proxy.url, timeout=10) as client:
        before = [await client.get("/health") for _ in range(3)]
        for _ in range(3):
            await client.get("/metrics")
        instant = datetime.fromtimestamp(time.time() // INTERVAL * INTERVAL, UTC)
        await write_cycle(collector_url, instant, 7000.0)
        after = (await client.get("/health")).json()
    assert all("x-cache-status" not in response.headers for response in before)
    assert datetime.fromisoformat(before[0].json()["newest_tick"]) < instant
    assert instant == datetime.fromisoformat(after["newest_tick"])
    assert 4 == len(upstream_lines(hosts.proxy, "/health"))
    assert 3 == len(upstream_lines(hosts.proxy, "/metrics"))


def until_refused(port: int) -> None:
    """Wait until nothing accepts connections on `port`."""
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still accepts connections")


async def test_requests_are_spread_over_both_hosts_and_a_stopped_host_is_skipped(
    hosts: Hosts,
) -> None:
    """Requests nginx does not cache alternate between the two API hosts; once one host is
    stopped, every request is still answered, by the other."""
    uri = "/rankings?limit=1"
    async with httpx.AsyncClient(base_url=hosts.proxy.url, timeout=10) as client:
        spread = [await client.get(uri) for _ in range(10)]
        os.kill(hosts.pids[0], signal.SIGTERM)
        until_refused(hosts.ports[0])
        after = [await client.get(uri) for _ in range(10)]
    assert {200} == {response.status_code for response in spread + after}
    first, second = (f"127.0.0.1:{port}" for port in hosts.ports)
    served_by = [line[1].split(", ")[-1] for line in upstream_lines(hosts.proxy, uri)]
    assert (5, 5) == (served_by[:10].count(first), served_by[:10].count(second))
    assert [second] * 10 == served_by[10:]


def test_compose_runs_the_nginx_version_tested_here() -> None:
    """Compose's proxy image is the nginx version these tests run (Debian's)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    image = compose["services"]["proxy"]["image"]
    version = subprocess.run([nginx(), "-v"], capture_output=True, text=True, check=True)
    assert f"nginx:{version.stderr.strip().removeprefix('nginx version: nginx/')}" == image
