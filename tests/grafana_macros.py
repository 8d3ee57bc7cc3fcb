"""Grafana's SQL query pipeline, reproduced for tests, and the queries of grafana/ (SQL on
TimescaleDB; PromQL on Prometheus, for the Service dashboard).

Grafana runs a PostgreSQL panel query in two steps. The browser interpolates
template variables (`$exchange`, `${symbol:sqlstring}`, `$__interval`); then the
server expands macros (`$__timeFilter(time)`, `$__timeGroupAlias(time, 1m)`) for
a datasource with the TimescaleDB option on. `expand` does both, as Grafana 11
does, so the provisioned queries can run against a real database in tests.
Unlike Grafana, an unknown variable raises instead of being left in the SQL.
"""

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

GRAFANA_DIR = Path(__file__).resolve().parent.parent / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
PROVISIONING_DIR = GRAFANA_DIR / "provisioning"
DATASOURCE_UID = "datatracker-timescaledb"
PROMETHEUS_UID = "datatracker-prometheus"

# Grafana's template-variable syntaxes: $name, [[name:format]], ${name:format}.
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
# Grafana's macro syntax (sqleng): $name(arguments without a closing parenthesis).
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")
_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "y": timedelta(days=365),
}


def quote_literal(value: str) -> str:
    """A PostgreSQL string literal, as Grafana's `sqlstring` format writes it."""
    return "'" + value.replace("'", "''") + "'"


def format_interval(interval: timedelta) -> str:
    """`$__interval` as Grafana writes it: the largest unit that divides it (1m, 30s, 2h)."""
    milliseconds = interval // timedelta(milliseconds=1)
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit] // timedelta(milliseconds=1)
        if milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def parse_interval(text: str) -> timedelta:
    """A Grafana interval such as `5m` or `'1h'` (quotes allowed, one unit only)."""
    match = _INTERVAL.match(text.strip().strip("'"))
    if match is None:
        raise ValueError(f"unsupported interval {text!r}")
    return int(match[1]) * _UNITS[match[2]]


def format_time(instant: datetime) -> str:
    """An instant as Go's RFC 3339 with nanoseconds in UTC: `2026-01-01T12:00:00.5Z`."""
    text = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def interpolate_variables(sql: str, variables: Mapping[str, str], interval: timedelta) -> str:
    """The browser's step: replace template variables as a PostgreSQL datasource does.

    A single-value variable without a format has its quotes doubled but gets no
    surrounding quotes; `${name:sqlstring}` is a quoted literal. Names starting
    with `__` other than the interval variables are macros for the server step.
    """
    builtins = {
        "__interval": format_interval(interval),
        "__interval_ms": str(interval // timedelta(milliseconds=1)),
    }

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[4]
        fmt = match[3] or match[5]
        if name in builtins:
            return builtins[name]
        if name.startswith("__"):
            return match[0]
        value = variables[name]
        if fmt is None:
            return value.replace("'", "''")
        if fmt == "sqlstring":
            return quote_literal(value)
        raise ValueError(f"unsupported variable format {fmt!r} in {match[0]}")

    return _VARIABLE.sub(replace, sql)


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    """The server's step: expand Grafana's PostgreSQL macros, TimescaleDB flavour."""

    def replace(match: re.Match[str]) -> str:
        name, args = match[1], [arg.strip() for arg in match[2].split(",")]
        # Grafana's pre-5.3 compatibility: $__timeGroup(...) followed by a comma is aliased.
        if name == "__timeGroup" and sql[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"
        return _macro(name, args, start, end)

    return _MACRO.sub(replace, sql)


def _macro(name: str, args: list[str], start: datetime, end: datetime) -> str:
    """One macro's expansion, or ValueError for a macro Grafana does not know."""
    column = args[0]
    if name == "__time":
        return f'{column} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {column}) as "time"'
    if name == "__timeFilter":
        return f"{column} BETWEEN '{format_time(start)}' AND '{format_time(end)}'"
    if name == "__timeFrom":
        return f"'{format_time(start)}'"
    if name == "__timeTo":
        return f"'{format_time(end)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        seconds = parse_interval(args[1]).total_seconds()
        bucket = f"time_bucket('{seconds:.3f}s',{column})"
        return bucket + (' AS "time"' if name == "__timeGroupAlias" else "")
    if name == "__unixEpochFilter":
        first, last = int(start.timestamp()), int(end.timestamp())
        return f"{column} >= {first} AND {column} <= {last}"
    if name == "__unixEpochFrom":
        return str(int(start.timestamp()))
    if name == "__unixEpochTo":
        return str(int(end.timestamp()))
    raise ValueError(f"unknown macro ${name}")


def expand(
    sql: str,
    *,
    start: datetime,
    end: datetime,
    interval: timedelta,
    variables: Mapping[str, str],
) -> str:
    """Both steps: the SQL Grafana would send to PostgreSQL for this range and these variables."""
    return expand_macros(interpolate_variables(sql, variables, interval), start, end)


@dataclass(frozen=True, slots=True)
class GrafanaQuery:
    """One provisioned SQL query: where it lives, what shows it, and its text."""

    source: str  # dashboard uid or alert rule uid
    name: str  # panel title, variable name or alert query refId
    kind: str  # panel type, "variable" or "alert"
    format: str  # "time_series" or "table"
    sql: str
    datasource_uid: str
    relative_seconds: int | None = None  # an alert query's own time range

    @property
    def id(self) -> str:
        return f"{self.source}/{self.name}"


def load_yaml(path: Path) -> Any:
    """Parse one provisioning file."""
    return yaml.safe_load(path.read_text())


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON under grafana/dashboards, by file name."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's template variables."""
    return list(dashboard.get("templating", {}).get("list", []))


def _variable_sql(variable: Mapping[str, Any]) -> str:
    """A query variable's SQL, stored as a string (older Grafana) or a query object."""
    query = variable["query"]
    return str(query if isinstance(query, str) else query["rawSql"])


def dashboard_queries() -> Iterator[GrafanaQuery]:
    """Every SQL query of every dashboard: panel targets, then query variables."""
    for dashboard in dashboards().values():
        uid = dashboard["uid"]
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                if target["datasource"]["uid"] == PROMETHEUS_UID:
                    continue  # PromQL: promql_queries
                yield GrafanaQuery(
                    source=uid,
                    name=panel["title"],
                    kind=panel["type"],
                    format=target.get("format", "time_series"),
                    sql=target["rawSql"],
                    datasource_uid=target["datasource"]["uid"],
                )
        for variable in variables(dashboard):
            if variable["type"] == "query":
                yield GrafanaQuery(
                    source=uid,
                    name=variable["name"],
                    kind="variable",
                    format="table",
                    sql=_variable_sql(variable),
                    datasource_uid=variable["datasource"]["uid"],
                )


@dataclass(frozen=True, slots=True)
class PromQuery:
    """One provisioned PromQL panel query."""

    source: str  # dashboard uid
    name: str  # panel title and the target's refId
    expr: str

    @property
    def id(self) -> str:
        return f"{self.source}/{self.name}"

    def expand(self, rate_interval: str) -> str:
        """The expression as Grafana sends it, `$__rate_interval` replaced."""
        return self.expr.replace("$__rate_interval", rate_interval)


def promql_queries() -> list[PromQuery]:
    """Every PromQL target of every dashboard."""
    return [
        PromQuery(dashboard["uid"], f"{panel['title']} {target['refId']}", target["expr"])
        for dashboard in dashboards().values()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target["datasource"]["uid"] == PROMETHEUS_UID
    ]


def alert_queries() -> Iterator[GrafanaQuery]:
    """Every SQL query of the provisioned alert rules (expressions are not SQL)."""
    for path in sorted((PROVISIONING_DIR / "alerting").glob("*.yaml")):
        for group in load_yaml(path).get("groups", []):
            for rule in group["rules"]:
                for query in rule["data"]:
                    if query["datasourceUid"] == "__expr__":
                        continue
                    model = query["model"]
                    yield GrafanaQuery(
                        source=rule["uid"],
                        name=query["refId"],
                        kind="alert",
                        format=model.get("format", "table"),
                        sql=model["rawSql"],
                        datasource_uid=query["datasourceUid"],
                        relative_seconds=query["relativeTimeRange"]["from"],
                    )


def all_queries() -> list[GrafanaQuery]:
    """Every provisioned SQL query: dashboards' and alert rules'."""
    return [*dashboard_queries(), *alert_queries()]
