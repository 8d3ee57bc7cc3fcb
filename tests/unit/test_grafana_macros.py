"""The test helper that expands Grafana's variables and macros as Grafana does for PostgreSQL."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.grafana_macros import (
    expand,
    expand_macros,
    format_interval,
    format_time,
    interpolate_variables,
    parse_interval,
)

START = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
END = datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_time_filter_is_a_between_on_rfc3339_utc_instants() -> None:
    """$__timeFilter(col) becomes `col BETWEEN '<from>' AND '<to>'` in UTC."""
    expected = "WHERE t.time BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T00:00:00Z'"

    assert expected == expand_macros("WHERE $__timeFilter(t.time)", START, END)


def test_time_from_and_to_are_quoted_instants() -> None:
    """$__timeFrom() and $__timeTo() become quoted RFC 3339 instants."""
    expected = "'2026-01-01T00:00:00Z'::timestamptz, '2026-01-02T00:00:00Z'"

    assert expected == expand_macros("$__timeFrom()::timestamptz, $__timeTo()", START, END)


def test_instants_keep_fractions_without_trailing_zeros() -> None:
    """Instants print as Go's RFC3339Nano: the fraction trimmed of its trailing zeros."""
    assert "2026-01-01T12:00:00.5Z" == format_time(
        datetime(2026, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    )


def test_instants_are_converted_to_utc() -> None:
    """An instant in another zone prints as the same instant in UTC."""
    paris = timezone(timedelta(hours=1))

    assert "2026-01-01T12:00:00Z" == format_time(datetime(2026, 1, 1, 13, 0, tzinfo=paris))


def test_time_group_alias_with_interval_becomes_a_time_bucket_named_time() -> None:
    """$__timeGroupAlias(col, $__interval) becomes time_bucket('<seconds>s',col) AS "time"."""
    sql = "SELECT $__timeGroupAlias(time, $__interval), avg(price)"

    actual = expand(sql, start=START, end=END, interval=5 * MINUTE, variables={})

    assert "SELECT time_bucket('300.000s',time) AS \"time\", avg(price)" == actual


def test_time_group_takes_a_quoted_interval_and_has_no_alias() -> None:
    """$__timeGroup(col, '1h') is the bucket alone, as in GROUP BY or ORDER BY."""
    expected = "GROUP BY time_bucket('3600.000s',time)"

    assert expected == expand_macros("GROUP BY $__timeGroup(time, '1h')", START, END)


def test_time_group_followed_by_a_comma_is_aliased_as_grafana_does() -> None:
    """Grafana's pre-5.3 rule: $__timeGroup(...) directly followed by a comma gets AS "time"."""
    expected = "SELECT time_bucket('60.000s',time) AS \"time\", avg(price)"

    assert expected == expand_macros("SELECT $__timeGroup(time, 1m), avg(price)", START, END)


def test_unix_epoch_filter_compares_seconds() -> None:
    """$__unixEpochFilter(col) compares the column with the range's epoch seconds."""
    expected = "epoch >= 1767225600 AND epoch <= 1767312000"

    assert expected == expand_macros("$__unixEpochFilter(epoch)", START, END)


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=1), "1m"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=1), "1d"),
    ],
)
def test_interval_is_written_in_its_largest_whole_unit(interval: timedelta, text: str) -> None:
    """$__interval reads like Grafana's: 30s, 1m, 2h, 1d, and parses back to the same span."""
    assert text == format_interval(interval)
    assert interval == parse_interval(text)


def test_interval_ms_is_milliseconds() -> None:
    """$__interval_ms is the interval in whole milliseconds."""
    assert "count(*) * 60000.0 / 120000" == interpolate_variables(
        "count(*) * 60000.0 / $__interval_ms", {}, 2 * MINUTE
    )


def test_single_value_variable_doubles_quotes_but_adds_none() -> None:
    """`$name` of a single-value variable is inserted with quotes doubled, unquoted."""
    actual = interpolate_variables("WHERE exchange = '$exchange'", {"exchange": "o'neil"}, MINUTE)

    assert "WHERE exchange = 'o''neil'" == actual


@pytest.mark.parametrize("reference", ["$symbol", "${symbol}", "[[symbol]]"])
def test_every_plain_variable_syntax_is_replaced(reference: str) -> None:
    """`$name`, `${name}` and `[[name]]` are the same variable."""
    assert "x = btcusd" == interpolate_variables(f"x = {reference}", {"symbol": "btcusd"}, MINUTE)


def test_sqlstring_format_makes_a_quoted_literal() -> None:
    """`${name:sqlstring}` is a single-quoted literal with quotes doubled."""
    actual = interpolate_variables(
        "WHERE exchange = ${exchange:sqlstring}", {"exchange": "x' OR 'a'='a"}, MINUTE
    )

    assert "WHERE exchange = 'x'' OR ''a''=''a'" == actual


def test_macros_are_left_for_the_server_step() -> None:
    """Interpolating variables leaves macro calls such as $__timeFilter(time) untouched."""
    sql = "WHERE $__timeFilter(time) AND $__timeFrom() < now()"

    assert sql == interpolate_variables(sql, {}, MINUTE)


def test_an_unknown_variable_raises() -> None:
    """A reference to a variable the dashboard does not define is an error, not silent SQL."""
    with pytest.raises(KeyError, match="exhange"):
        interpolate_variables("WHERE exchange = ${exhange:sqlstring}", {"exchange": "k"}, MINUTE)


def test_an_unsupported_format_raises() -> None:
    """Only the default and `sqlstring` formats are allowed: `raw` would skip quoting."""
    with pytest.raises(ValueError, match="raw"):
        interpolate_variables("WHERE exchange = ${exchange:raw}", {"exchange": "k"}, MINUTE)


def test_an_unknown_macro_raises() -> None:
    """A macro Grafana's PostgreSQL datasource does not know is an error, as in Grafana."""
    with pytest.raises(ValueError, match="__timeFliter"):
        expand_macros("WHERE $__timeFliter(time)", START, END)
