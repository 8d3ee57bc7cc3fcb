"""`make local` as a person runs it at a terminal (issue #13): Ctrl-C stops the collector and the
API, and make ends with status 0 instead of reporting an error of its own.

The test drives the real target on the local cluster of this run (scripts/local-db.sh), in a
pseudo-terminal that is the controlling terminal of a session of its own, so the script's
terminal path runs and Ctrl-C reaches it through the line discipline, as from a keyboard.
"""

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.api_server import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
CTRL_C = b"\x03"  # what the terminal's line discipline turns into SIGINT (VINTR)


class Terminal:
    """A pseudo-terminal whose output a thread keeps reading, so that its programs never block
    writing to it."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: no process holds the terminal's other end any more
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    @property
    def output(self) -> str:
        """Everything shown on the terminal so far."""
        with self._lock:
            return self._output.decode(errors="replace")

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def drain(self, timeout: float) -> None:
        """Wait (bounded) until no process holds the terminal and all it showed is read."""
        self._reader.join(timeout)

    def close(self) -> None:
        os.close(self.master)


def take_terminal() -> None:
    """In the child, once in a session of its own: its stdin becomes the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def session_processes(session: int) -> dict[int, str]:
    """The processes still alive (zombies aside) in `session`: pid and command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # After the command name's ")": state, ppid, process group, session.
            state, _, _, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
            if int(sid) == session and state != "Z":
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(stat.parent.name)] = cmdline.decode(errors="replace").strip()
    return found


def kill_session(session: int) -> None:
    """SIGKILL whatever is left of `session`."""
    for pid in session_processes(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def local_cluster(database_server: str, edition: str) -> tuple[str, str]:
    """LOCAL_DB_EDITION and LOCAL_DB_PORT of this run's server, which must be the local cluster
    of scripts/local-db.sh for that edition: make local drives nothing else."""
    local = subprocess.run(
        [str(ROOT / "scripts/local-db.sh"), "url"],
        env={"PATH": os.environ["PATH"], "LOCAL_DB_EDITION": edition},
        capture_output=True,
        text=True,
        check=True,
    )
    server, expected = conninfo_to_dict(database_server), conninfo_to_dict(local.stdout.strip())
    if server.get("host") not in LOCAL_HOSTS or server.get("port") != expected["port"]:
        pytest.skip(
            f"make local drives the local {edition} cluster (127.0.0.1:{expected['port']}); "
            f"this run's server is {server.get('host')}:{server.get('port')}"
        )
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], check=False).returncode:
        pytest.skip("scripts/local-db.sh start needs root or sudo without a password")
    return edition, str(expected["port"])


@contextlib.contextmanager
def make_local(terminal: Terminal, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`make local` in a session of its own whose controlling terminal is `terminal`, as from a
    shell at that terminal; whatever is left of the session is killed on the way out."""
    make = subprocess.Popen(
        ["make", "--no-print-directory", "local"],
        cwd=ROOT,
        env=env,
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=terminal.slave,
        start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(terminal.slave)  # the terminal's end is the session's alone now
    try:
        yield make
    finally:
        kill_session(make.pid)
        make.kill()
        make.wait(timeout=10)


def until_api_answers(make: subprocess.Popen[bytes], terminal: Terminal, port: int) -> None:
    """Wait (at most 120 s) until the API serves the price the script suggests to curl."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert make.poll() is None, f"make local ended early:\n{terminal.output}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/prices/kraken/btcusd", timeout=2).is_success:
                return
        time.sleep(0.2)
    raise AssertionError(f"the API did not answer within 120 s:\n{terminal.output}")


def make_environment(
    local_cluster: tuple[str, str], api_port: int, tmp_path: Path
) -> dict[str, str]:
    """A shell's environment at most (nothing of the tester's settings), a short backfill."""
    edition, db_port = local_cluster
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "TERM": "xterm",
        "LOCAL_DB_EDITION": edition,
        "LOCAL_DB_PORT": db_port,
        "PYTHON": sys.executable,
        "BACKFILL_HOURS": "1",
        "API_PORT": str(api_port),
        "SPOOL_DIR": str(tmp_path / "spool"),
    }


@contextlib.contextmanager
def serving_make_local(
    local_cluster: tuple[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Terminal, int]]:
    """`make local` at a terminal of its own, once its API answers: make, the terminal and the
    API's port. Afterwards whatever is left of it is killed and all it showed is read."""
    api_port = free_port()
    terminal = Terminal()
    try:
        with make_local(terminal, make_environment(local_cluster, api_port, tmp_path)) as make:
            until_api_answers(make, terminal, api_port)
            yield make, terminal, api_port
        terminal.drain(timeout=10)
    finally:
        terminal.close()


@pytest.mark.slow
def test_ctrl_c_at_the_terminal_ends_make_local_with_status_0(
    local_cluster: tuple[str, str], tmp_path: Path
) -> None:
    """Ctrl-C at the terminal of `make local`, once the API serves, stops the collector and the
    API (their port closed, no process of the session left) and make ends with status 0,
    printing `run-local: stopped` and no error of its own; on a cluster set up before, the
    bootstrap says nothing either (no NOTICE that the extension exists)."""
    with serving_make_local(local_cluster, tmp_path) as (make, terminal, api_port):
        terminal.type(CTRL_C)
        try:
            status = make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"make local still runs 30 s after Ctrl-C:\n{terminal.output}"
            ) from None
        left = session_processes(make.pid)
        api_listens = accepts_connections(api_port)
    output = terminal.output

    assert 0 == status, output
    assert "run-local: stopped" in output, output
    assert "make: ***" not in output, output
    assert "NOTICE" not in output, output
    assert "could not change directory" not in output, output
    assert not api_listens, f"the API still listens on {api_port}:\n{output}"
    assert {} == left, output


@pytest.mark.slow
def test_closing_the_terminal_stops_every_service_of_make_local(
    local_cluster: tuple[str, str], tmp_path: Path
) -> None:
    """A terminal closed under `make local` (the kernel's hangup: SIGHUP to make, the session's
    leader, and to the terminal's foreground group) leaves no collector or API running."""
    with serving_make_local(local_cluster, tmp_path) as (make, terminal, api_port):
        foreground = os.tcgetpgrp(terminal.master)
        os.kill(make.pid, signal.SIGHUP)
        os.killpg(foreground, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while session_processes(make.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = session_processes(make.pid)
        api_listens = accepts_connections(api_port)

    assert {} == left, terminal.output
    assert not api_listens, f"the API still listens on {api_port}:\n{terminal.output}"
