"""Geometry of the portal's charts, drawn as inline SVG by the templates (no script needed).

Two charts:

* a result chart: one row per released statistic (a group, a bin, a cell of a cross-table), its
  estimate as a bar (counts, sums, histograms) or a point (means, quantiles) with its 95 % error
  bar; statistics whose noise dominates are drawn hollow and dashed, and say so in their tooltip;
* a budget chart: the ε a project has spent over time as a step line, under a dashed line at the
  granted ε.

Both are horizontal so long group labels stay readable, carry their numbers in a table next to
them, and keep text and marks at a contrast of at least 4.5:1 (text) and 3:1 (marks) on white.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

WIDTH = 640
LABEL_WIDTH = 190
RIGHT_MARGIN = 24
TOP = 12
ROW = 30
BAR = 16
AXIS_SPACE = 56
MAX_LABEL = 26
MAX_ROWS = 80
"""Rows beyond this are left out of the chart (the table lists them all)."""

INK = "#1a1a1a"
BAR_COLOUR = "#5b8fc7"
BAR_EDGE = "#0b4f8a"
NOISY_COLOUR = "#a11b1b"
GRID_COLOUR = "#767676"


@dataclass(frozen=True)
class Tick:
    """One labelled tick of an axis."""

    position: float
    label: str


@dataclass(frozen=True)
class ChartRow:
    """One statistic's marks: bar or point, error bar and label."""

    label: str
    short_label: str
    estimate: float
    noisy: bool
    y: float
    bar_x: float
    bar_width: float
    point_x: float
    low_x: float
    high_x: float
    summary: str


@dataclass(frozen=True)
class ResultChart:
    """A chart of released statistics with 95 % error bars."""

    title: str
    description: str
    axis_label: str
    bars: bool
    rows: list[ChartRow]
    ticks: list[Tick]
    zero_x: float | None
    plot_left: float
    plot_right: float
    axis_y: float
    width: int
    height: int
    omitted: int

    @property
    def bar_height(self) -> int:
        """Height of a bar."""
        return BAR

    @property
    def row_height(self) -> int:
        """Height of one statistic's row."""
        return ROW

    @property
    def axis_middle(self) -> float:
        """Where the axis title is centred."""
        return (self.plot_left + self.plot_right) / 2


def number(value: float) -> str:
    """A number as people read it: thousands separated, at most three significant decimals."""
    if not math.isfinite(value):
        return "–" if math.isnan(value) else str(value)
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    steps = round((last - first) / step)
    return [round(first + i * step, 12) for i in range(steps + 1)]


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def result_chart(
    *,
    title: str,
    axis_label: str,
    rows: Sequence[tuple[str, float, float, float, bool]],
    bars: bool,
) -> ResultChart:
    """The chart of ``rows`` = (label, estimate, low and high ends of the 95 % interval, noise dominates).

    Bars start at zero (counts, sums, histogram bins); points suit means and quantiles.
    """
    shown = list(rows[:MAX_ROWS])
    lows = [low for _, _, low, _, _ in shown] or [0.0]
    highs = [high for _, _, _, high, _ in shown] or [1.0]
    low, high = min(lows), max(highs)
    if bars:
        low, high = min(low, 0.0), max(high, 0.0)
    ticks = nice_ticks(low, high)
    domain_low, domain_high = ticks[0], ticks[-1]
    plot_left, plot_right = float(LABEL_WIDTH), float(WIDTH - RIGHT_MARGIN)

    def x(value: float) -> float:
        span = domain_high - domain_low or 1.0
        return round(plot_left + (value - domain_low) / span * (plot_right - plot_left), 2)

    chart_rows = []
    for index, (label, estimate, low_end, high_end, noisy) in enumerate(shown):
        y = TOP + index * ROW
        start, end = sorted((x(0.0), x(estimate)))
        summary = f"{label}: {number(estimate)}, 95 % interval {number(low_end)} to {number(high_end)}"
        if noisy:
            summary += " (noise dominates: do not read this value)"
        chart_rows.append(
            ChartRow(
                label=label,
                short_label=_short(label),
                estimate=estimate,
                noisy=noisy,
                y=y,
                bar_x=start,
                bar_width=round(max(end - start, 1.0), 2),
                point_x=x(estimate),
                low_x=x(low_end),
                high_x=x(high_end),
                summary=summary,
            )
        )
    axis_y = TOP + max(len(shown), 1) * ROW
    noisy_count = sum(1 for row in chart_rows if row.noisy)
    description = (
        f"{'Bars' if bars else 'Points'} for {len(rows)} statistic{'s' if len(rows) != 1 else ''} "
        "with 95 % error bars"
        + (f"; {noisy_count} dominated by noise, drawn hollow and dashed" if noisy_count else "")
        + (f"; the first {MAX_ROWS} are drawn" if len(rows) > MAX_ROWS else "")
        + ". The same numbers are in the table."
    )
    return ResultChart(
        title=title,
        description=description,
        axis_label=axis_label,
        bars=bars,
        rows=chart_rows,
        ticks=[Tick(x(t), number(t)) for t in ticks],
        zero_x=x(0.0) if domain_low <= 0.0 <= domain_high else None,
        plot_left=plot_left,
        plot_right=plot_right,
        axis_y=axis_y,
        width=WIDTH,
        height=axis_y + AXIS_SPACE,
        omitted=max(len(rows) - MAX_ROWS, 0),
    )


# --- budget over time ------------------------------------------------------------------------------

BUDGET_HEIGHT = 220
BUDGET_LEFT = 64
BUDGET_TOP = 16
BUDGET_BOTTOM = 52


@dataclass(frozen=True)
class BudgetChart:
    """Cumulative ε spent over time, with the grant as a line."""

    title: str
    description: str
    path: str
    granted_y: float | None
    granted_label: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    plot_left: float
    plot_right: float
    plot_top: float
    axis_y: float
    width: int
    height: int


def budget_chart(
    *, title: str, granted: float, spends: Sequence[tuple[datetime, float]], start: datetime, end: datetime
) -> BudgetChart:
    """A step line of the cumulative ε of ``spends`` = (when, ε) from ``start`` to ``end``."""
    ordered = sorted(spends)
    total = sum(epsilon for _, epsilon in ordered)
    ticks = nice_ticks(0.0, max(granted, total, 1e-9), count=4)
    top_value = ticks[-1] or 1.0
    plot_left, plot_right = float(BUDGET_LEFT), float(WIDTH - RIGHT_MARGIN)
    plot_top, axis_y = float(BUDGET_TOP), float(BUDGET_HEIGHT - BUDGET_BOTTOM)
    first = min([start, *(at for at, _ in ordered)])
    last = max([end, *(at for at, _ in ordered)])
    span = (last - first).total_seconds() or 1.0

    def x(at: datetime) -> float:
        return round(plot_left + (at - first).total_seconds() / span * (plot_right - plot_left), 2)

    def y(value: float) -> float:
        return round(axis_y - value / top_value * (axis_y - plot_top), 2)

    points = [(x(first), y(0.0))]
    spent = 0.0
    for at, epsilon in ordered:
        points.append((x(at), y(spent)))
        spent += epsilon
        points.append((x(at), y(spent)))
    points.append((x(last), y(spent)))
    path = "M " + " L ".join(f"{px} {py}" for px, py in points)
    same_day = first.date() == last.date()
    fmt = "%H:%M" if same_day else "%Y-%m-%d"
    x_ticks = [
        Tick(x(first + (last - first) * fraction), (first + (last - first) * fraction).strftime(fmt))
        for fraction in (0.0, 0.5, 1.0)
    ]
    description = (
        f"Step line of the ε spent from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC: "
        f"{len(ordered)} release{'s' if len(ordered) != 1 else ''}, {number(total)} of {number(granted)} "
        "granted. The same numbers are in the table."
    )
    return BudgetChart(
        title=title,
        description=description,
        path=path,
        granted_y=y(granted) if granted > 0 else None,
        granted_label=f"granted ε = {number(granted)}",
        y_ticks=[Tick(y(t), number(t)) for t in ticks],
        x_ticks=x_ticks,
        plot_left=plot_left,
        plot_right=plot_right,
        plot_top=plot_top,
        axis_y=axis_y,
        width=WIDTH,
        height=BUDGET_HEIGHT,
    )
