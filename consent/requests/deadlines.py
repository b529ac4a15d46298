"""Deadlines of data-subject requests (GDPR Art. 12(3)): pure date arithmetic, no database.

The product's rule, written here rather than borrowed from a date library so it can be read and
tested as one piece:

* **Due date.** A request received on day D is due on the same day number one calendar month
  later; when that month is shorter, on its last day (received 31 January 2027 → due 28 February
  2027; 31 January 2028 → 29 February 2028; 30 March → 30 April; 31 December → 31 January).
* **Extension.** Art. 12(3) allows two further months. They are counted from the day received,
  not from the (possibly clamped) due date: ``received + (1 + months)`` months, clamped the same
  way. So a request received 31 January 2027 and due 28 February is extended to 30 April, not
  28 April; counting from the receipt never loses the days a short February took away. An
  extension is granted once, for one or two months, before the original due date has passed
  (the subject must be told within the first month) and while the request is not closed.
* **Overdue.** A request is overdue when it is not closed and today (UTC) is after its effective
  due date (the extended one when there is one). On the due date itself it is not yet overdue.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime

RESPONSE_MONTHS = 1
"""Art. 12(3): without undue delay and at the latest within one month of receipt."""
MAX_EXTENSION_MONTHS = 2
"""Art. 12(3): extendable by two further months where necessary."""


def utc_today() -> date:
    """Today in UTC: deadlines turn at midnight UTC."""
    return datetime.now(UTC).date()


def add_months(day: date, months: int) -> date:
    """The same day number ``months`` calendar months later, clamped to the end of a shorter month."""
    if months < 0:
        raise ValueError("months must not be negative")
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def due_on(received_on: date) -> date:
    """The original due date: one calendar month after receipt, clamped to the month's end."""
    return add_months(received_on, RESPONSE_MONTHS)


def extended_due_on(received_on: date, months: int = MAX_EXTENSION_MONTHS) -> date:
    """The due date after an extension of ``months`` (1 or 2), counted from the day received."""
    if not 1 <= months <= MAX_EXTENSION_MONTHS:
        raise ValueError(f"an extension is 1 to {MAX_EXTENSION_MONTHS} months, not {months}")
    return add_months(received_on, RESPONSE_MONTHS + months)


def effective_due_on(due: date, extended: date | None) -> date:
    """The date that counts: the extended one when the request was extended."""
    return extended if extended is not None else due


def days_left(effective_due: date, today: date) -> int:
    """Days until the effective due date; 0 on the day itself, negative once overdue."""
    return (effective_due - today).days


def is_overdue(effective_due: date, today: date, *, closed: bool) -> bool:
    """Not closed and today is after the effective due date."""
    return not closed and today > effective_due
