"""HTTP endpoints under /api/consent: decisions, statuses, re-consent marks, rule impacts, withdrawals."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from access.dependencies import DpoDep, StewardDep, StewardOrDpoDep
from consent.decisions import queries, service
from consent.decisions.exceptions import InvalidDecision
from consent.decisions.models import Channel
from consent.decisions.schemas import (
    AwareDatetime,
    DecisionCreate,
    DecisionRead,
    ReconsentMarkRead,
    RuleImpactRead,
    StatusBatch,
    StatusBatchRequest,
    SubjectId,
    SubjectStatus,
    WithdrawalRead,
)
from consent.dependencies import KeysDep
from infra.web.deps import SessionDep

router = APIRouter(prefix="/api/consent", tags=["consent"])

PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Your role may not do this."},
    404: {"description": "No such subject, or not one in your scope."},
    409: {"description": "The decision clashes with the form in force or the rule for the subject's age."},
    422: {"description": "The input is invalid; the answer names the field and the rule."},
}
STAFF_CHANNELS = {Channel.paper, Channel.school_session}


def _read(recorded: service.RecordedDecision) -> DecisionRead:
    return DecisionRead.model_validate(recorded, from_attributes=True)


@router.post(
    "/decisions", response_model=DecisionRead, status_code=status.HTTP_201_CREATED, responses=PROBLEMS
)
def record_decision(
    body: DecisionCreate, principal: StewardDep, session: SessionDep, response: Response
) -> DecisionRead:
    """Enter a decision given on paper or in a school session (families use their own pages).

    The same ``idempotency_key`` again answers 200 with the first recording and records nothing new.
    """
    if body.channel not in STAFF_CHANNELS:
        raise InvalidDecision(
            "channel",
            "staff enter decisions given on paper or in a school session",
            code="channel_not_allowed",
        )
    recorded = service.record_decision(session, principal.actor, body, scope=principal)
    if recorded.replayed:
        response.status_code = status.HTTP_200_OK
    return _read(recorded)


@router.get("/subjects/{subject_id}/decisions", response_model=list[DecisionRead], responses=PROBLEMS)
def subject_decisions(
    subject_id: Annotated[SubjectId, Path()], principal: StewardOrDpoDep, session: SessionDep
) -> list[DecisionRead]:
    """Every decision on one subject, oldest first (one entry per submission)."""
    return [_read(event) for event in queries.decision_history(session, principal, subject_id)]


@router.get("/subjects/{subject_id}/status", response_model=SubjectStatus, responses=PROBLEMS)
def subject_status(
    subject_id: Annotated[SubjectId, Path()],
    principal: StewardOrDpoDep,
    session: SessionDep,
    at: Annotated[AwareDatetime | None, Query(description="The instant (default: now).")] = None,
) -> SubjectStatus:
    """One subject's status per purpose, with the age, regime and rule version it was derived from."""
    return queries.subject_status(session, principal, subject_id, at=at)


@router.post("/status", response_model=StatusBatch, responses=PROBLEMS)
def batch_status(
    body: StatusBatchRequest, principal: StewardOrDpoDep, session: SessionDep, keys: KeysDep
) -> StatusBatch:
    """Statuses of many subjects at one instant, by subject id or by pseudonym in a project domain.

    Subjects that are unknown, or outside a steward's scope, are listed in ``unknown``.
    """
    return queries.batch(session, principal, keys, body)


@router.get("/reconsent", response_model=list[ReconsentMarkRead], responses=PROBLEMS)
def reconsent_marks(
    principal: StewardOrDpoDep,
    session: SessionDep,
    open_only: Annotated[bool, Query(alias="open", description="Only marks not yet resolved.")] = True,
    due_before: Annotated[date | None, Query(description="Only marks due before this day.")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[ReconsentMarkRead]:
    """Students to invite again (self-consent age, rule or form change), soonest due first."""
    return queries.reconsent(session, principal, open_only=open_only, due_before=due_before, limit=limit)


@router.get("/rule-impacts/{rule_id}", response_model=list[RuleImpactRead], responses=PROBLEMS)
def rule_impacts(
    rule_id: Annotated[int, Path(ge=1, le=2**31 - 1)], principal: DpoDep, session: SessionDep
) -> list[RuleImpactRead]:
    """The students whose status changes when this rule version takes effect, with before and after."""
    return queries.impacts(session, rule_id)


@router.get("/withdrawals", response_model=list[WithdrawalRead], responses=PROBLEMS)
def withdrawals(
    principal: DpoDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[WithdrawalRead]:
    """Withdrawal events, newest first, with the consumers (e.g. erasure) that have acted on each."""
    return queries.withdrawals(session, limit=limit)
