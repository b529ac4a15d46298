"""The rosters API over HTTP with real tokens: uploads, scoping, audited reads, rectification, erasure."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from consent.identity import IdentityField
from consent.rosters import service
from consent.rosters.csv_format import MAX_FILE_BYTES
from consent.rosters.models import Guardian, Student, Teacher
from consent.rosters.schemas import GuardianRectify
from tests.consent.test_rosters_import import guardians, steward, students, teachers
from tests.support.auth import auth_headers
from tests.support.consent import make_guardian, make_student, make_teacher

ROSTERS = "/api/consent/rosters"
PROBLEM = "application/problem+json"


@pytest.fixture
def headers(client, staff_factory):
    def for_role(role: Role, country: str | None = None, schools: list[str] | None = None) -> dict[str, str]:
        return auth_headers(client, staff_factory(roles=[role], country=country, schools=schools))

    return for_role


def upload(client, kind: str, data: bytes, headers: dict[str, str], *, validate: bool = False):
    path = f"{ROSTERS}/{kind}" + ("/validate" if validate else "")
    return client.post(path, files={"file": (f"{kind}.csv", data, "text/csv")}, headers=headers)


def ledger(session, action: str) -> list[AuditEntry]:
    session.commit()
    return list(
        session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq))
    )


def test_a_steward_uploads_students_and_lists_them_without_references(client, headers):
    bulgaria = headers(Role.data_steward, "BG")
    answer = upload(client, "students", students({}, {"student_ref": "P-0002"}), bulgaria)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"file_sha256": "-"} == {
        "kind": "students",
        "rows": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "links_created": None,
        "file_sha256": "-",
        "dry_run": False,
    }
    listed = client.get(f"{ROSTERS}/students", headers=bulgaria).json()
    assert listed["total"] == 2
    assert {item["student_ref"] for item in listed["items"]} == {None}
    assert listed["items"][0]["school_code"] == "BG-SOF-001"


def test_an_invalid_upload_answers_422_listing_every_row(client, headers):
    answer = upload(
        client,
        "students",
        students({"birth_month": "0"}, {"student_ref": "P-2", "class": "=1+1"}),
        headers(Role.data_steward, "BG"),
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["reason"] == "invalid_rows"
    assert [(e["line"], e["column"]) for e in body["errors"]] == [(2, "birth_month"), (3, "class")]
    assert "nothing was imported" in body["detail"]


def test_a_validation_run_writes_nothing(client, headers, db_session):
    answer = upload(client, "students", students({}), headers(Role.data_steward, "BG"), validate=True)
    assert answer.status_code == 200, answer.text
    assert answer.json()["dry_run"] is True
    assert db_session.scalars(select(Student)).all() == []


def test_a_file_that_is_not_utf8_answers_422_with_a_reason(client, headers):
    data = students({"class": "7Б"}).decode().encode("cp1251")
    answer = upload(client, "students", data, headers(Role.data_steward, "BG"))
    assert answer.status_code == 422
    assert answer.json()["reason"] == "not_utf8"
    assert answer.json()["detail"].startswith("line 2: not UTF-8")


def test_a_50_mb_upload_is_refused_with_413(client, headers):
    data = b"a" * (50 * 1024 * 1024)
    answer = upload(client, "students", data, headers(Role.data_steward, "BG"))
    assert answer.status_code == 413
    assert answer.json()["reason"] == "file_too_large"


def test_a_file_just_over_the_limit_is_refused_with_413(client, headers):
    data = b"a" * (MAX_FILE_BYTES + 1)
    answer = upload(client, "teachers", data, headers(Role.data_steward, "BG"))
    assert answer.status_code == 413


def test_a_steward_of_spain_cannot_import_bulgarian_rows(client, headers):
    answer = upload(client, "students", students({}), headers(Role.data_steward, "ES"))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["type"] == "outside_scope"


def test_a_steward_of_spain_does_not_see_bulgarian_students(client, headers, db_session, protector):
    bulgarian = make_student(db_session, protector, country="BG")
    spanish = make_student(db_session, protector, country="ES", school="ES-MAD-001", language="es")
    spain = headers(Role.data_steward, "ES")
    listed = client.get(f"{ROSTERS}/students", headers=spain).json()
    assert [item["subject_id"] for item in listed["items"]] == [spanish.subject_id]
    single = client.get(f"{ROSTERS}/students/{bulgarian.subject_id}", headers=spain)
    assert single.status_code == 404
    patched = client.patch(f"{ROSTERS}/students/{bulgarian.subject_id}", json={"stage": 3}, headers=spain)
    assert patched.status_code == 404
    dpo = client.get(f"{ROSTERS}/students", headers=headers(Role.dpo)).json()
    assert dpo["total"] == 2


def test_a_school_steward_sees_only_their_schools(client, headers, db_session, protector):
    mine = make_student(db_session, protector, school="BG-SOF-001")
    other = make_student(db_session, protector, school="BG-SOF-002")
    school = headers(Role.data_steward, "BG", ["BG-SOF-001"])
    listed = client.get(f"{ROSTERS}/students", headers=school).json()
    assert [item["subject_id"] for item in listed["items"]] == [mine.subject_id]
    assert client.get(f"{ROSTERS}/students/{other.subject_id}", headers=school).status_code == 404
    guardian = make_guardian(db_session, protector, [other])
    answer = client.patch(
        f"{ROSTERS}/guardians/{guardian.guardian_id}", json={"language": "en"}, headers=school
    )
    assert answer.status_code == 404


def test_revealing_pupil_references_is_audited(client, headers, db_session, protector):
    make_student(db_session, protector, ref="P-REVEAL-1")
    bulgaria = headers(Role.data_steward, "BG")
    listed = client.get(f"{ROSTERS}/students", params={"reveal": "true"}, headers=bulgaria).json()
    assert [item["student_ref"] for item in listed["items"]] == ["P-REVEAL-1"]
    [entry] = ledger(db_session, "consent.identity_viewed")
    assert entry.details == {"subject_type": "student", "count": 1, "fields": ["student_ref"]}


def test_a_student_is_shown_with_their_guardians_in_an_audited_read(client, headers, db_session, protector):
    student = make_student(db_session, protector)
    make_guardian(db_session, protector, [student], name="Maria Ivanova", email="maria@family.example.org")
    answer = client.get(f"{ROSTERS}/students/{student.subject_id}", headers=headers(Role.dpo))
    assert answer.status_code == 200, answer.text
    [guardian] = answer.json()["guardians"]
    assert (guardian["name"], guardian["email"], guardian["relation"]) == (
        "Maria Ivanova",
        "maria@family.example.org",
        "mother",
    )
    [entry] = ledger(db_session, "consent.identity_viewed")
    assert entry.target_id == student.subject_id
    assert "Maria" not in str(entry.details)


def test_guardians_and_teachers_upload_over_http(client, headers):
    bulgaria = headers(Role.data_steward, "BG")
    upload(client, "students", students({}), bulgaria)
    answer = upload(client, "guardians", guardians({}), bulgaria)
    assert answer.status_code == 200, answer.text
    assert answer.json()["links_created"] == 1
    answer = upload(client, "teachers", teachers({}), bulgaria)
    assert answer.json()["created"] == 1
    listed = client.get(f"{ROSTERS}/teachers", params={"reveal": "true"}, headers=bulgaria).json()
    assert [(t["name"], t["email"]) for t in listed["items"]] == [
        ("Petar Georgiev", "petar.georgiev@school.example.org")
    ]


def test_rectifying_a_guardian_email_moves_the_blind_index(client, headers, db_session, protector):
    student = make_student(db_session, protector)
    guardian = make_guardian(db_session, protector, [student], email="old@family.example.org")
    answer = client.patch(
        f"{ROSTERS}/guardians/{guardian.guardian_id}",
        json={"email": "New@Family.example.org", "name": "Maria Petrova"},
        headers=headers(Role.data_steward, "BG"),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] == ["email", "name"]
    found = service.find_guardian_by_email(db_session, protector, "new@family.example.org")
    assert found is not None
    assert found.guardian_id == guardian.guardian_id
    assert service.find_guardian_by_email(db_session, protector, "old@family.example.org") is None
    [entry] = ledger(db_session, "consent.roster_rectified")
    assert entry.target_id == guardian.guardian_id
    assert entry.details == {"subject_type": "guardian", "fields": ["email", "name"]}


def test_rectifying_a_student_reference_re_indexes_it(client, headers, db_session, protector):
    student = make_student(db_session, protector, ref="P-OLD")
    answer = client.patch(
        f"{ROSTERS}/students/{student.subject_id}",
        json={"student_ref": "P-NEW", "class_name": "8C"},
        headers=headers(Role.data_steward, "BG"),
    )
    assert answer.status_code == 200, answer.text
    db_session.refresh(student)
    assert protector.decrypt(db_session, IdentityField.student_ref, student.ref_ciphertext) == "P-NEW"
    assert student.ref_index == protector.blind_index(
        db_session, IdentityField.student_ref, "BG/BG-SOF-001/P-NEW"
    )
    assert student.class_name == "8C"
    [entry] = ledger(db_session, "consent.roster_rectified")
    assert entry.details == {"subject_type": "student", "fields": ["class_name", "student_ref"]}


def test_rectifying_to_a_reference_already_taken_is_a_conflict(client, headers, db_session, protector):
    make_student(db_session, protector, ref="P-1")
    second = make_student(db_session, protector, ref="P-2")
    answer = client.patch(
        f"{ROSTERS}/students/{second.subject_id}", json={"student_ref": "P-1"}, headers=headers(Role.dpo)
    )
    assert answer.status_code == 409
    assert answer.json()["reason"] == "student_ref_taken"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"birth_year": 2999, "birth_month": 1}, "birth_in_future"),
        ({"class_name": "=HYPERLINK(1)"}, "bad_text"),
        ({"language": "xx"}, "unknown_language"),
    ],
)
def test_an_invalid_student_rectification_is_refused(client, headers, db_session, protector, body, reason):  # noqa: PLR0917
    student = make_student(db_session, protector)
    answer = client.patch(f"{ROSTERS}/students/{student.subject_id}", json=body, headers=headers(Role.dpo))
    assert answer.status_code == 422
    assert answer.json()["reason"] == reason


def test_a_guardian_with_email_delivery_keeps_an_email(client, headers, db_session, protector):
    guardian = make_guardian(db_session, protector, [make_student(db_session, protector)])
    answer = client.patch(
        f"{ROSTERS}/guardians/{guardian.guardian_id}", json={"email": None}, headers=headers(Role.dpo)
    )
    assert answer.status_code == 422
    assert answer.json()["reason"] == "email_required"


def test_rectifying_a_teacher_email_is_checked_and_audited(client, headers, db_session, protector):
    teacher = make_teacher(db_session, protector, email="t1@school.example.org")
    make_teacher(db_session, protector, email="t2@school.example.org")
    bulgaria = headers(Role.data_steward, "BG")
    taken = client.patch(
        f"{ROSTERS}/teachers/{teacher.subject_id}", json={"email": "T2@school.example.org"}, headers=bulgaria
    )
    assert taken.status_code == 409
    school_steward = headers(Role.data_steward, "BG", ["BG-SOF-001"])
    moved = client.patch(
        f"{ROSTERS}/teachers/{teacher.subject_id}", json={"school_code": "BG-SOF-009"}, headers=school_steward
    )
    assert moved.status_code == 422
    answer = client.patch(
        f"{ROSTERS}/teachers/{teacher.subject_id}", json={"email": "t3@school.example.org"}, headers=bulgaria
    )
    assert answer.json()["changed"] == ["email"]
    [entry] = ledger(db_session, "consent.roster_rectified")
    assert entry.details == {"subject_type": "teacher", "fields": ["email"]}


def test_a_rectification_that_changes_nothing_records_nothing(db_session, protector):
    student = make_student(db_session, protector)
    guardian = make_guardian(db_session, protector, [student], name="Maria Ivanova")
    principal = steward(db_session)
    _, changed = service.rectify_guardian(
        db_session, principal, protector, guardian.guardian_id, GuardianRectify(name="Maria Ivanova")
    )
    assert changed == []
    assert ledger(db_session, "consent.roster_rectified") == []


def test_guardians_of_and_decrypt_guardian(db_session, protector):
    student = make_student(db_session, protector)
    guardian = make_guardian(
        db_session, protector, [student], name="Maria Ivanova", email="m@family.example.org"
    )
    [found] = service.guardians_of(db_session, student.id)
    assert service.decrypt_guardian(db_session, protector, found) == {
        "guardian_id": guardian.guardian_id,
        "name": "Maria Ivanova",
        "email": "m@family.example.org",
        "delivery": "email",
        "language": "bg",
    }


def test_an_erased_identity_can_never_be_found_again(db_session, protector):
    student = make_student(db_session, protector, ref="P-ERASE")
    guardian = make_guardian(db_session, protector, [student], email="gone@family.example.org")
    teacher = make_teacher(db_session, protector, email="gone@school.example.org")
    old_index = student.ref_index
    service.erase_identity(db_session, protector, "student", student.subject_id)
    service.erase_identity(db_session, protector, "guardian", guardian.guardian_id)
    service.erase_identity(db_session, protector, "teacher", teacher.subject_id)
    stored = db_session.get(Student, student.id)
    assert stored is not None
    assert stored.erased_at is not None
    assert (stored.ref_ciphertext, stored.ref_index != old_index) == (b"", True)
    assert service.find_guardian_by_email(db_session, protector, "gone@family.example.org") is None
    erased_guardian = db_session.get(Guardian, guardian.id)
    assert erased_guardian is not None
    assert erased_guardian.name_ciphertext == b""
    erased_teacher = db_session.get(Teacher, teacher.id)
    assert erased_teacher is not None
    assert erased_teacher.email_ciphertext == b""
    reimported = service.get_student(db_session, steward(db_session), student.subject_id)
    assert reimported.erased_at is not None


def test_an_oversized_upload_without_a_declared_length_is_cut_off_with_413(client, headers):
    boundary = "rosterboundary"

    def body():
        disposition = 'Content-Disposition: form-data; name="file"; filename="s.csv"'
        yield f"--{boundary}\r\n{disposition}\r\n\r\n".encode()
        chunk = b"a" * (1024 * 1024)
        for _ in range(30):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = client.post(
        f"{ROSTERS}/students",
        content=body(),
        headers={
            **headers(Role.data_steward, "BG"),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert answer.status_code == 413
    assert answer.json()["reason"] == "file_too_large"


def test_teachers_outside_scope_are_neither_listed_nor_rectified(client, headers, db_session, protector):
    bulgarian = make_teacher(db_session, protector, country="BG")
    spanish = make_teacher(db_session, protector, country="ES", school="ES-MAD-001", language="es")
    spain = headers(Role.data_steward, "ES")
    listed = client.get(f"{ROSTERS}/teachers", headers=spain).json()
    assert [t["subject_id"] for t in listed["items"]] == [spanish.subject_id]
    assert listed["items"][0]["name"] is None
    answer = client.patch(
        f"{ROSTERS}/teachers/{bulgarian.subject_id}", json={"language": "es"}, headers=spain
    )
    assert answer.status_code == 404


def test_a_guardians_validation_run_writes_nothing(client, headers, db_session):
    bulgaria = headers(Role.data_steward, "BG")
    upload(client, "students", students({}), bulgaria)
    answer = upload(
        client,
        "guardians",
        guardians({}, {"name": "Ivan Ivanov", "email": "", "delivery": "school"}),
        bulgaria,
        validate=True,
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["created"], answer.json()["links_created"]) == (2, 2)
    assert db_session.scalars(select(Guardian)).all() == []


HOSTILE = [
    b"\x00\x01\x02binary",
    b'student_ref,"country\r\nP-1,BG',
    b"student_ref\rcountry\rschool",
    b'"unclosed,header\r\n',
    b"a;b;c\r\n1;2;3\r\n",
    b",,,,\r\n,,,,\r\n",
    b"student_ref,country,school,stage,class,language,birth_year,birth_month\r\n" + b'"P-1"x,BG\r\n',
    b"\xef\xbb\xbf",
    b"\xff" * 1000,
    ("x" * 200_000).encode(),
]


@pytest.mark.parametrize("kind", ["students", "guardians", "teachers"])
def test_hostile_files_get_a_reason_and_never_a_server_error(client, headers, kind):
    bulgaria = headers(Role.data_steward, "BG")
    for data in HOSTILE:
        answer = upload(client, kind, data, bulgaria)
        assert answer.status_code in (413, 422), (data[:40], answer.status_code, answer.text)
        assert answer.json()["detail"], answer.text
