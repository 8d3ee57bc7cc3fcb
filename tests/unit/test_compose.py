"""docker-compose.yml, checked as far as it can be without a Docker engine: commands that
exist, settings the programs accept, the tested TimescaleDB, a TCP healthcheck, the order
init scripts → migrate → services, and the proxy's config being the one its test runs."""

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from datatracker.settings import Settings
from tests.conftest import TIMESCALEDB_IMAGE
from tests.nginx_proxy import TEMPLATE, placeholders

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
OURS = [name for name, service in SERVICES.items() if "build" in service]
# The TimescaleDB CI builds for the Timescale-License run (.ci/run).
TESTED_TIMESCALEDB = "2.28.3"
# What libpq reads from the environment beside DATABASE_URL.
LIBPQ_VARIABLES = {"PGPASSWORD"}


def test_our_services_are_the_migrations_the_collector_and_the_api() -> None:
    """The services built from this repository are migrate, collector and api."""
    assert ["migrate", "collector", "api"] == OURS


@pytest.mark.parametrize("name", OURS)
def test_each_command_names_a_runnable_module(name: str) -> None:
    """Each service runs `python -m <module> [command]` for a module with a __main__ that
    knows the command."""
    command = SERVICES[name]["command"]
    python, flag, module, *rest = command

    assert ("python", "-m") == (python, flag)
    assert importlib.util.find_spec(f"{module}.__main__") is not None
    main = (ROOT / module / "__main__.py").read_text()
    assert all(f'"{word}"' in main for word in rest)


@pytest.mark.parametrize("name", OURS)
def test_each_variable_set_is_a_setting_the_programs_accept(name: str) -> None:
    """Every environment variable a service sets is a field of Settings or one libpq reads."""
    accepted = {field.upper() for field in Settings.model_fields} | LIBPQ_VARIABLES
    variables = set(SERVICES[name].get("environment", {}))

    assert set() == variables - accepted


def test_the_image_runs_the_timescaledb_ci_tests() -> None:
    """The database image's TimescaleDB version is the one CI builds and tests with."""
    image = SERVICES["timescaledb"]["image"]
    match = re.fullmatch(r"timescale/timescaledb:(\d+\.\d+\.\d+)-pg\d+", image)

    assert match is not None
    assert (TESTED_TIMESCALEDB, TIMESCALEDB_IMAGE) == (match[1], image)
    shared_build = ROOT.parent / "shared" / "timescaledb" / "build.sh"
    if shared_build.exists():  # beside a CI checkout: the version it builds
        assert f"version={TESTED_TIMESCALEDB}" in shared_build.read_text()


def test_ci_tests_the_postgresql_major_of_the_image() -> None:
    """CI builds the PostgreSQL major of the database image and starts a Timescale-License
    cluster on it, which scripts/test.sh runs the suite on."""
    image = SERVICES["timescaledb"]["image"]
    major = re.fullmatch(r"timescale/timescaledb:[\d.]+-pg(\d+)", image)
    ci = (ROOT / ".ci" / "run").read_text()

    assert major is not None
    assert re.search(rf"^PG_MAJOR={major[1]} PG_SUITE=\w+ scripts/build-postgresql\.sh$", ci, re.M)
    assert f"\nLOCAL_DB_EDITION=timescale-pg{major[1]} scripts/local-db.sh start\n" in ci
    assert "timescale/timescaledb:" in (ROOT / "scripts" / "test.sh").read_text()


def test_the_database_healthcheck_goes_over_tcp() -> None:
    """The healthcheck asks 127.0.0.1, not the socket the init scripts' server listens on."""
    check = " ".join(SERVICES["timescaledb"]["healthcheck"]["test"])

    assert re.search(r"pg_isready .*-h 127\.0\.0\.1", check)


def test_init_scripts_then_migrate_then_the_services() -> None:
    """The image's first start runs db/init.sql before db/create-users.sh; migrate waits for a
    healthy database; the collector and the API wait for migrate to succeed."""
    mounts = [
        volume.split(":")
        for volume in SERVICES["timescaledb"]["volumes"]
        if "docker-entrypoint-initdb.d" in volume
    ]
    order = [source for source, target, *_ in sorted(mounts, key=lambda mount: mount[1])]

    assert ["./db/init.sql", "./db/create-users.sh"] == order
    assert {"timescaledb": {"condition": "service_healthy"}} == SERVICES["migrate"]["depends_on"]
    for name in ("collector", "api"):
        waits = SERVICES[name]["depends_on"]["migrate"]
        assert {"condition": "service_completed_successfully"} == waits
    assert "no" == SERVICES["migrate"]["restart"]


def test_prometheus_is_the_official_image_pinned_to_a_version() -> None:
    """The prometheus service runs prom/prometheus at a fixed version, never a moving tag."""
    image = SERVICES["prometheus"]["image"]

    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", image), image


def test_prometheus_reads_the_repository_s_config_and_keeps_its_data_in_a_volume() -> None:
    """prometheus/prometheus.yml is mounted read-only where --config.file names it, and the
    storage path is a named volume."""
    service = SERVICES["prometheus"]
    mounts = [volume.split(":") for volume in service["volumes"]]
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in service["command"])

    assert ["./prometheus/prometheus.yml", flags["config.file"], "ro"] in mounts
    (data,) = [source for source, target, *_ in mounts if target == flags["storage.tsdb.path"]]
    assert data in COMPOSE["volumes"]


def test_prometheus_scrapes_the_api_and_the_collector_where_compose_runs_them() -> None:
    """The config's two jobs name the api and collector services at the ports compose gives
    them (API_PORT, and METRICS_PORT on an address other containers reach)."""
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in config["scrape_configs"]
    }
    api, collector = SERVICES["api"]["environment"], SERVICES["collector"]["environment"]

    assert {
        "api": [f"api:{api['API_PORT']}"],
        "collector": [f"collector:{collector['METRICS_PORT']}"],
    } == targets
    assert "0.0.0.0" == collector["METRICS_HOST"]  # noqa: S104 (inside its container)
    assert "9101" not in " ".join(SERVICES["collector"].get("ports", []))


def test_grafana_s_prometheus_datasource_is_the_prometheus_service() -> None:
    """Grafana's provisioned Prometheus datasource points at the compose service's port."""
    datasources = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
    (source,) = yaml.safe_load(datasources.read_text())["datasources"]
    published = SERVICES["prometheus"]["ports"][0].rsplit(":", 1)[1]

    assert f"http://prometheus:{published}" == source["url"]


def test_the_proxy_runs_the_config_its_test_runs() -> None:
    """The optional `proxy` service (profile `proxy`) runs a pinned official nginx image with the
    template tests/integration/test_proxy.py starts nginx with, setting exactly the variables
    the template uses, and the API servers file naming compose's API service and port."""
    proxy = SERVICES["proxy"]
    mounts = dict(volume.removesuffix(":ro").split(":") for volume in proxy["volumes"])
    environment = proxy["environment"]

    assert ["proxy"] == proxy["profiles"]
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+", proxy["image"])
    assert "/etc/nginx/templates/default.conf.template" == mounts.pop(
        "./" + str(TEMPLATE.relative_to(ROOT))
    )
    assert placeholders(TEMPLATE.read_text()) == set(environment)
    assert {"./nginx/api-servers.conf": environment["PROXY_API_SERVERS"]} == mounts
    servers = re.findall(r"^server (\S+);$", (ROOT / "nginx/api-servers.conf").read_text(), re.M)
    assert [f"api:{SERVICES['api']['environment']['API_PORT']}"] == servers
