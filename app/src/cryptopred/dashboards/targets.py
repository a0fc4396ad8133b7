"""Reading dashboards back: their SQL and PromQL targets, PromQL metric names, and SQL with the
Grafana variables substituted the way Grafana's PostgreSQL datasource interpolates them.

Grafana puts a single-value text variable into the SQL as its raw text (quotes doubled), so the
SQL writes it as `'$pair'`; a number variable is written bare (`$candle_seconds`); a multi-value
variable becomes a comma-separated list of quoted literals (`IN ($horizon)`). `bind` turns each
of those into psycopg placeholders with the values as parameters, so running a dashboard's SQL
is parameterised too; any variable or macro left over is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptopred.dashboards.grafana import PROMETHEUS_DATASOURCE, SQL_DATASOURCE, Json

# Grafana's global variables the SQL may use; numbers (epoch ms and the interval in ms).
GLOBAL_NUMBERS = ("__from", "__to", "__interval_ms")

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_PROMQL_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_PROMQL_IDENT = re.compile(r"(?<![\w$.:])[a-zA-Z_:][\w:]*")
_PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
)


@dataclass(frozen=True)
class Target:
    dashboard: str  # uid
    panel: str  # panel title, or `variable <name>`
    ref: str
    text: str  # SQL or PromQL
    fmt: str  # table / time_series for SQL, "" for PromQL


def load_dashboards(folder: Path) -> dict[str, Json]:
    """Every dashboard JSON file of `folder`, by uid."""
    out: dict[str, Json] = {}
    for path in sorted(folder.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        out[board["uid"]] = board
    return out


def panels(board: Json) -> Iterator[Json]:
    """Every panel, including those nested in collapsed rows."""
    for item in board.get("panels", []):
        yield item
        yield from item.get("panels", [])


def _targets(board: Json, datasource: Json) -> Iterator[Target]:
    for item in panels(board):
        for target in item.get("targets", []):
            ds = target.get("datasource") or item.get("datasource") or {}
            if ds.get("uid") != datasource["uid"]:
                continue
            text = target.get("rawSql") if datasource is SQL_DATASOURCE else target.get("expr")
            fmt = str(target.get("format", "")) if datasource is SQL_DATASOURCE else ""
            yield Target(board["uid"], item["title"], target["refId"], str(text or ""), fmt)


def sql_targets(board: Json) -> list[Target]:
    return list(_targets(board, SQL_DATASOURCE))


def promql_targets(board: Json) -> list[Target]:
    return list(_targets(board, PROMETHEUS_DATASOURCE))


def variable_queries(board: Json) -> list[Target]:
    """The SQL of every query variable, in dependency order (as the dashboard lists them)."""
    out = []
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query.get("rawSql", "") if isinstance(query, dict) else str(query)
        out.append(Target(board["uid"], f"variable {variable['name']}", "var", text, "table"))
    return out


def multi_variables(board: Json) -> set[str]:
    """Variables that Grafana interpolates as a list of quoted literals."""
    return {
        v["name"]
        for v in board.get("templating", {}).get("list", [])
        if v.get("multi") or v.get("includeAll")
    }


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _PROMQL_GROUPING.sub(" ", text)
    names = set()
    for match in _PROMQL_IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


class UnboundVariableError(ValueError):
    """The SQL uses a variable or macro that has no value, or uses one the wrong way."""


VariableValue = str | int | Sequence[str]


def bind(text: str, values: Mapping[str, VariableValue], multi: set[str]) -> tuple[str, list[Any]]:
    """SQL with psycopg placeholders for every variable, and their parameters."""
    sql = text.replace("%", "%%")
    params: list[Any] = []
    out = ""
    pos = 0
    for match in _VARIABLE.finditer(sql):
        name = match.group(1) or match.group(2)
        start, end = match.span()
        quoted = sql[start - 1 : start] == "'" and sql[end : end + 1] == "'"
        if name not in values:
            raise UnboundVariableError(f"no value for ${name} in: {text}")
        value = values[name]
        if name in multi:
            if quoted or isinstance(value, str | int):
                raise UnboundVariableError(f"${name} is multi-valued: write IN (${name})")
            out += sql[pos:start] + ", ".join(["%s"] * len(value))
            params += [str(v) for v in value]
        elif quoted:
            out += sql[pos : start - 1] + "%s"
            params.append(str(value))
            end += 1
        else:
            if not isinstance(value, str | int) or not re.fullmatch(r"-?\d+", str(value)):
                raise UnboundVariableError(f"${name} is not a number: quote it as '${name}'")
            out += sql[pos:start] + "%s"
            params.append(int(str(value)))
        pos = end
    out += sql[pos:]
    if "[[" in out:
        raise UnboundVariableError(f"old [[variable]] syntax in: {text}")
    return out, params
