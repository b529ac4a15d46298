"""What the family pages read and do for the person whose link or code opened the session.

A family session belongs to one invitation, so to one person: a guardian (acting for the students
linked to them), a student (for themselves) or a teacher (for themselves). Every subject a page
names is looked up through ``subject`` which answers ``FamilySubjectNotFound`` (404) for anyone
else: another family's child is indistinguishable from an id that does not exist.

Decisions go through ``consent.decisions.service.record_decision`` with the actor ``family-link``
and the channel ``web``; the idempotency key is derived from the session and the random nonce of the
rendered form, so the same confirmation posted twice is recorded once. Data-subject requests go
through ``consent.requests.service.create_request`` with a principal narrowed to the one school,
labelled in the ledger as the family member who asked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.audit.service import Actor
from access.principal import Principal
from consent import service as rules
from consent.decisions import ages
from consent.decisions.models import Capacity, Channel, Choice, DecidedBy, Decision, Status
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import FAMILY_LINK, RecordedDecision, record_decision
from consent.decisions.status import all_purposes, student_statuses, teacher_statuses
from consent.exceptions import CountryRuleNotFound
from consent.forms.models import Audience, ConsentForm
from consent.forms.service import COMMON_LANGUAGE, current_form, text_for
from consent.identity import IdentityProtector
from consent.invitations.models import FamilySession, Invitation, InviteeKind
from consent.invitations.service import session_for
from consent.requests.models import DataSubjectRequest, RequestKind, SubjectKind
from consent.requests.schemas import RequestCreate, Requester
from consent.requests.service import create_request
from consent.rosters.models import Guardian, Guardianship, Student, Teacher
from infra.errors import NotFound
from infra.logging import get_logger

log = get_logger(__name__)

NONCE = re.compile(r"^[0-9a-f]{32}$")
ROLE_OF = {
    InviteeKind.guardian: Role.guardian,
    InviteeKind.student: Role.student,
    InviteeKind.teacher: Role.teacher,
}


class FamilySubjectNotFound(NotFound):
    """A subject this family session may not see (or that does not exist): the same answer for both."""

    def __init__(self) -> None:
        super().__init__("no such child or person for this link", extra={"reason": "unknown_subject"})


@dataclass(frozen=True)
class Family:
    """The person a family session acts for."""

    session: FamilySession
    invitation: Invitation
    kind: InviteeKind
    guardian: Guardian | None = None
    student: Student | None = None
    teacher: Teacher | None = None

    @property
    def actor(self) -> Actor:
        """The ledger's view: the family pages, in the person's role; never a name."""
        return Actor(FAMILY_LINK, ROLE_OF[self.kind])

    @property
    def decided_by(self) -> DecidedBy:
        """Who decides when this person decides."""
        return DecidedBy(self.kind.value)

    @property
    def audience(self) -> Audience:
        """Which text of a form this person reads."""
        return {
            InviteeKind.guardian: Audience.guardian,
            InviteeKind.student: Audience.child,
            InviteeKind.teacher: Audience.adult,
        }[self.kind]

    @property
    def language(self) -> str:
        """The language the school gave for this person."""
        return self.invitation.language

    def idempotency_key(self, nonce: str) -> str:
        """The key of one rendered form in this session: the same form posted twice is one decision."""
        digest = hashlib.sha256(f"{self.session.id_index}:{nonce}".encode()).hexdigest()
        return f"family:{digest}"


def family_for(session: Session, cookie: str | None, *, now: datetime | None = None) -> Family | None:
    """The person behind a family session cookie, or None when it is missing, ended or expired."""
    if not cookie or len(cookie) > 100:
        return None
    row = session_for(session, cookie, now=now)
    if row is None:
        return None
    invitation = session.get(Invitation, row.invitation_id)
    if invitation is None:
        return None
    kind = InviteeKind(invitation.kind)
    guardian = session.get(Guardian, invitation.guardian_id) if invitation.guardian_id else None
    student = session.get(Student, invitation.student_id) if invitation.student_id else None
    teacher = session.get(Teacher, invitation.teacher_id) if invitation.teacher_id else None
    person = guardian or student or teacher
    if person is None or person.erased_at is not None:
        return None
    return Family(row, invitation, kind, guardian, student, teacher)


@dataclass(frozen=True)
class SubjectView:
    """A child (or the person themselves) as the family pages show them: no name, no reference."""

    subject_id: str
    kind: str
    """``student`` or ``teacher``."""
    country: str
    school: str
    class_name: str | None
    birth_year: int | None
    birth_month: int | None
    statuses: dict[str, Status]
    can_decide: bool
    capacity: Capacity | None
    """How this family member decides for the subject: consent, or a child's assent."""
    blocked_reason: str | None = None
    """Why they cannot decide: ``decides_alone``, ``too_young`` or ``no_rule``."""
    regime: ages.Regime | None = None
    waiting: frozenset[str] = frozenset()
    """Purposes this person said Yes to that still wait for another answer (the child's, the other
    parent's, or the student's own in the joint band), so the status is still pending."""
    student: Student | None = field(default=None, repr=False)
    teacher: Teacher | None = field(default=None, repr=False)


def _student_view(session: Session, family: Family, student: Student, moment: datetime) -> SubjectView:
    statuses = student_statuses(session, [student.subject_id], at=moment).rows.get(student.subject_id, {})
    can_decide, capacity, reason, regime = False, None, None, None
    try:
        rule = rules.rule_for(session, student.country_code, moment.date())
    except CountryRuleNotFound:
        reason = "no_rule"
    else:
        age = ages.age_on(student.birth_year, student.birth_month, moment.date())
        regime = ages.regime(rule, age)
        if family.kind is InviteeKind.guardian:
            if regime is ages.Regime.self:
                reason = "decides_alone"
            else:
                can_decide, capacity = True, Capacity.consent
        elif regime is ages.Regime.guardian:
            if ages.assent_needed(rule, age):
                can_decide, capacity = True, Capacity.assent
            else:
                reason = "too_young"
        else:
            can_decide, capacity = True, Capacity.consent
    return SubjectView(
        subject_id=student.subject_id,
        kind="student",
        country=student.country_code,
        school=student.school_code,
        class_name=student.class_name,
        birth_year=student.birth_year,
        birth_month=student.birth_month,
        statuses=dict(statuses),
        can_decide=can_decide and student.erased_at is None,
        capacity=capacity,
        blocked_reason=reason,
        regime=regime,
        student=student,
    )


def _teacher_view(session: Session, teacher: Teacher, moment: datetime) -> SubjectView:
    statuses = teacher_statuses(session, [teacher.subject_id], at=moment).rows.get(teacher.subject_id, {})
    return SubjectView(
        subject_id=teacher.subject_id,
        kind="teacher",
        country=teacher.country_code,
        school=teacher.school_code,
        class_name=None,
        birth_year=None,
        birth_month=None,
        statuses=dict(statuses),
        can_decide=teacher.erased_at is None,
        capacity=Capacity.consent,
        teacher=teacher,
    )


def _children(session: Session, guardian: Guardian) -> list[Student]:
    return list(
        session.execute(
            select(Student)
            .join(Guardianship, Guardianship.student_id == Student.id)
            .where(Guardianship.guardian_id == guardian.id, Student.erased_at.is_(None))
            .order_by(Student.birth_year, Student.birth_month, Student.id)
        ).scalars()
    )


def subjects(session: Session, family: Family, *, now: datetime | None = None) -> list[SubjectView]:
    """The children of a guardian, or the student or teacher themselves."""
    moment = now or datetime.now(UTC)
    if family.guardian is not None:
        views = [_student_view(session, family, s, moment) for s in _children(session, family.guardian)]
    elif family.student is not None:
        views = [_student_view(session, family, family.student, moment)]
    else:
        assert family.teacher is not None
        views = [_teacher_view(session, family.teacher, moment)]
    return [_with_waiting(session, family, view) for view in views]


def _with_waiting(session: Session, family: Family, view: SubjectView) -> SubjectView:
    own = latest_by_purpose(own_decisions(session, family, view))
    waiting = frozenset(
        purpose
        for purpose, status in view.statuses.items()
        if status is Status.pending and purpose in own and own[purpose].choice == Choice.granted.value
    )
    return replace(view, waiting=waiting)


def subject(session: Session, family: Family, subject_id: str, *, now: datetime | None = None) -> SubjectView:
    """One subject this family member may act on; FamilySubjectNotFound for anyone else."""
    for view in subjects(session, family, now=now):
        if view.subject_id == subject_id:
            return view
    raise FamilySubjectNotFound()


def form_languages(session: Session, country: str, *, now: datetime | None = None) -> list[str]:
    """Languages in which the country has a published form now (the country's own first, English last)."""
    moment = now or datetime.now(UTC)
    found = session.execute(
        select(ConsentForm.language)
        .where(ConsentForm.country_code == country, ConsentForm.published_at <= moment)
        .distinct()
    ).scalars()
    return sorted(set(found), key=lambda code: (code == COMMON_LANGUAGE, code))


def pick_form(
    session: Session, country: str, wanted: list[str | None], *, now: datetime | None = None
) -> ConsentForm | None:
    """The current form in the first wanted language that has one, else English, else any."""
    moment = now or datetime.now(UTC)
    available = form_languages(session, country, now=moment)
    for language in [*wanted, COMMON_LANGUAGE, *available]:
        if language and language in available:
            return current_form(session, country, language, moment)
    return None


def text_sha256(form: ConsentForm, family: Family) -> str:
    """SHA-256 of the text of ``form`` this family member reads."""
    return text_for(form, family.audience).sha256


def decide(
    session: Session,
    family: Family,
    subject_id: str,
    *,
    form_id: int,
    text_hash: str,
    choices: dict[str, Choice],
    nonce: str,
    now: datetime | None = None,
) -> RecordedDecision:
    """Record a family member's decision (or withdrawal) through the decision service."""
    subject(session, family, subject_id, now=now)
    data = DecisionCreate(
        subject_id=subject_id,
        decided_by=family.decided_by,
        guardian_id=family.guardian.guardian_id if family.guardian is not None else None,
        form_id=form_id,
        text_sha256=text_hash,
        choices=choices,
        channel=Channel.web,
        idempotency_key=family.idempotency_key(nonce),
    )
    return record_decision(session, family.actor, data, now=now)


def own_decisions(session: Session, family: Family, view: SubjectView) -> list[Decision]:
    """This family member's own decisions on a subject, newest first."""
    query = select(Decision).where(Decision.decided_by == family.decided_by.value)
    if view.student is not None:
        query = query.where(Decision.student_id == view.student.id)
    elif view.teacher is not None:
        query = query.where(Decision.teacher_id == view.teacher.id)
    if family.guardian is not None:
        query = query.where(Decision.guardian_id == family.guardian.id)
    return list(session.execute(query.order_by(Decision.recorded_at.desc(), Decision.id.desc())).scalars())


def latest_by_purpose(decisions: list[Decision]) -> dict[str, Decision]:
    """The newest of ``decisions`` (newest first) for each purpose."""
    latest: dict[str, Decision] = {}
    for row in decisions:
        latest.setdefault(row.purpose, row)
    return latest


@dataclass(frozen=True)
class Event:
    """One recorded submission of this family member, for a receipt."""

    event_id: str
    view: SubjectView
    rows: list[Decision]
    form: ConsentForm

    @property
    def recorded_at(self) -> datetime:
        """When it took effect."""
        return self.rows[0].recorded_at

    @property
    def choices(self) -> dict[str, str]:
        """Purpose -> choice."""
        return {row.purpose: row.choice for row in self.rows}


def event(session: Session, family: Family, event_id: str, *, now: datetime | None = None) -> Event:
    """A submission this family member made; FamilySubjectNotFound for any other."""
    if len(event_id) > 36:
        raise FamilySubjectNotFound()
    query = select(Decision).where(Decision.event_id == event_id).order_by(Decision.purpose)
    rows = list(session.execute(query).scalars())
    if not rows or rows[0].decided_by != family.decided_by.value:
        raise FamilySubjectNotFound()
    first = rows[0]
    if family.guardian is not None and first.guardian_id != family.guardian.id:
        raise FamilySubjectNotFound()
    views = subjects(session, family, now=now)
    view = next(
        (
            v
            for v in views
            if (v.student is not None and v.student.id == first.student_id)
            or (v.teacher is not None and v.teacher.id == first.teacher_id)
        ),
        None,
    )
    if view is None:
        raise FamilySubjectNotFound()
    form = session.get(ConsentForm, first.form_id)
    assert form is not None
    position = {code: index for index, code in enumerate(all_purposes(session))}
    rows.sort(key=lambda row: position.get(row.purpose, len(position)))
    return Event(event_id, view, rows, form)


class _FamilyPrincipal(Principal):
    """A principal seeing only one school, recorded in the ledger as the family member who asked.

    The request service checks the requester's entitlement and the subject; this narrows what it can
    find to the subject's own school, and keeps staff roles out of the ledger entry.
    """

    family_actor: Actor

    @property
    def actor(self) -> Actor:
        """The family member (``family-link`` with their role)."""
        return self.family_actor


def request_copy_or_erasure(
    session: Session,
    protector: IdentityProtector,
    family: Family,
    view: SubjectView,
    *,
    kind: RequestKind,
    language: str,
) -> DataSubjectRequest:
    """Create a data-subject request (access copy or erasure) about the subject, as this family member."""
    if kind not in (RequestKind.access, RequestKind.erasure):
        raise ValueError("the family pages ask only for a copy or for erasure")
    principal = _FamilyPrincipal(
        account_id=FAMILY_LINK,
        roles=frozenset({Role.data_steward}),
        country=view.country,
        schools=frozenset({view.school}),
    )
    object.__setattr__(principal, "family_actor", family.actor)
    data = RequestCreate(
        kind=kind,
        subject_kind=SubjectKind(view.kind),
        subject_id=view.subject_id,
        requested_by=Requester(family.kind.value),
        language=language,
    )
    request = create_request(session, principal, protector, data)
    log.info("consent.family_request_created", request_id=request.id, kind=kind.value)
    return request


def valid_nonce(value: str) -> bool:
    """Whether a posted nonce has the shape the pages render (32 hex characters)."""
    return bool(NONCE.match(value))
