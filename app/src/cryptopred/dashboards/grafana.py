"""Small typed builders for Grafana 11 dashboard JSON: targets, panels, variables, layout.

Every SQL target goes to the PostgreSQL datasource (uid `risingwave`: RisingWave in the cluster,
the embedded PostgreSQL locally) and every PromQL target to the Prometheus datasource (uid
`prometheus`); both uids are provisioned by kuberay/base/grafana/datasources.yaml and
dashboards/provisioning/.
"""

from __future__ import annotations

import textwrap
from typing import Any, Literal

Json = dict[str, Any]

SQL_DATASOURCE: Json = {"type": "grafana-postgresql-datasource", "uid": "risingwave"}
PROMETHEUS_DATASOURCE: Json = {"type": "prometheus", "uid": "prometheus"}

SCHEMA_VERSION = 39  # Grafana 11
GRID_WIDTH = 24

SqlFormat = Literal["table", "time_series"]


def sql(raw: str, ref: str = "A", fmt: SqlFormat = "table") -> Json:
    """A raw SQL target (code mode). Use `'$var'` for text variables, `$var` for numbers."""
    text = " ".join(textwrap.dedent(raw).split())
    return {
        "refId": ref,
        "datasource": SQL_DATASOURCE,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": text,
    }


def promql(expr: str, legend: str, ref: str = "A") -> Json:
    """A PromQL range target."""
    return {
        "refId": ref,
        "datasource": PROMETHEUS_DATASOURCE,
        "editorMode": "code",
        "expr": " ".join(expr.split()),
        "legendFormat": legend,
        "range": True,
    }


def query_variable(
    name: str, label: str, query: str, *, multi: bool = False, include_all: bool = False
) -> Json:
    """A variable whose options come from a SQL query (refreshed with the time range)."""
    text = " ".join(textwrap.dedent(query).split())
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": SQL_DATASOURCE,
        "query": text,
        "definition": text,
        "refresh": 2,
        "sort": 0,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
        "hide": 0,
    }


def _datasource_of(targets: list[Json]) -> Json:
    kinds = {t["datasource"]["uid"] for t in targets}
    if len(kinds) != 1:
        raise ValueError(f"a panel queries one datasource, got {sorted(kinds)}")
    return dict(targets[0]["datasource"])


def panel(
    kind: str,
    title: str,
    targets: list[Json],
    *,
    width: int = 12,
    height: int = 8,
    unit: str | None = None,
    description: str = "",
    options: Json | None = None,
    custom: Json | None = None,
    overrides: list[Json] | None = None,
    defaults: Json | None = None,
    extra: Json | None = None,
) -> Json:
    """One panel; `layout` fills in its id and position. `defaults` adds field defaults
    (min, max, thresholds), `extra` top-level keys (repeat, interval)."""
    field_defaults: Json = {"custom": dict(custom or {}), **(defaults or {})}
    if unit:
        field_defaults["unit"] = unit
    out: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": _datasource_of(targets),
        "targets": targets,
        "gridPos": {"w": width, "h": height},
        "fieldConfig": {"defaults": field_defaults, "overrides": list(overrides or [])},
        "options": dict(options or {}),
    }
    out.update(extra or {})
    return out


def timeseries(title: str, targets: list[Json], **kw: Any) -> Json:
    kw.setdefault("custom", {"lineWidth": 1, "fillOpacity": 0, "showPoints": "never"})
    kw.setdefault("options", {"legend": {"displayMode": "list", "placement": "bottom"}})
    return panel("timeseries", title, targets, **kw)


def bars(title: str, targets: list[Json], **kw: Any) -> Json:
    """A time series drawn as bars (volumes, counts per interval)."""
    kw.setdefault("custom", {"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1})
    return timeseries(title, targets, **kw)


def stat(title: str, targets: list[Json], **kw: Any) -> Json:
    kw.setdefault("width", 6)
    kw.setdefault("height", 4)
    kw.setdefault(
        "options",
        {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
        },
    )
    return panel("stat", title, targets, **kw)


def field_stat(title: str, target: Json, field: str, unit: str, **kw: Any) -> Json:
    """A stat of one column (`field`) of `target`'s newest row."""
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": f"/^{field}$/"},
        "colorMode": "value",
        "graphMode": "none",
    }
    return stat(title, [target], unit=unit, options=options, **kw)


def table(title: str, targets: list[Json], **kw: Any) -> Json:
    kw.setdefault("options", {"showHeader": True, "cellHeight": "sm"})
    return panel("table", title, targets, **kw)


def candlestick(title: str, targets: list[Json], **kw: Any) -> Json:
    kw.setdefault(
        "options",
        {
            "mode": "candles+volume",
            "candleStyle": "candles",
            "colorStrategy": "open-close",
            "colors": {"up": "green", "down": "red"},
            "includeAllFields": False,
            "legend": {"displayMode": "list", "placement": "bottom"},
        },
    )
    return panel("candlestick", title, targets, **kw)


def override(field: str, **properties: Any) -> Json:
    """Field override by name: `override("upper", **{"custom.fillBelowTo": "lower"})`."""
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": key, "value": value} for key, value in properties.items()],
    }


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"h": 1}}


def layout(panels: list[Json]) -> list[Json]:
    """Number the panels and place them left to right, wrapping at the grid's width."""
    x = y = line_height = 0
    out = []
    for number, original in enumerate(panels, start=1):
        item = dict(original)
        width = GRID_WIDTH if item["type"] == "row" else int(item["gridPos"]["w"])
        height = int(item["gridPos"]["h"])
        if item["type"] == "row" or x + width > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        item["id"] = number
        item["gridPos"] = {"x": x, "y": y, "w": width, "h": height}
        x += width
        line_height = max(line_height, height)
        if item["type"] == "row":
            x, y, line_height = 0, y + height, 0
        out.append(item)
    return out


def dashboard(
    uid: str,
    title: str,
    panels: list[Json],
    *,
    variables: list[Json] | None = None,
    description: str = "",
    time_from: str = "now-6h",
    refresh: str = "30s",
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["cryptopred"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "annotations": {"list": []},
        "templating": {"list": list(variables or [])},
        "panels": layout(panels),
    }
