"""Concurrent decisions on real PostgreSQL: committed transactions on separate connections.

These run on a database of their own (the races need commits that other connections see, which the
rolled-back test transaction cannot give). One transaction is held open after it took the subject's
lock until PostgreSQL shows the other one waiting for that lock, so the race is the real one and not
left to the scheduler.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import consent.decisions.tasks  # noqa: F401 (registers the withdrawal task the outbox names)
from access.audit.actions import Role
from access.audit.service import Actor
from consent.decisions.exceptions import DecisionConflict
from consent.decisions.models import Decision, Status, Withdrawal
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import RecordedDecision, record_decision
from consent.decisions.status import derive_student_statuses, student_statuses
from consent.forms.models import ConsentForm
from consent.identity import IdentityProtector
from consent.rosters.models import Student
from infra.db import make_engine, make_session_factory, session_scope
from infra.keys.file import FileKeyBackend
from infra.migrate import upgrade
from tests.conftest import recreate_database
from tests.support.consent import load_rules, make_form, make_guardian, make_student

STEWARD = Actor("steward-1", Role.data_steward)
WAIT = 30.0
"""Upper bound for a thread to reach a point; never reached when things work."""


@pytest.fixture(scope="module")
def race_engine() -> Iterator[Engine]:
    engine = make_engine(recreate_database("enclave_test_decision_races"), pool_size=6)
    try:
        upgrade(engine)
        with session_scope(make_session_factory(engine)) as session:
            load_rules(session)
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def factory(race_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(race_engine)


@pytest.fixture(scope="module")
def protector(tmp_path_factory: pytest.TempPathFactory) -> IdentityProtector:
    """One key folder for the module's database (its identity keys are wrapped with these keys)."""
    return IdentityProtector(FileKeyBackend(tmp_path_factory.mktemp("race-keys")))


@dataclass
class Family:
    student_id: str
    student_row: int
    guardian_id: str
    form_id: int
    text_sha256: str

    def body(self, choices: dict[str, str], key: str | None = None) -> DecisionCreate:
        return DecisionCreate(
            subject_id=self.student_id,
            decided_by="guardian",
            guardian_id=self.guardian_id,
            form_id=self.form_id,
            text_sha256=self.text_sha256,
            choices=choices,
            channel="paper",
            idempotency_key=key,
        )


@pytest.fixture(scope="module")
def form_id(race_engine: Engine) -> int:
    with session_scope(make_session_factory(race_engine)) as session:
        return make_form(session, "PL", "pl").id


def new_family(factory: sessionmaker[Session], protector, form_id: int) -> Family:
    with session_scope(factory) as session:
        student = make_student(
            session,
            protector,
            country="PL",
            school="PL-WAW-001",
            language="pl",
            birth_year=2021,
            birth_month=3,
        )
        guardian = make_guardian(session, protector, [student], language="pl")
        form = session.get(ConsentForm, form_id)
        assert form is not None
        sha = next(t.sha256 for t in form.texts if t.audience == "guardian")
        return Family(student.subject_id, student.id, guardian.guardian_id, form_id, sha)


def wait_until_blocked_on_a_lock(engine: Engine, count: int = 1) -> None:
    """Return once ``count`` sessions of this database wait for a row lock (fail after WAIT seconds)."""
    stop = threading.Event()
    with engine.connect() as connection:
        for _ in range(int(WAIT / 0.02)):
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            connection.rollback()
            if waiting >= count:
                return
            stop.wait(0.02)
    raise AssertionError("the second transaction never waited for the subject's lock")


class Runner:
    """Runs functions in threads and keeps their results or errors."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, work: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                self.results[name] = work()
            except Exception as error:  # reported by the assertions of the test
                self.results[name] = error

        thread = threading.Thread(target=run, name=name)
        self.threads.append(thread)
        thread.start()

    def join(self) -> dict[str, Any]:
        for thread in self.threads:
            thread.join(timeout=WAIT)
            assert not thread.is_alive(), f"{thread.name} did not finish"
        return self.results


def record_holding_the_lock(
    factory: sessionmaker[Session], body: DecisionCreate, release: threading.Event, recorded: threading.Event
) -> Callable[[], RecordedDecision]:
    """Record in a transaction that stays open (holding the subject's lock) until ``release``."""

    def work() -> RecordedDecision:
        with session_scope(factory) as session:
            result = record_decision(session, STEWARD, body)
            recorded.set()
            assert release.wait(WAIT)
        return result

    return work


def record_now(factory: sessionmaker[Session], body: DecisionCreate) -> Callable[[], RecordedDecision]:
    def work() -> RecordedDecision:
        with session_scope(factory) as session:
            return record_decision(session, STEWARD, body)

    return work


def rows_of(factory: sessionmaker[Session], student_row: int) -> list[Decision]:
    with factory() as session:
        return list(
            session.execute(
                select(Decision)
                .where(Decision.student_id == student_row)
                .order_by(Decision.recorded_at, Decision.id)
            ).scalars()
        )


@pytest.mark.parametrize(
    "order",
    [("granted", "withdrawn", Status.withdrawn), ("withdrawn", "granted", Status.granted)],
    ids=["grant-then-withdrawal", "withdrawal-then-grant"],
)
def test_a_withdrawal_racing_a_grant_lands_second_and_the_later_one_is_the_status(
    factory, race_engine, protector, form_id, order
):
    first, second, final = order
    family = new_family(factory, protector, form_id)
    choices = {"granted": {"questionnaires": "granted"}, "withdrawn": {"questionnaires": "withdrawn"}}
    release, recorded = threading.Event(), threading.Event()
    runner = Runner()
    runner.start("first", record_holding_the_lock(factory, family.body(choices[first]), release, recorded))
    assert recorded.wait(WAIT)
    runner.start("second", record_now(factory, family.body(choices[second])))
    wait_until_blocked_on_a_lock(race_engine)
    release.set()
    results = runner.join()
    one, two = results["first"], results["second"]
    assert isinstance(one, RecordedDecision), one
    assert isinstance(two, RecordedDecision), two
    assert two.recorded_at > one.recorded_at, "the waiting decision is recorded after the one it waited for"
    rows = rows_of(factory, family.student_row)
    assert [r.event_id for r in rows] == [one.event_id, two.event_id]
    assert rows[0].id < rows[1].id
    with factory() as session:
        now = datetime.now(UTC)
        cached = student_statuses(session, [family.student_id], at=now).rows[family.student_id]
        derived = derive_student_statuses(session, [family.student_id], at=now).rows[family.student_id]
        assert cached["questionnaires"] is final
        assert derived["questionnaires"] is final
        withdrawals = (
            session.execute(select(Withdrawal).where(Withdrawal.subject_id == family.student_id))
            .scalars()
            .all()
        )
        assert [w.event_id for w in withdrawals] == [(one if first == "withdrawn" else two).event_id]


def test_a_withdrawal_and_a_grant_started_together_both_land_in_a_strict_order(factory, protector, form_id):
    family = new_family(factory, protector, form_id)
    barrier = threading.Barrier(2)
    runner = Runner()

    def together(choices: dict[str, str]) -> Callable[[], RecordedDecision]:
        def work() -> RecordedDecision:
            barrier.wait(WAIT)
            return record_now(factory, family.body(choices))()

        return work

    runner.start("grant", together({"questionnaires": "granted"}))
    runner.start("withdrawal", together({"questionnaires": "withdrawn"}))
    results = runner.join()
    assert all(isinstance(r, RecordedDecision) for r in results.values()), results
    later = max(results.values(), key=lambda r: r.recorded_at)
    rows = rows_of(factory, family.student_row)
    assert len(rows) == 2
    assert rows[0].recorded_at < rows[1].recorded_at
    assert rows[0].id < rows[1].id, "the one recorded later also has the higher id"
    assert rows[1].event_id == later.event_id
    with factory() as session:
        status = student_statuses(session, [family.student_id]).rows[family.student_id]["questionnaires"]
    assert status.value == later.choices["questionnaires"].value


def test_the_same_submission_sent_twice_at_once_is_recorded_once(factory, race_engine, protector, form_id):
    family = new_family(factory, protector, form_id)
    body = family.body({"questionnaires": "granted", "interviews": "declined"}, key=f"paper-{uuid.uuid4()}")
    release, recorded = threading.Event(), threading.Event()
    runner = Runner()
    runner.start("first", record_holding_the_lock(factory, body, release, recorded))
    assert recorded.wait(WAIT)
    runner.start("second", record_now(factory, body))
    wait_until_blocked_on_a_lock(race_engine)
    release.set()
    results = runner.join()
    one, two = results["first"], results["second"]
    assert isinstance(one, RecordedDecision), one
    assert isinstance(two, RecordedDecision), two
    assert one.event_id == two.event_id
    assert (one.replayed, two.replayed) == (False, True)
    assert two.recorded_at == one.recorded_at
    rows = rows_of(factory, family.student_row)
    assert {r.event_id for r in rows} == {one.event_id}
    assert len(rows) == 2


def test_the_same_submission_from_two_threads_started_together_gives_both_the_same_event(
    factory, protector, form_id
):
    for _ in range(3):
        family = new_family(factory, protector, form_id)
        body = family.body({"questionnaires": "granted"}, key=f"paper-{uuid.uuid4()}")
        barrier = threading.Barrier(2)
        runner = Runner()

        def together(barrier=barrier, body=body) -> RecordedDecision:
            barrier.wait(WAIT)
            return record_now(factory, body)()

        runner.start("a", together)
        runner.start("b", together)
        results = runner.join()
        assert all(isinstance(r, RecordedDecision) for r in results.values()), results
        assert results["a"].event_id == results["b"].event_id
        assert sorted(r.replayed for r in results.values()) == [False, True]
        assert len(rows_of(factory, family.student_row)) == 1


def test_recording_for_one_subject_does_not_wait_for_another_subjects_lock(factory, protector, form_id):
    held, free = new_family(factory, protector, form_id), new_family(factory, protector, form_id)
    release, recorded = threading.Event(), threading.Event()
    runner = Runner()
    runner.start(
        "held", record_holding_the_lock(factory, held.body({"questionnaires": "granted"}), release, recorded)
    )
    try:
        assert recorded.wait(WAIT)
        # Runs in this thread while the other transaction holds its subject's lock: it would hang
        # (and fail after the lock timeout of the runner) if it waited for that lock.
        other = record_now(factory, free.body({"questionnaires": "granted"}))()
        assert other.replayed is False
        with factory() as session:
            assert session.get(Student, free.student_row) is not None
            seen = student_statuses(session, [free.student_id, held.student_id]).rows
        assert seen[free.student_id]["questionnaires"] is Status.granted
        assert seen[held.student_id]["questionnaires"] is Status.pending, "not committed yet"
    finally:
        release.set()
        runner.join()


def test_one_idempotency_key_used_for_two_subjects_at_once_is_a_conflict_not_a_crash(
    factory, race_engine, protector, form_id
):
    one, two = new_family(factory, protector, form_id), new_family(factory, protector, form_id)
    key = f"paper-{uuid.uuid4()}"
    release, recorded = threading.Event(), threading.Event()
    runner = Runner()
    runner.start(
        "first",
        record_holding_the_lock(factory, one.body({"questionnaires": "granted"}, key), release, recorded),
    )
    assert recorded.wait(WAIT)
    runner.start("second", record_now(factory, two.body({"questionnaires": "granted"}, key)))
    wait_until_blocked_on_a_lock(race_engine)  # on the key's unique index, not on a subject
    release.set()
    results = runner.join()
    assert isinstance(results["first"], RecordedDecision), results["first"]
    assert not isinstance(results["second"], IntegrityError), "a database error would answer 500"
    assert isinstance(results["second"], DecisionConflict), results["second"]
    assert results["second"].code == "idempotency_key_reused"
    assert rows_of(factory, two.student_row) == []
