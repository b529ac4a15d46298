"""A quantile's promised accuracy holds: with 95 % probability the released value's rank (students
below it) misses the target rank by at most ``rank_accuracy_95`` students more than the best
candidate's does — and the promise is nearly tight, so it is not vacuous.

Releases run through the engine directly (no budget, no ledger) on crafted frames where every
candidate but one misses the target rank by the same number of students ``g``: the union bound
behind the promise is then almost exact, so a band a little too narrow, a wrong noise scale or the
wrong selection mechanism (Gumbel instead of permute-and-flip) shows as too many releases outside
it. Counts are compared with binomial slack at 4 standard deviations (it does not flake).
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
import polars as pl
import pytest

from dp_queries.accuracy import preview
from dp_queries.engine import ALPHA, alpha_fraction, calibrate, release
from dp_queries.spec import QuerySpec, check
from tests.dp.test_engine import ALLOWED, SCHEMA, questionnaire

RELEASES = 1_000
SLACK = 4.0
"""Standard deviations of a binomial count allowed before a test fails."""
BOUNDS = (2.0, 4.0)
"""The quantile's bounds on engagement (catalog [1, 5]): 101 candidates 0.02 apart."""


def spec(**fields: Any) -> QuerySpec:
    body: dict[str, Any] = {
        "dataset": "questionnaire",
        "statistic": "quantile",
        "variable": "engagement",
        "bounds": list(BOUNDS),
        "quantile": 0.5,
        "epsilon": "1",
    }
    body.update(fields)
    query = QuerySpec.model_validate(body)
    check(query, SCHEMA, ALLOWED)
    return query


def candidates() -> np.ndarray:
    low, high = BOUNDS
    step = (high - low) / 100
    return np.array([low + i * step for i in range(100)] + [high])


def rank_miss(values: np.ndarray, alpha: float) -> np.ndarray:
    """Per candidate, OpenDP's score in students: |(1 - α)·#(x < c) - α·#(x > c)|."""
    x = np.sort(values)
    grid = candidates()
    below = np.searchsorted(x, grid, side="left")
    above = x.size - np.searchsorted(x, grid, side="right")
    miss: np.ndarray = np.abs((1 - alpha) * below - alpha * above)
    return miss


def crafted(alpha: float, gap: int, students: int = 1_000) -> pl.DataFrame:
    """Students placed so the middle candidate (3.0) hits the α-quantile's rank exactly and every
    other candidate misses it by ``gap`` students: ``gap`` just below 3.0, ``gap`` just above, the
    rest below and above every candidate."""
    target = round(alpha * students)
    below, above = target - gap, students - target - gap
    assert below >= 0
    assert above >= 0
    values = [1.0] * below + [2.99] * gap + [3.01] * gap + [5.0] * above
    return pl.DataFrame(
        {"pseudonym": [f"S{i}" for i in range(students)], "engagement": values},
        schema={"pseudonym": pl.String, "engagement": pl.Float64},
    )


def released(query: QuerySpec, frame: pl.DataFrame, times: int = RELEASES) -> list[list[float]]:
    """``times`` releases of ``query`` on ``frame``: each one's estimates, one per group."""
    epsilon = Decimal(str(query.epsilon))
    return [[row["estimate"] for row in release(query, SCHEMA, frame, epsilon).rows] for _ in range(times)]


def outside(estimates: list[float], miss: np.ndarray, band: float) -> int:
    """How many released candidates miss the target rank by more than the best one plus ``band``."""
    grid = candidates()
    best = float(miss.min())
    indices = [int(np.argmin(np.abs(grid - e))) for e in estimates]
    return sum(1 for i in indices if miss[i] > best + band + 1e-9)


def permute_and_flip_miss(gap: float, scale: float, others: int = 100) -> float:
    """P(a candidate other than the best is released) when ``others`` candidates are ``gap`` worse:
    the best is accepted when visited; each other one with probability p = exp(-gap / scale)."""
    p = math.exp(-gap / scale)
    best = (1 - (1 - p) ** (others + 1)) / ((others + 1) * p)
    return 1 - best


def ceiling(rate: float, n: int) -> float:
    return rate * n + SLACK * math.sqrt(rate * (1 - rate) * n)


@cache
def promised(alpha: float, epsilon: str = "1") -> float:
    [statistic] = preview(spec(quantile=alpha, epsilon=epsilon), SCHEMA).statistics
    band = statistic["rank_accuracy_95"]
    assert isinstance(band, float)
    return band


@pytest.mark.parametrize(("alpha", "epsilon"), [(0.5, "1"), (0.9, "1"), (0.25, "0.3")])
@pytest.mark.parametrize("rows", [1, 3])
def test_the_rank_band_is_opendps_scale_in_students_times_the_union_bound(
    alpha: float, epsilon: str, rows: int
) -> None:
    query = spec(quantile=alpha, epsilon=epsilon)
    calibrated = calibrate(query, SCHEMA, Decimal(epsilon), rows_per_subject=rows)
    output = calibrated.outputs["quantile"]
    assert output.distribution == "ExponentialMin", "pure DP selects by permute-and-flip"
    _, denominator = alpha_fraction(alpha)
    # OpenDP's noise scale, in students: 2·rows·max(α, 1 - α) / ε (the score moves by max(α, 1 - α)
    # per student and is not monotone, hence the 2).
    per_student = output.scale / denominator
    assert per_student == pytest.approx(2 * rows * max(alpha, 1 - alpha) / float(epsilon), rel=1e-6)
    assert calibrated.rank_accuracy_95 == pytest.approx(per_student * math.log(100 / (2 * ALPHA)))
    [statistic] = preview(query, SCHEMA, rows_per_subject=rows).statistics
    assert statistic["rank_accuracy_95"] == calibrated.rank_accuracy_95
    assert statistic["accuracy_95"] is None, "no ± in the variable's unit is promised"
    assert statistic["grid_half_step"] == pytest.approx(0.01)


def test_at_least_95_percent_of_medians_fall_within_the_band_where_it_is_nearly_tight() -> None:
    band = promised(0.5)
    assert 6.9 < band < 6.91  # ln(1000) students at ε = 1
    gap = math.ceil(band)  # every other candidate just outside the band
    frame = crafted(0.5, gap)
    miss = rank_miss(frame["engagement"].to_numpy(), 0.5)
    assert sorted(set(miss.tolist())) == [0.0, float(gap)]
    estimates = [e for [e] in released(spec(), frame)]
    misses = outside(estimates, miss, band)
    assert misses <= ceiling(ALPHA, RELEASES), f"{misses} of {RELEASES} outside the promised band"
    # The count is what permute-and-flip gives (4.4 %); Gumbel noise of the same scale would
    # release another candidate 8.4 % of the time and break the promise.
    expected = permute_and_flip_miss(gap, scale=1.0)
    assert 0.04 < expected < ALPHA
    assert abs(misses - expected * RELEASES) <= SLACK * math.sqrt(expected * (1 - expected) * RELEASES)


def test_a_band_a_sixth_narrower_would_not_hold_so_the_promise_is_not_loose() -> None:
    band = promised(0.5)
    gap = 6  # other candidates within the band, but outside a band 15 % narrower
    frame = crafted(0.5, gap)
    miss = rank_miss(frame["engagement"].to_numpy(), 0.5)
    estimates = [e for [e] in released(spec(), frame)]
    assert outside(estimates, miss, band) == 0
    narrower = outside(estimates, miss, band * 0.85)
    assert narrower > ceiling(ALPHA, RELEASES), f"only {narrower} of {RELEASES} outside a narrower band"


def test_the_90th_percentile_by_group_holds_its_band_in_every_group() -> None:
    band = promised(0.9)
    assert 12.4 < band < 12.5  # 1.8 × ln(1000) students at ε = 1
    gap = math.ceil(band)
    one = crafted(0.9, gap)
    frame = pl.concat(
        [
            one.with_columns(pl.lit("female").alias("gender")),
            one.with_columns(pl.lit("male").alias("gender"), ("M" + pl.col("pseudonym")).alias("pseudonym")),
        ]
    ).with_columns(pl.col("gender").cast(pl.Enum(["female", "male", "other"])))
    miss = rank_miss(one["engagement"].to_numpy(), 0.9)
    assert sorted(set(np.round(miss, 6).tolist())) == [0.0, float(gap)]
    query = spec(quantile=0.9, group_by=["gender"])
    runs = released(query, frame)
    expected = permute_and_flip_miss(gap, scale=1.8)
    for group in (0, 1):  # female, male; "other" is empty: every candidate is as good
        misses = outside([run[group] for run in runs], miss, band)
        assert misses <= ceiling(ALPHA, RELEASES)
        assert abs(misses - expected * RELEASES) <= SLACK * math.sqrt(expected * (1 - expected) * RELEASES)


def test_on_the_questionnaire_the_band_is_a_few_students_and_the_medians_stay_in_it() -> None:
    frame = questionnaire().head(2_000)
    query = spec(bounds=None)  # the catalog's bounds [1, 5]
    [statistic] = preview(query, SCHEMA).statistics
    band = statistic["rank_accuracy_95"]
    assert band < 0.005 * frame.height, "a handful of students out of 2,000: far narrower than the range"
    values = frame["engagement"].to_numpy()
    x = np.sort(values)
    grid = np.array(calibrate(query, SCHEMA, Decimal(1)).candidates or [])
    below = np.searchsorted(x, grid, side="left")
    above = x.size - np.searchsorted(x, grid, side="right")
    miss = np.abs(0.5 * below - 0.5 * above)
    estimates = [e for [e] in released(query, frame, times=300)]
    indices = [int(np.argmin(np.abs(grid - e))) for e in estimates]
    within = sum(1 for i in indices if miss[i] <= miss.min() + band + 1e-9)
    assert within >= 300 - ceiling(ALPHA, 300)
    # In the variable's unit: the released medians stay close to the data's median.
    spread = max(estimates) - min(estimates)
    assert spread < 0.25 * (5 - 1)
    assert abs(float(np.median(estimates)) - float(np.median(values))) <= 0.1
