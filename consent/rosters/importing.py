"""CSV imports of students, guardians and teachers: all rows valid, or nothing written.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, Sha256Hex, register_action
from access.audit.service import record
from access.principal import Principal
from consent.identity import IdentityField, IdentityProtector, normalise_email
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
    Delivery,
    Guardian,
    Guardianship,
    IdentityKey,
    Relation,
    Student,
    Teacher,
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


def _now() -> datetime:
    return datetime.now(UTC)


def _steward_country(principal: Principal) -> str:
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


def _read(data: bytes, kind: RosterKind) -> tuple[list[Row], Report]:
    if len(data) > MAX_FILE_BYTES:
        raise RosterFileTooLarge(MAX_FILE_BYTES)
    report = Report()
    rows = list(read_rows(decode(data), kind, report))
    return rows, report


def _raise_if_errors(report: Report) -> None:
    if report.errors:
        raise RosterLinesRejected(report.errors, limit=MAX_REPORTED_ERRORS)


def _check_scope(cells: Cells, principal: Principal, country: str | None, school: str | None) -> None:
    if country is None or school is None:
        return
    if not in_scope(principal, country):
        cells.fail("country", f"{country} is outside your scope ({principal.country})", "outside_scope")
    elif not in_scope(principal, country, school):
        cells.fail("school", f"{school} is outside your scope (not one of your schools)", "outside_scope")


def _finish(
    session: Session,
    principal: Principal,
    result: ImportResult,
) -> ImportResult:
    if result.dry_run:
        return result
    record(
        session,
        principal.actor,
        ROSTER_IMPORTED,
        target_type=f"roster_{result.kind.value}",
        details=RosterImportedDetails(
            kind=result.kind,
            country=_steward_country(principal),
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
        _check_scope(cells, principal, country, school)
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
    _steward_country(principal)
    rows, report = _read(data, RosterKind.students)
    pin_identity_keys(session, protector)
    lines = _student_lines(principal, rows, report, today or utc_today())
    _raise_if_errors(report)
    indexed = {student_ref_index(session, protector, s.country, s.school, s.ref): s for s in lines}
    existing = repository.students_by_ref_index(session, principal, indexed)
    now = _now()
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
                    "created_at": now,
                    "updated_at": now,
                    **line.values,
                }
            )
        elif any(getattr(student, name) != value for name, value in line.values.items()):
            updates.append({"id": student.id, "updated_at": now, **line.values})
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
    return _finish(session, principal, result)


# -- guardians --------------------------------------------------------------------------------


@dataclass
class _GuardianLine:
    line: int
    student_index: str
    name: str
    email: str | None
    email_index: str | None
    delivery: str
    language: str
    relation: str
    cells: Cells
    student: Student | None = None


def _guardian_cells(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    *,
    country: str,
    rows: list[Row],
    report: Report,
) -> list[_GuardianLine]:
    lines: list[_GuardianLine] = []
    for row in rows:
        cells = Cells(row, report, RosterKind.guardians)
        ref, school, name = cells.text("student_ref"), cells.school(), cells.text("name")
        email, delivery = cells.email(), cells.choice("delivery", Delivery)
        language, relation = cells.language(), cells.choice("relation", Relation)
        if delivery == Delivery.email and not row.cells["email"].strip():
            cells.fail("email", "is needed when delivery is email", "email_required")
        _check_scope(cells, principal, country, school)
        if not cells.ok:
            continue
        assert ref and school and name and delivery and language and relation  # noqa: PT018
        lines.append(
            _GuardianLine(
                line=row.line,
                student_index=student_ref_index(session, protector, country, school, ref),
                name=name,
                email=email,
                email_index=(
                    protector.blind_index(session, IdentityField.guardian_email, normalise_email(email))
                    if email
                    else None
                ),
                delivery=delivery,
                language=language,
                relation=relation,
                cells=cells,
            )
        )
    return lines


def _check_guardian_lines(lines: list[_GuardianLine], students: dict[str, Student]) -> None:
    links: dict[tuple[str, str], int] = {}
    by_email: dict[str, _GuardianLine] = {}
    for line in lines:
        line.student = students.get(line.student_index)
        if line.student is None:
            line.cells.fail(
                "student_ref",
                "no student with this reference at this school in your scope: import the students first",
                "unknown_student",
            )
            continue
        who = line.email_index or "name:" + line.name.casefold()
        key = (line.student_index, who)
        if key in links:
            line.cells.fail(
                "name",
                f"the same guardian is already listed for this student on row {links[key]}",
                "duplicate",
            )
            continue
        links[key] = line.line
        if line.email_index is None:
            continue
        first = by_email.setdefault(line.email_index, line)
        for column, mine, theirs in (
            ("name", line.name, first.name),
            ("delivery", line.delivery, first.delivery),
            ("language", line.language, first.language),
        ):
            if mine != theirs:
                line.cells.fail(
                    column,
                    f"row {first.line} gives the same email a different {column}",
                    "conflicting_guardian",
                )


def _no_email_guardians(
    session: Session, protector: IdentityProtector, student_ids: Iterable[int]
) -> tuple[dict[tuple[int, str], Guardian], dict[tuple[int, int], Guardianship]]:
    """Guardians without email by (student id, name), and every existing link of these students."""
    by_name: dict[tuple[int, str], Guardian] = {}
    links: dict[tuple[int, int], Guardianship] = {}
    for link, guardian in repository.guardians_of(session, student_ids):
        links[(link.student_id, link.guardian_id)] = link
        if guardian.email_index is None and guardian.erased_at is None:
            name = protector.decrypt(session, IdentityField.guardian_name, guardian.name_ciphertext)
            by_name.setdefault((link.student_id, name.casefold()), guardian)
    return by_name, links


@dataclass
class _GuardianCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    seen: set[int] = field(default_factory=set)


def _apply_guardian(
    session: Session,
    protector: IdentityProtector,
    guardian: Guardian,
    line: _GuardianLine,
    counts: _GuardianCounts,
    *,
    dry_run: bool,
) -> None:
    if id(guardian) in counts.seen:
        return
    counts.seen.add(id(guardian))
    new_name = protector.decrypt(session, IdentityField.guardian_name, guardian.name_ciphertext) != line.name
    new_email = bool(line.email) and guardian.email_index != line.email_index
    changed = (
        new_name or new_email or (guardian.delivery, guardian.language) != (line.delivery, line.language)
    )
    if not changed:
        counts.unchanged += 1
        return
    counts.updated += 1
    if dry_run:
        return
    if new_name:
        guardian.name_ciphertext = protector.encrypt(session, IdentityField.guardian_name, line.name)
    if new_email and line.email:
        guardian.email_ciphertext = protector.encrypt(session, IdentityField.guardian_email, line.email)
        guardian.email_index = line.email_index
    guardian.delivery, guardian.language, guardian.updated_at = line.delivery, line.language, _now()


def import_guardians(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    data: bytes,
    *,
    dry_run: bool = False,
) -> ImportResult:
    """Import a guardians CSV (one row per guardian-student link) for students already on the roster
    of the steward's country. A guardian listed for siblings is stored once. All rows valid or none."""
    country = _steward_country(principal)
    rows, report = _read(data, RosterKind.guardians)
    pin_identity_keys(session, protector)
    lines = _guardian_cells(session, principal, protector, country=country, rows=rows, report=report)
    students = repository.students_by_ref_index(session, principal, {line.student_index for line in lines})
    _check_guardian_lines(lines, students)
    _raise_if_errors(report)
    by_email = repository.guardians_by_email_index(
        session, country, {line.email_index for line in lines if line.email_index}
    )
    by_name, links = _no_email_guardians(session, protector, {s.id for s in students.values()})
    counts = _GuardianCounts()
    new_links: list[tuple[Guardian, Student, str]] = []
    for line in lines:
        assert line.student is not None
        name_key = (line.student.id, line.name.casefold())
        guardian = (by_email.get(line.email_index) if line.email_index else None) or by_name.get(name_key)
        if guardian is None:
            guardian = Guardian(
                country_code=country,
                name_ciphertext=protector.encrypt(session, IdentityField.guardian_name, line.name),
                email_ciphertext=(
                    protector.encrypt(session, IdentityField.guardian_email, line.email)
                    if line.email
                    else None
                ),
                email_index=line.email_index,
                delivery=line.delivery,
                language=line.language,
            )
            counts.seen.add(id(guardian))
            counts.created += 1
            if not dry_run:
                session.add(guardian)
        else:
            _apply_guardian(session, protector, guardian, line, counts, dry_run=dry_run)
        if line.email_index:
            by_email[line.email_index] = guardian
        else:
            by_name[name_key] = guardian
        new_links.append((guardian, line.student, line.relation))
    links_created = _link(session, new_links, links, dry_run=dry_run)
    result = ImportResult(
        kind=RosterKind.guardians,
        rows=len(lines),
        created=counts.created,
        updated=counts.updated,
        unchanged=counts.unchanged,
        links_created=links_created,
        file_sha256=hashlib.sha256(data).hexdigest(),
        dry_run=dry_run,
    )
    return _finish(session, principal, result)


def _link(
    session: Session,
    wanted: list[tuple[Guardian, Student, str]],
    existing: dict[tuple[int, int], Guardianship],
    *,
    dry_run: bool,
) -> int:
    if not dry_run:
        session.flush()  # new guardians get their ids
    rows: list[dict[str, object]] = []
    for guardian, student, relation in wanted:
        link = existing.get((student.id, guardian.id)) if guardian.id is not None else None
        if link is None:
            rows.append({"student_id": student.id, "guardian_id": guardian.id, "relation": relation})
        elif link.relation != relation and not dry_run:
            link.relation = relation
    if rows and not dry_run:
        session.execute(insert(Guardianship), [{**row, "created_at": _now()} for row in rows])
        session.flush()
    return len(rows)


# -- teachers ---------------------------------------------------------------------------------


@dataclass
class _TeacherLine:
    line: int
    name: str
    email: str
    email_index: str
    country: str
    school: str
    language: str
    cells: Cells


def _teacher_lines(
    session: Session, principal: Principal, protector: IdentityProtector, rows: list[Row], report: Report
) -> list[_TeacherLine]:
    lines: list[_TeacherLine] = []
    first_seen: dict[str, int] = {}
    for row in rows:
        cells = Cells(row, report, RosterKind.teachers)
        name, email = cells.text("name"), cells.email()
        country, school, language = cells.country(), cells.school(), cells.language()
        _check_scope(cells, principal, country, school)
        index = None
        if email is not None:
            index = protector.blind_index(session, IdentityField.teacher_email, normalise_email(email))
            if index in first_seen:
                cells.fail(
                    "email", f"the same teacher (email) is already on row {first_seen[index]}", "duplicate"
                )
            else:
                first_seen[index] = row.line
        if not cells.ok:
            continue
        assert name and email and index and country and school and language  # noqa: PT018
        lines.append(_TeacherLine(row.line, name, email, index, country, school, language, cells))
    return lines


def import_teachers(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    data: bytes,
    *,
    dry_run: bool = False,
) -> ImportResult:
    """Import a teachers CSV: teachers are recognised by email address; new ones are created,
    known ones get their name, school and language updated. All rows valid or none."""
    _steward_country(principal)
    rows, report = _read(data, RosterKind.teachers)
    pin_identity_keys(session, protector)
    lines = _teacher_lines(session, principal, protector, rows, report)
    existing = repository.teachers_by_email_index(session, {line.email_index for line in lines})
    for line in lines:
        known = existing.get(line.email_index)
        if known is not None and not in_scope(principal, known.country_code, known.school_code):
            line.cells.fail(
                "email", "belongs to a teacher outside your scope: ask the DPO", "teacher_outside_scope"
            )
    _raise_if_errors(report)
    now = _now()
    inserts: list[dict[str, object]] = []
    updated = 0
    for line in lines:
        teacher = existing.get(line.email_index)
        if teacher is None:
            inserts.append(
                {
                    "email_index": line.email_index,
                    "name_ciphertext": protector.encrypt(session, IdentityField.teacher_name, line.name),
                    "email_ciphertext": protector.encrypt(session, IdentityField.teacher_email, line.email),
                    "country_code": line.country,
                    "school_code": line.school,
                    "language": line.language,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            continue
        name = protector.decrypt(session, IdentityField.teacher_name, teacher.name_ciphertext)
        if (name, teacher.school_code, teacher.language) == (line.name, line.school, line.language):
            continue
        updated += 1
        if not dry_run:
            teacher.name_ciphertext = protector.encrypt(session, IdentityField.teacher_name, line.name)
            teacher.school_code, teacher.language, teacher.updated_at = line.school, line.language, now
    if inserts and not dry_run:
        session.execute(insert(Teacher), inserts)
    session.flush()
    result = ImportResult(
        kind=RosterKind.teachers,
        rows=len(lines),
        created=len(inserts),
        updated=updated,
        unchanged=len(lines) - len(inserts) - updated,
        file_sha256=hashlib.sha256(data).hexdigest(),
        dry_run=dry_run,
    )
    return _finish(session, principal, result)
