"""Correctness of privacy: the released noise is what the mechanism promises, and OpenDP's privacy map
of every executed measurement is at most the ε charged.

Many releases of the same query on a fixed frame give an empirical noise distribution that a
Kolmogorov-Smirnov test compares with the mechanism's (Laplace for sums, discrete Laplace for counts,
their ratio for a mean), at a significance level low enough (0.1 %) not to flake; the same test
rejects the distribution with half or twice the scale, so it has the power to see a wrong one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from functools import cache, partial
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl
import pytest

from dp_queries.accuracy import epsilon_for, preview
from dp_queries.engine import RELATIVE_TOLERANCE, calibrate, release
from dp_queries.spec import QuerySpec, check
from tests.dp.test_engine import ALLOWED, SCHEMA, questionnaire

RELEASES = 500
KS_ALPHA = 0.001
KS_COEFFICIENT = math.sqrt(-0.5 * math.log(KS_ALPHA / 2))  # c(α) of the Kolmogorov distribution
EPSILON = Decimal("0.2")


def spec(**fields: Any) -> QuerySpec:
    body: dict[str, Any] = {"dataset": "questionnaire", "epsilon": str(EPSILON)}
    body.update(fields)
    query = QuerySpec.model_validate(body)
    check(query, SCHEMA, ALLOWED)
    return query


@cache
def frame() -> pl.DataFrame:
    return questionnaire().head(2_000)


@cache
def samples(statistic: str) -> np.ndarray:
    """RELEASES released estimates of one statistic on the fixed frame."""
    query = {
        "count": spec(statistic="count"),
        "sum": spec(statistic="sum", variable="engagement"),
        "mean": spec(statistic="mean", variable="engagement"),
    }[statistic]
    return np.array(
        [release(query, SCHEMA, frame(), EPSILON).rows[0]["estimate"] for _ in range(RELEASES)], dtype=float
    )


def scale_of(statistic: str, column: str) -> float:
    query = spec(statistic=statistic, **({} if statistic == "count" else {"variable": "engagement"}))
    return calibrate(query, SCHEMA, EPSILON).outputs[column].scale


def laplace_cdf(x: np.ndarray, scale: float) -> np.ndarray:
    return np.where(x < 0, 0.5 * np.exp(x / scale), 1 - 0.5 * np.exp(-x / scale))


def discrete_laplace_cdf(k: np.ndarray, scale: float) -> np.ndarray:
    """P(X <= k) for P(X = k) ∝ exp(-|k| / scale) on the integers."""
    q = math.exp(-1 / scale)
    k = np.floor(k)
    below = q ** (-k) / (1 + q)  # k < 0: q^|k| / (1 + q)
    above = 1 - q ** (k + 1) / (1 + q)
    return np.where(k < 0, below, above)


def ks_statistic(noise: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    """sup |F_n - F|, on both sides of every sample point (exact for step CDFs, ties included)."""
    x = np.sort(noise)
    points = np.unique(x)
    after = np.searchsorted(x, points, side="right") / x.size
    before = np.searchsorted(x, points, side="left") / x.size
    return float(
        max(
            np.max(np.abs(after - cdf(points))),
            np.max(np.abs(before - cdf(np.nextafter(points, -np.inf)))),
        )
    )


def two_sample_ks(a: np.ndarray, b: np.ndarray) -> float:
    points = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), points, side="right") / a.size
    fb = np.searchsorted(np.sort(b), points, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def critical(n: int, m: int | None = None) -> float:
    return KS_COEFFICIENT * (math.sqrt(1 / n) if m is None else math.sqrt((n + m) / (n * m)))


def test_count_noise_is_discrete_laplace_of_the_declared_scale() -> None:
    scale = scale_of("count", "count")
    assert scale == pytest.approx(1 / float(EPSILON), rel=1e-9), "Δ = 1 student: scale = 1/ε"
    noise = samples("count") - frame().height
    assert np.all(noise == np.round(noise)), "counts are integers"
    assert ks_statistic(noise, lambda k: discrete_laplace_cdf(k, scale)) < critical(RELEASES)
    for wrong in (scale / 2, scale * 2):
        assert ks_statistic(noise, partial(discrete_laplace_cdf, scale=wrong)) > critical(RELEASES)
    assert abs(np.mean(noise)) < 4 * scale * math.sqrt(2 / RELEASES), "unbiased (signed counts)"


def test_sum_noise_is_laplace_of_the_declared_scale() -> None:
    scale = scale_of("sum", "sum")
    # Δ = the larger bound, 5, plus OpenDP's allowance for floating-point rounding of the sum
    assert 5 / float(EPSILON) <= scale <= 5 / float(EPSILON) * 1.1
    truth = frame()["engagement"].clip(1, 5).sum()
    noise = samples("sum") - truth
    assert ks_statistic(noise, lambda x: laplace_cdf(x, scale)) < critical(RELEASES)
    for wrong in (scale / 2, scale * 2):
        assert ks_statistic(noise, partial(laplace_cdf, scale=wrong)) > critical(RELEASES)


def test_mean_noise_is_the_ratio_of_a_noisy_sum_and_a_noisy_count() -> None:
    sum_scale, count_scale = scale_of("mean", "sum"), scale_of("mean", "count")
    total, rows = frame()["engagement"].sum(), frame().height
    # ε is split between the two: each gets half, so each scale is twice the one of a lone statistic.
    assert count_scale == pytest.approx(2 / float(EPSILON), rel=1e-9)
    rng = np.random.default_rng(11)
    reference = 200_000

    def simulated(s_scale: float, c_scale: float) -> np.ndarray:
        p = 1 - math.exp(-1 / c_scale)
        count = rows + rng.geometric(p, reference) - rng.geometric(p, reference)
        noisy_sum = total + rng.laplace(0, s_scale, reference)
        ratio: np.ndarray = np.clip(noisy_sum / np.maximum(count, 1), 1, 5)
        return ratio

    observed = samples("mean")
    bound = critical(RELEASES, reference)
    assert two_sample_ks(observed, simulated(sum_scale, count_scale)) < bound
    assert two_sample_ks(observed, simulated(sum_scale / 2, count_scale / 2)) > bound
    assert two_sample_ks(observed, simulated(sum_scale * 2, count_scale * 2)) > bound


@pytest.mark.parametrize(("statistic", "truth"), [("count", None), ("sum", "engagement")])
def test_the_previewed_accuracy_is_the_95th_percentile_of_the_noise(
    statistic: str, truth: str | None
) -> None:
    query = spec(statistic=statistic, **({"variable": truth} if truth else {}))
    [expected] = preview(query, SCHEMA).statistics
    exact = frame().height if truth is None else frame()[truth].clip(1, 5).sum()
    observed = float(np.quantile(np.abs(samples(statistic) - exact), 0.95))
    assert observed == pytest.approx(expected["accuracy_95"], rel=0.2)
    # The released rows carry the same half-width the preview promised.
    assert release(query, SCHEMA, frame(), EPSILON).rows[0]["accuracy_95"] == expected["accuracy_95"]


KINDS = [
    {"statistic": "count"},
    {"statistic": "count", "group_by": ["country", "stage"]},
    {
        "statistic": "count",
        "group_by": ["gender"],
        "filters": [{"variable": "country", "values": ["BE", "IT"]}],
    },
    {"statistic": "crosstab", "group_by": ["gender", "special_needs", "left_school_early"]},
    {"statistic": "sum", "variable": "engagement"},
    {"statistic": "sum", "variable": "age", "group_by": ["country"], "bounds": [10, 16]},
    {"statistic": "mean", "variable": "attendance_pct"},
    {"statistic": "mean", "variable": "engagement", "group_by": ["country", "gender"]},
    {"statistic": "quantile", "variable": "attendance_pct", "quantile": 0.5},
    {"statistic": "quantile", "variable": "age", "quantile": 0.9, "group_by": ["stage"]},
    {"statistic": "histogram", "variable": "grade_average", "bins": [0, 2, 4, 6, 8, 10]},
    {"statistic": "histogram", "variable": "engagement", "bins": [1, 3, 5], "group_by": ["country"]},
]


@pytest.mark.parametrize(
    "fields", KINDS, ids=lambda f: f["statistic"] + "-" + "x".join(f.get("group_by", []))
)
@pytest.mark.parametrize("rows_per_subject", [1, 3])
def test_the_privacy_loss_of_every_measurement_is_at_most_the_epsilon_charged(
    fields: dict[str, Any], rows_per_subject: int
) -> None:
    for epsilon in (Decimal("0.01"), Decimal("0.3"), Decimal("1"), Decimal("5")):
        query = spec(**fields)
        calibrated = calibrate(query, SCHEMA, epsilon, rows_per_subject=rows_per_subject)
        loss = float(calibrated.measurement.map(rows_per_subject))
        assert loss <= float(epsilon) * (1 + RELATIVE_TOLERANCE)
        assert loss >= float(epsilon) * (1 - 1e-6), "the charged ε is not wasted"
        # A student with more rows than declared would cost more: the map grows with the distance.
        assert float(calibrated.measurement.map(rows_per_subject + 1)) > loss
        released = release(query, SCHEMA, frame(), epsilon, rows_per_subject=rows_per_subject)
        assert released.epsilon_spent == loss


def test_more_rows_per_student_mean_more_noise_for_the_same_epsilon() -> None:
    query = spec(statistic="count", group_by=["country"])
    one = calibrate(query, SCHEMA, EPSILON, rows_per_subject=1).outputs["count"].scale
    three = calibrate(query, SCHEMA, EPSILON, rows_per_subject=3).outputs["count"].scale
    assert three == pytest.approx(3 * one, rel=1e-9)


def test_a_student_contributes_at_most_the_declared_rows() -> None:
    # Repeated measures: student P1 answered 50 times, the others once.
    base = frame().head(200)
    repeated = pl.concat([base, pl.concat([base.head(1)] * 49)])
    query = spec(statistic="count", epsilon="5")
    estimates = [
        release(query, SCHEMA, repeated, Decimal("5"), rows_per_subject=2).rows[0]["estimate"]
        for _ in range(20)
    ]
    # 199 students once + P1 kept twice = 201, not 249
    assert abs(float(np.mean(estimates)) - 201) < 2
    once = [
        release(query, SCHEMA, repeated, Decimal("5"), rows_per_subject=1).rows[0]["estimate"]
        for _ in range(20)
    ]
    assert abs(float(np.mean(once)) - 200) < 2


def test_epsilon_from_a_target_accuracy_reaches_it_and_no_more() -> None:
    query = spec(statistic="count", group_by=["country"], epsilon=None, accuracy=20)
    result = preview(query, SCHEMA)
    assert result.statistics[0]["accuracy_95"] <= 20
    slightly_less = result.epsilon * Decimal("0.98")
    looser = calibrate(query, SCHEMA, slightly_less).outputs["count"].accuracy_95
    assert looser is not None
    assert looser > 20
    assert epsilon_for(query, SCHEMA, 20, rows_per_subject=2) > result.epsilon
    total = spec(statistic="sum", variable="engagement", epsilon=None, accuracy=100)
    found = preview(total, SCHEMA)
    assert found.statistics[0]["accuracy_95"] <= 100
    # Laplace: ± = scale × ln(1/0.05) with scale ≈ 5/ε (bound 5, plus the rounding allowance)
    assert Decimal("0.1498") <= found.epsilon <= Decimal("0.16")
    looser = calibrate(total, SCHEMA, found.epsilon * Decimal("0.98")).outputs["sum"].accuracy_95
    assert looser is not None
    assert looser > 100


@pytest.mark.parametrize(
    "fields", KINDS, ids=lambda f: f["statistic"] + "-" + "x".join(f.get("group_by", []))
)
def test_the_accuracy_given_is_opendps_own_summary_of_the_released_measurement(
    fields: dict[str, Any],
) -> None:
    epsilon = Decimal("0.7")
    calibrated = calibrate(spec(**fields), SCHEMA, epsilon, rows_per_subject=2)
    summary = dp.summarize_polars_measurement(calibrated.measurement, alpha=0.05)
    assert sorted(calibrated.outputs) == sorted(summary["column"].to_list())
    for row in summary.iter_rows(named=True):
        ours = calibrated.outputs[row["column"]]
        assert ours.distribution == row["distribution"]
        assert ours.scale == pytest.approx(row["scale"], rel=1e-9)
        if row["accuracy"] is None:
            assert ours.accuracy_95 is None
        else:
            assert ours.accuracy_95 == pytest.approx(row["accuracy"], rel=1e-9)
