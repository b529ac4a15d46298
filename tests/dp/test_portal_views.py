"""What the portal's result and budget pages draw: table rows, charts with error bars, the CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from dp_queries.web import charts, views

SPEC = {"dataset": "wave1_students", "statistic": "mean", "variable": "engagement", "group_by": ["gender"]}
RESULT = {
    "rows": [
        {
            "gender": "female",
            "statistic": "mean",
            "estimate": 3.21,
            "accuracy_95": 0.12,
            "noise_dominates": False,
        },
        {
            "gender": "male",
            "statistic": "mean",
            "estimate": 3.05,
            "accuracy_95": 0.11,
            "noise_dominates": False,
        },
        {
            "gender": "=other",
            "statistic": "mean",
            "estimate": 0.4,
            "accuracy_95": 2.5,
            "noise_dominates": True,
        },
    ]
}


def test_ticks_are_round_and_cover_the_range():
    assert charts.nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(-2.1, 5.9) == [-4, -2, 0, 2, 4, 6]


def test_a_release_view_names_the_query_and_flags_noisy_statistics():
    view = views.release_view(
        release_id="r1",
        project_id="p1",
        project_title="Attachment",
        dataset="wave1_students",
        version=2,
        epsilon="0.1",
        created_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        spec=SPEC,
        result=RESULT,
    )
    assert view.heading == "Mean of engagement by gender"
    assert view.keys == ["gender"]
    assert [(r.keys, r.estimate, r.accuracy, r.low, r.high) for r in view.rows[:1]] == [
        (["female"], "3.21", "0.12", "3.09", "3.33")
    ]
    assert view.noisy_count == 1


def test_a_released_median_shows_its_band_of_ranks_as_its_accuracy():
    spec = {"dataset": "wave1_students", "statistic": "quantile", "variable": "engagement", "quantile": 0.5}
    result = {
        "rows": [
            {
                "statistic": "quantile",
                "estimate": 3.2,
                "accuracy_95": None,
                "rank_accuracy_95": 13.815510557964274,
                "noise_dominates": None,
            }
        ],
        "details": {"bounds": [1.0, 5.0], "candidates": {"count": 101, "step": 0.04}},
    }
    view = views.release_view(
        release_id="r2",
        project_id="p1",
        project_title="Attachment",
        dataset="wave1_students",
        version=2,
        epsilon="0.5",
        created_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        spec=spec,
        result=result,
    )
    assert view.heading == "Median of engagement"
    assert [(r.estimate, r.accuracy) for r in view.rows] == [("3.2", "± 13.82 students in rank")]


def test_the_chart_draws_each_error_bar_around_its_estimate():
    chart = views.chart_of(SPEC, RESULT)
    assert chart is not None
    assert not chart.bars  # means are points
    female, male, other = chart.rows
    assert female.low_x < female.point_x < female.high_x
    assert male.point_x < female.point_x
    assert other.noisy
    assert "noise dominates" in other.summary
    assert chart.ticks[0].position == chart.plot_left
    assert chart.ticks[-1].position == chart.plot_right
    counts = views.chart_of(
        {"statistic": "count"}, {"rows": [{"statistic": "count", "estimate": 180.0, "accuracy_95": 30.0}]}
    )
    assert counts is not None
    assert counts.bars
    assert counts.zero_x == counts.plot_left


def test_the_csv_has_the_interval_and_defuses_formulas():
    rows = list(csv.DictReader(io.StringIO(views.csv_text(RESULT, SPEC))))
    assert list(rows[0]) == ["gender", *views.CSV_FIELDS]
    assert (rows[0]["gender"], float(rows[0]["lower_95"]), rows[0]["noise_dominates"]) == (
        "female",
        3.09,
        "false",
    )
    assert rows[2]["gender"] == "'=other"


def test_the_budget_chart_steps_up_at_each_spend_and_marks_the_grant():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    spends = [
        (start + timedelta(days=1), "0.25", "0.25", "a"),
        (start + timedelta(days=3), "0.5", "0.75", "b"),
    ]
    view = views.budget_view(
        project_id="p1",
        title="Attachment",
        status_label="active",
        granted="1",
        spent="0.75",
        remaining="0.25",
        spends=spends,
        start=start,
        now=start + timedelta(days=4),
        researchers=[],
    )
    assert [s.remaining for s in view.spends] == ["0.75", "0.25"]
    path = view.chart.path
    assert path.startswith(f"M {view.chart.plot_left} {view.chart.axis_y}")
    assert path.count(" L ") == 5  # start, two steps of two points each, now
    assert view.chart.granted_y is not None
    assert view.chart.granted_y < view.chart.axis_y
    assert not view.exhausted


def test_a_means_interval_stays_within_the_bounds_it_was_computed_in():
    result = {
        "details": {"bounds": [1, 5]},
        "rows": [{"statistic": "mean", "estimate": 4.8, "accuracy_95": 0.5, "noise_dominates": False}],
    }
    rows = list(csv.DictReader(io.StringIO(views.csv_text(result, SPEC))))
    assert (float(rows[0]["lower_95"]), float(rows[0]["upper_95"])) == (4.3, 5.0)
    chart = views.chart_of(SPEC, result)
    assert chart is not None
    assert chart.rows[0].summary == "mean: 4.8, 95 % interval 4.3 to 5"
