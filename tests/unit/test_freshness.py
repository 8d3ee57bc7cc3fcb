"""The sync round's proof that nothing was committed since its last full round."""

from api.freshness import Snapshot, nothing_completed_since, parse_snapshot

BASE = Snapshot(xmax=100, running=frozenset({95, 98}))
OWN = 100  # the full round's own transaction


def test_a_snapshot_is_read_from_its_text() -> None:
    """'xmin:xmax:xip,…' gives xmax and the running ids; none when the list is empty."""
    assert Snapshot(103, frozenset({95, 101})) == parse_snapshot("95:103:95,101")
    assert Snapshot(7, frozenset()) == parse_snapshot("7:7:")


def test_nothing_changed_or_only_the_round_itself_completed() -> None:
    """The same snapshot, or one where only the round's own transaction has completed."""
    assert nothing_completed_since(BASE, OWN, BASE)
    assert nothing_completed_since(BASE, OWN, Snapshot(101, frozenset({95, 98})))


def test_transactions_started_but_running_do_not_count() -> None:
    """Ids assigned since and still running are not completed."""
    assert nothing_completed_since(BASE, OWN, Snapshot(103, frozenset({95, 98, 101, 102})))


def test_any_other_completion_needs_a_full_round() -> None:
    """One that ran at the base and has ended, or a newer one besides the round's own."""
    assert not nothing_completed_since(BASE, OWN, Snapshot(101, frozenset({98})))
    assert not nothing_completed_since(BASE, OWN, Snapshot(102, frozenset({95, 98})))
    assert not nothing_completed_since(BASE, OWN, Snapshot(102, frozenset({95, 98, 100})))
    assert not nothing_completed_since(BASE, 99, Snapshot(101, frozenset({95, 98})))
