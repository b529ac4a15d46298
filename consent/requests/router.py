"""HTTP endpoints of data-subject requests under /api/consent/requests."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Response, status

from access.dependencies import DpoDep, StewardOrDpoDep
from consent.dependencies import IdentityDep
from consent.requests import deadlines, export, service
from consent.requests.models import DataSubjectRequest, RequestKind, RequestState
from consent.requests.schemas import (
    CompleteBody,
    ExportFormat,
    ExtendBody,
    RefuseBody,
    RequestCreate,
    RequestRead,
    RequestSummary,
)
from consent.requests.service import QueueItem
from infra.web.deps import SessionDep

router = APIRouter(prefix="/api/consent/requests", tags=["consent"])

RequestId = Annotated[
    str,
    Path(
        description="The request's id (a UUID).",
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    ),
]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The caller's role may not do this."},
    404: {"description": "No such request or subject, or not one in the caller's scope."},
    409: {"description": "The request's state does not allow this (closed, already extended, ...)."},
    422: {"description": "The input is invalid; the answer names the field and the rule."},
}


def _summary_fields(item: QueueItem) -> dict[str, Any]:
    request = item.request
    return {
        "id": request.id,
        "kind": request.kind,
        "subject_kind": request.subject_kind,
        "subject_id": request.subject_id,
        "requested_by": request.requested_by,
        "language": request.language,
        "state": request.state,
        "received_on": request.received_on,
        "due_on": request.due_on,
        "extended_due_on": request.extended_due_on,
        "effective_due_on": item.effective_due_on,
        "extended": request.extended_due_on is not None,
        "overdue": item.overdue,
        "days_left": item.days_left,
        "created_at": request.created_at,
        "closed_at": request.closed_at,
    }


def _read(request: DataSubjectRequest) -> RequestRead:
    item = QueueItem.of(request, deadlines.utc_today())
    return RequestRead.model_validate(
        {
            **_summary_fields(item),
            "extension_reason": request.extension_reason,
            "outcome": request.outcome,
            "details": service.visible_details(request),
            "created_by": request.created_by,
            "closed_by": request.closed_by,
        }
    )


@router.post("", response_model=RequestRead, status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def create_request(
    body: RequestCreate, principal: StewardOrDpoDep, session: SessionDep, protector: IdentityDep
) -> RequestRead:
    """Record a request as received; it is due one calendar month after ``received_on``."""
    return _read(service.create_request(session, principal, protector, body))


@router.get("", response_model=list[RequestSummary], responses=PROBLEMS)
def queue(
    *,
    principal: StewardOrDpoDep,
    session: SessionDep,
    state: Annotated[RequestState | None, Query(description="Only requests in this state.")] = None,
    kind: Annotated[RequestKind | None, Query(description="Only requests of this kind.")] = None,
    overdue: Annotated[bool | None, Query(description="Only overdue (true) or not overdue (false).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[RequestSummary]:
    """The queue: overdue requests first (oldest due date first), then the rest by due date."""
    items = service.list_queue(
        session, principal, state=state, kind=kind, overdue=overdue, limit=limit, offset=offset
    )
    return [RequestSummary.model_validate(_summary_fields(item)) for item in items]


@router.get("/{request_id}", response_model=RequestRead, responses=PROBLEMS)
def read_request(request_id: RequestId, principal: StewardOrDpoDep, session: SessionDep) -> RequestRead:
    """One request with its deadline, reasons and what was asked (never corrected values)."""
    return _read(service.get_request(session, principal, request_id))


@router.post("/{request_id}/start", response_model=RequestRead, responses=PROBLEMS)
def start_request(request_id: RequestId, principal: StewardOrDpoDep, session: SessionDep) -> RequestRead:
    """Mark an open request as being worked on."""
    return _read(service.start_request(session, principal, request_id))


@router.post("/{request_id}/extend", response_model=RequestRead, responses=PROBLEMS)
def extend_request(
    request_id: RequestId, body: ExtendBody, principal: DpoDep, session: SessionDep
) -> RequestRead:
    """Extend the deadline once, by one or two months counted from receipt, with the reason."""
    return _read(service.extend_request(session, principal, request_id, body.reason, body.months))


@router.post("/{request_id}/refuse", response_model=RequestRead, responses=PROBLEMS)
def refuse_request(
    request_id: RequestId, body: RefuseBody, principal: DpoDep, session: SessionDep
) -> RequestRead:
    """Refuse the request with the reason the subject is told (Art. 12(4)); final."""
    return _read(service.refuse_request(session, principal, request_id, body.reason))


@router.post("/{request_id}/complete", response_model=RequestRead, responses=PROBLEMS)
def complete_request(
    request_id: RequestId,
    principal: DpoDep,
    session: SessionDep,
    protector: IdentityDep,
    body: CompleteBody | None = None,
) -> RequestRead:
    """Carry out the request (rectify, erase, restrict; for access, check the export) and close it."""
    outcome = body.outcome if body is not None else ""
    return _read(service.complete_request(session, principal, protector, request_id, outcome))


@router.get(
    "/{request_id}/export",
    responses={**PROBLEMS, 200: {"content": {"application/json": {}, "text/csv": {}}}},
    response_class=Response,
)
def download_export(
    request_id: RequestId,
    principal: DpoDep,
    session: SessionDep,
    protector: IdentityDep,
    format: Annotated[ExportFormat, Query(description="`json` or `csv`.")] = ExportFormat.json,
) -> Response:
    """Everything held on the subject of an access request (Art. 15), as JSON or a long CSV."""
    document = service.access_export(session, principal, protector, request_id, format)
    headers = {
        "Content-Disposition": f'attachment; filename="access-export-{request_id}.{format.value}"',
        "Cache-Control": "no-store",
    }
    if format is ExportFormat.csv:
        return Response(export.to_csv(document), media_type="text/csv; charset=utf-8", headers=headers)
    return Response(orjson.dumps(document), media_type="application/json", headers=headers)
