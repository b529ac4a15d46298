"""The numbers behind the steward's dashboard: per school, how many were invited and opened their
invitation, and per purpose how many students are in each consent status, with a bar chart's
geometry (drawn as inline SVG by the template, so no script is needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, union
from sqlalchemy.orm import Session

from access.principal import Principal
from consent.decisions.models import Status
from consent.decisions.status import student_statuses
from consent.invitations.models import Invitation
from consent.rosters.models import Guardianship, Student, Teacher
from consent.scope import require_scope, scope_filter

STATUS_ORDER = (
    Status.granted,
    Status.declined,
    Status.withdrawn,
    Status.pending,
    Status.expired,
    Status.reconsent_required,
)
COLOURS = {
    # Each at least 3:1 against white (WCAG 1.4.11 for graphics); the numbers are also in the table.
    Status.granted: "#1d6b2f",
    Status.declined: "#a11b1b",
    Status.withdrawn: "#6f42c1",
    Status.pending: "#5a5a5a",
    Status.expired: "#8a5a00",
    Status.reconsent_required: "#0b5cad",
}
LABELS = {
    Status.granted: "granted",
    Status.declined: "declined",
    Status.withdrawn: "withdrawn",
    Status.pending: "pending",
    Status.expired: "expired",
    Status.reconsent_required: "re-consent required",
}
CHART_WIDTH = 600
BAR_WIDTH = 440
BAR_LEFT = 150
ROW_HEIGHT = 36
BAR_HEIGHT = 22


@dataclass(frozen=True)
class Segment:
    """One coloured part of a bar."""

    status: str
    label: str
    count: int
    x: float
    width: float
    colour: str


@dataclass(frozen=True)
class PurposeRow:
    """Counts of one purpose at one school, and its bar."""

    purpose: str
    counts: dict[str, int]
    total: int
    y: int
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class SchoolDashboard:
    """Everything the dashboard page shows for one school."""

    country: str
    school: str
    students: int
    teachers: int
    students_invited: int
    students_opened: int
    invitations: int
    invitations_opened: int
    rows: list[PurposeRow]
    at: datetime

    @property
    def chart_height(self) -> int:
        """Height of the SVG chart."""
        return max(len(self.rows), 1) * ROW_HEIGHT + 10


def schools_in_scope(session: Session, principal: Principal) -> list[tuple[str, str]]:
    """(country, school) pairs on the rosters the principal may see, sorted."""
    students = select(Student.country_code, Student.school_code).where(
        scope_filter(principal, Student.country_code, Student.school_code)
    )
    teachers = select(Teacher.country_code, Teacher.school_code).where(
        scope_filter(principal, Teacher.country_code, Teacher.school_code)
    )
    found = {(c, s) for c, s in session.execute(union(students, teachers)).all()}
    if principal.country is not None:
        found |= {(principal.country, school) for school in principal.schools}
    return sorted(found)


def school_dashboard(
    session: Session, principal: Principal, country: str, school: str, *, at: datetime | None = None
) -> SchoolDashboard:
    """The dashboard of one school in the principal's scope (Forbidden otherwise)."""
    require_scope(principal, country, school)
    moment = at or datetime.now(UTC)
    students = list(
        session.execute(
            select(Student.id, Student.subject_id).where(
                Student.country_code == country, Student.school_code == school, Student.erased_at.is_(None)
            )
        ).all()
    )
    teachers = session.execute(
        select(Teacher.id).where(
            Teacher.country_code == country, Teacher.school_code == school, Teacher.erased_at.is_(None)
        )
    ).all()
    invitations = list(
        session.execute(
            select(Invitation).where(Invitation.country_code == country, Invitation.school_code == school)
        ).scalars()
    )
    invited, opened = _students_reached(session, invitations)
    table = student_statuses(session, [subject for _, subject in students], at=moment)
    rows = []
    for index, purpose in enumerate(table.purposes):
        counts = {status.value: 0 for status in STATUS_ORDER}
        for row in table.rows.values():
            counts[row[purpose].value] = counts.get(row[purpose].value, 0) + 1
        rows.append(_bar(purpose, counts, index))
    return SchoolDashboard(
        country=country,
        school=school,
        students=len(students),
        teachers=len(teachers),
        students_invited=len(invited & {sid for sid, _ in students}),
        students_opened=len(opened & {sid for sid, _ in students}),
        invitations=len(invitations),
        invitations_opened=sum(1 for i in invitations if i.opened_at is not None),
        rows=rows,
        at=moment,
    )


def _students_reached(session: Session, invitations: list[Invitation]) -> tuple[set[int], set[int]]:
    """Students whose own or whose guardian's invitation was sent, and those where one was opened."""
    invited = {i.student_id for i in invitations if i.student_id is not None}
    opened = {i.student_id for i in invitations if i.student_id is not None and i.opened_at is not None}
    guardian_ids = {i.guardian_id for i in invitations if i.guardian_id is not None}
    opened_guardians = {i.guardian_id for i in invitations if i.guardian_id is not None and i.opened_at}
    if guardian_ids:
        for student_id, guardian_id in session.execute(
            select(Guardianship.student_id, Guardianship.guardian_id).where(
                Guardianship.guardian_id.in_(guardian_ids)
            )
        ).all():
            invited.add(student_id)
            if guardian_id in opened_guardians:
                opened.add(student_id)
    return invited, opened


def _bar(purpose: str, counts: dict[str, int], index: int) -> PurposeRow:
    total = sum(counts.values())
    segments = []
    x = float(BAR_LEFT)
    for status in STATUS_ORDER:
        count = counts.get(status.value, 0)
        if count == 0 or total == 0:
            continue
        width = BAR_WIDTH * count / total
        segments.append(
            Segment(status.value, LABELS[status], count, round(x, 2), round(width, 2), COLOURS[status])
        )
        x += width
    return PurposeRow(purpose, counts, total, index * ROW_HEIGHT + 5, segments)
