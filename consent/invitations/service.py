"""Invitations: who is invited, their single-use links and short codes, and opening them.

A data steward starts a **campaign** for one school: every guardian of a student who still needs a
guardian's decision, every student old enough to be asked (the rule's assent age, the joint band, or
self-consent) who has not decided, and every teacher without a decision gets one invitation, by
email when an address is on the roster, otherwise as a printed letter. A newer invitation for the
same person revokes the older one.

Each invitation has

* a **link token**: 32 random bytes (URL-safe base64) in ``/f/<token>``;
* a **short code** for letters: 10 characters of Crockford's base-32 (no I, L, O, U), shown as
  ``XXXXX-XXXXX``, typed on a simple page; case, spaces and dashes are ignored;

and is valid for ``VALID_FOR`` days. Only keyed hashes of both are stored (HMAC-SHA256 under the
key-management backend's ``family-links`` key): the database alone can neither open a family's pages
nor be used to guess codes offline. The token and code exist in clear only in the email or letter.

**Opening** (``open_link``/``enter_code``) uses the invitation once: it opens a **family session**
of ``SESSION_MINUTES`` (an HttpOnly cookie holding a random value whose SHA-256 is stored, with a
CSRF token for the forms) and marks the invitation opened. A used, expired, revoked or unknown link
answers with what to do next (ask the school or request a new link) — never which of these it was
for an unknown one. Wrong codes and unknown links are counted per client address (hashed): after
``CODE_ATTEMPTS`` failures in ``CODE_WINDOW`` the address must wait, so guessing is hopeless.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from access.audit.actions import Details, Identifier, Role, register_action
from access.audit.service import Actor, record
from access.principal import Principal
from consent.decisions import ages, status
from consent.decisions.models import Decision, ReconsentMark, ReconsentReason, Status
from consent.invitations.exceptions import CodeAttemptsExceeded, LinkNotUsable
from consent.invitations.models import (
    Campaign,
    CodeAttempt,
    FamilySession,
    Invitation,
    InvitationChannel,
    InvitationReason,
    InviteeKind,
)
from consent.rosters.models import Delivery, Guardian, Guardianship, Student, Teacher
from consent.scope import require_scope
from consent.service import rules_in_force
from infra.db import as_utc
from infra.keys import KeyBackend
from infra.logging import get_logger

log = get_logger(__name__)

LINK_KEY = "family-links"
VALID_FOR = timedelta(days=30)
SESSION_MINUTES = 30
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
CONFUSABLE = str.maketrans("OIL", "011")
"""Letters people type for the digits the alphabet leaves out."""
CODE_ATTEMPTS = 10
CODE_WINDOW = timedelta(minutes=15)
ROLE_OF = {
    InviteeKind.guardian: Role.guardian,
    InviteeKind.student: Role.student,
    InviteeKind.teacher: Role.teacher,
}


class CampaignDetails(Details):
    """Ledger details of a campaign: counts per kind and channel."""

    school: Identifier
    reason: InvitationReason
    guardians: int
    students: int
    teachers: int
    letters: int


class OpenedDetails(Details):
    """Ledger details of an opened invitation."""

    kind: InviteeKind
    by: str


CAMPAIGN_CREATED = register_action("consent.campaign_created", CampaignDetails)
INVITATION_OPENED = register_action("consent.invitation_opened", OpenedDetails)


@dataclass(frozen=True)
class IssuedInvitation:
    """An invitation with its token and code in clear: only for the email or letter being made."""

    invitation: Invitation
    token: str
    code: str


@dataclass(frozen=True)
class OpenedSession:
    """A family session just opened: the cookie value (in clear, once) and the CSRF token."""

    cookie: str
    csrf_token: str
    invitation: Invitation
    expires_at: datetime


def _index(keys: KeyBackend, kind: str, value: str) -> str:
    return keys.hmac(LINK_KEY, f"{kind}\x00{value}".encode()).hex()


def normalise_code(code: str) -> str:
    """Upper case without spaces or dashes; the letters people confuse are read as digits."""
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
    return cleaned.translate(CONFUSABLE)


def format_code(code: str) -> str:
    """``XXXXX-XXXXX`` for printing."""
    return f"{code[:5]}-{code[5:]}"


def _new_secrets(keys: KeyBackend) -> tuple[str, str, str, str]:
    token = secrets.token_urlsafe(32)
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return token, code, _index(keys, "token", token), _index(keys, "code", code)


def issue(
    session: Session,
    keys: KeyBackend,
    *,
    kind: InviteeKind,
    target: Guardian | Student | Teacher,
    school: str,
    country: str,
    language: str,
    channel: InvitationChannel,
    reason: InvitationReason,
    campaign_id: str | None = None,
    now: datetime | None = None,
) -> IssuedInvitation:
    """Create one invitation, revoking the person's older open ones; returns the secrets once."""
    moment = now or datetime.now(UTC)
    column = {
        InviteeKind.guardian: Invitation.guardian_id,
        InviteeKind.student: Invitation.student_id,
        InviteeKind.teacher: Invitation.teacher_id,
    }[kind]
    session.execute(
        update(Invitation)
        .where(column == target.id, Invitation.opened_at.is_(None), Invitation.revoked_at.is_(None))
        .values(revoked_at=moment)
    )
    token, code, token_index, code_index = _new_secrets(keys)
    invitation = Invitation(
        campaign_id=campaign_id,
        kind=kind.value,
        guardian_id=target.id if kind is InviteeKind.guardian else None,
        student_id=target.id if kind is InviteeKind.student else None,
        teacher_id=target.id if kind is InviteeKind.teacher else None,
        school_code=school,
        country_code=country,
        language=language,
        channel=channel.value,
        reason=reason.value,
        token_index=token_index,
        code_index=code_index,
        created_at=moment,
        expires_at=moment + VALID_FOR,
    )
    session.add(invitation)
    session.flush()
    return IssuedInvitation(invitation, token, code)


@dataclass(frozen=True)
class Invitees:
    """Who a campaign reaches."""

    guardians: list[Guardian]
    students: list[Student]
    teachers: list[Teacher]


def open_reconsent_marks(session: Session, school: str) -> dict[int, set[str]]:
    """Students of a school with open re-consent marks, and the reasons of their marks."""
    rows = session.execute(
        select(ReconsentMark.student_id, ReconsentMark.reason)
        .join(Student, Student.id == ReconsentMark.student_id)
        .where(Student.school_code == school, ReconsentMark.resolved_at.is_(None))
    ).all()
    marked: dict[int, set[str]] = {}
    for student_id, reason in rows:
        marked.setdefault(student_id, set()).add(reason)
    return marked


def invitees(
    session: Session,
    school: str,
    *,
    at: datetime | None = None,
    marked: dict[int, set[str]] | None = None,
) -> Invitees:
    """The people of a school who still have something to decide at ``at`` (default now).

    With ``marked`` (re-consent), only those students and whoever must decide for them: the student
    even if they decided before, and their guardians unless the only reason is the student reaching
    the self-consent age. Teachers are not re-invited then.
    """
    moment = at or datetime.now(UTC)
    query = select(Student).where(Student.school_code == school, Student.erased_at.is_(None))
    if marked is not None:
        query = query.where(Student.id.in_(list(marked)))
    students = list(session.execute(query.order_by(Student.id)).scalars())
    if not students:
        teachers = _undecided_teachers(session, school) if marked is None else []
        return Invitees([], [], teachers)
    table = status.student_statuses(session, [s.subject_id for s in students], at=moment)
    rules = rules_in_force(session, moment.date())
    decided_by_student = set(
        session.execute(
            select(Decision.student_id).where(
                Decision.student_id.in_([s.id for s in students]), Decision.decided_by == "student"
            )
        ).scalars()
    )
    open_statuses = {Status.pending, Status.reconsent_required, Status.expired}
    needing = [
        s
        for s in students
        if marked is not None or any(v in open_statuses for v in table.rows.get(s.subject_id, {}).values())
    ]
    guardian_students: list[Student] = []
    asked_students: list[Student] = []
    for student in needing:
        rule = rules.get(student.country_code)
        if rule is None:
            continue
        age = ages.age_on(student.birth_year, student.birth_month, moment.date())
        regime = ages.regime(rule, age)
        reasons = marked.get(student.id, set()) if marked is not None else set()
        if regime is not ages.Regime.self and reasons != {ReconsentReason.self_consent_age.value}:
            guardian_students.append(student)
        old_enough = regime is not ages.Regime.guardian or ages.assent_needed(rule, age)
        asked_again = marked is not None
        if old_enough and (
            asked_again or student.id not in decided_by_student or regime is not ages.Regime.guardian
        ):
            asked_students.append(student)
    guardians = list(
        session.execute(
            select(Guardian)
            .join(Guardianship, Guardianship.guardian_id == Guardian.id)
            .where(
                Guardianship.student_id.in_([s.id for s in guardian_students]), Guardian.erased_at.is_(None)
            )
            .distinct()
            .order_by(Guardian.id)
        ).scalars()
    )
    teachers = _undecided_teachers(session, school) if marked is None else []
    return Invitees(guardians, asked_students, teachers)


def _undecided_teachers(session: Session, school: str) -> list[Teacher]:
    decided = select(Decision.teacher_id).where(Decision.teacher_id.is_not(None))
    return list(
        session.execute(
            select(Teacher)
            .where(Teacher.school_code == school, Teacher.erased_at.is_(None), Teacher.id.not_in(decided))
            .order_by(Teacher.id)
        ).scalars()
    )


@dataclass(frozen=True)
class CampaignResult:
    """A campaign and the invitations issued (with their secrets, for the emails and letters)."""

    campaign: Campaign
    issued: list[IssuedInvitation]

    def by_channel(self, channel: InvitationChannel) -> list[IssuedInvitation]:
        """The issued invitations of one channel."""
        return [i for i in self.issued if i.invitation.channel == channel.value]


def start_campaign(
    session: Session,
    principal: Principal,
    keys: KeyBackend,
    *,
    country: str,
    school: str,
    reason: InvitationReason = InvitationReason.invitation,
    now: datetime | None = None,
) -> CampaignResult:
    """Invite everyone of a school who still has something to decide (steward in scope, or DPO)."""
    require_scope(principal, country, school)
    moment = now or datetime.now(UTC)
    campaign = Campaign(
        country_code=country, school_code=school, reason=reason.value, created_by=principal.account_id
    )
    session.add(campaign)
    session.flush()
    marked = open_reconsent_marks(session, school) if reason is InvitationReason.reconsent else None
    people = invitees(session, school, at=moment, marked=marked)
    issued: list[IssuedInvitation] = []
    targets: list[tuple[InviteeKind, Guardian | Student | Teacher, InvitationChannel]] = []
    for guardian in people.guardians:
        by_email = guardian.delivery == Delivery.email.value and bool(guardian.email_ciphertext)
        targets.append(
            (
                InviteeKind.guardian,
                guardian,
                InvitationChannel.email if by_email else InvitationChannel.letter,
            )
        )
    # Students are reached at school (a letter handed out in class); teachers by their school email.
    targets += [(InviteeKind.student, s, InvitationChannel.letter) for s in people.students]
    targets += [(InviteeKind.teacher, t, InvitationChannel.email) for t in people.teachers]
    for kind, target, channel in targets:
        issued.append(
            issue(
                session,
                keys,
                kind=kind,
                target=target,
                school=school,
                country=country,
                language=target.language,
                channel=channel,
                reason=reason,
                campaign_id=campaign.id,
                now=moment,
            )
        )
    if marked:
        session.execute(
            update(ReconsentMark)
            .where(ReconsentMark.student_id.in_(list(marked)), ReconsentMark.resolved_at.is_(None))
            .values(invited_at=moment)
        )
    letters = sum(1 for i in issued if i.invitation.channel == InvitationChannel.letter.value)
    record(
        session,
        principal.actor,
        CAMPAIGN_CREATED,
        target_type="campaign",
        target_id=campaign.id,
        details=CampaignDetails(
            school=school,
            reason=reason,
            guardians=len(people.guardians),
            students=len(people.students),
            teachers=len(people.teachers),
            letters=letters,
        ),
    )
    log.info("consent.campaign_created", campaign_id=campaign.id, invitations=len(issued), letters=letters)
    return CampaignResult(campaign, issued)


def _open(session: Session, invitation: Invitation | None, how: str, moment: datetime) -> OpenedSession:
    if invitation is None:
        raise LinkNotUsable("unknown")
    if invitation.revoked_at is not None:
        raise LinkNotUsable("replaced")
    if invitation.opened_at is not None:
        raise LinkNotUsable("used")
    if as_utc(invitation.expires_at) <= moment:
        raise LinkNotUsable("expired")
    invitation.opened_at = moment
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = moment + timedelta(minutes=SESSION_MINUTES)
    session.add(
        FamilySession(
            id_index=hashlib.sha256(cookie.encode()).hexdigest(),
            invitation_id=invitation.id,
            csrf_token=csrf,
            created_at=moment,
            expires_at=expires,
        )
    )
    session.flush()
    record(
        session,
        Actor("family-link", ROLE_OF[InviteeKind(invitation.kind)]),
        INVITATION_OPENED,
        target_type="invitation",
        target_id=invitation.id,
        details=OpenedDetails(kind=InviteeKind(invitation.kind), by=how),
    )
    return OpenedSession(cookie=cookie, csrf_token=csrf, invitation=invitation, expires_at=expires)


def _locked(session: Session, column: InstrumentedAttribute[str], value: str) -> Invitation | None:
    return session.execute(select(Invitation).where(column == value).with_for_update()).scalar_one_or_none()


def _check_attempts(session: Session, client: str, moment: datetime) -> str:
    """The client's hash; CodeAttemptsExceeded when it failed too often lately."""
    client_hash = hashlib.sha256(client.encode()).hexdigest()
    failures = session.execute(
        select(func.count()).where(
            CodeAttempt.client_hash == client_hash, CodeAttempt.attempted_at > moment - CODE_WINDOW
        )
    ).scalar_one()
    if failures >= CODE_ATTEMPTS:
        raise CodeAttemptsExceeded(int(CODE_WINDOW.total_seconds() // 60))
    return client_hash


def _count_failure(session: Session, client_hash: str, moment: datetime) -> None:
    session.add(CodeAttempt(client_hash=client_hash, attempted_at=moment))
    session.flush()


def open_link(
    session: Session, keys: KeyBackend, token: str, *, client: str | None = None, now: datetime | None = None
) -> OpenedSession:
    """Use a link once: opens a family session, or LinkNotUsable saying what to do next.

    With ``client`` (the caller's address), unknown links count against it like wrong codes.
    """
    moment = now or datetime.now(UTC)
    client_hash = _check_attempts(session, client, moment) if client is not None else None
    invitation = None
    if token and len(token) <= 100:
        invitation = _locked(session, Invitation.token_index, _index(keys, "token", token))
    if invitation is None and client_hash is not None:
        _count_failure(session, client_hash, moment)
    return _open(session, invitation, "link", moment)


def enter_code(
    session: Session, keys: KeyBackend, code: str, *, client: str, now: datetime | None = None
) -> OpenedSession:
    """Use a short code once; wrong codes count against the client address."""
    moment = now or datetime.now(UTC)
    client_hash = _check_attempts(session, client, moment)
    normalised = normalise_code(code)
    invitation = None
    if len(normalised) == CODE_LENGTH:
        invitation = _locked(session, Invitation.code_index, _index(keys, "code", normalised))
    if invitation is None:
        _count_failure(session, client_hash, moment)
    return _open(session, invitation, "code", moment)


def session_for(session: Session, cookie: str, *, now: datetime | None = None) -> FamilySession | None:
    """The live family session a cookie value belongs to, or None."""
    moment = now or datetime.now(UTC)
    row = session.get(FamilySession, hashlib.sha256(cookie.encode()).hexdigest())
    if row is None or row.ended_at is not None or as_utc(row.expires_at) <= moment:
        return None
    return row


def campaign_invitations(session: Session, campaign_id: str) -> Sequence[Invitation]:
    """The invitations of a campaign."""
    return list(
        session.execute(
            select(Invitation).where(Invitation.campaign_id == campaign_id).order_by(Invitation.created_at)
        ).scalars()
    )
