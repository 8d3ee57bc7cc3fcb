"""What the README's quick start without Docker relies on: Make finds the venv, the local
database's URL is one command away, and the installer installs only what is missing, never
upgrading anything."""

import subprocess
import tomllib
from pathlib import Path

import pytest

from datatracker.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "scripts" / "install-timescaledb.sh"
BUILD_TOOLS = ["postgresql-server-dev-99", "cmake", "build-essential", "dpkg-dev", "libssl-dev"]


def plain_env(**extra: str) -> dict[str, str]:
    """An environment without an activated venv: /usr/bin and /bin on PATH only."""
    return {"PATH": "/usr/bin:/bin", **extra}


@pytest.mark.parametrize(
    ("target", "expected"), [("lint", "{python} -m ruff check ."), ("test", "PYTHON={python} ")]
)
def test_make_uses_the_project_venv_without_activating_it(target: str, expected: str) -> None:
    """From a shell without the venv, Make's targets run .venv/bin/python (python3 without a
    venv), never a bare `python`, which Debian lacks."""
    python = ".venv/bin/python" if (ROOT / ".venv/bin/python").exists() else "python3"
    result = subprocess.run(
        ["make", "-n", "-s", target], cwd=ROOT, env=plain_env(), capture_output=True, text=True
    )
    assert 0 == result.returncode, result.stderr
    assert result.stdout.startswith(expected.format(python=python)), result.stdout


@pytest.mark.parametrize(("edition", "port"), [("apache", 5433), ("timescale", 5434), ("", 5433)])
def test_the_local_database_url_is_one_command_from_any_shell(edition: str, port: int) -> None:
    """`scripts/local-db.sh url` prints the local cluster's URL (starting nothing), and the
    services accept it as DATABASE_URL."""
    result = subprocess.run(
        [str(ROOT / "scripts/local-db.sh"), "url"],
        env=plain_env(LOCAL_DB_EDITION=edition) if edition else plain_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    url = result.stdout.strip()
    assert f"postgresql://datatracker:datatracker@127.0.0.1:{port}/datatracker" == url
    assert url == load_settings(_env_file=None, database_url=url).database_url


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def run_installer(
    tmp_path: Path, installed: list[str], simulation: str, has_timescaledb: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the installer as root would, against stubs of apt-get, dpkg and pg_config that record
    what they are asked; its result and the apt-get calls."""
    bin_dir, share, apt = tmp_path / "bin", tmp_path / "share", tmp_path / "apt"
    for directory in (bin_dir, share / "extension", apt / "sources.list.d"):
        directory.mkdir(parents=True)
    (apt / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm\n"
    )
    if has_timescaledb:
        (share / "extension/timescaledb.control").write_text("default_version = '2.19.3'\n")
    (tmp_path / "simulation").write_text(simulation)
    log = tmp_path / "apt-get.log"
    stub(bin_dir, "pg_config", f'[ "$1" = --sharedir ] && echo {share} || echo "PostgreSQL 99.0"')
    stub(
        bin_dir,
        "dpkg",
        f'for p in {" ".join(installed)}; do [ "$2" = "$p" ] && '
        'echo "Status: install ok installed" && exit 0; done; exit 1',
    )
    # Records each call, and the deb-src entry of a call that reads its own sources.
    stub(
        bin_dir,
        "apt-get",
        f'echo "$*" >> {log}\n'
        'for a in "$@"; do case $a in Dir::Etc::SourceParts=*) '
        f'cat "${{a#*=}}"/*.sources > {tmp_path / "entry"} ;; esac; done\n'
        f'case "$*" in *--simulate*) cat {tmp_path / "simulation"} ;; *" source "*) exit 1 ;; esac',
    )
    result = subprocess.run(
        ["bash", str(INSTALLER)],
        env=plain_env(PATH=f"{bin_dir}:/usr/bin:/bin", PG_MAJOR="99", APT_DIR=str(apt)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_the_installer_does_nothing_when_timescaledb_is_there(tmp_path: Path) -> None:
    """An installed TimescaleDB is left alone: apt is not even asked."""
    result, calls = run_installer(tmp_path, [], "", has_timescaledb=True)

    assert (0, []) == (result.returncode, calls)
    assert "already installed for PostgreSQL 99: nothing to do" in result.stderr


def test_the_installer_installs_only_what_is_missing_without_upgrades(tmp_path: Path) -> None:
    """Installed build tools are kept as they are; the missing one is installed with
    --no-upgrade; each step is said, and trixie's source is read through a deb-src entry and
    lists of its own, outside the apt directory, which is left as it was."""
    simulation = "Inst cmake (3.25.1-1 Debian:12.12/stable [amd64])\n"
    result, calls = run_installer(tmp_path, [p for p in BUILD_TOOLS if p != "cmake"], simulation)

    install = "install -y --no-upgrade --no-install-recommends cmake"
    assert ["update -q", f"{install} --simulate", install] == calls[:3]
    own_sources = "-q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="
    assert [True, True] == [call.startswith(own_sources) for call in calls[3:]]
    assert calls[3].endswith(" update")
    assert "Dir::State::Lists=" in calls[3]
    assert calls[4].endswith(" source --download-only timescaledb")  # the stub stops here
    for said in [
        "source index of Debian trixie main from http://deb.example/debian",
        "apt-get update (package lists)",
        "libssl-dev is installed: kept as it is",
        "installing what is missing: cmake",
    ]:
        assert said in result.stderr
    entry = (tmp_path / "entry").read_text()
    assert "Types: deb-src\nURIs: http://deb.example/debian\nSuites: trixie\n" in entry
    assert ["debian.sources"] == [p.name for p in (tmp_path / "apt").rglob("*") if p.is_file()]


def test_the_installer_stops_before_an_upgrade(tmp_path: Path) -> None:
    """When a missing package would pull a newer version of an installed one (a newer libpq for
    postgresql-server-dev), nothing is installed and the upgrade is named."""
    simulation = (
        "Inst libpq5 [15.18-0+deb12u1] (15.20-0+deb12u1 Debian:12.12/stable [amd64])\n"
        "Inst postgresql-server-dev-99 (99.0-1 Debian:12.12/stable [amd64])\n"
    )
    result, calls = run_installer(tmp_path, BUILD_TOOLS[1:], simulation)

    assert 1 == result.returncode
    assert [call for call in calls if "--simulate" not in call] == ["update -q"]
    assert "libpq5 15.18-0+deb12u1 -> 15.20-0+deb12u1" in result.stderr
    assert "would upgrade installed packages; stopping, nothing changed" in result.stderr


def test_every_apt_install_of_the_scripts_refuses_upgrades() -> None:
    """The scripts that make local and CI run as root install with --no-upgrade, every time."""
    scripts = (
        "local-db.sh",
        "install-timescaledb.sh",
        "build-postgresql.sh",
        "build-timescaledb-tsl.sh",
    )
    for script in scripts:
        lines = (ROOT / "scripts" / script).read_text().splitlines()
        installs = [line for line in lines if "apt-get install" in line and "echo" not in line]
        installs = [line for line in installs if not line.lstrip().startswith("#")]
        assert installs, script
        assert all("--no-upgrade" in line for line in installs), installs


def test_the_license_is_an_spdx_expression() -> None:
    """pyproject's license is the SPDX string setuptools wants from 2027 on, not a TOML table
    (its deprecation warning), with a setuptools that reads it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "MIT" == project["project"]["license"]
    assert ["setuptools>=77"] == project["build-system"]["requires"]
