"""Naming a collector failure in one line: the network cause under ccxt's error, no secrets."""

import asyncio
import logging
import socket
import ssl

import ccxt
import pytest

from collector.errors import describe, log_failure


def raised(error: BaseException, *causes: BaseException) -> BaseException:
    """`error` raised from the first of `causes`, itself from the next, and so on."""
    for outer, inner in zip((error, *causes), causes, strict=False):
        outer.__cause__ = inner
    return error


class ConnectorError(OSError):
    """Shaped like aiohttp's ClientConnectorError: an OSError knowing its host and port."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.host, self.port = host, port


URL = "https://www.okx.com/api/v5/market/tickers?instType=SPOT"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            raised(
                ccxt.ExchangeNotAvailable(
                    "binance GET https://api.binance.com/api/v3/exchangeInfo"
                ),
                socket.gaierror(-2, "Name or service not known"),
            ),
            "ExchangeNotAvailable: cannot resolve host api.binance.com (no network or DNS)",
        ),
        (
            raised(
                ccxt.ExchangeNotAvailable(f"okx GET {URL}"),
                ConnectorError("127.0.0.1", 9, ConnectionRefusedError(111, "Connect call failed")),
                ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)"),
            ),
            "ExchangeNotAvailable: connection refused by 127.0.0.1:9 (nothing listening)",
        ),
        (
            raised(
                ccxt.ExchangeNotAvailable(f"okx GET {URL}"),
                ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"),
            ),
            "ExchangeNotAvailable: TLS failed with www.okx.com: wrong version number",
        ),
        (
            # ccxt's timeout wraps the TimeoutError of a cancelled read: the cancellation says
            # nothing, the timeout does.
            raised(ccxt.RequestTimeout(f"okx GET {URL}"), TimeoutError(), asyncio.CancelledError()),
            "RequestTimeout: no answer from www.okx.com in time",
        ),
        (
            raised(
                ccxt.NetworkError("kraken GET https://api.kraken.com/0/public/Ticker"),
                OSError(101, "Network is unreachable"),
            ),
            "NetworkError: cannot reach api.kraken.com: Network is unreachable",
        ),
        (
            raised(RuntimeError("resolver gave up"), socket.gaierror(-3, "Temporary failure")),
            "RuntimeError: cannot resolve the host name (no network or DNS)",
        ),
    ],
    ids=["dns", "refused", "tls", "timeout", "unreachable network", "no host known"],
)
def test_a_network_failure_is_named_by_its_root_cause(error: BaseException, expected: str) -> None:
    """ccxt's `binance GET <url>` gives way to what failed underneath, with the host."""
    assert expected == describe(error)


def test_a_certificate_failure_names_what_was_wrong_with_it() -> None:
    """A certificate that does not verify is named by OpenSSL's verify message."""
    refused = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] …")
    refused.verify_message = "certificate has expired"
    error = raised(ccxt.ExchangeNotAvailable("kraken GET https://api.kraken.com/0"), refused)
    assert "ExchangeNotAvailable: TLS failed with api.kraken.com: certificate has expired" == (
        describe(error)
    )


def test_an_error_without_a_network_cause_keeps_its_first_line() -> None:
    """Other errors read as before: class and first line, NUL-free."""
    error = raised(
        ccxt.ExchangeError('kraken {"error": ["EService:Unavailable"]}\nmore'),
        ValueError("unrelated"),
    )
    assert 'ExchangeError: kraken {"error": ["EService:Unavailable"]}' == describe(error)
    assert "ValueError: bad" == describe(ValueError("bad\x00"))
    assert "ValueError" == describe(ValueError())


def test_a_suppressed_context_is_not_a_cause() -> None:
    """`raise … from None` hides the error being handled, as in a traceback."""
    error = ccxt.ExchangeError("okx said no")
    error.__context__ = socket.gaierror(-2, "Name or service not known")
    error.__suppress_context__ = True
    assert "ExchangeError: okx said no" == describe(error)


def test_urls_lose_their_query_and_password() -> None:
    """A URL in the line keeps scheme, host and path: no query string, no proxy password."""
    error = ccxt.ExchangeNotAvailable(
        "okx GET http://user:s3cret@proxy.example/okx/api/v5/market/tickers?instType=SPOT&k=v 503"
    )
    expected = "okx GET http://user:***@proxy.example/okx/api/v5/market/tickers 503"
    assert f"ExchangeNotAvailable: {expected}" == describe(error)


def test_a_network_failure_is_logged_in_one_line_anything_else_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No traceback for a host that does not resolve: the line says all there is."""
    offline = raised(
        ccxt.ExchangeNotAvailable("kraken GET https://api.kraken.com/0/public/OHLC"),
        socket.gaierror(-2, "Name or service not known"),
    )
    log = logging.getLogger("test.errors")
    with caplog.at_level(logging.WARNING, logger="test.errors"):
        log_failure(log, "gap not filled", offline)
        log_failure(log, "gap not filled", ValueError("a bug"))

    network, bug = caplog.records
    assert (logging.WARNING, None) == (network.levelno, network.exc_info)
    assert "cannot resolve host api.kraken.com" in network.getMessage()
    assert logging.ERROR == bug.levelno
    assert bug.exc_info is not None
