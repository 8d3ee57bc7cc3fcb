"""Whether the listener has been told of every commit another connection can already see.

PostgreSQL announces a commit to a listening session some time after the commit became
visible: the committing process signals the listeners once its commit is visible, and the
listener's server process sends the message when it next runs and is idle. On a busy machine
that may take a few hundred milliseconds, during which a request could see the old window.

A request served from memory therefore waits for a sync round on the listening connection
(`api/cache.py`), which proves that every commit made before the round began has reached
the listener:

* A full round runs `sync_notify` (api/windows.sql): it queues a notification behind every
  commit made so far, and PostgreSQL sends a session's pending notifications, in queue order,
  before it answers that session's statement. It takes a transaction id, so it runs only when
  needed.
* A cheap round reads the snapshot alone: when no transaction but the full round's own has
  completed since the full round's snapshot, nothing new was committed, so the full round
  still covers everything. Any completed transaction anywhere in the cluster (a write, an
  abort, another database's) makes the next round a full one.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Which transactions had completed: every id below `xmax` but those `running`."""

    xmax: int
    running: frozenset[int]


def parse_snapshot(text: str) -> Snapshot:
    """A pg_snapshot's text form, `xmin:xmax:xip,…`."""
    _, xmax, running = text.split(":")
    return Snapshot(int(xmax), frozenset(int(xid) for xid in running.split(",") if xid))


def nothing_completed_since(base: Snapshot, own: int, now: Snapshot) -> bool:
    """Whether no transaction but `own` completed between `base` and `now`."""
    if not base.running <= now.running:
        return False
    started = sum(1 for xid in now.running if xid >= base.xmax)
    completed = now.xmax - base.xmax - started
    if completed <= 0:
        return True
    return completed == 1 and base.xmax <= own < now.xmax and own not in now.running
