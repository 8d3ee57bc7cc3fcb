"""How long an answer of /prices stays right (its Cache-Control max-age): to the next cycle's
instant once the current cycle is in its prices and in the stored ranking, 1 second before."""

from array import array

from api.routes import UNSETTLED_MAX_AGE, fresh_seconds
from api.windows import DAY_US, Window
from datatracker.settings import load_settings

SECOND = 1_000_000
INTERVAL = 60 * SECOND
SETTINGS = load_settings(
    _env_file=None, database_url="postgresql://unused@127.0.0.1/unused", collect_interval_seconds=60
)
# An instant of the cycles (a multiple of the interval), and a present 20 s after it.
INSTANT = 1_765_000_020 * SECOND
NOW = INSTANT + 20 * SECOND


def window_up_to(newest: int) -> Window:
    """A day of minute ticks whose newest is `newest`."""
    times = array("q", range(newest - DAY_US + INTERVAL, newest + 1, INTERVAL))
    return Window(1, "kraken", "btcusd", times, array("d", [1.0] * len(times)))


def max_age(newest: int, ranked_as_of: int | None) -> int:
    window = window_up_to(newest)
    lo, hi = window.span(NOW)
    return fresh_seconds(window, lo, hi, NOW, SETTINGS, ranked_as_of)


def test_an_answer_with_the_current_cycle_ranked_lasts_to_the_next_instant() -> None:
    """The current instant's cycle is in the prices and the ranking was refreshed after it:
    fresh until the next instant, 40 s away."""
    assert 40 == max_age(INSTANT, INSTANT + 2 * SECOND)


def test_an_answer_before_its_cycle_committed_lasts_one_second() -> None:
    """The newest price is the previous cycle's: 1 s, whatever the ranking."""
    assert UNSETTLED_MAX_AGE == max_age(INSTANT - INTERVAL, INSTANT + 2 * SECOND)


def test_an_answer_whose_rank_predates_its_cycle_lasts_one_second() -> None:
    """The cycle's prices are in, but the collector has not yet stored the ranking over them
    (it refreshes the ranking after the ticks commit): the rank may still change, so 1 s."""
    assert UNSETTLED_MAX_AGE == max_age(INSTANT, INSTANT - INTERVAL + 2 * SECOND)


def test_an_answer_with_no_stored_ranking_lasts_one_second() -> None:
    """Before the first ranking refresh (as_of unknown), 1 s."""
    assert UNSETTLED_MAX_AGE == max_age(INSTANT, None)


def test_a_ranking_stored_at_the_instant_itself_counts() -> None:
    """A ranking whose 24 hours end exactly at the current instant covers its cycle."""
    assert 40 == max_age(INSTANT, INSTANT)
