"""CSV imports of rosters: all rows valid, or nothing written. Students here; guardians and
teachers in ``importing_guardians`` and ``importing_teachers``, on the same helpers.

Each import checks every row (see ``consent.rosters.csv_format``), then looks up what is already
on the roster in one query per 10,000 rows and writes in bulk, in the caller's transaction. A row
for someone already on the roster updates them ("upsert"): a student is recognised by the blind
index of country, school and pupil reference; a guardian by email address (or name and student
when there is no email); a teacher by email address. The result says how many were created,
updated or left unchanged. One ledger entry per import records the kind, the counts and the
file's SHA-256, never a name or a reference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, Sha256Hex, register_action
from access.audit.service import record
from access.principal import Principal
from consent.identity import IdentityField, IdentityProtector
from consent.rosters import repository
from consent.rosters.csv_format import (
    MAX_FILE_BYTES,
    MAX_REPORTED_ERRORS,
    Cells,
    Report,
    RosterKind,
    Row,
    decode,
    read_rows,
)
from consent.rosters.exceptions import RosterFileTooLarge, RosterLinesRejected
from consent.rosters.models import (
    IdentityKey,
    Student,
)
from consent.scope import in_scope
from infra.errors import Forbidden
from infra.logging import get_logger

log = get_logger(__name__)


class RosterImportedDetails(Details):
    """Ledger details of an import: kind, country, counts and the file's hash."""

    kind: RosterKind
    country: Identifier
    rows: int
    created: int
    updated: int
    unchanged: int
    links_created: int | None = None
    file_sha256: Sha256Hex


ROSTER_IMPORTED = register_action("consent.roster_imported", RosterImportedDetails)


@dataclass(frozen=True)
class ImportResult:
    """What an import did (or, for a dry run, would do)."""

    kind: RosterKind
    rows: int
    created: int
    updated: int
    unchanged: int
    file_sha256: str
    dry_run: bool
    links_created: int | None = None


def utc_today() -> date:
    """Today in UTC: birth months are checked against it."""
    return datetime.now(UTC).date()


def utc_now() -> datetime:
    """The current time in UTC, for created and updated stamps."""
    return datetime.now(UTC)


def steward_country(principal: Principal) -> str:
    """The importing steward's country; Forbidden when their account has none."""
    if principal.country is None:
        raise Forbidden(
            "your account has no country, so you may import nothing: ask an admin to set it",
            extra={"reason": "no_country"},
        )
    return principal.country


def pin_identity_keys(session: Session, protector: IdentityProtector) -> None:
    """Keep the identity key rows referenced for the session's life.

    The protector caches unwrapped keys but reads the key row through ``session.get`` on every
    call; the session's identity map holds rows weakly, so without a reference each of 36,000
    encryptions and look-ups would query the row again.
    """
    protector.blind_index(session, IdentityField.student_ref, "")  # creates the keys on first use
    protector.encrypt(session, IdentityField.student_ref, "")
    session.info["consent.identity_keys"] = session.scalars(select(IdentityKey)).all()


def read_file(data: bytes, kind: RosterKind) -> tuple[list[Row], Report]:
    """The data rows of an upload and the report collecting their problems (size, encoding and
    header problems raise at once)."""
    if len(data) > MAX_FILE_BYTES:
        raise RosterFileTooLarge(MAX_FILE_BYTES)
    report = Report()
    rows = list(read_rows(decode(data), kind, report))
    return rows, report


def raise_if_errors(report: Report) -> None:
    """Reject the whole file, listing every problem, when any row has one."""
    if report.errors:
        raise RosterLinesRejected(report.errors, limit=MAX_REPORTED_ERRORS)


def check_scope(cells: Cells, principal: Principal, country: str | None, school: str | None) -> None:
    """Note an ``outside_scope`` problem when the row's country or school is not the steward's."""
    if country is None or school is None:
        return
    if not in_scope(principal, country):
        cells.fail("country", f"{country} is outside your scope ({principal.country})", "outside_scope")
    elif not in_scope(principal, country, school):
        cells.fail("school", f"{school} is outside your scope (not one of your schools)", "outside_scope")


def finish(
    session: Session,
    principal: Principal,
    result: ImportResult,
) -> ImportResult:
    """Record a real import in the ledger (kind, counts, file hash) and log it; dry runs pass through."""
    if result.dry_run:
        return result
    record(
        session,
        principal.actor,
        ROSTER_IMPORTED,
        target_type=f"roster_{result.kind.value}",
        details=RosterImportedDetails(
            kind=result.kind,
            country=steward_country(principal),
            rows=result.rows,
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged,
            links_created=result.links_created,
            file_sha256=result.file_sha256,
        ),
    )
    log.info(
        "consent.roster_imported",
        kind=result.kind.value,
        rows=result.rows,
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
    )
    return result


def student_ref_index(
    session: Session, protector: IdentityProtector, country: str, school: str, ref: str
) -> str:
    """The blind index a student is found by: country, school and the school's pupil reference."""
    return protector.blind_index(session, IdentityField.student_ref, f"{country}/{school}/{ref}")


# -- students ---------------------------------------------------------------------------------


@dataclass
class _StudentLine:
    line: int
    ref: str
    country: str
    school: str
    values: dict[str, int | str]


def _student_lines(principal: Principal, rows: list[Row], report: Report, today: date) -> list[_StudentLine]:
    lines: list[_StudentLine] = []
    first_seen: dict[tuple[str, str, str], int] = {}
    for row in rows:
        cells = Cells(row, report, RosterKind.students)
        ref, country, school = cells.text("student_ref"), cells.country(), cells.school()
        stage, class_name = cells.integer("stage", 1, 4), cells.text("class")
        language, birth = cells.language(), cells.birth(today)
        check_scope(cells, principal, country, school)
        if ref is not None and country is not None and school is not None:
            key = (country, school, ref)
            if key in first_seen:
                cells.fail(
                    "student_ref",
                    f"the same student (school and reference) is already on row {first_seen[key]}",
                    "duplicate_student",
                )
            else:
                first_seen[key] = row.line
        if not cells.ok:
            continue
        assert ref and country and school and stage and class_name and language and birth  # noqa: PT018
        values: dict[str, int | str] = {
            "stage": stage,
            "class_name": class_name,
            "language": language,
            "birth_year": birth[0],
            "birth_month": birth[1],
        }
        lines.append(_StudentLine(row.line, ref, country, school, values))
    return lines


def import_students(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    data: bytes,
    *,
    dry_run: bool = False,
    today: date | None = None,
) -> ImportResult:
    """Import a students CSV: new students are created, known ones get their stage, class,
    language and birth month updated. Any invalid row rejects the whole file (422, every row listed)."""
    steward_country(principal)
    rows, report = read_file(data, RosterKind.students)
    pin_identity_keys(session, protector)
    lines = _student_lines(principal, rows, report, today or utc_today())
    raise_if_errors(report)
    indexed = {student_ref_index(session, protector, s.country, s.school, s.ref): s for s in lines}
    existing = repository.students_by_ref_index(session, principal, indexed)
    stamp = utc_now()
    inserts: list[dict[str, object]] = []
    updates: list[dict[str, object]] = []
    for index, line in indexed.items():
        student = existing.get(index)
        if student is None:
            inserts.append(
                {
                    "ref_index": index,
                    "ref_ciphertext": protector.encrypt(session, IdentityField.student_ref, line.ref),
                    "country_code": line.country,
                    "school_code": line.school,
                    "created_at": stamp,
                    "updated_at": stamp,
                    **line.values,
                }
            )
        elif any(getattr(student, name) != value for name, value in line.values.items()):
            updates.append({"id": student.id, "updated_at": stamp, **line.values})
    if not dry_run:
        if inserts:
            session.execute(insert(Student), inserts)
        if updates:
            session.execute(update(Student), updates)
        session.flush()
    result = ImportResult(
        kind=RosterKind.students,
        rows=len(lines),
        created=len(inserts),
        updated=len(updates),
        unchanged=len(lines) - len(inserts) - len(updates),
        file_sha256=hashlib.sha256(data).hexdigest(),
        dry_run=dry_run,
    )
    return finish(session, principal, result)
