"""The CSV files a data steward imports, and how each line is checked.

Three kinds of file, each with a header line naming its columns (any order, case-insensitive,
surrounding spaces ignored; no other column is accepted):

``students`` — one line per student::

    student_ref,country,school,stage,class,language,birth_year,birth_month
    P-0001,BG,BG-SOF-001,2,7A,bg,2012,6

``guardians`` — one line per guardian-student link; the student must already be on the roster of the
steward's country. The same guardian listed for several siblings is one guardian: recognised by
email address, or, without an email, by name and student::

    student_ref,school,name,email,delivery,language,relation
    P-0001,BG-SOF-001,Maria Ivanova,maria@example.org,email,bg,mother
    P-0001,BG-SOF-001,Ivan Ivanov,,school,bg,father

``teachers`` — one line per teacher, recognised on re-import by email address::

    name,email,country,school,language
    Petar Georgiev,petar@school.example.org,BG,BG-SOF-001,bg

Encoding and layout: UTF-8, with or without a byte-order mark ("CSV UTF-8" in spreadsheet
programs); anything else is refused with the first line that is not UTF-8. Cells are separated by
commas or by semicolons (what spreadsheets in much of Europe write), chosen from the header line;
quoting follows RFC 4180. At most ``MAX_FILE_BYTES`` (20 MiB, about 200,000 students).

Line numbers in error reports are rows as a spreadsheet shows them: the header is row 1, the first
student row 2; a cell holding a line break still counts as one row.

Values:

* ``country`` ISO 3166-1 alpha-2 (``BG``), within the steward's scope; ``school`` a school code of
  2-32 letters, digits and hyphens (``BG-SOF-001``), within the steward's schools if they have a list;
* ``stage`` 1-4; ``language`` ISO 639-1 (``bg``); ``birth_year`` and ``birth_month`` a month that is
  not in the future and makes the student 3 to 25 years old;
* ``email`` one address; ``delivery`` ``email`` (needs an email) or ``school`` (a letter handed out
  by the school); ``relation`` one of ``mother``, ``father``, ``parent``, ``legal_guardian``,
  ``other``;
* text cells (``student_ref``, ``class``, ``name``, ``email``) may not start with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return: spreadsheets run such cells as formulas (CSV injection), so the
  line is refused rather than silently altered. Any CSV this product writes passes its cells through
  :func:`neutralise_cell`.

Every problem is reported (row, column, reason) and nothing is imported while any remains.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from consent.codes import COUNTRY_CODES, LANGUAGE_CODES
from consent.rosters.exceptions import RosterFileRejected
from consent.rosters.models import Delivery, Relation

MAX_FILE_BYTES = 20 * 1024 * 1024
"""Largest CSV accepted; larger uploads are refused with 413 before they are read."""
MAX_REPORTED_ERRORS = 1000
"""Errors listed in one answer; the total is always given."""
MIN_AGE, MAX_AGE = 3, 25

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SCHOOL_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,31}$")
EMAIL = re.compile(r"^[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"'.]{2,}$")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
TEXT_LIMITS = {"student_ref": 64, "class": 32, "name": 200, "email": 254}


class RosterKind(StrEnum):
    """Which roster a file fills."""

    students = "students"
    guardians = "guardians"
    teachers = "teachers"


HEADERS: dict[RosterKind, tuple[str, ...]] = {
    RosterKind.students: (
        "student_ref",
        "country",
        "school",
        "stage",
        "class",
        "language",
        "birth_year",
        "birth_month",
    ),
    RosterKind.guardians: ("student_ref", "school", "name", "email", "delivery", "language", "relation"),
    RosterKind.teachers: ("name", "email", "country", "school", "language"),
}
OPTIONAL: dict[RosterKind, frozenset[str]] = {
    RosterKind.students: frozenset(),
    RosterKind.guardians: frozenset({"email"}),
    RosterKind.teachers: frozenset(),
}
"""Columns that must be present but whose cells may be empty."""


@dataclass(frozen=True)
class LineError:
    """One problem: the spreadsheet row, the column (None for the whole row) and why."""

    line: int
    column: str | None
    message: str
    code: str

    def as_dict(self) -> dict[str, object]:
        """The JSON form used in problem documents."""
        return {"line": self.line, "column": self.column, "message": self.message, "type": self.code}


@dataclass
class Row:
    """A data row of the file, by column name, with its spreadsheet row number."""

    line: int
    cells: dict[str, str]


@dataclass
class Report:
    """Problems found so far; ``add`` collects them instead of stopping at the first."""

    errors: list[LineError] = field(default_factory=list)

    def add(self, line: int, column: str | None, message: str, code: str) -> None:
        """Note one problem."""
        self.errors.append(LineError(line, column, message, code))

    def lines_with_errors(self) -> set[int]:
        """Rows that have at least one problem."""
        return {error.line for error in self.errors}


def neutralise_cell(value: str) -> str:
    """A cell safe to open in a spreadsheet: a leading formula character is escaped with a quote."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def decode(data: bytes) -> str:
    """The text of an upload: UTF-8 with or without a BOM, or a refusal naming the first bad line."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise RosterFileRejected("the file is UTF-16, not UTF-8: re-save it as 'CSV UTF-8'", code="not_utf8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RosterFileRejected(
            f"line {line}: not UTF-8; the file is not UTF-8: re-save it as 'CSV UTF-8'",
            code="not_utf8",
            line=line,
        ) from None
    if "\x00" in text:
        raise RosterFileRejected("the file contains NUL bytes: it is not a CSV text file", code="not_csv")
    return text


def _delimiter(header_line: str, expected: tuple[str, ...]) -> str:
    """Comma or semicolon: whichever splits the header into more of the expected column names."""

    def known(delimiter: str) -> int:
        try:
            cells = next(csv.reader([header_line], delimiter=delimiter), [])
        except csv.Error:
            return 0
        return sum(cell.strip().lower() in expected for cell in cells)

    return ";" if known(";") > known(",") else ","


def _header(cells: list[str], kind: RosterKind) -> list[str]:
    names = [cell.strip().lower() for cell in cells]
    expected = HEADERS[kind]
    missing = [name for name in expected if name not in names]
    unknown = [name or "(empty)" for name in names if name not in expected]
    twice = sorted({name for name in names if names.count(name) > 1 and name in expected})
    problems = []
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    if unknown:
        problems.append("unknown columns: " + ", ".join(unknown))
    if twice:
        problems.append("columns given twice: " + ", ".join(twice))
    if problems:
        raise RosterFileRejected(
            f"line 1: {'; '.join(problems)}. A {kind.value} file has the columns " + ", ".join(expected),
            code="missing_columns" if missing else "unknown_columns",
            line=1,
        )
    return names


def read_rows(text: str, kind: RosterKind, report: Report) -> Iterator[Row]:
    """The data rows of a decoded file; row-shape problems go to ``report``, header problems raise."""
    first = LINE_BREAK.split(text[:65536], maxsplit=1)[0]
    if not first.strip():
        raise RosterFileRejected(
            f"the file is empty or starts with a blank line; line 1 must be the header: "
            f"{','.join(HEADERS[kind])}",
            code="empty_file",
            line=1,
        )
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_delimiter(first, HEADERS[kind]), strict=True
    )
    row_number = 0
    names: list[str] = []
    try:
        for cells in reader:
            row_number += 1
            if row_number == 1:
                names = _header(cells, kind)
                continue
            if not any(cell.strip() for cell in cells):
                continue  # a blank row, as spreadsheets often leave at the end
            if len(cells) != len(names):
                report.add(
                    row_number,
                    None,
                    f"has {len(cells)} cells but the header has {len(names)} columns",
                    "wrong_cell_count",
                )
                continue
            yield Row(row_number, dict(zip(names, cells, strict=True)))
    except csv.Error as exc:
        if row_number == 0:
            raise RosterFileRejected(
                f"line 1: the header is not valid CSV ({exc})", code="bad_csv", line=1
            ) from None
        report.add(row_number + 1, None, f"is not valid CSV ({exc}); nothing after it was read", "bad_csv")
    if row_number <= 1:
        raise RosterFileRejected("the file has a header but no data rows", code="no_rows", line=1)


class Cells:
    """Checks the cells of one row, noting every problem in the report; each getter returns None
    when its cell is invalid so the caller can go on checking the other cells."""

    def __init__(self, row: Row, report: Report, kind: RosterKind) -> None:
        self.row = row
        self.report = report
        self.kind = kind
        self.ok = True

    def fail(self, column: str, message: str, code: str) -> None:
        """Note a problem in one of this row's cells."""
        self.ok = False
        self.report.add(self.row.line, column, message, code)

    def raw(self, column: str) -> str | None:
        """The trimmed cell, or None (and a problem) when a required cell is empty."""
        value = self.row.cells[column].strip()
        if not value:
            if column not in OPTIONAL[self.kind]:
                self.fail(column, "is empty", "required")
            return None
        return value

    def text(self, column: str) -> str | None:
        """A free-text cell (reference, class, name, email): no formula, within its length."""
        cell = self.row.cells[column]
        if cell.startswith(FORMULA_STARTS) or cell.strip().startswith(FORMULA_STARTS[:4]):
            self.fail(column, "looks like a spreadsheet formula", "formula_injection")
            return None
        value = self.raw(column)
        if value is None:
            return None
        if any(ord(ch) < 32 for ch in value):
            self.fail(column, "contains a line break or control character", "control_character")
            return None
        limit = TEXT_LIMITS[column]
        if len(value) > limit:
            self.fail(column, f"is longer than {limit} characters", "too_long")
            return None
        return value

    def country(self) -> str | None:
        """An ISO 3166-1 alpha-2 code, upper-cased."""
        value = self.raw("country")
        if value is None:
            return None
        code = value.upper()
        if code not in COUNTRY_CODES:
            self.fail("country", "is not an ISO 3166-1 alpha-2 country code (e.g. BG)", "unknown_country")
            return None
        return code

    def school(self) -> str | None:
        """A school code: 2-32 upper-case letters, digits and hyphens."""
        value = self.raw("school")
        if value is None:
            return None
        code = value.upper()
        if not SCHOOL_CODE.match(code):
            self.fail("school", "is not a school code (2-32 letters, digits and hyphens)", "bad_school")
            return None
        return code

    def language(self) -> str | None:
        """An ISO 639-1 code, lower-cased."""
        value = self.raw("language")
        if value is None:
            return None
        code = value.lower()
        if code not in LANGUAGE_CODES:
            self.fail("language", "is not an ISO 639-1 language code (e.g. bg)", "unknown_language")
            return None
        return code

    def integer(self, column: str, low: int, high: int) -> int | None:
        """A whole number within ``[low, high]``."""
        value = self.raw(column)
        if value is None:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            self.fail(column, f"must be a whole number from {low} to {high}", "out_of_range")
            return None
        return int(value)

    def birth(self, today: date) -> tuple[int, int] | None:
        """Birth year and month: a real month, not in the future, age 3 to 25."""
        year = self.integer("birth_year", 1900, 2999)
        month = self.integer("birth_month", 1, 12)
        if year is None or month is None:
            return None
        problem = birth_problem(year, month, today)
        if problem is not None:
            self.fail("birth_month" if problem[1] == "birth_in_future" else "birth_year", *problem)
            return None
        return year, month

    def email(self) -> str | None:
        """One email address (None when the cell is empty and may be)."""
        value = self.text("email")
        if value is None:
            return None
        if not EMAIL.match(value):
            self.fail("email", "is not a valid email address", "bad_email")
            return None
        return value

    def choice(self, column: str, allowed: type[Delivery] | type[Relation]) -> str | None:
        """One of an enumeration's values, lower-cased."""
        value = self.raw(column)
        if value is None:
            return None
        code = value.lower()
        names = [member.value for member in allowed]
        if code not in names:
            self.fail(column, "must be one of: " + ", ".join(names), f"bad_{column}")
            return None
        return code


def birth_problem(year: int, month: int, today: date) -> tuple[str, str] | None:
    """Why a birth year and month is impossible for a student (message, code), or None."""
    if not 1 <= month <= 12:
        return "month must be 1 to 12", "out_of_range"
    if (year, month) > (today.year, today.month):
        return "the birth month is in the future", "birth_in_future"
    age = today.year - year - (1 if today.month < month else 0)
    if not MIN_AGE <= age <= MAX_AGE:
        return f"makes the student {age} years old; students are {MIN_AGE} to {MAX_AGE}", "implausible_age"
    return None
