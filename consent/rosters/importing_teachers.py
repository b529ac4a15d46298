"""Import of teachers: recognised on re-import by the blind index of their email address."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.orm import Session

from access.principal import Principal
from consent.identity import IdentityField, IdentityProtector, normalise_email
from consent.rosters import repository
from consent.rosters.csv_format import Cells, Report, RosterKind, Row
from consent.rosters.importing import (
    ImportResult,
    check_scope,
    finish,
    pin_identity_keys,
    raise_if_errors,
    read_file,
    steward_country,
    utc_now,
)
from consent.rosters.models import Teacher
from consent.scope import in_scope


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
        check_scope(cells, principal, country, school)
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
    steward_country(principal)
    rows, report = read_file(data, RosterKind.teachers)
    pin_identity_keys(session, protector)
    lines = _teacher_lines(session, principal, protector, rows, report)
    existing = repository.teachers_by_email_index(session, {line.email_index for line in lines})
    for line in lines:
        known = existing.get(line.email_index)
        if known is not None and not in_scope(principal, known.country_code, known.school_code):
            line.cells.fail(
                "email", "belongs to a teacher outside your scope: ask the DPO", "teacher_outside_scope"
            )
    raise_if_errors(report)
    stamp = utc_now()
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
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            )
            continue
        name = protector.decrypt(session, IdentityField.teacher_name, teacher.name_ciphertext)
        if (name, teacher.school_code, teacher.language) == (line.name, line.school, line.language):
            continue
        updated += 1
        if not dry_run:
            teacher.name_ciphertext = protector.encrypt(session, IdentityField.teacher_name, line.name)
            teacher.school_code, teacher.language, teacher.updated_at = line.school, line.language, stamp
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
    return finish(session, principal, result)
