"""HTTP API of the audit review: filter, page, export, verify, checkpoint and sign off the ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import StreamingResponse

from access.audit import review
from access.audit.actions import Outcome, Role
from access.audit.review import DEFAULT_PAGE, MAX_PAGE, EntryFilter, InvalidFilter
from access.audit.review_export import ExportFormat, prepare_export, stream_export
from access.audit.review_schemas import (
    CheckpointOut,
    EntryOut,
    EntryPageOut,
    SignoffIn,
    SignoffOut,
    VerificationOut,
)
from access.audit.service import SignedCheckpoint
from access.dependencies import DpoDep, ReviewerDep
from infra.keys import KeyBackend
from infra.web.deps import SessionDep

router = APIRouter(prefix="/api/audit", tags=["audit review"])
E = TypeVar("E", Role, Outcome)


def _blank(value: str | None) -> str | None:
    # Forms submit empty fields as empty strings; they mean "no filter".
    return value.strip() if value and value.strip() else None


def _time(name: str, value: str | None) -> datetime | None:
    value = _blank(value)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidFilter(f"{name} is not an ISO 8601 date or time: {value!r}") from None


def _seq(name: str, value: str | None) -> int | None:
    value = _blank(value)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidFilter(f"{name} is not a sequence number: {value!r}")
    return int(value)


def _choice(name: str, kind: type[E], value: str | None) -> E | None:
    value = _blank(value)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise InvalidFilter(f"{name} must be one of: {choices}") from None


def entry_filter(
    *,
    actor_id: Annotated[str | None, Query(max_length=160, description="Account id of the actor.")] = None,
    role: Annotated[str | None, Query(description="Role the actor acted in, e.g. `dpo`.")] = None,
    action: Annotated[str | None, Query(max_length=80, description="e.g. `audit.read`.")] = None,
    target_id: Annotated[str | None, Query(max_length=160, description="Target id or pseudonym.")] = None,
    project_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(description="`ok`, `denied` or `failed`.")] = None,
    since: Annotated[
        str | None, Query(alias="from", description="ISO 8601 time, inclusive (naive = UTC).")
    ] = None,
    until: Annotated[
        str | None, Query(alias="to", description="ISO 8601 time, exclusive (naive = UTC).")
    ] = None,
    first_seq: Annotated[str | None, Query(description="Smallest sequence number.")] = None,
    last_seq: Annotated[str | None, Query(description="Largest sequence number.")] = None,
) -> EntryFilter:
    """The ledger filters of a query string (shared by the API and the review pages)."""
    return EntryFilter(
        actor_id=_blank(actor_id),
        role=_choice("role", Role, role),
        action=_blank(action),
        target_id=_blank(target_id),
        project_id=_blank(project_id),
        outcome=_choice("outcome", Outcome, outcome),
        since=_time("from", since),
        until=_time("to", until),
        first_seq=_seq("first_seq", first_seq),
        last_seq=_seq("last_seq", last_seq),
    )


FilterDep = Annotated[EntryFilter, Depends(entry_filter)]


def key_backend(request: Request) -> KeyBackend:
    """The process's key backend."""
    keys: KeyBackend = request.app.state.components.keys
    return keys


KeysDep = Annotated[KeyBackend, Depends(key_backend)]


@router.get("/entries", response_model=EntryPageOut)
def list_entries(
    session: SessionDep,
    principal: ReviewerDep,
    filters: FilterDep,
    cursor: Annotated[
        str | None, Query(max_length=400, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> EntryPageOut:
    """Matching ledger entries, oldest first, one page at a time (the read itself is audited)."""
    page = review.list_entries(session, principal, filters, cursor=cursor, limit=limit)
    return EntryPageOut(
        entries=[EntryOut.of(e) for e in page.entries],
        next_cursor=page.next_cursor,
        ledger_size=page.ledger_size,
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def export(
    *,
    request: Request,
    session: SessionDep,
    principal: ReviewerDep,
    keys: KeysDep,
    filters: FilterDep,
    format: Annotated[ExportFormat, Query(description="`csv` or `json`.")] = ExportFormat.json,
) -> StreamingResponse:
    """The matching entries with a signed checkpoint and each entry's inclusion proof against it."""
    plan = prepare_export(session, principal, keys, filters, format)
    media = "application/json" if format is ExportFormat.json else "text/csv; charset=utf-8"
    name = f"audit-export-{plan.checkpoint.tree_size}.{format.value}"
    factory = request.app.state.components.session_factory
    return StreamingResponse(
        stream_export(factory, plan, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/verify", response_model=VerificationOut)
def verify(session: SessionDep, principal: ReviewerDep, keys: KeysDep) -> VerificationOut:
    """Recompute every entry hash, chain link, Merkle root and checkpoint signature."""
    return VerificationOut.of(review.verify(session, principal, keys))


@router.post("/verify", response_model=VerificationOut)
def verify_against_saved(
    session: SessionDep,
    principal: ReviewerDep,
    keys: KeysDep,
    saved: Annotated[dict[str, Any], Body(description="A checkpoint saved from /checkpoints/latest.")],
) -> VerificationOut:
    """Verify the ledger and prove it only grew since the reviewer's saved checkpoint."""
    checkpoint = SignedCheckpoint.from_json(saved)
    return VerificationOut.of(review.verify(session, principal, keys, checkpoint))


@router.post("/checkpoints", response_model=CheckpointOut, status_code=201)
def sign_checkpoint(session: SessionDep, principal: DpoDep, keys: KeysDep) -> CheckpointOut:
    """Sign a checkpoint of the ledger as it is now (DPO only)."""
    return CheckpointOut.of(review.sign_checkpoint(session, keys))


@router.get("/checkpoints/latest", response_model=CheckpointOut)
def latest_checkpoint(session: SessionDep, principal: ReviewerDep) -> CheckpointOut:
    """The newest signed checkpoint, in the file format a reviewer saves and sends back to /verify."""
    return CheckpointOut.of(review.read_latest_checkpoint(session, principal))


@router.post("/signoffs", response_model=SignoffOut, status_code=201)
def sign_off(session: SessionDep, principal: ReviewerDep, keys: KeysDep, body: SignoffIn) -> SignoffOut:
    """Sign off a reviewed range against a signed checkpoint covering it."""
    row = review.sign_off(
        session,
        principal,
        keys,
        first_seq=body.first_seq,
        last_seq=body.last_seq,
        comment=body.comment,
    )
    return SignoffOut.of(row)


@router.get("/signoffs", response_model=list[SignoffOut])
def list_signoffs(session: SessionDep, principal: ReviewerDep) -> list[SignoffOut]:
    """Every sign-off, newest first."""
    return [SignoffOut.of(row) for row in review.list_signoffs(session, principal)]
