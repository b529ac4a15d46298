"""Data-subject requests (GDPR Art. 12, 15-21): receipt, deadlines, the DPO's queue and carrying out.

Lifecycle::

    open ──start──▶ in_progress ──complete──▶ completed
      │                  │
      └──────────────────┴──refuse (reason, Art. 12(4))──▶ refused

``completed`` and ``refused`` are final: any further change answers 409. A request may be completed
or refused straight from ``open``. Each transition records one ledger entry in the same transaction
(``consent.dsr_received``, ``consent.dsr_started``, ``consent.dsr_extended``,
``consent.dsr_completed``, ``consent.dsr_refused``, and ``consent.dsr_export_downloaded`` for each
download of an access export). The entry's target is the subject (``student``/``teacher``/
``guardian`` and the subject's pseudonymous id), so an access export lists the request trail too;
its details hold the request id, kinds, dates and, for a completion, the withdrawal event id and the
names of rectified fields — never a reason, a note or a value.

Who: the DPO, or a data steward within the scope of the subject (``consent.scope``), records and
starts requests and reads the queue; only the DPO extends, refuses, completes and downloads exports.
A subject or request outside the caller's scope is answered 404, as if it did not exist.

Deadlines are in ``consent.requests.deadlines``. ``received_on`` may not be in the future nor more
than a year in the past (a request that old would be overdue by eleven months on arrival: it is a
data-entry error, or needs the DPO to record it as received today).

Rectification values are validated for the subject's kind when the request is recorded; identity
values (names, emails, pupil references) are encrypted in ``details`` at once, and every value is
removed from ``details`` when the request is completed or refused, leaving the field names.
What completing each kind does to the rosters is in ``consent.requests.fulfilment``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, register_action
from access.audit.service import record
from access.principal import Principal
from consent.codes import LANGUAGE_CODES
from consent.identity import IdentityProtector
from consent.requests import deadlines, export, fulfilment, repository
from consent.requests.exceptions import InvalidRequest, RequestConflict, RequestNotFound, SubjectNotFound
from consent.requests.fulfilment import Effect, Subject
from consent.requests.models import DataSubjectRequest, RequestKind, RequestState, SubjectKind
from consent.requests.schemas import ExportFormat, RequestCreate, Requester
from consent.rosters.models import Guardian
from infra.logging import get_logger

log = get_logger(__name__)

MAX_RECEIVED_AGE = timedelta(days=366)
"""How far back ``received_on`` may lie."""
ENTITLED: dict[SubjectKind, frozenset[Requester]] = {
    SubjectKind.student: frozenset({Requester.student, Requester.guardian}),
    SubjectKind.guardian: frozenset({Requester.guardian}),
    SubjectKind.teacher: frozenset({Requester.teacher}),
}
"""Who may exercise a right about whom: a student or their guardian; guardians and teachers themselves."""


class RequestLedgerDetails(Details):
    """Ledger details of a request's step: ids, kinds and dates only."""

    request_id: Identifier
    kind: RequestKind
    subject_kind: SubjectKind
    subject_id: Identifier
    state: RequestState
    received_on: date | None = None
    due_on: date | None = None
    extended_due_on: date | None = None
    withdrawal_event: Identifier | None = None
    fields: list[Identifier] | None = None
    format: ExportFormat | None = None


DSR_RECEIVED = register_action("consent.dsr_received", RequestLedgerDetails)
DSR_STARTED = register_action("consent.dsr_started", RequestLedgerDetails)
DSR_EXTENDED = register_action("consent.dsr_extended", RequestLedgerDetails)
DSR_COMPLETED = register_action("consent.dsr_completed", RequestLedgerDetails)
DSR_REFUSED = register_action("consent.dsr_refused", RequestLedgerDetails)
DSR_EXPORT_DOWNLOADED = register_action("consent.dsr_export_downloaded", RequestLedgerDetails)


@dataclass(frozen=True)
class QueueItem:
    """A request with its deadline figures on a given day."""

    request: DataSubjectRequest
    effective_due_on: date
    overdue: bool
    days_left: int | None

    @classmethod
    def of(cls, request: DataSubjectRequest, today: date) -> QueueItem:
        """The figures of ``request`` on ``today``."""
        due = deadlines.effective_due_on(request.due_on, request.extended_due_on)
        closed = request.state in repository.CLOSED
        return cls(
            request=request,
            effective_due_on=due,
            overdue=deadlines.is_overdue(due, today, closed=closed),
            days_left=None if closed else deadlines.days_left(due, today),
        )


def _record(
    session: Session, principal: Principal, action: str, request: DataSubjectRequest, **extra: Any
) -> None:
    record(
        session,
        principal.actor,
        action,
        target_type=request.subject_kind,
        target_id=request.subject_id,
        details=RequestLedgerDetails(
            request_id=request.id,
            kind=RequestKind(request.kind),
            subject_kind=SubjectKind(request.subject_kind),
            subject_id=request.subject_id,
            state=RequestState(request.state),
            **extra,
        ),
    )


def resolve_subject(session: Session, principal: Principal, kind: SubjectKind, subject_id: str) -> Subject:
    """The roster row of a subject the principal may see; SubjectNotFound otherwise."""
    found: Subject | None
    if kind is SubjectKind.student:
        found = repository.find_student(session, principal, subject_id)
    elif kind is SubjectKind.teacher:
        found = repository.find_teacher(session, principal, subject_id)
    else:
        found = repository.find_guardian(session, principal, subject_id)
    if found is None:
        raise SubjectNotFound(kind.value, subject_id)
    return found


def _check_received_on(received_on: date, today: date) -> None:
    if received_on > today:
        raise InvalidRequest(
            "received_on",
            f"{received_on.isoformat()} is in the future (today is {today.isoformat()}, UTC)",
            code="received_in_future",
        )
    if today - received_on > MAX_RECEIVED_AGE:
        raise InvalidRequest(
            "received_on",
            "is more than a year ago; record the day the request actually reached the project",
            code="received_too_long_ago",
        )


def _stored_changes(
    session: Session, protector: IdentityProtector, kind: SubjectKind, data: RequestCreate
) -> dict[str, Any]:
    changes = data.details.changes
    if data.kind is not RequestKind.rectification:
        if changes is not None:
            raise InvalidRequest(
                "details.changes",
                "only a rectification carries corrected values",
                code="changes_not_expected",
            )
        return {}
    given = changes.model_dump(exclude_none=True) if changes is not None else {}
    if not given:
        raise InvalidRequest(
            "details.changes", "a rectification needs at least one corrected value", code="no_changes"
        )
    allowed = fulfilment.RECTIFIABLE[kind]
    for name in sorted(given):
        if name not in allowed:
            raise InvalidRequest(
                f"details.changes.{name}",
                f"cannot be rectified for a {kind.value} (allowed: {', '.join(sorted(allowed))})",
                code="field_not_rectifiable",
            )
    if "language" in given and given["language"] not in LANGUAGE_CODES:
        raise InvalidRequest(
            "details.changes.language",
            f"{given['language']!r} is not a lower-case ISO 639-1 code",
            code="unknown_language",
        )
    stored: dict[str, Any] = {}
    for name, value in given.items():
        field = fulfilment.ENCRYPTED.get((kind, name))
        if field is None:
            stored[name] = value
        else:
            blob = protector.encrypt(session, field, str(value))
            stored[name] = {"encrypted": base64.b64encode(blob).decode()}
    return stored


def _plain_changes(
    session: Session, protector: IdentityProtector, kind: SubjectKind, stored: dict[str, Any]
) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for name, value in stored.items():
        field = fulfilment.ENCRYPTED.get((kind, name))
        if field is not None and isinstance(value, dict):
            plain[name] = protector.decrypt(session, field, base64.b64decode(value["encrypted"]))
        else:
            plain[name] = value
    return plain


def create_request(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    data: RequestCreate,
    *,
    today: date | None = None,
) -> DataSubjectRequest:
    """Record a request as received; its due date is one calendar month after ``received_on``."""
    today = today or deadlines.utc_today()
    received_on = data.received_on or today
    _check_received_on(received_on, today)
    if data.language not in LANGUAGE_CODES:
        raise InvalidRequest(
            "language", f"{data.language!r} is not a lower-case ISO 639-1 code", code="unknown_language"
        )
    if data.requested_by not in ENTITLED[data.subject_kind]:
        raise InvalidRequest(
            "requested_by",
            f"a {data.requested_by.value} cannot exercise a right about a {data.subject_kind.value}",
            code="requester_not_entitled",
        )
    if data.subject_kind is SubjectKind.guardian and data.kind in (
        RequestKind.restriction,
        RequestKind.objection,
    ):
        raise InvalidRequest(
            "kind",
            "a guardian holds no research data to restrict or object to; a guardian restricts or objects "
            "for their child with a request about the student",
            code="not_applicable_to_guardian",
        )
    subject = resolve_subject(session, principal, data.subject_kind, data.subject_id)
    changes = _stored_changes(session, protector, data.subject_kind, data)
    details: dict[str, Any] = {"note": data.details.note}
    if changes:
        details["fields"] = sorted(changes)
        details["changes"] = changes
    request = DataSubjectRequest(
        kind=data.kind.value,
        subject_kind=data.subject_kind.value,
        subject_id=fulfilment.subject_id_of(subject),
        requested_by=data.requested_by.value,
        language=data.language,
        received_on=received_on,
        due_on=deadlines.due_on(received_on),
        state=RequestState.open.value,
        details=details,
        created_by=principal.account_id,
        created_at=datetime.now(UTC),
    )
    session.add(request)
    session.flush()
    _record(session, principal, DSR_RECEIVED, request, received_on=received_on, due_on=request.due_on)
    log.info("consent.dsr_received", request_id=request.id, kind=request.kind, subject=request.subject_id)
    return request


def get_request(
    session: Session, principal: Principal, request_id: str, *, for_update: bool = False
) -> DataSubjectRequest:
    """One request the principal may see; RequestNotFound otherwise."""
    found = repository.get_request(session, principal, request_id, for_update=for_update)
    if found is None:
        raise RequestNotFound(request_id)
    return found


def _open_for_change(session: Session, principal: Principal, request_id: str) -> DataSubjectRequest:
    request = get_request(session, principal, request_id, for_update=True)
    if request.state in repository.CLOSED:
        raise RequestConflict(
            f"request {request.id} is {request.state}; a closed request cannot change", code="request_closed"
        )
    return request


def list_queue(
    session: Session,
    principal: Principal,
    *,
    state: RequestState | None = None,
    kind: RequestKind | None = None,
    overdue: bool | None = None,
    limit: int = 100,
    offset: int = 0,
    today: date | None = None,
) -> list[QueueItem]:
    """The queue in the principal's scope: overdue first (oldest due date first), then by due date."""
    today = today or deadlines.utc_today()
    rows = repository.queue(
        session, principal, today=today, state=state, kind=kind, overdue=overdue, limit=limit, offset=offset
    )
    return [QueueItem.of(row, today) for row in rows]


def start_request(session: Session, principal: Principal, request_id: str) -> DataSubjectRequest:
    """Mark an open request as being worked on."""
    request = _open_for_change(session, principal, request_id)
    if request.state != RequestState.open.value:
        raise RequestConflict(f"request {request.id} is already {request.state}", code="already_started")
    request.state = RequestState.in_progress.value
    session.flush()
    _record(session, principal, DSR_STARTED, request)
    return request


def extend_request(
    session: Session,
    principal: Principal,
    request_id: str,
    reason: str,
    months: int = 2,
    *,
    today: date | None = None,
) -> DataSubjectRequest:
    """Extend the deadline once by one or two months, counted from receipt (Art. 12(3)).

    Allowed only while the original deadline runs (the subject must be told of the extension within
    the first month) and while the request is not closed; the reason is stored, not put in the ledger.
    """
    today = today or deadlines.utc_today()
    reason = reason.strip()
    if not reason:
        raise InvalidRequest(
            "reason", "an extension needs the reason the subject will be told", code="reason_required"
        )
    request = _open_for_change(session, principal, request_id)
    if request.extended_due_on is not None:
        raise RequestConflict(
            f"request {request.id} was already extended to {request.extended_due_on.isoformat()}; "
            "a deadline is extended once only",
            code="already_extended",
        )
    if today > request.due_on:
        raise RequestConflict(
            f"the original deadline {request.due_on.isoformat()} has passed; an extension must be decided "
            "and told to the subject within the first month",
            code="original_deadline_passed",
        )
    try:
        new_due = deadlines.extended_due_on(request.received_on, months)
    except ValueError as error:
        raise InvalidRequest("months", str(error), code="bad_extension") from None
    request.extended_due_on = new_due
    request.extension_reason = reason
    session.flush()
    _record(session, principal, DSR_EXTENDED, request, due_on=request.due_on, extended_due_on=new_due)
    log.info("consent.dsr_extended", request_id=request.id, extended_due_on=new_due.isoformat())
    return request


def _close(
    request: DataSubjectRequest, principal: Principal, state: RequestState, outcome: str | None
) -> None:
    request.state = state.value
    request.outcome = outcome
    request.closed_at = datetime.now(UTC)
    request.closed_by = principal.account_id
    # Corrected values are only needed until applied (or refused): keep the field names alone.
    request.details = {key: value for key, value in request.details.items() if key != "changes"}


def refuse_request(
    session: Session, principal: Principal, request_id: str, reason: str
) -> DataSubjectRequest:
    """Refuse a request with the reason the subject is told (Art. 12(4)); final."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequest(
            "reason", "a refusal needs the reason the subject is told", code="reason_required"
        )
    request = _open_for_change(session, principal, request_id)
    _close(request, principal, RequestState.refused, reason)
    session.flush()
    _record(session, principal, DSR_REFUSED, request)
    log.info("consent.dsr_refused", request_id=request.id)
    return request


def _carry_out(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    request: DataSubjectRequest,
    subject: Subject,
) -> Effect:
    kind = SubjectKind(request.subject_kind)
    match RequestKind(request.kind):
        case RequestKind.access:
            # Built once to prove it can be (every identity decrypts); it is fetched, not stored.
            export.build_export(session, protector, request, subject)
            return Effect()
        case RequestKind.rectification:
            changes = _plain_changes(session, protector, kind, request.details.get("changes", {}))
            return fulfilment.rectify(session, principal, protector, subject, changes)
        case RequestKind.erasure:
            return fulfilment.erase(session, protector, subject, kind)
        case RequestKind.restriction | RequestKind.objection:
            if isinstance(subject, Guardian):
                raise RequestConflict(
                    "a guardian holds no research data to restrict", code="not_applicable_to_guardian"
                )
            return fulfilment.restrict(session, subject, kind)


def complete_request(
    session: Session, principal: Principal, protector: IdentityProtector, request_id: str, outcome: str = ""
) -> DataSubjectRequest:
    """Carry out what the request asks (see ``consent.requests.fulfilment``) and close it; final."""
    request = _open_for_change(session, principal, request_id)
    subject = resolve_subject(session, principal, SubjectKind(request.subject_kind), request.subject_id)
    effect = _carry_out(session, principal, protector, request, subject)
    _close(request, principal, RequestState.completed, outcome.strip() or None)
    session.flush()
    _record(
        session,
        principal,
        DSR_COMPLETED,
        request,
        withdrawal_event=effect.withdrawal.event_id if effect.withdrawal is not None else None,
        fields=list(effect.fields) or None,
    )
    log.info("consent.dsr_completed", request_id=request.id, kind=request.kind)
    return request


def access_export(
    session: Session, principal: Principal, protector: IdentityProtector, request_id: str, fmt: ExportFormat
) -> dict[str, Any]:
    """The export of an access request's subject (audited download); 409 for other kinds or a refusal."""
    request = get_request(session, principal, request_id)
    if request.kind != RequestKind.access.value:
        raise RequestConflict(
            f"request {request.id} is a {request.kind} request, not access", code="not_access"
        )
    if request.state == RequestState.refused.value:
        raise RequestConflict(f"request {request.id} was refused", code="request_refused")
    subject = resolve_subject(session, principal, SubjectKind(request.subject_kind), request.subject_id)
    document = export.build_export(session, protector, request, subject)
    _record(session, principal, DSR_EXPORT_DOWNLOADED, request, format=fmt)
    log.info("consent.dsr_export_downloaded", request_id=request.id, format=fmt.value)
    return document


def visible_details(request: DataSubjectRequest) -> dict[str, Any]:
    """The details shown by the API: the note and field names, never corrected values."""
    return {key: value for key, value in request.details.items() if key != "changes"}
