"""The query engine on the synthetic questionnaire: what a researcher receives for each statistic."""

from __future__ import annotations

import gc
import time
from decimal import Decimal
from functools import cache
from typing import Any

import polars as pl
import pytest

from dp_queries import resident
from dp_queries.engine import MAX_ROWS, DatasetTooLarge, release
from dp_queries.spec import QuerySpec, check
from enclave.datasets.schemas import DatasetSchema
from enclave.synthetic import COUNTRIES, generate

SCHEMA = DatasetSchema.model_validate(
    {
        "subject_id_column": "student_ref",
        "school_column": "school",
        "variables": [
            {"name": "country", "type": "categorical", "categories": list(COUNTRIES)},
            {"name": "stage", "type": "integer", "min": 1, "max": 4},
            {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
            {"name": "age", "type": "integer", "min": 5, "max": 20},
            {"name": "special_needs", "type": "boolean", "special_category": True},
            {"name": "engagement", "type": "numeric", "min": 1, "max": 5},
            {"name": "attendance_pct", "type": "numeric", "min": 0, "max": 100},
            {"name": "grade_average", "type": "numeric", "min": 0, "max": 10},
            {"name": "left_school_early", "type": "boolean"},
        ],
    }
)
ALLOWED = [v.name for v in SCHEMA.variables]


@cache
def questionnaire(students: int = 18_000) -> pl.DataFrame:
    """The synthetic questionnaire typed as the decrypted-frame cache gives it (pseudonym + variables)."""
    data = generate(students=students, seed=7).questionnaire
    return data.select(
        pl.col("student_ref").alias("pseudonym"),
        pl.col("country").cast(pl.Enum(list(COUNTRIES))),
        "stage",
        pl.col("gender").cast(pl.Enum(["female", "male", "other"])),
        "age",
        "special_needs",
        "engagement",
        "attendance_pct",
        "grade_average",
        "left_school_early",
    )


def spec(**fields: Any) -> QuerySpec:
    body: dict[str, Any] = {"dataset": "questionnaire", "epsilon": "1"}
    body.update(fields)
    return QuerySpec.model_validate(body)


def released(query: QuerySpec, frame: pl.DataFrame | None = None, epsilon: str = "1") -> list[dict[str, Any]]:
    check(query, SCHEMA, ALLOWED)
    result = release(query, SCHEMA, questionnaire() if frame is None else frame, Decimal(epsilon))
    assert result.epsilon_spent <= float(epsilon) * (1 + 1e-9)
    return result.rows


def test_a_count_is_close_to_the_truth_and_carries_its_accuracy() -> None:
    [row] = released(spec(statistic="count"))
    assert row["statistic"] == "count"
    assert abs(row["estimate"] - 18_000) <= 40
    assert 0 < row["accuracy_95"] < 10
    assert row["noise_dominates"] is False


def test_a_grouped_count_lists_every_catalog_key_in_catalog_order_even_empty_ones() -> None:
    frame = questionnaire().filter(pl.col("country") != "PL")
    rows = released(spec(statistic="count", group_by=["country", "stage"]), frame)
    assert [(r["country"], r["stage"]) for r in rows] == [(c, s) for c in COUNTRIES for s in range(1, 5)]
    truth = frame.group_by("country", "stage").len()
    empty = [r for r in rows if r["country"] == "PL"]
    # Noise around zero, flagged as dominating (a cell may by chance land beyond twice its ± at 95 %)
    assert all(abs(r["estimate"]) <= 25 for r in empty)
    assert sum(r["noise_dominates"] for r in empty) >= 3
    for row in rows:
        if row["country"] != "PL":
            exact = truth.filter((pl.col("country") == row["country"]) & (pl.col("stage") == row["stage"]))[
                "len"
            ]
            assert abs(row["estimate"] - exact.item()) <= 25


def test_filters_keep_only_the_named_categories() -> None:
    query = spec(
        statistic="count",
        group_by=["gender"],
        filters=[
            {"variable": "country", "op": "in", "values": ["BE", "ES"]},
            {"variable": "special_needs", "op": "eq", "values": [True]},
        ],
    )
    rows = released(query)
    frame = questionnaire()
    kept = frame.filter(pl.col("country").is_in(["BE", "ES"]) & pl.col("special_needs"))
    for row in rows:
        exact = kept.filter(pl.col("gender") == row["gender"]).height
        assert abs(row["estimate"] - exact) <= 25


def test_a_filtered_group_lists_only_the_filtered_keys() -> None:
    query = spec(
        statistic="count", group_by=["country"], filters=[{"variable": "country", "values": ["IT", "BG"]}]
    )
    assert [r["country"] for r in released(query)] == ["BG", "IT"]


def test_sum_and_mean_by_country_are_close_to_the_truth() -> None:
    frame = questionnaire()
    [total] = released(spec(statistic="sum", variable="engagement"))
    assert abs(total["estimate"] - frame["engagement"].sum()) <= 3 * total["accuracy_95"]
    rows = released(spec(statistic="mean", variable="engagement", group_by=["country"]))
    assert [r["country"] for r in rows] == list(COUNTRIES)
    for row in rows:
        exact = frame.filter(pl.col("country") == row["country"])["engagement"].mean()
        assert isinstance(exact, float)
        assert abs(row["estimate"] - exact) <= max(row["accuracy_95"], 0.01) * 3
        assert row["accuracy_95"] < 0.1
        assert row["noise_dominates"] is False


def test_a_mean_stays_within_the_bounds_and_a_tiny_group_is_flagged() -> None:
    frame = questionnaire().head(3)
    [row] = released(spec(statistic="mean", variable="engagement", epsilon="0.1"), frame, "0.1")
    assert 1 <= row["estimate"] <= 5
    assert row["noise_dominates"] is True


def test_narrowed_bounds_clip_the_values() -> None:
    frame = questionnaire()
    [row] = released(spec(statistic="sum", variable="engagement", bounds=[1, 2]), frame, "1")
    clipped = frame["engagement"].clip(1, 2).sum()
    assert abs(row["estimate"] - clipped) <= 3 * row["accuracy_95"]


def test_the_median_is_one_of_the_candidates_near_the_truth() -> None:
    frame = questionnaire()
    [row] = released(spec(statistic="quantile", variable="attendance_pct", quantile=0.5))
    truth = frame["attendance_pct"].median()
    assert isinstance(truth, float)
    assert abs(row["estimate"] - truth) <= 3
    assert float(row["estimate"]).is_integer(), "candidates every 1 point on [0, 100]"
    [row] = released(spec(statistic="quantile", variable="age", quantile=0.25))
    assert row["estimate"] in set(range(5, 21))


def test_a_histogram_counts_each_declared_bin_including_the_last_edge() -> None:
    frame = pl.DataFrame({"engagement": [1.0, 1.5, 2.0, 4.99, 5.0, 5.0], "country": ["BE"] * 6}).with_columns(
        pl.col("country").cast(pl.Enum(list(COUNTRIES)))
    )
    rows = released(
        spec(statistic="histogram", variable="engagement", bins=[1, 2, 4, 5], epsilon="5"), frame, "5"
    )
    assert [r["bin"] for r in rows] == ["[1, 2)", "[2, 4)", "[4, 5]"]
    for row, exact in zip(rows, [2, 1, 3], strict=True):
        assert abs(row["estimate"] - exact) <= 3
    big = released(spec(statistic="histogram", variable="grade_average", bins=[0, 2.5, 5, 7.5, 10]))
    truth = questionnaire()["grade_average"].cut([2.5, 5, 7.5], left_closed=True).value_counts()
    assert sum(r["estimate"] for r in big) == pytest.approx(truth["count"].sum(), abs=40)


def test_a_crosstab_is_a_count_over_every_combination() -> None:
    rows = released(spec(statistic="crosstab", group_by=["gender", "left_school_early", "stage"]))
    assert len(rows) == 3 * 2 * 4
    assert rows[0] == {**rows[0], "gender": "female", "left_school_early": False, "stage": 1}


def test_a_frame_with_plain_string_columns_is_typed_from_the_catalog() -> None:
    frame = questionnaire().with_columns(pl.col("country").cast(pl.String), pl.col("stage").cast(pl.Int32))
    rows = released(spec(statistic="count", group_by=["country"]), frame)
    assert [r["country"] for r in rows] == list(COUNTRIES)


def test_the_release_json_says_what_was_spent_and_how_sure_it_is() -> None:
    query = spec(statistic="mean", variable="engagement", group_by=["special_needs"])
    result = release(query, SCHEMA, questionnaire(), Decimal("0.5"))
    body = result.to_json()
    assert body["statistic"] == "mean"
    assert body["epsilon_spent"] == pytest.approx(0.5, rel=1e-6)
    assert body["epsilon_spent"] <= 0.5 * (1 + 1e-9)
    assert body["confidence"] == 0.95
    assert [r["special_needs"] for r in body["rows"]] == [False, True]
    assert set(body["rows"][0]) == {
        "special_needs",
        "statistic",
        "estimate",
        "accuracy_95",
        "noise_dominates",
    }


def test_more_rows_than_the_public_bound_are_refused() -> None:
    frame = pl.select(pl.repeat("BE", MAX_ROWS + 1).cast(pl.Enum(list(COUNTRIES))).alias("country"))
    with pytest.raises(DatasetTooLarge) as refused:
        release(spec(statistic="count", group_by=["country"]), SCHEMA, frame, Decimal("1"))
    assert (refused.value.status_code, refused.value.code) == (409, "dataset_too_large")


def test_a_release_takes_milliseconds_at_project_size() -> None:
    queries = [
        spec(statistic="count"),
        spec(statistic="count", group_by=["country", "stage"]),
        spec(statistic="mean", variable="engagement", group_by=["country"]),
        spec(statistic="quantile", variable="attendance_pct", quantile=0.5),
    ]
    frame = questionnaire()
    for query in queries:
        release(query, SCHEMA, frame, Decimal("1"))
        times = []
        for _ in range(7):
            start = time.perf_counter()
            release(query, SCHEMA, frame, Decimal("1"))
            times.append(time.perf_counter() - start)
        # the best of seven: a loaded machine slows some runs, not what the engine needs
        assert min(times) < 0.05, f"{query.statistic}: {min(times) * 1000:.0f} ms"


def test_a_new_frame_is_released_from_its_own_data_and_a_dropped_frame_leaves_nothing_in_opendp() -> None:
    query = spec(statistic="count", epsilon="5")
    everyone = questionnaire().head(300).clone()
    assert abs(release(query, SCHEMA, everyone, Decimal("5")).rows[0]["estimate"] - 300) <= 5
    # 100 students withdraw: the consent filter hands a new frame, released from its own rows
    remaining = everyone.tail(200)
    assert abs(release(query, SCHEMA, remaining, Decimal("5")).rows[0]["estimate"] - 200) <= 5
    kept = {key[0] for key in resident._RESIDENTS}
    assert id(everyone) in kept
    gone = id(everyone)
    del everyone
    gc.collect()
    assert gone not in {key[0] for key in resident._RESIDENTS}, "OpenDP's copy goes with the frame"
    assert id(remaining) in {key[0] for key in resident._RESIDENTS}


def test_a_frame_key_hands_the_same_content_over_once_even_as_new_frame_objects() -> None:
    query = spec(statistic="count", epsilon="5")
    source = questionnaire().head(400)
    before = len(resident._RESIDENTS)
    for _ in range(3):
        kept = source.filter(pl.col("stage") != 4)  # a consent filter's new frame each time
        estimate = release(query, SCHEMA, kept, Decimal("5"), frame_key="q/1/digest-a").rows[0]["estimate"]
        assert abs(estimate - kept.height) <= 5
    assert len(resident._RESIDENTS) == before + 1
    fewer = source.filter(pl.col("stage") == 1)
    estimate = release(query, SCHEMA, fewer, Decimal("5"), frame_key="q/1/digest-b").rows[0]["estimate"]
    assert abs(estimate - fewer.height) <= 5
