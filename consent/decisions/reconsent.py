"""Re-consent: who must be asked again, and why.

Three causes, each leaving ``consent_reconsent_mark`` rows that the invitation service acts on
(it sets ``invited_at``); a student's own consent resolves their open marks:

* **Self-consent age.** The daily job marks students who reach their country's self-consent age
  within 30 days and whose guardians have decided for them; ``due_on`` is the first day on which
  they count as that age (the first of the month after their birthday month). From then on,
  without their own decision, the status engine answers ``reconsent_required``.
* **Rule change.** When a country rule version is recorded, every student of that country whose
  status on its first day differs from what it would have been under the previous version is
  listed for the DPO (``consent_rule_impact``, with each purpose's status before and after), and
  marked when the new status needs a new decision (``reconsent_required`` or ``pending``).
* **Form change.** When a form version rewords a purpose, students whose grant was given under
  the old wording become ``reconsent_required`` for it; they are marked on publication.

Statuses are never stored by these functions: they are derived (``consent.decisions.status``);
the marks only say whom to invite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, register_action
from access.audit.service import Actor, record
from consent.decisions import ages, status_cache
from consent.decisions.models import Decision, ReconsentMark, ReconsentReason, RuleImpact, Status
from consent.decisions.status import derive_student_statuses
from consent.forms.models import ConsentForm
from consent.models import CountryRule
from consent.rosters.models import Student
from infra.db import as_utc

WINDOW = timedelta(days=30)
"""How long before the self-consent birthday a student is marked for invitation."""
NEEDS_DECISION = {Status.reconsent_required, Status.pending}


class ImpactDetails(Details):
    """Ledger details of a rule or form change's effect: counts only."""

    country: Identifier
    affected: int
    marked: int


class ScanDetails(Details):
    """Ledger details of the daily scan."""

    day: date
    marked: int
    refreshed: int


RULE_IMPACT = register_action("consent.rule_impact_recorded", ImpactDetails)
FORM_IMPACT = register_action("consent.form_impact_recorded", ImpactDetails)
SCAN = register_action("consent.reconsent_scanned", ScanDetails)
SYSTEM = Actor.system()


@dataclass(frozen=True)
class ScanResult:
    """What the daily scan did."""

    marked: int
    refreshed: int


def _mark(session: Session, student_id: int, reason: ReconsentReason, due_on: date) -> bool:
    """Add a mark unless the same one exists; True when added."""
    found = session.execute(
        select(ReconsentMark.id).where(
            ReconsentMark.student_id == student_id,
            ReconsentMark.reason == reason.value,
            ReconsentMark.due_on == due_on,
        )
    ).first()
    if found is not None:
        return False
    try:
        with session.begin_nested():
            session.add(ReconsentMark(student_id=student_id, reason=reason.value, due_on=due_on))
            session.flush()
    except IntegrityError:
        return False  # a concurrent scan added it
    return True


def _students(session: Session, country: str) -> list[tuple[int, str]]:
    return [
        (row_id, subject)
        for row_id, subject in session.execute(
            select(Student.id, Student.subject_id)
            .where(Student.country_code == country, Student.erased_at.is_(None))
            .order_by(Student.id)
        ).all()
    ]


def _compare(
    session: Session,
    students: Sequence[tuple[int, str]],
    *,
    before: datetime,
    after: datetime,
    exclude_rule: int = 0,
) -> dict[int, dict[str, list[str]]]:
    """Students whose status differs between two derivations, with purpose -> [before, after]."""
    ids = [subject for _, subject in students]
    then = derive_student_statuses(session, ids, at=before, exclude_rule=exclude_rule)
    now = derive_student_statuses(session, ids, at=after)
    changed: dict[int, dict[str, list[str]]] = {}
    for row_id, subject in students:
        old, new = then.rows.get(subject, {}), now.rows.get(subject, {})
        diff = {p: [old[p].value, new[p].value] for p in new if p in old and old[p] is not new[p]}
        if diff:
            changed[row_id] = diff
    return changed


def record_rule_impact(session: Session, rule: CountryRule, actor: Actor = SYSTEM) -> int:
    """List (and mark) the students whose status changes when ``rule`` takes effect; returns how many."""
    start = datetime.combine(rule.effective_from, time.min, tzinfo=UTC)
    students = _students(session, rule.country_code)
    changed = _compare(session, students, before=start, after=start, exclude_rule=rule.id)
    marked = 0
    for row_id, diff in changed.items():
        session.add(
            RuleImpact(
                rule_id=rule.id,
                country_code=rule.country_code,
                student_id=row_id,
                effective_from=rule.effective_from,
                changes=diff,
            )
        )
        if any(Status(after) in NEEDS_DECISION for _, after in diff.values()):
            marked += _mark(session, row_id, ReconsentReason.rule_change, rule.effective_from)
    session.flush()
    status_cache.refresh(session, country=rule.country_code)
    record(
        session,
        actor,
        RULE_IMPACT,
        target_type="country_rule",
        target_id=str(rule.id),
        details=ImpactDetails(country=rule.country_code, affected=len(changed), marked=marked),
    )
    return len(changed)


def record_form_change(session: Session, form: ConsentForm, actor: Actor = SYSTEM) -> int:
    """Mark the students whose grants the new form version makes ``reconsent_required``."""
    moment = as_utc(form.published_at)
    students = _students(session, form.country_code)
    changed = _compare(session, students, before=moment - timedelta(microseconds=1), after=moment)
    marked = 0
    for row_id, diff in changed.items():
        if any(Status(after) is Status.reconsent_required for _, after in diff.values()):
            marked += _mark(session, row_id, ReconsentReason.form_change, moment.date())
    status_cache.refresh(session, country=form.country_code)
    record(
        session,
        actor,
        FORM_IMPACT,
        target_type="consent_form",
        target_id=str(form.id),
        details=ImpactDetails(country=form.country_code, affected=len(changed), marked=marked),
    )
    return marked


def _self_age_candidates(session: Session, rule: CountryRule, today: date) -> list[tuple[int, date]]:
    """Students of the rule's country who reach its self-consent age in ``(today, today + 30 days]``."""
    age = rule.self_consent_age
    horizon = today + WINDOW
    decided_by_guardian = exists().where(Decision.student_id == Student.id, Decision.decided_by == "guardian")
    rows = session.execute(
        select(Student.id, Student.birth_year, Student.birth_month).where(
            Student.country_code == rule.country_code,
            Student.erased_at.is_(None),
            Student.birth_year.between(today.year - age - 1, horizon.year - age),
            decided_by_guardian,
        )
    ).all()
    found = []
    for row_id, year, month in rows:
        birthday = ages.birthday_of_age(year, month, age)
        if today < birthday <= horizon:
            found.append((row_id, birthday))
    return found


def scan(session: Session, today: date | None = None, actor: Actor = SYSTEM) -> ScanResult:
    """The daily job: mark students nearing self-consent age; refresh status rows about to end."""
    day = today or datetime.now(UTC).date()
    from consent.service import rules_in_force

    marked = 0
    for rule in rules_in_force(session, day).values():
        for row_id, birthday in _self_age_candidates(session, rule, day):
            marked += _mark(session, row_id, ReconsentReason.self_consent_age, birthday)
    now = datetime.now(UTC)
    due = status_cache.due_for_refresh(session, before=now + timedelta(days=1))
    refreshed = status_cache.refresh(session, due, at=now) if due else 0
    record(
        session,
        actor,
        SCAN,
        target_type="reconsent",
        details=ScanDetails(day=day, marked=marked, refreshed=refreshed),
    )
    return ScanResult(marked=marked, refreshed=refreshed)
