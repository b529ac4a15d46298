"""HTTP endpoints of invitation campaigns under /api/consent/campaigns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from access.dependencies import StewardDep, StewardOrDpoDep
from consent.dependencies import IdentityDep, KeysDep
from consent.invitations import campaigns, sending
from consent.invitations.campaigns import CampaignCounts
from consent.invitations.models import InvitationReason
from consent.invitations.schemas import CampaignCreate, CampaignRead, CampaignSent, EmailCounts
from infra.storage import ObjectStorage
from infra.web.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/api/consent/campaigns", tags=["consent"])

CampaignId = Annotated[str, Path(min_length=1, max_length=36, description="The campaign id.")]
School = Annotated[str | None, Query(min_length=2, max_length=32, description="Only this school.")]

PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only data stewards send campaigns, for schools in their scope."},
    404: {"description": "No such campaign in your scope."},
    409: {"description": "Nobody at the school has anything to decide."},
    410: {"description": "The letters were deleted 7 days after the campaign."},
    422: {"description": "The school is not on the roster, or a field is invalid."},
}


def _storage(request: Request) -> ObjectStorage:
    storage: ObjectStorage = request.app.state.components.storage
    return storage


def campaign_read(counts: CampaignCounts, *, now: datetime | None = None) -> CampaignRead:
    """The API view of a campaign's counts."""
    campaign = counts.campaign
    moment = now or datetime.now(UTC)
    available = counts.letters_until is not None and counts.letters_until > moment
    return CampaignRead(
        id=campaign.id,
        country_code=campaign.country_code,
        school_code=campaign.school_code,
        reason=InvitationReason(campaign.reason),
        created_at=campaign.created_at,
        invited=counts.invited,
        guardians=counts.guardians,
        students=counts.students,
        teachers=counts.teachers,
        emails=counts.emails,
        letters=counts.letters,
        opened=counts.opened,
        replaced=counts.replaced,
        email_status=EmailCounts(**counts.email_statuses),
        letters_pdf=f"{router.prefix}/{campaign.id}/letters.pdf" if available else None,
        letters_available_until=counts.letters_until if available else None,
    )


@router.post("", response_model=CampaignSent, status_code=201, responses=PROBLEMS)
def send_campaign(
    *,
    body: CampaignCreate,
    request: Request,
    principal: StewardDep,
    session: SessionDep,
    settings: SettingsDep,
    keys: KeysDep,
    protector: IdentityDep,
) -> CampaignSent:
    """Invite the people of one of your schools: emails are queued (sent once this request
    commits) and letters are rendered into one PDF kept for 7 days. ``reminder`` re-invites the
    undecided with new links (the old ones stop working); ``reconsent`` invites students with open
    re-consent marks."""
    sent = sending.send_campaign(
        session,
        principal,
        keys=keys,
        protector=protector,
        storage=_storage(request),
        links=sending.Links(settings.public_url),
        school=body.school,
        reason=body.reason,
    )
    read = campaign_read(campaigns.counts_for(session, [sent.campaign])[0])
    return CampaignSent(**read.model_dump(), emails_queued=sent.emails_queued)


@router.get("", response_model=list[CampaignRead], responses=PROBLEMS)
def list_campaigns(
    principal: StewardOrDpoDep, session: SessionDep, school: School = None
) -> list[CampaignRead]:
    """Campaigns in your scope, newest first, with their counts (the DPO sees every country)."""
    found = campaigns.list_campaigns(session, principal, school=school)
    return [campaign_read(c) for c in campaigns.counts_for(session, found)]


@router.get("/{campaign_id}", response_model=CampaignRead, responses=PROBLEMS)
def get_campaign(campaign_id: CampaignId, principal: StewardOrDpoDep, session: SessionDep) -> CampaignRead:
    """One campaign: invited per kind, emails by delivery status, letters, opened."""
    campaign = campaigns.get_campaign(session, principal, campaign_id)
    return campaign_read(campaigns.counts_for(session, [campaign])[0])


@router.get(
    "/{campaign_id}/letters.pdf",
    response_class=Response,
    responses={**PROBLEMS, 200: {"content": {"application/pdf": {}}, "description": "The letters."}},
)
def letters_pdf(
    campaign_id: CampaignId, request: Request, principal: StewardDep, session: SessionDep, keys: KeysDep
) -> Response:
    """The campaign's printable letters (one PDF, a letter per page), for 7 days after sending.
    Each download is recorded in the ledger."""
    campaign = campaigns.get_campaign(session, principal, campaign_id)
    counts = campaigns.counts_for(session, [campaign])[0]
    pdf = sending.letters_pdf(
        session, principal, keys=keys, storage=_storage(request), campaign=campaign, letters=counts.letters
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="letters-{campaign.school_code}.pdf"',
            "Cache-Control": "no-store",
        },
    )
