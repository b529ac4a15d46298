"""Deadlines of data-subject requests across month ends and leap years (pure date arithmetic)."""

from __future__ import annotations

from datetime import date

import pytest

from consent.requests.deadlines import (
    add_months,
    days_left,
    due_on,
    effective_due_on,
    extended_due_on,
    is_overdue,
)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (date(2027, 1, 31), date(2027, 2, 28)),
        (date(2028, 1, 31), date(2028, 2, 29)),
        (date(2028, 1, 29), date(2028, 2, 29)),
        (date(2027, 1, 29), date(2027, 2, 28)),
        (date(2027, 3, 30), date(2027, 4, 30)),
        (date(2027, 3, 31), date(2027, 4, 30)),
        (date(2027, 11, 30), date(2027, 12, 30)),
        (date(2027, 12, 31), date(2028, 1, 31)),
        (date(2027, 8, 31), date(2027, 9, 30)),
        (date(2027, 2, 28), date(2027, 3, 28)),
        (date(2028, 2, 29), date(2028, 3, 29)),
        (date(2027, 6, 15), date(2027, 7, 15)),
    ],
)
def test_a_request_is_due_one_calendar_month_later_clamped_to_the_month_end(received, due):
    assert due_on(received) == due


@pytest.mark.parametrize(
    ("received", "extended"),
    [
        # counted from receipt: 31 Jan + 3 months is 30 April, not 28 Feb + 2 months = 28 April
        (date(2027, 1, 31), date(2027, 4, 30)),
        (date(2028, 1, 31), date(2028, 4, 30)),
        (date(2027, 11, 30), date(2028, 2, 29)),
        (date(2026, 11, 30), date(2027, 2, 28)),
        (date(2027, 12, 31), date(2028, 3, 31)),
        (date(2027, 10, 31), date(2028, 1, 31)),
        (date(2027, 5, 31), date(2027, 8, 31)),
        (date(2027, 3, 31), date(2027, 6, 30)),
    ],
)
def test_a_two_month_extension_counts_three_months_from_receipt_with_the_same_clamping(received, extended):
    assert extended_due_on(received) == extended
    assert extended_due_on(received) >= add_months(due_on(received), 2)


def test_a_one_month_extension_counts_two_months_from_receipt():
    assert extended_due_on(date(2027, 12, 31), 1) == date(2028, 2, 29)
    assert extended_due_on(date(2028, 12, 31), 1) == date(2029, 2, 28)


@pytest.mark.parametrize("months", [0, 3, -1])
def test_an_extension_is_one_or_two_months_only(months):
    with pytest.raises(ValueError, match="extension"):
        extended_due_on(date(2027, 1, 1), months)


def test_month_arithmetic_crosses_years_and_refuses_going_back():
    assert add_months(date(2027, 12, 31), 2) == date(2028, 2, 29)
    assert add_months(date(2099, 11, 30), 14) == date(2101, 1, 30)
    assert add_months(date(2027, 5, 17), 0) == date(2027, 5, 17)
    with pytest.raises(ValueError, match="negative"):
        add_months(date(2027, 5, 17), -1)


def test_the_extended_date_counts_once_there_is_one():
    assert effective_due_on(date(2027, 2, 28), None) == date(2027, 2, 28)
    assert effective_due_on(date(2027, 2, 28), date(2027, 4, 30)) == date(2027, 4, 30)


def test_a_request_is_overdue_only_after_its_due_date_and_only_while_not_closed():
    due = date(2028, 2, 29)
    assert not is_overdue(due, date(2028, 2, 28), closed=False)
    assert not is_overdue(due, due, closed=False)
    assert is_overdue(due, date(2028, 3, 1), closed=False)
    assert not is_overdue(due, date(2028, 3, 1), closed=True)


def test_days_left_is_zero_on_the_due_date_and_negative_after_it_across_a_month_end():
    due = date(2027, 2, 28)
    assert days_left(due, date(2027, 1, 31)) == 28
    assert days_left(due, due) == 0
    assert days_left(due, date(2027, 3, 2)) == -2
