"""A throwaway PostgreSQL cluster with TimescaleDB, of this process's own: its log file can be
read, and it can be stopped and started for real (the shared test servers must not be).

Built with the server binaries of `pg_config --bindir` (Debian's postgresql package), run as
the user `postgres` when this process is root (initdb refuses root), on a free port of
127.0.0.1, in a fresh directory removed afterwards.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.api_server import free_port

SUPERUSER, PASSWORD = "datatracker", "datatracker"


def server_binary(name: str) -> str:
    """The path of a server program (initdb, pg_ctl), from pg_config's bindir."""
    bindir = subprocess.run(
        ["pg_config", "--bindir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return str(Path(bindir) / name)


@dataclass
class PrivateCluster:
    """A cluster in `directory`, listening on 127.0.0.1:`port`, logging to `log`."""

    directory: Path
    port: int

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """The superuser's URL of database `dbname`."""
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{dbname}"

    def _pg_ctl(self, *args: str) -> None:
        command = [server_binary("pg_ctl"), "-D", str(self.directory / "data"), *args]
        subprocess.run(as_owner(command), check=True, capture_output=True)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended) and wait until it has."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def log_size(self) -> int:
        """The log's length in bytes so far: read from there with `log_since`."""
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        """What the server logged from byte `offset` on."""
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


def as_owner(command: list[str]) -> list[str]:
    """`command` run as the user `postgres` when this process is root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def private_cluster(edition: str) -> Iterator[PrivateCluster]:
    """A running cluster with TimescaleDB preloaded in `edition` ('apache' or 'timescale'),
    stopped and removed on the way out."""
    directory = Path(tempfile.mkdtemp(prefix="datatracker-cluster-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    cluster = PrivateCluster(directory, free_port())
    password_file = directory / "password"
    password_file.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(password_file, "postgres", "postgres")
    try:
        initdb = [
            server_binary("initdb"),
            "-D",
            str(directory / "data"),
            "-U",
            SUPERUSER,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
        ]
        subprocess.run(as_owner(initdb), check=True, capture_output=True)
        settings = {
            "port": str(cluster.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{directory}'",
            "shared_preload_libraries": "'timescaledb'",
            "timescaledb.telemetry_level": "off",
            "timescaledb.license": f"'{edition}'",
            # Who each line is from: role@database and application name (sessions only).
            "log_line_prefix": "'%m [%p] %q%u@%d %a: '",
            "fsync": "off",  # a throwaway cluster: durability is not what it is for
        }
        with (directory / "data" / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        cluster.start()
        yield cluster
    finally:
        with_data = (directory / "data" / "postmaster.pid").exists()
        if with_data:
            subprocess.run(
                as_owner(
                    [
                        server_binary("pg_ctl"),
                        "-D",
                        str(directory / "data"),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ]
                ),
                check=False,
                capture_output=True,
            )
        shutil.rmtree(directory, ignore_errors=True)
