"""Import of guardians: one row per guardian-student link, for students already on the roster.

A guardian listed for several siblings is stored once: recognised by the blind index of their
email address within the steward's country, or, without an email, by name and student. A known
guardian gets their name, email, delivery and language updated; links get their relation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import insert
from sqlalchemy.orm import Session

from access.principal import Principal
from consent.decisions import status_cache
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
    student_ref_index,
    utc_now,
)
from consent.rosters.models import Delivery, Guardian, Guardianship, Relation, Student


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
        check_scope(cells, principal, country, school)
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
    guardian.delivery, guardian.language, guardian.updated_at = line.delivery, line.language, utc_now()


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
    country = steward_country(principal)
    rows, report = read_file(data, RosterKind.guardians)
    pin_identity_keys(session, protector)
    lines = _guardian_cells(session, principal, protector, country=country, rows=rows, report=report)
    students = repository.students_by_ref_index(session, principal, {line.student_index for line in lines})
    _check_guardian_lines(lines, students)
    raise_if_errors(report)
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
    return finish(session, principal, result)


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
        session.execute(insert(Guardianship), [{**row, "created_at": utc_now()} for row in rows])
        session.flush()
        # A new guardian can change a status (all guardians must consent under some rules).
        status_cache.invalidate(session, sorted({int(str(row["student_id"])) for row in rows}))
    return len(rows)
