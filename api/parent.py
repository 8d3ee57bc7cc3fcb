"""API worker processes (and their helpers: api/prebuild.py) end with the process that
started them.

uvicorn's worker processes share the listening socket with their parent. Killed by SIGKILL,
the OOM killer or a supervisor's timeout, the parent cannot stop them: they would serve on,
holding the port, and the next start could not bind it. Linux's PR_SET_PDEATHSIG has the
kernel send each worker SIGTERM (uvicorn's graceful stop) when its parent dies.
"""

import ctypes
import logging
import multiprocessing
import os
import signal

log = logging.getLogger("api")

# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def exit_with_parent() -> None:
    """In a worker process (or a worker's helper): receive SIGTERM when the parent dies, and
    exit now if it already has. Nothing in a single-process server (no parent to follow) or
    off Linux."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except AttributeError:  # not Linux: no prctl
        return
    if prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("worker %d will not follow its parent: prctl failed", os.getpid())
        return
    # The parent may have died before the call: then this process was handed to another.
    if os.getppid() != parent.pid:
        raise SystemExit(f"worker {os.getpid()}: its parent {parent.pid} is gone")
