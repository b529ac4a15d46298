"""The query specification: every refusal names its field; identical queries hash identically."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dp_queries.spec import MAX_EPSILON, InvalidQuery, QuerySpec, canonical_json, check, spec_hash
from infra.errors import InvalidField
from tests.dp.test_engine import ALLOWED, SCHEMA


def spec(**fields: Any) -> QuerySpec:
    body: dict[str, Any] = {"dataset": "questionnaire", "epsilon": "1"}
    body.update(fields)
    return QuerySpec.model_validate(body)


def refused(query: QuerySpec, allowed: list[str] | None = None) -> InvalidQuery:
    with pytest.raises(InvalidQuery) as caught:
        check(query, SCHEMA, ALLOWED if allowed is None else allowed)
    return caught.value


GOOD = [
    {"statistic": "count"},
    {
        "statistic": "count",
        "group_by": ["country", "stage"],
        "filters": [{"variable": "gender", "values": ["male"]}],
    },
    {"statistic": "sum", "variable": "engagement", "bounds": [2, 4]},
    {"statistic": "mean", "variable": "engagement", "group_by": ["special_needs"]},
    {"statistic": "quantile", "variable": "attendance_pct", "quantile": 0.9},
    {"statistic": "histogram", "variable": "grade_average", "bins": [0, 5, 10]},
    {"statistic": "crosstab", "group_by": ["gender", "left_school_early"]},
    {"statistic": "count", "group_by": ["country"], "epsilon": None, "accuracy": 10},
]


@pytest.mark.parametrize("fields", GOOD)
def test_well_formed_queries_pass(fields: dict[str, Any]) -> None:
    check(spec(**fields), SCHEMA, ALLOWED)


REFUSALS = [
    # (fields, field named, reason)
    ({"statistic": "count", "group_by": ["nationality"]}, "group_by[0]", "unknown_variable"),
    ({"statistic": "count", "group_by": ["country", "engagement"]}, "group_by[1]", "not_public"),
    (
        {"statistic": "count", "filters": [{"variable": "engagement", "values": ["1"]}]},
        "filters[0].variable",
        "not_public",
    ),
    ({"statistic": "count", "filters": [{"variable": "age", "values": [12]}]}, None, None),
    (
        {"statistic": "count", "filters": [{"variable": "country", "values": ["FR"]}]},
        "filters[0].values[0]",
        "unknown_value",
    ),
    (
        {"statistic": "count", "filters": [{"variable": "special_needs", "values": ["yes"]}]},
        "filters[0].values[0]",
        "unknown_value",
    ),
    (
        {"statistic": "count", "filters": [{"variable": "stage", "values": [9]}]},
        "filters[0].values[0]",
        "unknown_value",
    ),
    (
        {"statistic": "count", "filters": [{"variable": "country", "op": "eq", "values": ["BE", "ES"]}]},
        "filters[0].values",
        "eq_one_value",
    ),
    (
        {
            "statistic": "count",
            "filters": [{"variable": "country", "values": ["BE"]}, {"variable": "country", "values": ["ES"]}],
        },
        "filters[1].variable",
        "filtered_twice",
    ),
    ({"statistic": "count", "group_by": ["country", "country"]}, "group_by[1]", "grouped_twice"),
    ({"statistic": "sum"}, "variable", "variable_missing"),
    ({"statistic": "mean", "variable": "gender"}, "variable", "not_numeric"),
    ({"statistic": "quantile", "variable": "special_needs", "quantile": 0.5}, "variable", "not_numeric"),
    ({"statistic": "sum", "variable": "wealth"}, "variable", "unknown_variable"),
    ({"statistic": "count", "variable": "engagement"}, "variable", "not_applicable"),
    ({"statistic": "crosstab", "group_by": ["gender"], "bounds": [1, 2]}, "bounds", "not_applicable"),
    ({"statistic": "sum", "variable": "engagement", "bounds": [0, 5]}, "bounds", "bounds_widened"),
    ({"statistic": "sum", "variable": "engagement", "bounds": [1, 6]}, "bounds", "bounds_widened"),
    ({"statistic": "sum", "variable": "engagement", "bounds": [3, 3]}, "bounds", "bad_bounds"),
    ({"statistic": "sum", "variable": "age", "bounds": [6.5, 10]}, "bounds", "bad_bounds"),
    ({"statistic": "quantile", "variable": "engagement"}, "quantile", "quantile_range"),
    ({"statistic": "quantile", "variable": "engagement", "quantile": 1}, "quantile", "quantile_range"),
    ({"statistic": "quantile", "variable": "engagement", "quantile": 0}, "quantile", "quantile_range"),
    ({"statistic": "mean", "variable": "engagement", "quantile": 0.5}, "quantile", "not_applicable"),
    ({"statistic": "histogram", "variable": "engagement"}, "bins", "bins_missing"),
    ({"statistic": "histogram", "variable": "engagement", "bins": [1]}, "bins", "bins_missing"),
    ({"statistic": "histogram", "variable": "engagement", "bins": [1, 3, 2]}, "bins", "bad_bins"),
    ({"statistic": "histogram", "variable": "engagement", "bins": [1, 1, 2]}, "bins", "bad_bins"),
    ({"statistic": "histogram", "variable": "engagement", "bins": [0, 2, 5]}, "bins", "bins_outside_bounds"),
    (
        {"statistic": "histogram", "variable": "engagement", "bins": [2, 3, 4], "bounds": [2, 3]},
        "bins",
        "bins_outside_bounds",
    ),
    ({"statistic": "count", "bins": [1, 2]}, "bins", "not_applicable"),
    ({"statistic": "crosstab", "group_by": ["gender"]}, "group_by", "crosstab_needs_two"),
    ({"statistic": "count", "epsilon": "0"}, "epsilon", "epsilon_not_positive"),
    ({"statistic": "count", "epsilon": "-0.1"}, "epsilon", "epsilon_not_positive"),
    ({"statistic": "count", "epsilon": str(MAX_EPSILON + 1)}, "epsilon", "epsilon_too_large"),
    ({"statistic": "count", "epsilon": "0.5", "accuracy": 10}, "epsilon", "epsilon_or_accuracy"),
    ({"statistic": "count", "epsilon": None}, "epsilon", "epsilon_or_accuracy"),
    ({"statistic": "count", "epsilon": None, "accuracy": 0}, "accuracy", "accuracy_not_positive"),
    (
        {"statistic": "mean", "variable": "engagement", "epsilon": None, "accuracy": 0.1},
        "accuracy",
        "accuracy_not_supported",
    ),
    (
        {"statistic": "quantile", "variable": "age", "quantile": 0.5, "epsilon": None, "accuracy": 1},
        "accuracy",
        "accuracy_not_supported",
    ),
]


@pytest.mark.parametrize(("fields", "field", "reason"), REFUSALS)
def test_each_refusal_names_the_field(fields: dict[str, Any], field: str | None, reason: str | None) -> None:
    if field is None and reason is None:
        # Integers with few values (age 5-20) are public keys like categories: accepted.
        check(spec(**fields), SCHEMA, ALLOWED)
        return
    error = refused(spec(**fields))
    assert isinstance(error, InvalidField)
    assert error.status_code == 422
    assert error.field == field
    if reason is not None:
        assert error.code == reason
    assert error.extra["errors"][0]["field"] == f"body.{field}"


def test_a_variable_outside_the_projects_approved_list_is_refused_wherever_it_appears() -> None:
    approved = ["country", "stage", "engagement"]
    error = refused(spec(statistic="mean", variable="grade_average"), approved)
    assert (error.field, error.code) == ("variable", "variable_not_approved")
    error = refused(spec(statistic="count", group_by=["country", "special_needs"]), approved)
    assert (error.field, error.code) == ("group_by[1]", "variable_not_approved")
    error = refused(spec(statistic="count", filters=[{"variable": "gender", "values": ["male"]}]), approved)
    assert (error.field, error.code) == ("filters[0].variable", "variable_not_approved")
    check(spec(statistic="mean", variable="engagement", group_by=["country", "stage"]), SCHEMA, approved)


def test_too_many_groups_are_refused() -> None:
    schema = SCHEMA.model_copy(
        update={
            "variables": [
                *SCHEMA.variables,
                type(SCHEMA.variables[0]).model_validate(
                    {
                        "name": "school_code",
                        "type": "categorical",
                        "categories": [f"S{i}" for i in range(900)],
                    }
                ),
            ]
        }
    )
    query = spec(statistic="crosstab", group_by=["school_code", "gender", "stage"])
    with pytest.raises(InvalidQuery) as caught:
        check(query, schema, [*ALLOWED, "school_code"])
    assert (caught.value.field, caught.value.code) == ("group_by", "too_many_groups")
    query = spec(statistic="crosstab", group_by=["school_code", "gender"])
    check(query, schema, [*ALLOWED, "school_code"])


def test_unknown_fields_and_statistics_are_malformed() -> None:
    with pytest.raises(ValidationError, match="bins"):
        spec(statistic="histogram", variable="engagement", bins=[1 + i / 100 for i in range(402)])
    with pytest.raises(ValidationError):
        spec(statistic="count", rows=True)
    with pytest.raises(ValidationError, match="epsilon"):
        spec(statistic="count", epsilon="NaN")
    with pytest.raises(ValidationError):
        spec(statistic="variance", variable="engagement")
    with pytest.raises(ValidationError):
        spec(statistic="count", filters=[{"variable": "country", "op": "like", "values": ["B%"]}])


def test_identical_queries_hash_identically() -> None:
    one = spec(
        statistic="sum",
        variable="engagement",
        bounds=[1, 4.5],
        epsilon="0.10",
        filters=[
            {"variable": "gender", "op": "eq", "values": ["male"]},
            {"variable": "country", "values": ["ES", "BE", "ES"]},
        ],
    )
    same = QuerySpec.model_validate_json(
        '{"epsilon": 0.1, "filters": [{"variable": "country", "op": "in", "values": ["BE", "ES"]},'
        ' {"values": ["male"], "variable": "gender"}], "bounds": [1.0, 4.50], "variable": "engagement",'
        ' "statistic": "sum", "dataset": "questionnaire", "version": null, "group_by": []}'
    )
    assert canonical_json(one) == canonical_json(same)
    assert spec_hash(one) == spec_hash(same)
    assert len(spec_hash(one)) == 64
    assert canonical_json(one) == (
        b'{"bounds":[1,4.5],"dataset":"questionnaire","epsilon":0.1,'
        b'"filters":[{"op":"in","values":["BE","ES"],"variable":"country"},'
        b'{"op":"in","values":["male"],"variable":"gender"}],"group_by":[],'
        b'"statistic":"sum","variable":"engagement"}'
    )


@pytest.mark.parametrize(
    "change",
    [
        {"epsilon": "0.2"},
        {"version": 2},
        {"bounds": [1, 4]},
        {"group_by": ["country"]},
        {"statistic": "mean"},
        {"filters": [{"variable": "gender", "values": ["female"]}]},
    ],
)
def test_any_change_changes_the_hash(change: dict[str, Any]) -> None:
    base = {"statistic": "sum", "variable": "engagement", "bounds": [1, 4.5], "epsilon": "0.1"}
    assert spec_hash(spec(**base)) != spec_hash(spec(**{**base, **change}))


def test_group_order_is_part_of_the_query() -> None:
    one = spec(statistic="crosstab", group_by=["gender", "stage"])
    other = spec(statistic="crosstab", group_by=["stage", "gender"])
    assert spec_hash(one) != spec_hash(other)
