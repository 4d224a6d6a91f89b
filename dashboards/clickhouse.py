"""Panel queries for Grafana's ClickHouse plugin, and the plugin's macros expanded the way the plugin does.

`check` and `preview` run a panel's SQL without Grafana, so they expand ``$__fromTime`` and
friends (the plugin's backend, pkg/macros) and ``${var}`` / ``$__conditionalAll`` (Grafana and
the plugin's frontend) themselves; the expansions below follow the plugin's own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

PLUGIN = "grafana-clickhouse-datasource"
DATASOURCE_UID = "mallstream-clickhouse"
DATASOURCE = DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID)
#: The plugin's result formats (grafana-plugin-sdk-go sqlutil.FormatQueryOption).
TIME_SERIES, TABLE = 0, 1
#: What a multi-value variable holds when "All" is picked.
ALL = "$__all"


@dataclass
class ClickHouseQuery(cogvariants.Dataquery):
    """One raw-SQL target of the ClickHouse plugin."""

    raw_sql: str
    time_series: bool
    ref_id: str = "A"

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "editorType": "sql",
            "queryType": "timeSeries" if self.time_series else "table",
            "format": TIME_SERIES if self.time_series else TABLE,
            "rawSql": self.raw_sql,
        }


@dataclass
class Query(cogbuilder.Builder[ClickHouseQuery]):
    """Builder form, as the foundation SDK's panels take their targets."""

    raw_sql: str
    time_series: bool = False
    ref_id: str = "A"

    def build(self) -> ClickHouseQuery:
        return ClickHouseQuery(self.raw_sql, self.time_series, self.ref_id)


@dataclass(frozen=True)
class Expansion:
    """What Grafana would fill in: the time range, the interval, and each variable's values."""

    start: dt.datetime
    end: dt.datetime
    interval_s: int = 60
    variables: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def sql(self, text: str) -> str:
        """``text`` with template variables and the plugin's macros expanded."""
        text = _CONDITIONAL_ALL.sub(self._conditional_all, text)
        text = _VARIABLE.sub(self._variable, text)
        return _MACRO.sub(self._macro, text)

    def _values(self, name: str) -> Sequence[str]:
        if name not in self.variables:
            raise KeyError(f"no value for template variable ${name}")
        return self.variables[name]

    def _conditional_all(self, match: re.Match) -> str:
        return "1=1" if list(self._values(match["var"])) == [ALL] else match["condition"]

    def _variable(self, match: re.Match) -> str:
        name = match["braced"] or match["plain"]
        if name.startswith("__"):
            return match[0]  # a macro, not a variable
        values = self._values(name)
        if match["format"] == "singlequote":
            return ",".join("'" + value.replace("'", "\\'") + "'" for value in values)
        return ",".join(values)

    def _macro(self, match: re.Match) -> str:
        name, argument = match["name"], match["arg"]
        start, end = int(self.start.timestamp()), int(self.end.timestamp())
        simple = {
            "fromTime": f"toDateTime({start})",
            "toTime": f"toDateTime({end})",
            "fromTime_ms": f"fromUnixTimestamp64Milli({start * 1000})",
            "toTime_ms": f"fromUnixTimestamp64Milli({end * 1000})",
            "interval_s": str(max(self.interval_s, 1)),
        }
        if name in simple and argument is None:
            return simple[name]
        if name == "timeFilter" and argument:
            return f"{argument} >= toDateTime({start}) AND {argument} <= toDateTime({end})"
        if name == "dateFilter" and argument:
            first, last = (moment.astimezone(dt.UTC).strftime("%Y-%m-%d") for moment in (self.start, self.end))
            return f"{argument} >= toDate('{first}') AND {argument} <= toDate('{last}')"
        if name == "timeInterval" and argument:
            return f"toStartOfInterval(toDateTime({argument}), INTERVAL {max(self.interval_s, 1)} second)"
        raise ValueError(f"macro $__{name} is not known to the ClickHouse plugin (or lacks its argument)")


_CONDITIONAL_ALL = re.compile(r"\$__conditionalAll\((?P<condition>.+?),\s*\$\{?(?P<var>\w+)\}?\)")
_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|\$(?P<plain>(?!__)\w+)")
_MACRO = re.compile(r"\$__(?P<name>\w+)(?:\((?P<arg>[^()]*)\))?")
