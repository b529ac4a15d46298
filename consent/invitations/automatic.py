"""Re-consent invitations sent by the daily job, without waiting for a steward.

After the re-consent scan (``consent.decisions.reconsent``) has marked students, this sends, for
every school with marks nobody has been invited for yet, a ``reconsent`` campaign exactly as a
steward of that school would: emails are queued, letters stored for the school's stewards to
print from their console. Each school is handled in its own transaction, so one failure does not
hold back the others; a school with nobody left to invite is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from access.audit.actions import Role
from access.principal import Principal
from consent.decisions.models import ReconsentMark
from consent.identity import IdentityProtector
from consent.invitations import sending
from consent.invitations.models import InvitationReason
from consent.rosters.models import Student
from infra.errors import EnclaveError
from infra.keys import KeyBackend
from infra.logging import get_logger
from infra.storage.base import ObjectStorage

log = get_logger(__name__)

SYSTEM_ACCOUNT = "system"


@dataclass
class AutomaticResult:
    """Schools invited, and schools skipped with the reason."""

    invited: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def schools_to_invite(session: Session) -> list[tuple[str, str]]:
    """(country, school) of every school with open re-consent marks nobody was invited for."""
    rows = session.execute(
        select(Student.country_code, Student.school_code)
        .join(ReconsentMark, ReconsentMark.student_id == Student.id)
        .where(ReconsentMark.resolved_at.is_(None), ReconsentMark.invited_at.is_(None))
        .distinct()
        .order_by(Student.country_code, Student.school_code)
    ).all()
    return [(country, school) for country, school in rows]


def send_reconsent_invitations(
    sessions: sessionmaker[Session],
    *,
    keys: KeyBackend,
    storage: ObjectStorage,
    links: sending.Links,
    now: datetime | None = None,
) -> AutomaticResult:
    """Send a re-consent campaign to every school that needs one."""
    moment = now or datetime.now(UTC)
    protector = IdentityProtector(keys)
    result = AutomaticResult()
    with sessions() as session:
        schools = schools_to_invite(session)
    for country, school in schools:
        principal = Principal(
            account_id=SYSTEM_ACCOUNT,
            roles=frozenset({Role.data_steward}),
            country=country,
            schools=frozenset({school}),
        )
        try:
            with sessions() as session, session.begin():
                sending.send_campaign(
                    session,
                    principal,
                    keys=keys,
                    protector=protector,
                    storage=storage,
                    links=links,
                    school=school,
                    reason=InvitationReason.reconsent,
                    now=moment,
                )
            result.invited.append(school)
        except EnclaveError as refused:
            result.skipped[school] = str(refused.extra.get("reason", refused.detail))
            log.info("consent.reconsent_invitations_skipped", school=school, reason=result.skipped[school])
    return result
