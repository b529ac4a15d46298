"""The status cache never changes an answer: cache-first statuses equal the pure derivation for a
random population at many instants, and rows stop being used when what they depend on changes."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.audit.service import Actor
from consent import service as rules
from consent.decisions import ages, status_cache
from consent.decisions.exceptions import DecisionConflict, InvalidDecision
from consent.decisions.models import Status, StatusCache
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.decisions.status import all_purposes, derive_student_statuses, student_statuses
from consent.forms.models import ConsentForm
from consent.models import CountryRule
from consent.rosters.models import Guardian, Student
from consent.schemas import CountryRuleCreate
from consent.service import utc_today
from tests.support.consent import ALL_PURPOSES, load_rules, make_form, make_guardian, make_student
from tests.support.projects import make_principal

STEWARD = Actor("steward-1", Role.data_steward)
LANGUAGE = {"BE": "nl", "BG": "bg", "PL": "pl", "ES": "es"}
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
"""First decision of the random population (after the rules were loaded, in real time)."""
PL_EXPIRY = date(2027, 3, 1)
BG_REWORDED = datetime(2027, 2, 1, 12, 0, tzinfo=UTC)
PL_RENEWED = datetime(2027, 4, 1, 9, 0, tzinfo=UTC)
ES_REWORDED = datetime(2027, 5, 15, 7, 30, tzinfo=UTC)
THRESHOLDS = (7, 12, 13, 14, 16, 18)
MICRO = timedelta(microseconds=1)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def assert_cache_agrees(session: Session, ids: list[str], at: datetime) -> int:
    """Cache-first statuses equal derived ones for every student; returns how many came from the cache."""
    cached, _ = status_cache.lookup(session, ids, at=at, purposes=all_purposes(session))
    fast = student_statuses(session, ids, at=at).rows
    slow = derive_student_statuses(session, ids, at=at).rows
    if fast != slow:
        wrong = {s: (fast.get(s), slow.get(s)) for s in ids if fast.get(s) != slow.get(s)}
        pytest.fail(f"at {at.isoformat()} the cache answers differently for {len(wrong)} students: {wrong}")
    assert set(fast) == set(ids)
    return len(cached)


class Population:
    """Students of the four countries with random ages, guardians and decision histories."""

    def __init__(self, session: Session, protector, rng: random.Random, size: int = 60) -> None:
        self.session = session
        self.rng = rng
        self.forms: dict[str, list[ConsentForm]] = {
            "BE": [make_form(session, "BE", "nl")],
            "BG": [
                make_form(session, "BG", "bg"),
                make_form(session, "BG", "bg", version=2, reworded=["interviews"], published_at=BG_REWORDED),
            ],
            "PL": [
                make_form(session, "PL", "pl", valid_until=PL_EXPIRY),
                make_form(session, "PL", "pl", version=2, published_at=PL_RENEWED),
            ],
            "ES": [
                make_form(session, "ES", "es"),
                make_form(
                    session,
                    "ES",
                    "es",
                    version=2,
                    reworded=["questionnaires", "recontact"],
                    published_at=ES_REWORDED,
                ),
            ],
        }
        self.students: list[Student] = []
        self.guardians: dict[int, list[Guardian]] = {}
        for _ in range(size):
            country = rng.choice(sorted(LANGUAGE))
            age = rng.randint(5, 19)
            month = rng.randint(1, 12)
            student = make_student(
                session,
                protector,
                country=country,
                school=f"{country}-X-001",
                language=LANGUAGE[country],
                birth_year=T0.year - age - (1 if T0.month <= month else 0),
                birth_month=month,
            )
            self.students.append(student)
            self.guardians[student.id] = [
                make_guardian(session, protector, [student], language=LANGUAGE[country])
                for _ in range(rng.randint(1, 2))
            ]
        self.ids = [s.subject_id for s in self.students]
        self.decided_at: list[datetime] = []
        self.refused = 0

    def form_at(self, country: str, at: datetime) -> ConsentForm:
        return max((f for f in self.forms[country] if f.published_at <= at), key=lambda f: f.version)

    def choices(self) -> dict[str, str]:
        rng = self.rng
        if rng.random() < 0.25:
            return dict.fromkeys(rng.sample(ALL_PURPOSES, rng.randint(1, 2)), "withdrawn")
        picked = {"questionnaires": rng.choices(["granted", "declined"], weights=[4, 1])[0]}
        for purpose in rng.sample(ALL_PURPOSES[1:], rng.randint(0, 3)):
            picked[purpose] = rng.choices(["granted", "declined", "withdrawn"], weights=[5, 2, 1])[0]
        return picked

    def decide_randomly(self, events: int) -> None:
        at = T0
        for _ in range(events):
            at += timedelta(minutes=self.rng.randint(1, 60 * 24 * 3))
            student = self.rng.choice(self.students)
            form = self.form_at(student.country_code, at)
            deciders = [("guardian", g.guardian_id) for g in self.guardians[student.id]] + [("student", None)]
            self.rng.shuffle(deciders)
            choices = self.choices()
            for by, guardian in deciders:
                audience = "guardian" if by == "guardian" else "child"
                body = DecisionCreate(
                    subject_id=student.subject_id,
                    decided_by=by,
                    guardian_id=guardian,
                    form_id=form.id,
                    text_sha256=next(t.sha256 for t in form.texts if t.audience == audience),
                    choices=choices,
                    channel="paper",
                )
                try:
                    record_decision(self.session, STEWARD, body, now=at)
                except (DecisionConflict, InvalidDecision):
                    self.refused += 1  # not this decider at this age: the next one may
                    continue
                self.decided_at.append(at)
                break

    def boundaries(self) -> list[datetime]:
        """Instants where a status may change by itself: birthdays, expiry, new form versions."""
        found = [midnight(PL_EXPIRY), BG_REWORDED, PL_RENEWED, ES_REWORDED]
        for student in self.students:
            for age in THRESHOLDS:
                found.append(midnight(ages.birthday_of_age(student.birth_year, student.birth_month, age)))
        return sorted({b for b in found if T0 - timedelta(days=30) < b < T0 + timedelta(days=800)})


def test_the_cache_never_changes_an_answer_for_a_random_population(db_session, protector):
    load_rules(db_session)
    rng = random.Random(20261123)
    population = Population(db_session, protector, rng)
    population.decide_randomly(260)
    ids = population.ids
    decided = population.decided_at
    assert len(decided) > 150, "most random decisions fit the rules"
    assert population.refused > 0, "and some are refused, as they should be"
    last = decided[-1]
    assert last > PL_RENEWED > midnight(PL_EXPIRY) > BG_REWORDED, "decisions span expiry and new versions"
    boundaries = population.boundaries()
    hits = checks = 0

    def check(at: datetime) -> None:
        nonlocal hits, checks
        hits += assert_cache_agrees(db_session, ids, at)
        checks += len(ids)

    # Rows as the decisions left them (each student's row starts at their latest decision).
    for at in [T0 - timedelta(days=1), *rng.sample(decided, 40)]:
        for instant in (at - MICRO, at, at + MICRO, at + timedelta(hours=rng.randint(1, 200))):
            check(instant)
    for boundary in rng.sample(boundaries, min(40, len(boundaries))):
        check(boundary - MICRO)
        check(boundary)
    check(last + timedelta(days=400))

    # Rows refreshed for everyone at instants before, between and after the decisions.
    refreshes = sorted(
        {
            T0 - timedelta(days=10),
            *rng.sample(decided, 6),
            last,
            last + timedelta(days=200),
            midnight(PL_EXPIRY),
        }
    )
    for refreshed_at in refreshes:
        status_cache.refresh(db_session, at=refreshed_at)
        later = [b for b in boundaries if b >= refreshed_at]
        instants = {refreshed_at, refreshed_at - MICRO, refreshed_at + timedelta(seconds=1)}
        instants |= {b - MICRO for b in later[:15]} | set(later[:15])
        instants |= set([d for d in decided if d >= refreshed_at][:10])
        instants |= {refreshed_at + timedelta(days=rng.randint(1, 500)) for _ in range(10)}
        for instant in sorted(instants):
            check(instant)
    assert hits > checks // 5, f"the cache answered only {hits} of {checks}: the test would prove little"


@pytest.fixture
def family(db_session, protector):
    """A Polish pupil of 5 (guardians decide alone) with two guardians; the first has granted now."""
    load_rules(db_session)
    form = make_form(db_session, "PL", "pl")
    student = make_student(
        db_session, protector, country="PL", school="PL-X-001", language="pl", birth_year=2021, birth_month=3
    )
    guardians = [make_guardian(db_session, protector, [student], language="pl") for _ in range(2)]
    record_decision(
        db_session,
        STEWARD,
        DecisionCreate(
            subject_id=student.subject_id,
            decided_by="guardian",
            guardian_id=guardians[0].guardian_id,
            form_id=form.id,
            text_sha256=next(t.sha256 for t in form.texts if t.audience == "guardian"),
            choices={"questionnaires": "granted"},
            channel="paper",
        ),
    )
    return student


def uses_cache(session: Session, student: Student, at: datetime) -> bool:
    cached, _ = status_cache.lookup(session, [student.subject_id], at=at, purposes=all_purposes(session))
    return student.subject_id in cached


def status_at(session: Session, student: Student, at: datetime) -> Status:
    assert_cache_agrees(session, [student.subject_id], at)
    return student_statuses(session, [student.subject_id], at=at).rows[student.subject_id]["questionnaires"]


def all_guardians_rule(session: Session, starts: date) -> CountryRuleCreate:
    current = rules.rule_for(session, "PL", utc_today())
    fields = (
        "age_of_digital_consent",
        "self_consent_age",
        "joint_consent_from_age",
        "joint_consent_to_age",
        "assent_from_age",
        "languages",
        "letscare_country",
        "legal_source",
        "verified",
        "notes",
    )
    return CountryRuleCreate.model_validate(
        {
            **{name: getattr(current, name) for name in fields},
            "effective_from": starts,
            "guardians_required": "all",
        }
    )


def test_a_rule_version_recorded_after_a_cache_row_is_followed(db_session, family):
    soon = datetime.now(UTC) + timedelta(seconds=1)
    assert uses_cache(db_session, family, soon)
    assert status_at(db_session, family, soon) is Status.granted
    starts = utc_today() + timedelta(days=30)
    rules.create_rule(
        db_session, make_principal(db_session, Role.dpo), "PL", all_guardians_rule(db_session, starts)
    )
    assert status_at(db_session, family, midnight(starts) - MICRO) is Status.granted
    assert status_at(db_session, family, midnight(starts)) is Status.pending, (
        "the second guardian must grant too"
    )
    assert status_at(db_session, family, midnight(starts) + timedelta(days=100)) is Status.pending


def test_a_rule_version_written_without_refreshing_the_cache_still_makes_the_row_unused(db_session, family):
    soon = datetime.now(UTC) + timedelta(seconds=1)
    starts = utc_today() + timedelta(days=30)
    later = midnight(starts) + timedelta(days=100)
    assert uses_cache(db_session, family, later), "the row would answer for that day"
    current = rules.rule_for(db_session, "PL", utc_today())
    copied = {
        c.key: getattr(current, c.key)
        for c in CountryRule.__table__.columns
        if c.key not in {"id", "created_at"}
    }
    db_session.add(CountryRule(**{**copied, "effective_from": starts, "guardians_required": "all"}))
    db_session.flush()
    assert not uses_cache(db_session, family, later)
    assert status_at(db_session, family, later) is Status.pending
    assert status_at(db_session, family, soon) is Status.granted


def test_restricting_a_student_is_reflected_at_once(db_session, family):
    now = datetime.now(UTC)
    assert uses_cache(db_session, family, now + timedelta(seconds=1))
    family.restricted_at = now + timedelta(milliseconds=1)
    family.updated_at = now + timedelta(milliseconds=1)
    db_session.flush()
    assert status_at(db_session, family, now + timedelta(milliseconds=2)) is Status.withdrawn
    assert status_at(db_session, family, now) is Status.granted, "the past answer does not change"
    status_cache.refresh(db_session, [family.id], at=now + timedelta(milliseconds=2))
    assert uses_cache(db_session, family, now + timedelta(seconds=1))
    assert status_at(db_session, family, now + timedelta(seconds=1)) is Status.withdrawn


def test_refresh_leaves_out_students_with_decisions_after_its_instant(db_session, protector, family):
    other = make_student(
        db_session, protector, country="PL", school="PL-X-001", language="pl", birth_year=2020, birth_month=8
    )
    before = datetime.now(UTC) - timedelta(hours=1)
    written = status_cache.refresh(db_session, [family.id, other.id], at=before)
    assert written == 1
    rows = dict(db_session.execute(select(StatusCache.student_id, StatusCache.valid_from)).all())
    assert family.id not in rows, "its decision came later: a row from before it would be stale"
    assert rows[other.id] == before
    assert status_at(db_session, family, before + timedelta(minutes=1)) is Status.pending
    assert status_at(db_session, family, datetime.now(UTC)) is Status.granted
    assert status_at(db_session, other, before + timedelta(minutes=1)) is Status.pending
    now = datetime.now(UTC)
    assert status_cache.refresh(db_session, [family.id, other.id], at=now) == 2
    assert uses_cache(db_session, family, now + timedelta(seconds=1))
    assert not uses_cache(db_session, family, now - timedelta(seconds=1)), "never before its instant"
