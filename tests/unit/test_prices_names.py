"""Which requests `prices_names` lets api/asgi.py answer from memory before routing: exactly
the GETs Litestar's /prices route takes as they are, with parameters it accepts."""

import pytest
from litestar.types import HTTPScope

from api.routes import prices_names


def request(path: str, method: str = "GET", host: bytes = b"127.0.0.1:8000") -> HTTPScope:
    scope = {"type": "http", "method": method, "path": path, "headers": [(b"host", host)]}
    return scope  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/prices/kraken/btcusd", ("kraken", "btcusd")),
        ("/prices/binance-us/BTC-USD", ("binance-us", "BTC-USD")),
        ("/prices/Binance_US/eth.usdt", ("Binance_US", "eth.usdt")),
    ],
)
def test_a_get_of_a_pair_is_named(path: str, names: tuple[str, str]) -> None:
    assert names == prices_names(request(path))


@pytest.mark.parametrize(
    "path",
    [
        "/prices/kraken/btcusd/",  # Litestar normalises it, then routes it
        "//prices/kraken/btcusd",
        "/prices/kraken",
        "/prices/kraken/btcusd/candles",
        "/price/kraken/btcusd",
        "/prices/---/btcusd",  # names no exchange: Litestar's 400
        "/prices/kraken/-btcusd",  # a symbol begins with a letter or digit
        "/prices/kraken/btc usd",
        "/prices/kraken/btcusd\n",
        "/prices/" + "k" * 41 + "/btcusd",
        "/prices/kraken/" + "b" * 65,
    ],
)
def test_any_other_path_is_left_to_litestar(path: str) -> None:
    assert prices_names(request(path)) is None


def test_only_a_get_is_named() -> None:
    assert prices_names(request("/prices/kraken/btcusd", method="POST")) is None


def test_a_host_litestar_refuses_is_left_to_it() -> None:
    assert prices_names(request("/prices/kraken/btcusd", host=b"bad host")) is None


def test_a_request_under_a_root_path_is_left_to_litestar() -> None:
    scope = request("/api/prices/kraken/btcusd")
    scope["root_path"] = "/api"
    assert prices_names(scope) is None
