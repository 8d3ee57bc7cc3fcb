"""grafana/: provisioning files carry the fields Grafana requires, and dashboards are consistent."""

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.grafana_macros import (
    DATASOURCE_UID,
    PROMETHEUS_UID,
    PROVISIONING_DIR,
    GrafanaQuery,
    all_queries,
    dashboards,
    expand,
    load_yaml,
    panels,
    promql_queries,
    variables,
)

DATASOURCE_FILE = PROVISIONING_DIR / "datasources" / "timescaledb.yaml"
PROMETHEUS_FILE = PROVISIONING_DIR / "datasources" / "prometheus.yaml"
PROVIDER_FILE = PROVISIONING_DIR / "dashboards" / "datatracker.yaml"
ALERT_FILES = sorted((PROVISIONING_DIR / "alerting").glob("*.yaml"))
# Where docker-compose.yml mounts grafana/dashboards inside the Grafana container.
DASHBOARDS_MOUNT = "/etc/grafana/dashboards"
DASHBOARDS = dashboards()
QUERIES = all_queries()
ENV_REFERENCE = re.compile(r"\$\{(\w+)\}")


def datasource() -> dict[str, Any]:
    """The one provisioned datasource."""
    (only,) = load_yaml(DATASOURCE_FILE)["datasources"]
    return dict(only)


def links(dashboard: dict[str, Any]) -> list[str]:
    """The URLs of every data link in the dashboard's field overrides."""
    return [
        link["url"]
        for panel in panels(dashboard)
        for override in panel.get("fieldConfig", {}).get("overrides", [])
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]


@pytest.mark.parametrize("path", sorted(PROVISIONING_DIR.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_provisioning_file_is_version_1_yaml(path: Path) -> None:
    """Each provisioning file parses as YAML with `apiVersion: 1`."""
    assert 1 == load_yaml(path)["apiVersion"]


def test_the_datasource_is_timescaledb_with_a_fixed_uid() -> None:
    """The datasource is Grafana's PostgreSQL plugin on timescaledb:5432, TimescaleDB on, no TLS."""
    source = datasource()

    expected = ("grafana-postgresql-datasource", DATASOURCE_UID, "timescaledb:5432", "proxy")
    assert expected == (source["type"], source["uid"], source["url"], source["access"])
    assert (True, "disable") == (source["jsonData"]["timescaledb"], source["jsonData"]["sslmode"])


def test_the_datasource_reads_its_credentials_from_the_environment() -> None:
    """User, password and database come from ${GRAFANA_DB_*} variables that Grafana expands."""
    source = datasource()
    credentials = {
        "user": source["user"],
        "password": source["secureJsonData"]["password"],
        "database": source["jsonData"]["database"],
    }

    expected = {
        "user": "${GRAFANA_DB_USER}",
        "password": "${GRAFANA_DB_PASSWORD}",
        "database": "${GRAFANA_DB_NAME}",
    }
    assert expected == credentials


def test_the_datasource_file_references_only_the_documented_variables() -> None:
    """The only environment variables the datasource file reads are the three GRAFANA_DB_* ones."""
    expected = {"GRAFANA_DB_USER", "GRAFANA_DB_PASSWORD", "GRAFANA_DB_NAME"}

    values = json.dumps(load_yaml(DATASOURCE_FILE))  # comments are not expanded

    assert expected == set(ENV_REFERENCE.findall(values))


def test_the_dashboard_provider_loads_files_from_the_mounted_folder() -> None:
    """One file provider, named, reading the folder docker-compose.yml mounts the dashboards at."""
    (provider,) = load_yaml(PROVIDER_FILE)["providers"]

    assert ("file", DASHBOARDS_MOUNT) == (provider["type"], provider["options"]["path"])
    assert provider["name"]


@pytest.mark.parametrize("path", ALERT_FILES, ids=lambda p: p.name)
def test_alert_rules_have_grafanas_required_fields(path: Path) -> None:
    """Groups have name, folder, interval; rules a uid, title, data, and a condition among them."""
    for group in load_yaml(path)["groups"]:
        assert all(group[key] for key in ("name", "folder", "interval"))
        for rule in group["rules"]:
            assert all(rule[key] for key in ("uid", "title", "data"))
            assert rule["condition"] in {query["refId"] for query in rule["data"]}


@pytest.mark.parametrize("path", ALERT_FILES, ids=lambda p: p.name)
def test_alert_rules_are_paused_until_enabled(path: Path) -> None:
    """Alerting is optional: every provisioned rule starts paused."""
    rules = [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]

    assert [True] * len(rules) == [rule["isPaused"] for rule in rules]


@pytest.mark.parametrize("path", ALERT_FILES, ids=lambda p: p.name)
def test_alert_annotations_contain_no_dollar(path: Path) -> None:
    """Annotations hold no `$`, which Grafana would take for an environment variable."""
    annotations = [
        text
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        for text in rule.get("annotations", {}).values()
    ]

    assert [] == [text for text in annotations if "$" in text]


def test_dashboard_uids_are_unique() -> None:
    """No two dashboards share a uid."""
    uids = Counter(dashboard["uid"] for dashboard in DASHBOARDS.values())

    assert [] == [uid for uid, count in uids.items() if count > 1]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_has_uid_title_schema_version_and_unique_panel_ids(name: str) -> None:
    """Each dashboard has a uid, a title, an integer schemaVersion and distinct panel ids."""
    dashboard = DASHBOARDS[name]
    ids = [panel["id"] for panel in panels(dashboard)]

    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert sorted(set(ids)) == sorted(ids)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_defaults_to_the_last_day_in_utc_refreshed_every_minute(name: str) -> None:
    """Each dashboard opens on the last 24 hours, in UTC, refreshing every minute."""
    dashboard = DASHBOARDS[name]
    defaults = (dashboard["time"], dashboard["timezone"], dashboard["refresh"])

    assert ({"from": "now-24h", "to": "now"}, "utc", "1m") == defaults


def test_the_prometheus_datasource_is_compose_s_prometheus_with_a_fixed_uid() -> None:
    """The Prometheus datasource has the uid the Service dashboard names, at compose's
    `prometheus` service, not the default."""
    (source,) = load_yaml(PROMETHEUS_FILE)["datasources"]

    expected = ("prometheus", PROMETHEUS_UID, "http://prometheus:9090", "proxy", False)
    assert expected == (
        source["type"],
        source["uid"],
        source["url"],
        source["access"],
        source["isDefault"],
    )


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_target_and_variable_uses_the_provisioned_datasource(name: str) -> None:
    """Panels, their targets and query variables all name one provisioned datasource by its
    fixed uid: TimescaleDB, or Prometheus for the Service dashboard."""
    dashboard = DASHBOARDS[name]
    refs = [panel["datasource"] for panel in panels(dashboard) if panel["type"] != "row"]
    refs += [target["datasource"] for panel in panels(dashboard) for target in panel["targets"]]
    refs += [variable["datasource"] for variable in variables(dashboard)]
    uid = PROMETHEUS_UID if dashboard["uid"] == "datatracker-service" else DATASOURCE_UID

    assert [uid] * len(refs) == [ref["uid"] for ref in refs]


def test_the_service_dashboard_charts_every_series_the_issue_names() -> None:
    """The Service dashboard's PromQL covers cycles, fetch and write time, lag, spool, set-aside
    cycles, requests, latency, errors, windows, the listener and TimescaleDB's job failures."""
    exprs = " ".join(query.expr for query in promql_queries())
    wanted = [
        "datatracker_collector_cycles_total",
        "datatracker_collector_fetch_seconds_bucket",
        "datatracker_collector_write_seconds_bucket",
        "datatracker_collector_writer_lag_seconds",
        "datatracker_collector_spool_cycles",
        "datatracker_collector_held_cycles",
        "datatracker_collector_spool_bytes",
        "datatracker_collector_set_aside_cycles",
        "datatracker_api_request_duration_seconds_count",
        "datatracker_api_request_duration_seconds_bucket",
        'status_code=~"[45].."',
        "datatracker_api_price_answers_total",
        "datatracker_api_price_windows",
        "datatracker_api_response_cache_state",
        "datatracker_api_listener_connects_total",
        "datatracker_api_announcements_total",
        "datatracker_newest_tick_age_seconds",
        "datatracker_timescaledb_job_consecutive_failures",
    ]

    assert [] == [name for name in wanted if name not in exprs]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_time_series_panels_have_units_and_axis_labels(name: str) -> None:
    """Every time series panel sets a unit and labels its value axis."""
    series = [panel for panel in panels(DASHBOARDS[name]) if panel["type"] == "timeseries"]
    defaults = [panel["fieldConfig"]["defaults"] for panel in series]

    assert [] == [d for d in defaults if not (d.get("unit") and d["custom"].get("axisLabel"))]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_every_query_uses_the_provisioned_datasource(query: GrafanaQuery) -> None:
    """Every panel, variable and alert query runs on the TimescaleDB datasource."""
    assert DATASOURCE_UID == query.datasource_uid


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_every_template_variable_in_sql_is_a_quoted_literal(query: GrafanaQuery) -> None:
    """Dashboard variables enter SQL only as `${name:sqlstring}`, never bare."""
    # A lowercase name after `$` or `${` (macros start with `__`) not followed by `:sqlstring}`.
    bare = re.findall(r"\$\{?[a-z]\w*(?!\w|:sqlstring\})|\[\[", query.sql)

    assert [] == bare


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_every_query_expands_with_the_dashboards_own_variables(query: GrafanaQuery) -> None:
    """Each query references only variables its dashboard defines and macros Grafana knows."""
    dashboard = next((d for d in DASHBOARDS.values() if d["uid"] == query.source), {})
    names = {variable["name"]: "x" for variable in variables(dashboard)}
    end = datetime(2026, 1, 2, tzinfo=UTC)

    sql = expand(
        query.sql,
        start=end - timedelta(days=1),
        end=end,
        interval=timedelta(minutes=1),
        variables=names,
    )

    assert "$" not in sql


def test_data_links_open_a_provisioned_dashboard_setting_its_visible_variables() -> None:
    """Each data link targets a provisioned dashboard and sets exactly its visible variables."""
    by_uid = {dashboard["uid"]: dashboard for dashboard in DASHBOARDS.values()}
    all_links = [url for dashboard in DASHBOARDS.values() for url in links(dashboard)]

    assert all_links
    for url in all_links:
        target = by_uid[urlsplit(url).path.split("/")[2]]
        visible = {f"var-{v['name']}" for v in variables(target) if v.get("hide", 0) != 2}
        assert visible == {key for key in parse_qs(urlsplit(url).query) if key.startswith("var-")}
