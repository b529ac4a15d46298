"""Sending a campaign: one email per email invitation, one printable letter per letter invitation.

A link's token and short code exist in clear only while the campaign is being sent (the database
holds keyed hashes). So both channels are produced in the same request:

* **Emails** are composed in the invitee's language (``consent.invitations.messages``) and queued
  in the email outbox in the caller's transaction (sent after commit); the message id is kept on
  the invitation, so its delivery status can be shown.
* **Letters** are rendered into one PDF at once, encrypted (AES-256-GCM under a fresh data key
  wrapped by the key backend's ``invitation-letters`` key, the campaign id as associated data) and
  kept in the object store for ``LETTERS_KEPT`` (7 days) so the steward can download and print
  them (each download is recorded in the ledger). After that the file is deleted: a lost or late
  batch is replaced by a reminder campaign, whose new letters revoke the old codes.

  Why not re-issue the letters on every download instead? A download would then silently revoke
  the letters already handed out, and a GET (or a browser's prefetch) would change data. Why not
  keep the PDF for the whole validity of the links? It holds working credentials of many
  families: the shorter it exists, the better, and a week is enough to print and hand out.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, register_action
from access.audit.service import record
from access.principal import Principal
from consent.identity import IdentityField, IdentityProtector
from consent.invitations import messages
from consent.invitations.models import Campaign, InvitationChannel, InvitationReason, InviteeKind
from consent.invitations.service import CampaignResult, IssuedInvitation, format_code, start_campaign
from consent.letters import Letter, render_letters
from consent.rosters.models import Guardian, Guardianship, Student, Teacher
from consent.scope import require_scope
from infra.db import as_utc
from infra.email import queue_email
from infra.errors import EnclaveError, Forbidden, InvalidField, NotFound, ReasonedConflict
from infra.keys import KeyBackend, WrappedKey
from infra.logging import get_logger
from infra.storage import ObjectNotFound, ObjectStorage

log = get_logger(__name__)

LETTERS_KEY: Final = "invitation-letters"
LETTERS_PREFIX: Final = "consent-letters/"
LETTERS_KEPT: Final = timedelta(days=7)
RESEND_GUARD: Final = timedelta(minutes=2)
"""A second campaign of the same kind for a school this soon is a double submit: it is refused,
because it would silently replace the links just sent."""
_MAGIC: Final = b"LCLETTERS1\n"


class LettersGone(EnclaveError):
    """The letters PDF of a campaign no longer exists (deleted after ``LETTERS_KEPT``)."""

    status_code = 410
    type_slug = "letters-gone"
    title = "The letters are no longer available"

    def __init__(self) -> None:
        super().__init__(
            f"the letters of this campaign were deleted {LETTERS_KEPT.days} days after it was sent; "
            "start a reminder campaign to print new letters (they replace the old codes)",
            extra={"reason": "letters_deleted"},
        )


class CampaignNotFound(NotFound):
    """No campaign with this id in the caller's scope."""

    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"no campaign {campaign_id} in your scope", extra={"reason": "campaign_not_found"})


class LettersDownloadedDetails(Details):
    """Ledger details of a letters download: which school and how many letters."""

    school: Identifier
    letters: int


LETTERS_DOWNLOADED = register_action("consent.letters_downloaded", LettersDownloadedDetails)


@dataclass(frozen=True)
class SentCampaign:
    """What sending a campaign did."""

    campaign: Campaign
    invitations: int
    emails_queued: int
    letters: int


@dataclass(frozen=True)
class Links:
    """Where families open their invitation."""

    base_url: str

    def link(self, token: str) -> str:
        """The personal link of a token."""
        return f"{self.base_url.rstrip('/')}/f/{token}"

    @property
    def code_page(self) -> str:
        """The page where a short code is typed."""
        return f"{self.base_url.rstrip('/')}/code"


def _school_known(session: Session, country: str, school: str) -> bool:
    student = session.execute(
        select(Student.id).where(Student.country_code == country, Student.school_code == school).limit(1)
    ).first()
    teacher = session.execute(
        select(Teacher.id).where(Teacher.country_code == country, Teacher.school_code == school).limit(1)
    ).first()
    return student is not None or teacher is not None


def _refuse_double_submit(
    session: Session, country: str, school: str, reason: InvitationReason, moment: datetime
) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Held until the transaction ends: two submits of the same school run one after the other,
        # and the second sees the first's campaign.
        key = int.from_bytes(
            hashlib.sha256(f"campaign:{country}/{school}".encode()).digest()[:8], "big", signed=True
        )
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    recent = session.execute(
        select(Campaign.id).where(
            Campaign.country_code == country,
            Campaign.school_code == school,
            Campaign.reason == reason.value,
            Campaign.created_at > moment - RESEND_GUARD,
        )
    ).first()
    if recent is not None:
        raise ReasonedConflict(
            f"a {reason.value} campaign for {school} was sent less than {RESEND_GUARD.seconds // 60} minutes "
            "ago; sending again now would replace the links just sent",
            code="campaign_just_sent",
        )


def send_campaign(
    session: Session,
    principal: Principal,
    *,
    keys: KeyBackend,
    protector: IdentityProtector,
    storage: ObjectStorage,
    links: Links,
    school: str,
    reason: InvitationReason,
    now: datetime | None = None,
) -> SentCampaign:
    """Start a campaign for one of the steward's schools, queue its emails and store its letters.

    Stewards only (the country is the steward's own). Refused when the school is outside the
    steward's scope (403), not on the roster (422), when nobody has anything to decide (409) or
    when the same kind of campaign was sent for the school minutes ago (409, a double submit);
    a refused campaign leaves nothing behind.
    """
    country = principal.country
    if country is None:
        raise Forbidden(
            "your account has no country to send campaigns for", extra={"reason": "outside_scope"}
        )
    require_scope(principal, country, school)
    if not _school_known(session, country, school):
        raise InvalidField(
            "school", f"no student or teacher of {school} is on the roster", code="unknown_school"
        )
    purge_expired_letters(storage, now=now)
    _refuse_double_submit(session, country, school, reason, now or datetime.now(UTC))
    with session.begin_nested():
        result = start_campaign(
            session, principal, keys, country=country, school=school, reason=reason, now=now
        )
        if not result.issued:
            raise ReasonedConflict(
                f"nobody at {school} has anything to decide for a {reason.value} campaign",
                code="nobody_to_invite",
            )
        queued = _queue_emails(
            session, keys=keys, protector=protector, links=links, result=result, reason=reason
        )
        letters = result.by_channel(InvitationChannel.letter)
        if letters:
            pdf = render_letters(_letters(session, protector, links, letters))
            store_letters(storage, keys, result.campaign.id, pdf)
    log.info("consent.campaign_sent", campaign_id=result.campaign.id, emails=queued, letters=len(letters))
    return SentCampaign(result.campaign, len(result.issued), queued, len(letters))


def _queue_emails(
    session: Session,
    *,
    keys: KeyBackend,
    protector: IdentityProtector,
    links: Links,
    result: CampaignResult,
    reason: InvitationReason,
) -> int:
    count = 0
    for issued in result.by_channel(InvitationChannel.email):
        invitation = issued.invitation
        address = _email_of(session, protector, issued)
        if not address:
            continue  # erased since the roster was read: nothing to send to
        composed = messages.compose(
            language=invitation.language,
            kind=InviteeKind(invitation.kind),
            reason=reason,
            school=invitation.school_code,
            link=links.link(issued.token),
            code=format_code(issued.code),
            code_page=links.code_page,
            expires_on=as_utc(invitation.expires_at).date(),
        )
        message = queue_email(
            session,
            keys,
            to=address,
            subject=composed.subject,
            text=composed.text,
            language=composed.language,
            category=reason.value,
            reference=invitation.id,
        )
        invitation.email_message_id = message.id
        count += 1
    session.flush()
    return count


def _email_of(session: Session, protector: IdentityProtector, issued: IssuedInvitation) -> str:
    invitation = issued.invitation
    if invitation.guardian_id is not None:
        guardian = session.get(Guardian, invitation.guardian_id)
        if guardian is not None and guardian.email_ciphertext:
            return protector.decrypt(session, IdentityField.guardian_email, guardian.email_ciphertext)
    if invitation.teacher_id is not None:
        teacher = session.get(Teacher, invitation.teacher_id)
        if teacher is not None and teacher.email_ciphertext:
            return protector.decrypt(session, IdentityField.teacher_email, teacher.email_ciphertext)
    return ""


def _pupil(session: Session, protector: IdentityProtector, student: Student) -> str:
    # Letters are handed out by the school, which knows its pupils by class and reference.
    ref = protector.decrypt(session, IdentityField.student_ref, student.ref_ciphertext)
    return f"{student.class_name} – {ref}" if ref else student.class_name


def _letters(
    session: Session, protector: IdentityProtector, links: Links, issued: Sequence[IssuedInvitation]
) -> list[Letter]:
    letters = []
    for item in issued:
        invitation = item.invitation
        name = ""
        children: list[str] = []
        if invitation.guardian_id is not None:
            guardian = session.get(Guardian, invitation.guardian_id)
            if guardian is not None:
                name = protector.decrypt(session, IdentityField.guardian_name, guardian.name_ciphertext)
            students = session.execute(
                select(Student)
                .join(Guardianship, Guardianship.student_id == Student.id)
                .where(
                    Guardianship.guardian_id == invitation.guardian_id,
                    Student.school_code == invitation.school_code,
                    Student.erased_at.is_(None),
                )
                .order_by(Student.class_name, Student.id)
            ).scalars()
            children = [_pupil(session, protector, s) for s in students]
        elif invitation.student_id is not None:
            student = session.get(Student, invitation.student_id)
            if student is not None:
                children = [_pupil(session, protector, student)]
        elif invitation.teacher_id is not None:
            teacher = session.get(Teacher, invitation.teacher_id)
            if teacher is not None:
                name = protector.decrypt(session, IdentityField.teacher_name, teacher.name_ciphertext)
        letters.append(
            Letter(
                language=invitation.language,
                recipient_name=name,
                children=children,
                school_name=invitation.school_code,
                link=links.link(item.token),
                short_code=format_code(item.code),
                code_page=links.code_page,
                expires_on=as_utc(invitation.expires_at).date(),
                kind=invitation.kind,
            )
        )
    return letters


# --- the letters file ---------------------------------------------------------------------------


def letters_object_key(campaign_id: str) -> str:
    """Where a campaign's encrypted letters live in the object store."""
    return f"{LETTERS_PREFIX}{campaign_id}.pdf.enc"


def _context(campaign_id: str) -> bytes:
    return f"{LETTERS_KEY}:{campaign_id}".encode()


def store_letters(storage: ObjectStorage, keys: KeyBackend, campaign_id: str, pdf: bytes) -> None:
    """Encrypt the letters PDF under a fresh wrapped data key and put it in the object store."""
    data_key = os.urandom(32)
    wrapped = keys.wrap(LETTERS_KEY, data_key, _context(campaign_id))
    nonce = os.urandom(12)
    sealed = AESGCM(data_key).encrypt(nonce, pdf, _context(campaign_id))
    storage.put(letters_object_key(campaign_id), _MAGIC + wrapped.token.encode() + b"\n" + nonce + sealed)


def _open_letters(blob: bytes, keys: KeyBackend, campaign_id: str) -> bytes:
    if not blob.startswith(_MAGIC):
        raise LettersGone()
    token, _, rest = blob[len(_MAGIC) :].partition(b"\n")
    data_key = keys.unwrap(LETTERS_KEY, WrappedKey(token.decode()), _context(campaign_id))
    try:
        return AESGCM(data_key).decrypt(rest[:12], rest[12:], _context(campaign_id))
    except InvalidTag:
        raise LettersGone() from None


def letters_expire_at(campaign: Campaign) -> datetime:
    """When a campaign's letters file is deleted."""
    return as_utc(campaign.created_at) + LETTERS_KEPT


def letters_pdf(
    session: Session,
    principal: Principal,
    *,
    keys: KeyBackend,
    storage: ObjectStorage,
    campaign: Campaign,
    letters: int,
    now: datetime | None = None,
) -> bytes:
    """The decrypted letters PDF of a campaign in the steward's scope (the download is recorded)."""
    require_scope(principal, campaign.country_code, campaign.school_code)
    if letters == 0:
        raise NotFound("this campaign has no printed letters", extra={"reason": "no_letters"})
    moment = now or datetime.now(UTC)
    key = letters_object_key(campaign.id)
    if letters_expire_at(campaign) <= moment:
        storage.delete(key)
        raise LettersGone()
    try:
        blob = storage.get(key)
    except ObjectNotFound:
        raise LettersGone() from None
    pdf = _open_letters(blob, keys, campaign.id)
    record(
        session,
        principal.actor,
        LETTERS_DOWNLOADED,
        target_type="campaign",
        target_id=campaign.id,
        details=LettersDownloadedDetails(school=campaign.school_code, letters=letters),
    )
    log.info("consent.letters_downloaded", campaign_id=campaign.id, letters=letters)
    return pdf


def purge_expired_letters(storage: ObjectStorage, *, now: datetime | None = None) -> int:
    """Delete letters files older than ``LETTERS_KEPT``; returns how many were deleted."""
    moment = now or datetime.now(UTC)
    stale = [
        info.key for info in storage.list(LETTERS_PREFIX) if as_utc(info.modified) + LETTERS_KEPT <= moment
    ]
    for key in stale:
        storage.delete(key)
    if stale:
        log.info("consent.letters_purged", files=len(stale))
    return len(stale)
