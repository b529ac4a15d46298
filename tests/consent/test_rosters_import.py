"""CSV imports of rosters: every bad row reported, all or nothing, upserts, dedupe, no clear identities."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import func, select, text

from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.principal import Principal
from consent.identity import IdentityField, normalise_email
from consent.rosters import importing, importing_guardians, importing_teachers
from consent.rosters.csv_format import HEADERS, MAX_FILE_BYTES, RosterKind, neutralise_cell
from consent.rosters.exceptions import RosterFileRejected, RosterFileTooLarge, RosterLinesRejected
from consent.rosters.models import Guardian, Guardianship, Student, Teacher
from tests.support.consent import make_student
from tests.support.projects import make_principal

TODAY = date(2026, 11, 23)
STUDENT = {
    "student_ref": "P-0001",
    "country": "BG",
    "school": "BG-SOF-001",
    "stage": "2",
    "class": "7A",
    "language": "bg",
    "birth_year": "2012",
    "birth_month": "6",
}


def steward(session, country: str | None = "BG", schools: tuple[str, ...] = ()) -> Principal:
    base = make_principal(session, Role.data_steward)
    return replace(base, country=country, schools=frozenset(schools))


def to_csv(kind: RosterKind, rows: list[dict[str, str]], *, delimiter: str = ",", bom: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADERS[kind], delimiter=delimiter, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


def students(*overrides: dict[str, str]) -> bytes:
    return to_csv(RosterKind.students, [{**STUDENT, **o} for o in overrides])


def numbered(count: int, **fields: str) -> list[dict[str, str]]:
    return [{"student_ref": f"P-{n:05d}", **fields} for n in range(count)]


def import_students(session, protector, principal, data: bytes, **kwargs):
    return importing.import_students(session, principal, protector, data, today=TODAY, **kwargs)


def rejected(call) -> list[dict[str, object]]:
    with pytest.raises(RosterLinesRejected) as caught:
        call()
    return [e.as_dict() for e in caught.value.errors]


def student_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Student)) or 0


def ledger(session, action: str) -> list[AuditEntry]:
    session.commit()
    return list(
        session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq))
    )


GUARDIAN = {
    "student_ref": "P-0001",
    "school": "BG-SOF-001",
    "name": "Maria Ivanova",
    "email": "maria.ivanova@family.example.org",
    "delivery": "email",
    "language": "bg",
    "relation": "mother",
}


def guardians(*overrides: dict[str, str]) -> bytes:
    return to_csv(RosterKind.guardians, [{**GUARDIAN, **o} for o in overrides])


TEACHER = {
    "name": "Petar Georgiev",
    "email": "petar.georgiev@school.example.org",
    "country": "BG",
    "school": "BG-SOF-001",
    "language": "bg",
}


def teachers(*overrides: dict[str, str]) -> bytes:
    return to_csv(RosterKind.teachers, [{**TEACHER, **o} for o in overrides])


# -- students ---------------------------------------------------------------------------------


def test_a_students_file_creates_students_and_reports_counts(db_session, protector):
    result = import_students(
        db_session, protector, steward(db_session), students({}, {"student_ref": "P-0002"})
    )
    assert (result.rows, result.created, result.updated, result.unchanged) == (2, 2, 0, 0)
    stored = db_session.scalars(select(Student).order_by(Student.id)).all()
    assert [(s.school_code, s.stage, s.class_name, s.birth_year, s.birth_month) for s in stored] == [
        ("BG-SOF-001", 2, "7A", 2012, 6)
    ] * 2
    refs = {protector.decrypt(db_session, IdentityField.student_ref, s.ref_ciphertext) for s in stored}
    assert refs == {"P-0001", "P-0002"}


def test_student_ref_index_matches_the_factory_format(db_session, protector):
    made = make_student(db_session, protector, ref="P-0001")
    result = import_students(db_session, protector, steward(db_session), students({"stage": "3"}))
    assert (result.created, result.updated) == (0, 1)
    db_session.refresh(made)
    assert made.stage == 3


def test_reimport_updates_changed_students_and_counts_the_unchanged(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({}, {"student_ref": "P-0002"}))
    again = import_students(
        db_session,
        protector,
        principal,
        students({"class": "8B", "stage": "3"}, {"student_ref": "P-0002"}, {"student_ref": "P-0003"}),
    )
    assert (again.created, again.updated, again.unchanged) == (1, 1, 1)
    assert student_count(db_session) == 3
    classes = db_session.scalars(select(Student.class_name).order_by(Student.id)).all()
    assert classes == ["8B", "7A", "7A"]


def test_one_bad_row_among_100_imports_nothing(db_session, protector):
    rows = [{**STUDENT, **row} for row in numbered(100)]
    rows[57]["birth_month"] = "13"
    errors = rejected(
        lambda: import_students(db_session, protector, steward(db_session), to_csv(RosterKind.students, rows))
    )
    assert errors == [
        {
            "line": 59,
            "column": "birth_month",
            "message": "must be a whole number from 1 to 12",
            "type": "out_of_range",
        }
    ]
    assert student_count(db_session) == 0


def test_every_bad_row_is_reported_not_just_the_first(db_session, protector):
    data = students(
        {"country": "XX"},
        {"student_ref": "P-2", "stage": "5"},
        {"student_ref": "P-3"},
        {"student_ref": "P-4", "language": "bulgarian", "school": "bad school!"},
    )
    errors = rejected(lambda: import_students(db_session, protector, steward(db_session), data))
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [
        (2, "country", "unknown_country"),
        (3, "stage", "out_of_range"),
        (5, "school", "bad_school"),
        (5, "language", "unknown_language"),
    ]


def test_row_numbers_are_spreadsheet_rows_with_a_bom_and_a_quoted_line_break(db_session, protector):
    rows = [{**STUDENT, **row} for row in numbered(3)]
    rows[0]["class"] = "7A\nsecond line"
    rows[2]["stage"] = "9"
    data = to_csv(RosterKind.students, rows, bom=True)
    errors = rejected(lambda: import_students(db_session, protector, steward(db_session), data))
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [
        (2, "class", "control_character"),
        (4, "stage", "out_of_range"),
    ]


def test_a_file_with_a_bom_imports(db_session, protector):
    data = to_csv(RosterKind.students, [STUDENT], bom=True)
    assert import_students(db_session, protector, steward(db_session), data).created == 1


def test_a_semicolon_separated_file_imports(db_session, protector):
    data = to_csv(
        RosterKind.students, [STUDENT, {**STUDENT, "student_ref": "P-0002"}], delimiter=";", bom=True
    )
    result = import_students(db_session, protector, steward(db_session), data)
    assert result.created == 2


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(db_session, protector):
    data = students({}, {"student_ref": "P-0002", "class": "7Б"}).decode().encode("cp1251")
    with pytest.raises(RosterFileRejected) as caught:
        import_students(db_session, protector, steward(db_session), data)
    assert caught.value.code == "not_utf8"
    assert caught.value.detail.startswith("line 3: not UTF-8")
    assert "re-save it as 'CSV UTF-8'" in caught.value.detail


def test_a_utf16_file_is_refused(db_session, protector):
    data = students({}).decode().encode("utf-16")
    with pytest.raises(RosterFileRejected, match="UTF-16"):
        import_students(db_session, protector, steward(db_session), data)


def test_missing_columns_are_named(db_session, protector):
    data = b"student_ref,country,school,stage,class\r\nP-1,BG,BG-SOF-001,2,7A\r\n"
    with pytest.raises(RosterFileRejected) as caught:
        import_students(db_session, protector, steward(db_session), data)
    assert caught.value.code == "missing_columns"
    assert "missing columns: language, birth_year, birth_month" in caught.value.detail


def test_unknown_columns_are_named(db_session, protector):
    header = ",".join([*HEADERS[RosterKind.students], "surname"])
    data = f"{header}\r\nP-1,BG,BG-SOF-001,2,7A,bg,2012,6,Ivanova\r\n".encode()
    with pytest.raises(RosterFileRejected) as caught:
        import_students(db_session, protector, steward(db_session), data)
    assert caught.value.code == "unknown_columns"
    assert "unknown columns: surname" in caught.value.detail


def test_columns_may_come_in_any_order_and_case(db_session, protector):
    data = (
        b"Birth_Month;BIRTH_YEAR;language;class;stage;school;country;student_ref\r\n"
        b"6;2012;bg;7A;2;BG-SOF-001;BG;P-1\r\n"
    )
    assert import_students(db_session, protector, steward(db_session), data).created == 1


def test_a_row_with_the_wrong_number_of_cells_is_reported(db_session, protector):
    data = students({}) + b"P-0002,BG,BG-SOF-001,2\r\n"
    errors = rejected(lambda: import_students(db_session, protector, steward(db_session), data))
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [(3, None, "wrong_cell_count")]


def test_an_empty_file_or_a_header_alone_is_refused(db_session, protector):
    with pytest.raises(RosterFileRejected, match="empty"):
        import_students(db_session, protector, steward(db_session), b"")
    with pytest.raises(RosterFileRejected, match="no data rows"):
        import_students(db_session, protector, steward(db_session), to_csv(RosterKind.students, []))


def test_a_duplicate_student_is_reported_on_the_second_row_naming_the_first(db_session, protector):
    data = students({}, {"student_ref": "P-0002"}, {"class": "7B"})
    errors = rejected(lambda: import_students(db_session, protector, steward(db_session), data))
    assert len(errors) == 1
    assert (errors[0]["line"], errors[0]["type"]) == (4, "duplicate_student")
    assert "already on row 2" in str(errors[0]["message"])


def test_the_same_reference_at_another_school_is_another_student(db_session, protector):
    data = students({}, {"school": "BG-SOF-002"})
    assert import_students(db_session, protector, steward(db_session), data).created == 2


@pytest.mark.parametrize("cell", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", " =1"])
def test_a_cell_that_looks_like_a_formula_is_refused(db_session, protector, cell):
    errors = rejected(
        lambda: import_students(db_session, protector, steward(db_session), students({"class": cell}))
    )
    assert errors == [
        {
            "line": 2,
            "column": "class",
            "message": "looks like a spreadsheet formula",
            "type": "formula_injection",
        }
    ]


def test_a_formula_in_a_guardian_name_is_refused(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({}))
    errors = rejected(
        lambda: importing_guardians.import_guardians(
            db_session, principal, protector, guardians({"name": "=cmd|'/C calc'!A0"})
        )
    )
    assert [(e["line"], e["column"], e["message"]) for e in errors] == [
        (2, "name", "looks like a spreadsheet formula")
    ]


def test_exported_cells_are_neutralised():
    assert neutralise_cell("=cmd") == "'=cmd"
    assert neutralise_cell("@x") == "'@x"
    assert neutralise_cell("Maria") == "Maria"


def test_a_birth_month_in_the_future_is_refused(db_session, protector):
    errors = rejected(
        lambda: import_students(
            db_session, protector, steward(db_session), students({"birth_year": "2026", "birth_month": "12"})
        )
    )
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [(2, "birth_month", "birth_in_future")]


def test_an_absurd_age_is_refused(db_session, protector):
    data = students({"birth_year": "2025"}, {"student_ref": "P-2", "birth_year": "1990"})
    errors = rejected(lambda: import_students(db_session, protector, steward(db_session), data))
    assert [(e["line"], e["type"]) for e in errors] == [(2, "implausible_age"), (3, "implausible_age")]


def test_a_steward_cannot_import_rows_outside_their_country(db_session, protector):
    data = students({"country": "BG"}, {"student_ref": "P-2"})
    errors = rejected(lambda: import_students(db_session, protector, steward(db_session, "ES"), data))
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [
        (2, "country", "outside_scope"),
        (3, "country", "outside_scope"),
    ]
    assert student_count(db_session) == 0


def test_a_school_steward_cannot_import_rows_of_other_schools(db_session, protector):
    principal = steward(db_session, "BG", ("BG-SOF-001",))
    data = students({}, {"student_ref": "P-2", "school": "BG-SOF-002"})
    errors = rejected(lambda: import_students(db_session, protector, principal, data))
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [(3, "school", "outside_scope")]


def test_a_steward_without_a_country_may_import_nothing(db_session, protector):
    from infra.errors import Forbidden

    with pytest.raises(Forbidden):
        import_students(db_session, protector, steward(db_session, None), students({}))


def test_a_file_over_the_size_limit_is_refused_unread(db_session, protector):
    with pytest.raises(RosterFileTooLarge):
        import_students(db_session, protector, steward(db_session), b"x" * (MAX_FILE_BYTES + 1))


def test_eighteen_thousand_students_import_in_one_go(db_session, protector):
    rows = [{**STUDENT, **row, "school": f"BG-SOF-{n % 40:03d}"} for n, row in enumerate(numbered(18_000))]
    result = import_students(db_session, protector, steward(db_session), to_csv(RosterKind.students, rows))
    assert (result.rows, result.created) == (18_000, 18_000)
    assert student_count(db_session) == 18_000
    again = import_students(db_session, protector, steward(db_session), to_csv(RosterKind.students, rows))
    assert (again.created, again.unchanged) == (0, 18_000)


def test_a_dry_run_reports_without_writing(db_session, protector):
    result = import_students(db_session, protector, steward(db_session), students({}), dry_run=True)
    assert (result.created, result.dry_run) == (1, True)
    assert student_count(db_session) == 0
    assert ledger(db_session, "consent.roster_imported") == []


def test_each_import_is_one_ledger_entry_with_counts_and_file_hash(db_session, protector):
    principal = steward(db_session)
    data = students({}, {"student_ref": "P-0002"})
    result = import_students(db_session, protector, principal, data)
    [entry] = ledger(db_session, "consent.roster_imported")
    assert entry.actor_id == principal.account_id
    assert entry.details == {
        "kind": "students",
        "country": "BG",
        "rows": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "file_sha256": result.file_sha256,
    }


# -- guardians --------------------------------------------------------------------------------


def test_a_guardian_of_siblings_is_stored_once_by_email(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({}, {"student_ref": "P-0002"}))
    data = guardians(
        {},
        {"student_ref": "P-0002", "email": " Maria.Ivanova@Family.example.org "},
        {"name": "Ivan Ivanov", "email": "", "delivery": "school", "relation": "father"},
    )
    result = importing_guardians.import_guardians(db_session, principal, protector, data)
    assert (result.created, result.links_created) == (2, 3)
    assert db_session.scalar(select(func.count()).select_from(Guardian)) == 2
    index = protector.blind_index(
        db_session, IdentityField.guardian_email, normalise_email(GUARDIAN["email"])
    )
    maria = db_session.scalars(select(Guardian).where(Guardian.email_index == index)).one()
    linked = db_session.scalars(select(Guardianship).where(Guardianship.guardian_id == maria.id)).all()
    assert len(linked) == 2


def test_reimporting_guardians_recognises_them_by_email_or_by_name_and_student(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({}))
    no_email = {"name": "Ivan Ivanov", "email": "", "delivery": "school", "relation": "father"}
    importing_guardians.import_guardians(db_session, principal, protector, guardians({}, no_email))
    again = importing_guardians.import_guardians(
        db_session, principal, protector, guardians({"language": "en"}, no_email)
    )
    assert (again.created, again.updated, again.unchanged, again.links_created) == (0, 1, 1, 0)
    assert db_session.scalar(select(func.count()).select_from(Guardian)) == 2


def test_a_guardian_of_an_unknown_student_is_an_error_on_that_row(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({}))
    data = guardians({}, {"student_ref": "P-9999"})
    errors = rejected(lambda: importing_guardians.import_guardians(db_session, principal, protector, data))
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [(3, "student_ref", "unknown_student")]
    assert db_session.scalar(select(func.count()).select_from(Guardian)) == 0


def test_a_guardian_of_a_student_in_another_country_is_unknown(db_session, protector):
    make_student(db_session, protector, country="ES", school="ES-MAD-001", ref="P-0001", language="es")
    data = guardians({"school": "ES-MAD-001"})
    errors = rejected(
        lambda: importing_guardians.import_guardians(db_session, steward(db_session), protector, data)
    )
    assert [(e["column"], e["type"]) for e in errors] == [("student_ref", "unknown_student")]


def test_guardian_rows_are_checked_cell_by_cell(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({}))
    data = guardians(
        {"email": "", "delivery": "email"},
        {"email": "not-an-address", "relation": "aunt"},
        {"delivery": "pigeon", "name": ""},
    )
    errors = rejected(lambda: importing_guardians.import_guardians(db_session, principal, protector, data))
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [
        (2, "email", "email_required"),
        (3, "email", "bad_email"),
        (3, "relation", "bad_relation"),
        (4, "name", "required"),
        (4, "delivery", "bad_delivery"),
    ]


def test_the_same_email_with_two_names_is_refused(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({}, {"student_ref": "P-0002"}))
    data = guardians({}, {"student_ref": "P-0002", "name": "Someone Else"})
    errors = rejected(lambda: importing_guardians.import_guardians(db_session, principal, protector, data))
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [(3, "name", "conflicting_guardian")]


# -- teachers ---------------------------------------------------------------------------------


def test_teachers_are_imported_and_recognised_by_email_on_reimport(db_session, protector):
    principal = steward(db_session)
    first = importing_teachers.import_teachers(db_session, principal, protector, teachers({}))
    assert first.created == 1
    again = importing_teachers.import_teachers(
        db_session,
        principal,
        protector,
        teachers(
            {"email": "PETAR.georgiev@school.example.org", "school": "BG-SOF-002"},
            {"email": "b@x.example.org"},
        ),
    )
    assert (again.created, again.updated) == (1, 1)
    assert db_session.scalars(select(Teacher.school_code).order_by(Teacher.id)).all() == [
        "BG-SOF-002",
        "BG-SOF-001",
    ]


def test_a_teacher_listed_twice_is_reported(db_session, protector):
    data = teachers({}, {"name": "Other"})
    errors = rejected(
        lambda: importing_teachers.import_teachers(db_session, steward(db_session), protector, data)
    )
    assert [(e["line"], e["column"], e["type"]) for e in errors] == [(3, "email", "duplicate")]


def test_a_teacher_of_another_country_cannot_be_taken_over(db_session, protector):
    importing_teachers.import_teachers(db_session, steward(db_session), protector, teachers({}))
    data = teachers({"country": "ES", "school": "ES-MAD-001", "language": "es"})
    errors = rejected(
        lambda: importing_teachers.import_teachers(db_session, steward(db_session, "ES"), protector, data)
    )
    assert [(e["column"], e["type"]) for e in errors] == [("email", "teacher_outside_scope")]


# -- at rest ----------------------------------------------------------------------------------


def test_no_name_email_or_reference_is_stored_in_clear(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({"student_ref": "PUPIL-REF-7731"}))
    importing_guardians.import_guardians(
        db_session, principal, protector, guardians({"student_ref": "PUPIL-REF-7731"})
    )
    importing_teachers.import_teachers(db_session, principal, protector, teachers({}))
    db_session.flush()
    secrets = [
        "PUPIL-REF-7731",
        "Maria Ivanova",
        "maria.ivanova@family.example.org",
        "Petar Georgiev",
        "petar.georgiev@school.example.org",
    ]
    dumped = ""
    for table in ("consent_student", "consent_guardian", "consent_guardianship", "consent_teacher"):
        dumped += "\n".join(db_session.execute(text(f"SELECT t::text FROM {table} t")).scalars())
    assert dumped
    for secret in secrets:
        assert secret.lower() not in dumped.lower()
        assert secret.encode().hex() not in dumped


def test_a_huge_report_lists_the_first_thousand_problems_and_counts_them_all(db_session, protector):
    rows = [{**STUDENT, **row, "stage": "0"} for row in numbered(1500)]
    with pytest.raises(RosterLinesRejected) as caught:
        import_students(db_session, protector, steward(db_session), to_csv(RosterKind.students, rows))
    extra = caught.value.extra
    assert (extra["error_count"], extra["rows_with_errors"], extra["truncated"]) == (1500, 1500, True)
    assert len(extra["errors"]) == 1000
    assert extra["errors"][0]["line"] == 2


def test_quoted_cells_may_hold_separators(db_session, protector):
    principal = steward(db_session)
    import_students(db_session, protector, principal, students({}))
    importing_guardians.import_guardians(
        db_session, principal, protector, guardians({"name": "Ivanova; Maria, née Petrova"})
    )
    stored = db_session.scalars(select(Guardian)).one()
    assert protector.decrypt(db_session, IdentityField.guardian_name, stored.name_ciphertext) == (
        "Ivanova; Maria, née Petrova"
    )
