"""Reading campaigns: the list in a steward's scope and one campaign with its counts.

Counts come from the invitations (per kind and channel, opened, replaced) and from the email
outbox's delivery statuses of the messages the campaign queued (metadata only: the outbox never
tells who a message was for).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.principal import Principal
from consent.invitations.models import Campaign, Invitation, InvitationChannel
from consent.invitations.sending import CampaignNotFound, letters_expire_at
from consent.scope import scope_filter
from infra.email.models import EmailMessage

MAX_LISTED = 500


@dataclass(frozen=True)
class CampaignCounts:
    """One campaign and what became of its invitations."""

    campaign: Campaign
    invited: int = 0
    guardians: int = 0
    students: int = 0
    teachers: int = 0
    emails: int = 0
    letters: int = 0
    opened: int = 0
    replaced: int = 0
    email_statuses: dict[str, int] = field(default_factory=dict)
    letters_until: datetime | None = None


def list_campaigns(
    session: Session, principal: Principal, *, school: str | None = None, limit: int = 100
) -> Sequence[Campaign]:
    """Campaigns in the principal's scope (newest first), optionally of one school."""
    query = select(Campaign).where(scope_filter(principal, Campaign.country_code, Campaign.school_code))
    if school is not None:
        query = query.where(Campaign.school_code == school)
    query = query.order_by(Campaign.created_at.desc()).limit(min(limit, MAX_LISTED))
    return list(session.execute(query).scalars())


def get_campaign(session: Session, principal: Principal, campaign_id: str) -> Campaign:
    """One campaign in the principal's scope, or CampaignNotFound (its existence is not revealed)."""
    campaign = session.execute(
        select(Campaign).where(
            Campaign.id == campaign_id, scope_filter(principal, Campaign.country_code, Campaign.school_code)
        )
    ).scalar_one_or_none()
    if campaign is None:
        raise CampaignNotFound(campaign_id)
    return campaign


def counts_for(session: Session, campaigns: Sequence[Campaign]) -> list[CampaignCounts]:
    """The counts of each campaign, in the order given (two queries whatever the number)."""
    ids = [c.id for c in campaigns]
    if not ids:
        return []
    invitations = list(session.execute(select(Invitation).where(Invitation.campaign_id.in_(ids))).scalars())
    message_ids = [i.email_message_id for i in invitations if i.email_message_id]
    statuses: dict[str, str] = {}
    if message_ids:
        statuses = dict(
            session.execute(
                select(EmailMessage.id, EmailMessage.status).where(EmailMessage.id.in_(message_ids))
            ).all()
        )
    by_campaign: dict[str, list[Invitation]] = {}
    for invitation in invitations:
        by_campaign.setdefault(invitation.campaign_id or "", []).append(invitation)
    answer = []
    for campaign in campaigns:
        rows = by_campaign.get(campaign.id, [])
        kinds = Counter(i.kind for i in rows)
        letters = sum(1 for i in rows if i.channel == InvitationChannel.letter.value)
        email_statuses = Counter(
            statuses[i.email_message_id]
            for i in rows
            if i.email_message_id and i.email_message_id in statuses
        )
        answer.append(
            CampaignCounts(
                campaign=campaign,
                invited=len(rows),
                guardians=kinds.get("guardian", 0),
                students=kinds.get("student", 0),
                teachers=kinds.get("teacher", 0),
                emails=sum(1 for i in rows if i.channel == InvitationChannel.email.value),
                letters=letters,
                opened=sum(1 for i in rows if i.opened_at is not None),
                replaced=sum(1 for i in rows if i.revoked_at is not None),
                email_statuses=dict(email_statuses),
                letters_until=letters_expire_at(campaign) if letters else None,
            )
        )
    return answer
