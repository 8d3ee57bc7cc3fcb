"""The backfill's progress bar: drawn on a terminal only, from 0 of its total, its final
state drawn once and then cleared, so a terminal's log shows one bar."""

import io
import time

from collector.backfill import progress_bar


class Terminal(io.StringIO):
    """What the bar writes, as to a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_bar_draws_its_end_once_then_clears_it() -> None:
    """On a terminal the bar starts at 0 % of its total, shows 100 % once, and is wiped at
    the end (its line left blank, no newline) for the log line that follows."""
    terminal = Terminal()
    with progress_bar("minute", 60, file=terminal) as bar:
        time.sleep(0.15)  # past tqdm's minimum interval, so the update is drawn
        bar.update(60)
    frames = terminal.getvalue().split("\r")

    drawn = [frame for frame in frames if frame.strip()]
    assert drawn[0].startswith("backfill:   0%|"), drawn
    assert 1 == sum("100%" in frame for frame in drawn), drawn
    assert "100%" in drawn[-1]
    assert "" == frames[-2].strip()  # wiped
    assert "" == frames[-1]
    assert "\n" not in terminal.getvalue()


def test_no_bar_off_a_terminal() -> None:
    """Written to a file or a pipe (logs, CI), the bar draws nothing."""
    log = io.StringIO()
    with progress_bar("minute", 60, file=log) as bar:
        bar.update(60)

    assert "" == log.getvalue()
