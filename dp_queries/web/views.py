"""What the result and budget pages show, computed from a stored release or a budget's spends.

A release's result holds rows of group keys and ``statistic``, ``estimate``, ``accuracy_95`` and
``noise_dominates``; this module turns them into table rows (estimate, ± at 95 %, interval and a
reliability flag), the chart, a one-line description of the query and the CSV download.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dp_queries.web.charts import BudgetChart, ResultChart, budget_chart, number, result_chart

STAT_KEYS = ("statistic", "estimate", "accuracy_95", "noise_dominates")
BARS = frozenset({"count", "sum", "histogram", "crosstab"})
CSV_FIELDS = ("statistic", "estimate", "accuracy_95", "lower_95", "upper_95", "noise_dominates")


@dataclass(frozen=True)
class ResultRow:
    """One released statistic as the table shows it."""

    keys: list[str]
    statistic: str
    estimate: str
    accuracy: str
    low: str
    high: str
    noisy: bool


@dataclass(frozen=True)
class ReleaseView:
    """A release as its page shows it."""

    id: str
    project_id: str
    project_title: str
    dataset: str
    version: int
    epsilon: str
    created_at: str
    reused: bool
    heading: str
    describe: str
    keys: list[str]
    rows: list[ResultRow]

    @property
    def noisy_count(self) -> int:
        """How many statistics are dominated by noise."""
        return sum(1 for row in self.rows if row.noisy)


def _float(value: Any) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return math.nan
    return result


def result_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a stored result (an empty list if it has none)."""
    rows = result.get("rows")
    return [dict(r) for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def key_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The group keys of the rows (every column that is not a statistic's), in first-seen order."""
    names: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name not in STAT_KEYS:
                names.setdefault(name, None)
    return list(names)


def _text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, list | tuple):
        return " to ".join(_text(v) for v in value)
    return str(value)


def heading(spec: Mapping[str, Any]) -> str:
    """What the query asks, as a title: "Mean of engagement by gender and stage"."""
    statistic = str(spec.get("statistic", ""))
    variable = spec.get("variable")
    groups = [str(g) for g in spec.get("group_by") or []]
    if statistic == "count":
        title = "Count of students"
    elif statistic == "quantile":
        q = _float(spec.get("quantile", 0.5))
        title = f"Median of {variable}" if q == 0.5 else f"Quantile {number(q)} of {variable}"
    elif statistic == "histogram":
        title = f"Histogram of {variable}"
    elif statistic == "crosstab":
        title = "Cross-table of students"
    else:
        title = f"{statistic.capitalize()} of {variable}"
    if groups:
        title += " by " + (", ".join(groups[:-1]) + " and " + groups[-1] if len(groups) > 1 else groups[0])
    return title


def describe(spec: Mapping[str, Any]) -> str:
    """The query in one line: heading, bounds, bins and filters."""
    parts = [heading(spec)]
    if spec.get("bounds"):
        parts.append(f"bounds {_text(list(spec['bounds']))}")
    if spec.get("bins"):
        parts.append("bins at " + ", ".join(_text(_float(b)) for b in spec["bins"]))
    for item in spec.get("filters") or []:
        if isinstance(item, Mapping):
            values = ", ".join(_text(v) for v in item.get("values") or [])
            parts.append(f"only {item.get('variable')} in {{{values}}}")
    return "; ".join(parts)


def axis_label(spec: Mapping[str, Any]) -> str:
    """The chart's value axis."""
    statistic = str(spec.get("statistic", ""))
    if statistic in ("count", "crosstab"):
        return "Students"
    if statistic == "histogram":
        return f"Students per bin of {spec.get('variable')}"
    return heading(
        {"statistic": statistic, "variable": spec.get("variable"), "quantile": spec.get("quantile")}
    )


def _clip(result: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[float, float]:
    """Where a mean's or a quantile's interval is cut: the bounds it was computed within."""
    details = result.get("details")
    bounds = details.get("bounds") if isinstance(details, Mapping) else None
    if (
        str(spec.get("statistic")) in ("mean", "quantile")
        and isinstance(bounds, list | tuple)
        and len(bounds) == 2
    ):
        low, high = _float(bounds[0]), _float(bounds[1])
        if math.isfinite(low) and math.isfinite(high) and low < high:
            return low, high
    return -math.inf, math.inf


def interval(estimate: float, accuracy: float, clip: tuple[float, float]) -> tuple[float, float]:
    """The 95 % interval around an estimate, within the statistic's bounds."""
    return max(estimate - accuracy, clip[0]), min(estimate + accuracy, clip[1])


def _label(row: Mapping[str, Any], keys: Sequence[str], many_statistics: bool) -> str:
    label = ", ".join(_text(row.get(k)) for k in keys)
    if many_statistics or not label:
        label = f"{label}: {row.get('statistic')}" if label else str(row.get("statistic", "all"))
    return label


def release_view(
    *,
    release_id: str,
    project_id: str,
    project_title: str,
    dataset: str,
    version: int,
    epsilon: str,
    created_at: datetime,
    spec: Mapping[str, Any],
    result: Mapping[str, Any],
    reused: bool = False,
) -> ReleaseView:
    """The page's view of a release."""
    rows = result_rows(result)
    keys = key_names(rows)
    clip = _clip(result, spec)
    shown = []
    for row in rows:
        estimate, accuracy = _float(row.get("estimate")), _float(row.get("accuracy_95"))
        low, high = interval(estimate, accuracy, clip)
        rank = _float(row.get("rank_accuracy_95"))
        shown.append(
            ResultRow(
                keys=[_text(row.get(k)) for k in keys],
                statistic=str(row.get("statistic", "")),
                estimate=number(estimate),
                # A quantile's accuracy is a band of ranks: students below the value, ± at 95 %.
                accuracy=f"± {number(rank)} students in rank"
                if math.isnan(accuracy) and math.isfinite(rank)
                else number(accuracy),
                low=number(low),
                high=number(high),
                noisy=bool(row.get("noise_dominates")),
            )
        )
    return ReleaseView(
        id=release_id,
        project_id=project_id,
        project_title=project_title,
        dataset=dataset,
        version=version,
        epsilon=epsilon,
        created_at=f"{created_at:%Y-%m-%d %H:%M:%S} UTC",
        reused=reused,
        heading=heading(spec),
        describe=describe(spec),
        keys=keys,
        rows=shown,
    )


def chart_of(spec: Mapping[str, Any], result: Mapping[str, Any]) -> ResultChart | None:
    """The result's chart (None when there is nothing to draw)."""
    rows = result_rows(result)
    if not rows:
        return None
    keys = key_names(rows)
    many = len({str(r.get("statistic")) for r in rows}) > 1
    clip = _clip(result, spec)
    points = []
    for row in rows:
        estimate, accuracy = _float(row.get("estimate")), abs(_float(row.get("accuracy_95")))
        if math.isfinite(estimate) and math.isfinite(accuracy):
            low, high = interval(estimate, accuracy, clip)
            points.append((_label(row, keys, many), estimate, low, high, bool(row.get("noise_dominates"))))
    if not points:
        return None
    return result_chart(
        title=heading(spec) + " with 95 % error bars",
        axis_label=axis_label(spec),
        rows=points,
        bars=str(spec.get("statistic")) in BARS,
    )


def csv_text(result: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """The result as CSV: group keys, statistic, estimate, accuracy, the 95 % interval, the flag."""
    rows = result_rows(result)
    keys = key_names(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*keys, *CSV_FIELDS])
    clip = _clip(result, spec)
    for row in rows:
        estimate, accuracy = _float(row.get("estimate")), _float(row.get("accuracy_95"))
        low, high = interval(estimate, accuracy, clip)
        writer.writerow(
            [
                *(_csv_value(row.get(k)) for k in keys),
                row.get("statistic", ""),
                estimate,
                accuracy,
                low,
                high,
                "true" if row.get("noise_dominates") else "false",
            ]
        )
    return out.getvalue()


def _csv_value(value: Any) -> str:
    text = "" if value is None else _text(value) if isinstance(value, list | tuple | bool) else str(value)
    # A spreadsheet would run a cell starting with these as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- budgets ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendRow:
    """One spend in the DPO's table."""

    at: str
    epsilon: str
    cumulative: str
    remaining: str
    release_id: str


@dataclass(frozen=True)
class ProjectBudgetView:
    """One project's budget over time."""

    id: str
    title: str
    status_label: str
    granted: str
    spent: str
    remaining: str
    exhausted: bool
    spends: list[SpendRow]
    last_spend: str | None
    chart: BudgetChart
    researchers: list[dict[str, str | None]]


def budget_view(
    *,
    project_id: str,
    title: str,
    status_label: str,
    granted: str,
    spent: str,
    remaining: str,
    spends: Sequence[tuple[datetime, str, str, str]],
    start: datetime,
    now: datetime,
    researchers: list[dict[str, str | None]],
) -> ProjectBudgetView:
    """``spends`` = (when, ε, cumulative ε, release id), oldest first."""
    granted_value = _float(granted)
    rows = [
        SpendRow(
            at=f"{at:%Y-%m-%d %H:%M:%S}",
            epsilon=epsilon,
            cumulative=cumulative,
            remaining=_plain(granted_value - _float(cumulative)),
            release_id=release_id,
        )
        for at, epsilon, cumulative, release_id in spends
    ]
    chart = budget_chart(
        title=f"ε spent over time by {title}",
        granted=granted_value if math.isfinite(granted_value) else 0.0,
        spends=[(at, _float(epsilon)) for at, epsilon, _, _ in spends],
        start=start,
        end=now,
    )
    return ProjectBudgetView(
        id=project_id,
        title=title,
        status_label=status_label,
        granted=granted,
        spent=spent,
        remaining=remaining,
        exhausted=_float(remaining) <= 0,
        spends=rows,
        last_spend=rows[-1].at if rows else None,
        chart=chart,
        researchers=researchers,
    )


def _plain(value: float) -> str:
    """ε as short decimal text (four places at most, as the budget stores it)."""
    text = f"{max(value, 0.0):.4f}".rstrip("0").rstrip(".")
    return text or "0"
