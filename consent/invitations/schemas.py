"""What the campaigns API accepts and answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from consent.invitations.models import InvitationReason


class CampaignCreate(BaseModel):
    """A campaign for one of your schools (the country is your account's)."""

    model_config = ConfigDict(extra="forbid")

    school: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    reason: InvitationReason = Field(
        default=InvitationReason.invitation,
        description="`invitation`: everyone with something to decide; `reminder`: the undecided again "
        "(new links replace old ones); `reconsent`: students with open re-consent marks.",
    )


class EmailCounts(BaseModel):
    """Emails of a campaign by delivery status."""

    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    gave_up: int = 0


class CampaignRead(BaseModel):
    """A campaign and what became of its invitations."""

    id: str
    country_code: str
    school_code: str
    reason: InvitationReason
    created_at: datetime
    invited: int
    guardians: int
    students: int
    teachers: int
    emails: int
    letters: int
    opened: int
    replaced: int = Field(description="Invitations replaced by a later one before being opened.")
    email_status: EmailCounts
    letters_pdf: str | None = Field(description="Where to download the letters, while they are kept.")
    letters_available_until: datetime | None


class CampaignSent(CampaignRead):
    """A campaign just sent."""

    emails_queued: int
