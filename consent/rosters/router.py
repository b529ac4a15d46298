"""HTTP endpoints under /api/consent/rosters: CSV imports, scoped reads and rectification."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, File, Path, Query, Request, Response, UploadFile
from fastapi.routing import APIRoute
from starlette.types import Message

from access.dependencies import StewardDep, StewardOrDpoDep
from consent.dependencies import IdentityDep
from consent.rosters import importing, importing_guardians, importing_teachers, service
from consent.rosters.csv_format import MAX_FILE_BYTES
from consent.rosters.exceptions import RosterFileTooLarge
from consent.rosters.importing import ImportResult
from consent.rosters.models import Student, Teacher
from consent.rosters.schemas import (
    GuardianRead,
    GuardianRectify,
    ImportReport,
    Rectified,
    StudentDetail,
    StudentPage,
    StudentRead,
    StudentRectify,
    TeacherPage,
    TeacherRead,
    TeacherRectify,
)
from infra.web.deps import SessionDep

MAX_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024
"""The file plus room for the multipart envelope."""


class _SizeLimitedRoute(APIRoute):
    """Refuses bodies over ``MAX_BODY_BYTES`` with 413: at once when Content-Length says so, and
    otherwise as soon as that many bytes have arrived, so a huge upload is never read in full."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise RosterFileTooLarge(MAX_FILE_BYTES)
            received = 0
            exceeded = False
            receive = request.receive

            async def counting() -> Message:
                nonlocal received, exceeded
                message = await receive()
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    exceeded = True
                    raise RosterFileTooLarge(MAX_FILE_BYTES)
                return message

            try:
                return await handler(Request(request.scope, counting))
            except Exception:
                if exceeded:  # the form parser may have wrapped our refusal in its own error
                    raise RosterFileTooLarge(MAX_FILE_BYTES) from None
                raise

        return limited


router = APIRouter(prefix="/api/consent/rosters", tags=["consent"], route_class=_SizeLimitedRoute)

Upload = Annotated[
    UploadFile, File(description="The CSV file: UTF-8 (BOM allowed), comma or semicolon separated.")
]
SubjectId = Annotated[str, Path(min_length=1, max_length=36, description="The subject id.")]
GuardianId = Annotated[str, Path(min_length=1, max_length=36, description="The guardian id.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]
School = Annotated[str | None, Query(min_length=2, max_length=32, description="Only this school.")]
Reveal = Annotated[bool, Query(description="Include decrypted identities (the read is audited).")]

IMPORT_PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only data stewards with a country may import."},
    413: {"description": "The file is over 20 MiB."},
    422: {"description": "The file or some rows are invalid: every row, column and reason is listed."},
}
READ_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such entry in your scope."},
    409: {"description": "The new reference or email already belongs to another entry."},
    422: {"description": "A field is invalid; the answer names it."},
}


def _upload(file: UploadFile) -> bytes:
    data = file.file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise RosterFileTooLarge(MAX_FILE_BYTES)
    return data


def _report(result: ImportResult) -> ImportReport:
    return ImportReport.model_validate(result, from_attributes=True)


def _student(student: Student, ref: str | None = None) -> StudentRead:
    return StudentRead(
        subject_id=student.subject_id,
        country_code=student.country_code,
        school_code=student.school_code,
        stage=student.stage,
        class_name=student.class_name,
        language=student.language,
        birth_year=student.birth_year,
        birth_month=student.birth_month,
        restricted=student.restricted_at is not None,
        erased=student.erased_at is not None,
        student_ref=ref,
    )


def _teacher(teacher: Teacher, identity: tuple[str, str] | None = None) -> TeacherRead:
    return TeacherRead(
        subject_id=teacher.subject_id,
        country_code=teacher.country_code,
        school_code=teacher.school_code,
        language=teacher.language,
        restricted=teacher.restricted_at is not None,
        erased=teacher.erased_at is not None,
        name=identity[0] if identity else None,
        email=identity[1] if identity else None,
    )


@router.post("/students", response_model=ImportReport, responses=IMPORT_PROBLEMS)
def import_students(
    file: Upload, principal: StewardDep, session: SessionDep, protector: IdentityDep
) -> ImportReport:
    """Import a students CSV (``student_ref, country, school, stage, class, language, birth_year,
    birth_month``). Known students are updated; any invalid row rejects the whole file."""
    return _report(importing.import_students(session, principal, protector, _upload(file)))


@router.post("/students/validate", response_model=ImportReport, responses=IMPORT_PROBLEMS)
def validate_students(
    file: Upload, principal: StewardDep, session: SessionDep, protector: IdentityDep
) -> ImportReport:
    """Check a students CSV and say what importing it would do, without writing anything."""
    return _report(importing.import_students(session, principal, protector, _upload(file), dry_run=True))


@router.post("/guardians", response_model=ImportReport, responses=IMPORT_PROBLEMS)
def import_guardians(
    file: Upload, principal: StewardDep, session: SessionDep, protector: IdentityDep
) -> ImportReport:
    """Import a guardians CSV (``student_ref, school, name, email, delivery, language, relation``),
    one row per guardian-student link, for students already imported; all rows valid or none."""
    return _report(importing_guardians.import_guardians(session, principal, protector, _upload(file)))


@router.post("/guardians/validate", response_model=ImportReport, responses=IMPORT_PROBLEMS)
def validate_guardians(
    file: Upload, principal: StewardDep, session: SessionDep, protector: IdentityDep
) -> ImportReport:
    """Check a guardians CSV and say what importing it would do, without writing anything."""
    return _report(
        importing_guardians.import_guardians(session, principal, protector, _upload(file), dry_run=True)
    )


@router.post("/teachers", response_model=ImportReport, responses=IMPORT_PROBLEMS)
def import_teachers(
    file: Upload, principal: StewardDep, session: SessionDep, protector: IdentityDep
) -> ImportReport:
    """Import a teachers CSV (``name, email, country, school, language``); known teachers (same
    email) are updated; any invalid row rejects the whole file."""
    return _report(importing_teachers.import_teachers(session, principal, protector, _upload(file)))


@router.post("/teachers/validate", response_model=ImportReport, responses=IMPORT_PROBLEMS)
def validate_teachers(
    file: Upload, principal: StewardDep, session: SessionDep, protector: IdentityDep
) -> ImportReport:
    """Check a teachers CSV and say what importing it would do, without writing anything."""
    return _report(
        importing_teachers.import_teachers(session, principal, protector, _upload(file), dry_run=True)
    )


@router.get("/students", response_model=StudentPage, responses=READ_PROBLEMS)
def list_students(
    *,
    principal: StewardOrDpoDep,
    session: SessionDep,
    protector: IdentityDep,
    school: School = None,
    limit: Limit = 100,
    offset: Offset = 0,
    reveal: Reveal = False,
) -> StudentPage:
    """Students in your scope, by school and class. Pupil references only with ``reveal=true``,
    which is recorded in the ledger."""
    page, total, refs = service.list_students(
        session, principal, protector, school=school, limit=limit, offset=offset, reveal=reveal
    )
    items = [_student(s, refs.get(s.id)) for s in page]
    return StudentPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/students/{subject_id}", response_model=StudentDetail, responses=READ_PROBLEMS)
def get_student(
    subject_id: SubjectId, principal: StewardOrDpoDep, session: SessionDep, protector: IdentityDep
) -> StudentDetail:
    """One student in your scope with their guardians' names and emails (an audited read)."""
    student, guardians = service.student_with_guardians(session, principal, protector, subject_id)
    return StudentDetail(
        **_student(student).model_dump(),
        guardians=[GuardianRead.model_validate(g) for g in guardians],
    )


@router.patch("/students/{subject_id}", response_model=Rectified, responses=READ_PROBLEMS)
def rectify_student(
    subject_id: SubjectId,
    body: StudentRectify,
    principal: StewardOrDpoDep,
    session: SessionDep,
    protector: IdentityDep,
) -> Rectified:
    """Correct a student (Art. 16): reference, stage, class, language, birth year or month."""
    _, changed = service.rectify_student(session, principal, protector, subject_id, body)
    return Rectified(id=subject_id, changed=changed)


@router.patch("/guardians/{guardian_id}", response_model=Rectified, responses=READ_PROBLEMS)
def rectify_guardian(
    guardian_id: GuardianId,
    body: GuardianRectify,
    principal: StewardOrDpoDep,
    session: SessionDep,
    protector: IdentityDep,
) -> Rectified:
    """Correct a guardian (Art. 16): name, email, delivery or language."""
    _, changed = service.rectify_guardian(session, principal, protector, guardian_id, body)
    return Rectified(id=guardian_id, changed=changed)


@router.get("/teachers", response_model=TeacherPage, responses=READ_PROBLEMS)
def list_teachers(
    *,
    principal: StewardOrDpoDep,
    session: SessionDep,
    protector: IdentityDep,
    school: School = None,
    limit: Limit = 100,
    offset: Offset = 0,
    reveal: Reveal = False,
) -> TeacherPage:
    """Teachers in your scope. Names and emails only with ``reveal=true`` (an audited read)."""
    page, total, identities = service.list_teachers(
        session, principal, protector, school=school, limit=limit, offset=offset, reveal=reveal
    )
    items = [_teacher(t, identities.get(t.id)) for t in page]
    return TeacherPage(items=items, total=total, limit=limit, offset=offset)


@router.patch("/teachers/{subject_id}", response_model=Rectified, responses=READ_PROBLEMS)
def rectify_teacher(
    subject_id: SubjectId,
    body: TeacherRectify,
    principal: StewardOrDpoDep,
    session: SessionDep,
    protector: IdentityDep,
) -> Rectified:
    """Correct a teacher (Art. 16): name, email, school (within your scope) or language."""
    _, changed = service.rectify_teacher(session, principal, protector, subject_id, body)
    return Rectified(id=subject_id, changed=changed)
