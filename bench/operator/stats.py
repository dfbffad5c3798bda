"""Numbers from raw readings (pure): percentiles, the API server's request counters, /proc of a process.

`apiserver_request_total` has no user label, so the operator's share of the requests is what changes when it
runs: the bench reads the counters over a window with the operator running and over one without it, and reports
both and their difference, per verb and resource (`RequestKey`)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

REQUEST_TOTAL = "apiserver_request_total"
_SERIES = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the two nearest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary | None:
        if not values:
            return None
        return cls(len(values), percentile(values, 50), percentile(values, 90), percentile(values, 99), max(values))


class RequestKey(NamedTuple):
    """What the tables group requests by: the verb and the resource (group/resource[/subresource]) and its scope
    (`cluster`, `namespace`: a list or watch over many objects; `resource`: one object)."""

    verb: str
    resource: str
    scope: str

    def text(self) -> str:
        return f"{self.verb} {self.resource}" + (f" ({self.scope})" if self.scope else "")


class Counted(NamedTuple):
    key: RequestKey
    code: str


def parse_request_totals(exposition: str) -> dict[Counted, float]:
    """The resource requests counted in a /metrics text, summed over the labels the bench does not group by.
    Non-resource requests (/healthz, /metrics, discovery) are left out: they are not the operator's work."""
    totals: dict[Counted, float] = {}
    for line in exposition.splitlines():
        if not line.startswith(REQUEST_TOTAL):
            continue
        match = _SERIES.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        resource = labels.get("resource", "")
        if not resource:
            continue
        group = labels.get("group", "")
        name = f"{group}/{resource}" if group else resource
        if labels.get("subresource"):
            name += f"/{labels['subresource']}"
        counted = Counted(RequestKey(labels.get("verb", ""), name, labels.get("scope", "")), labels.get("code", ""))
        totals[counted] = totals.get(counted, 0.0) + float(match["value"])
    return totals


def request_lines(exposition: str) -> str:
    """Only the apiserver_request_total series of a /metrics text (what raw/ keeps of each scrape)."""
    return "".join(line + "\n" for line in exposition.splitlines() if line.startswith(REQUEST_TOTAL + "{"))


def delta(before: Mapping[Counted, float], after: Mapping[Counted, float]) -> dict[Counted, float]:
    """Counts over a window; a counter that went down (an API server restart) counts from zero."""
    changes: dict[Counted, float] = {}
    for counted, value in after.items():
        change = value - before.get(counted, 0.0)
        if change < 0:
            change = value
        if change:
            changes[counted] = change
    return changes


def by_key(counts: Mapping[Counted, float]) -> dict[RequestKey, float]:
    grouped: dict[RequestKey, float] = {}
    for counted, value in counts.items():
        grouped[counted.key] = grouped.get(counted.key, 0.0) + value
    return grouped


def by_verb(counts: Mapping[RequestKey, float]) -> dict[str, float]:
    grouped: dict[str, float] = {}
    for key, value in counts.items():
        grouped[key.verb] = grouped.get(key.verb, 0.0) + value
    return grouped


def failed(counts: Mapping[Counted, float]) -> dict[str, float]:
    """Requests answered 4xx/5xx, by code."""
    codes: dict[str, float] = {}
    for counted, value in counts.items():
        if counted.code[:1] in ("4", "5"):
            codes[counted.code] = codes.get(counted.code, 0.0) + value
    return codes


def per_minute(counts: Mapping[RequestKey, float], seconds: float) -> dict[RequestKey, float]:
    if seconds <= 0:
        raise ValueError("a window must last")
    return {key: value * 60.0 / seconds for key, value in counts.items()}


def difference(with_: Mapping[RequestKey, float], without: Mapping[RequestKey, float]) -> dict[RequestKey, float]:
    """with - without, per key (either side may lack a key)."""
    return {key: with_.get(key, 0.0) - without.get(key, 0.0) for key in set(with_) | set(without)}


def top(counts: Mapping[RequestKey, float], limit: int) -> list[tuple[RequestKey, float]]:
    return sorted(counts.items(), key=lambda item: (-abs(item[1]), item[0]))[:limit]


# --- /proc --------------------------------------------------------------------------------------------------------


def cpu_ticks(stat: str) -> int:
    """utime + stime of /proc/<pid>/stat, in clock ticks (the name field may hold spaces and parentheses)."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def status_kib(status: str, field: str) -> int | None:
    """A `VmRSS:   1234 kB` style field of /proc/<pid>/status, in KiB."""
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def time_to_fraction(curve: Iterable[tuple[float, int]], total: int, fraction: float) -> float | None:
    """The first time at which at least `fraction` of `total` were converged, from (seconds, converged) points."""
    need = math.ceil(total * fraction)
    for seconds, converged in curve:
        if converged >= need:
            return seconds
    return None


def by_group(times: Mapping[str, Sequence[float]]) -> dict[str, Summary]:
    """A Summary of each group's values (groups without values are left out)."""
    return {group: summary for group, values in times.items() if (summary := Summary.of(values)) is not None}


_OPERATOR_SERIES = re.compile(r"^modelrollout_api_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def operator_requests(exposition: str) -> dict[str, float]:
    """The operator's own modelrollout_api_requests_total, summed over codes, by verb."""
    totals: dict[str, float] = {}
    for line in exposition.splitlines():
        match = _OPERATOR_SERIES.match(line)
        if match is not None:
            verb = dict(_LABEL.findall(match["labels"])).get("verb", "")
            totals[verb] = totals.get(verb, 0.0) + float(match["value"])
    return totals


def verb_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {verb: value - before.get(verb, 0.0) for verb, value in after.items() if value - before.get(verb, 0.0)}
