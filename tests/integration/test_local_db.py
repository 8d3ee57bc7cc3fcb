"""Clean in, clean out: fetching TimescaleDB's source from trixie, then creating and removing a
local cluster with scripts/local-db.sh, leaves /etc/apt, apt's lists and the cluster list as
they were. The cluster is a throwaway one (a name and port of its own), never the clusters the
tests run on."""

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.api_server import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCAL_DB = ROOT / "scripts" / "local-db.sh"
FETCH_SOURCE = ROOT / "scripts" / "fetch-debian-source.sh"
APT_LISTS = Path("/var/lib/apt/lists")


def apt_state() -> dict[str, bytes]:
    """Every file under /etc/apt with its content, and the names of apt's package lists."""
    files = {str(p): p.read_bytes() for p in Path("/etc/apt").rglob("*") if p.is_file()}
    return files | {str(p): b"" for p in APT_LISTS.iterdir() if p.is_file()}


def clusters() -> str:
    """pg_lsclusters' table, without its column of states (another run may start or stop
    one meanwhile)."""
    table = subprocess.run(["pg_lsclusters"], capture_output=True, text=True, check=True)
    return "\n".join(" ".join(line.split()[:3]) for line in table.stdout.splitlines())


@pytest.fixture
def throwaway_cluster() -> Iterator[dict[str, str]]:
    """LOCAL_DB_CLUSTER and LOCAL_DB_PORT of a cluster that does not exist yet; dropped, with
    its configuration, should the test leave it behind."""
    if os.geteuid() != 0 or shutil.which("pg_lsclusters") is None:
        pytest.skip("creates a cluster with Debian's cluster tools, as root")
    name = f"datatracker_throwaway_{os.getpid()}"
    yield {"LOCAL_DB_CLUSTER": name, "LOCAL_DB_PORT": str(free_port())}
    if name in clusters():
        major = clusters().split(name)[0].split()[-1]
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["pg_dropcluster", "--stop", major, name], check=True)
    for config in Path("/etc/postgresql").glob(f"*/{name}"):
        shutil.rmtree(config)


@pytest.mark.slow
@pytest.mark.edition("apache")  # the same on either: once per suite
def test_install_then_remove_leaves_apt_and_the_clusters_as_they_were(
    throwaway_cluster: dict[str, str], tmp_path: Path
) -> None:
    """The installer's source fetch (the real one, from the machine's Debian mirror) and a
    cluster started then removed by scripts/local-db.sh leave every file of /etc/apt, the
    names of apt's lists and pg_lsclusters' table unchanged, with no conf.d file left, and say
    no `could not change directory` though run from a directory postgres cannot enter."""
    apt_before, clusters_before = apt_state(), clusters()
    cwd = tmp_path / "private"
    cwd.mkdir(mode=0o700)
    env = {"PATH": os.environ["PATH"], **throwaway_cluster}
    name = throwaway_cluster["LOCAL_DB_CLUSTER"]

    source = tmp_path / "source"
    source.mkdir()
    fetch = subprocess.run(
        [FETCH_SOURCE, "trixie", "timescaledb", source],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == fetch.returncode, fetch.stderr
    assert 1 == len(list(source.glob("timescaledb_*.dsc"))), fetch.stderr

    start = subprocess.run(
        [LOCAL_DB, "start"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert 0 == start.returncode, start.stderr
    with psycopg.connect(start.stdout.strip()) as conn:
        license = conn.execute("SELECT current_setting('timescaledb.license') = 'apache'")
        assert (True,) == license.fetchone()
    major = clusters().split(name)[0].split()[-1]
    config = Path("/etc/postgresql") / major / name
    assert (config / "conf.d" / "datatracker.conf").is_file()

    remove = subprocess.run(
        [LOCAL_DB, "remove"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert 0 == remove.returncode, remove.stderr
    assert f"removing PostgreSQL cluster {name}" in remove.stderr
    assert not config.exists()
    assert clusters_before == clusters()
    assert sorted(apt_before) == sorted(apt_state())
    assert apt_before == apt_state()
    output = fetch.stderr + start.stderr + remove.stderr
    assert "could not change directory" not in output, output
    assert "unsandboxed" not in output, output
