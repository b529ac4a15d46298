"""Withdrawals: effective at the very next status call, stored as a durable event with its outbox job,
handed once to every registered consumer, retried by the sweep, listed for the DPO."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import infra.tasks
from access.audit.actions import Role
from access.audit.service import Actor
from consent.decisions import withdrawals
from consent.decisions.models import Decision, Status, Withdrawal
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.decisions.status import student_statuses
from consent.decisions.tasks import notify_withdrawal, sweep_withdrawals
from consent.decisions.withdrawals import WithdrawalNotice, WithdrawalReason
from consent.forms.models import ConsentForm
from infra.outbox import OutboxJob
from tests.support.auth import auth_headers
from tests.support.consent import load_rules, make_form, make_guardian, make_student

STEWARD = Actor("steward-1", Role.data_steward)
GUARDIAN_NAME = "Katarzyna Nowak"
GUARDIAN_EMAIL = "katarzyna.nowak@family.example.org"


class Recorder:
    """A consumer that keeps the notices it was handed; fails the first ``failures`` calls."""

    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.failures = failures
        self.notices: list[WithdrawalNotice] = []
        self.calls = 0

    def handle(self, session: Session, notice: WithdrawalNotice) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("dataset store unavailable")
        self.notices.append(notice)


@pytest.fixture
def register(monkeypatch) -> object:
    """Register test consumers only: the product's own (the enclave's erasure) are set aside."""
    monkeypatch.setattr(withdrawals, "_CONSUMERS", {})

    def add(consumer: Recorder) -> Recorder:
        withdrawals.register_consumer(consumer)
        return consumer

    return add


@pytest.fixture
def tasks_in_test_transaction(monkeypatch, session_factory):
    """In-process tasks use the test's sessions, so they see (and roll back with) the test's data."""
    monkeypatch.setattr(infra.tasks._State, "session_factory", session_factory)


class Family:
    def __init__(self, session: Session, protector) -> None:
        load_rules(session)
        self.session = session
        self.form: ConsentForm = make_form(session, "PL", "pl")
        self.student = make_student(
            session,
            protector,
            country="PL",
            school="PL-WAW-001",
            language="pl",
            birth_year=2021,
            birth_month=3,
        )
        self.guardian = make_guardian(
            session, protector, [self.student], name=GUARDIAN_NAME, email=GUARDIAN_EMAIL, language="pl"
        )

    def body(self, choices: dict[str, str]) -> dict[str, object]:
        return {
            "subject_id": self.student.subject_id,
            "decided_by": "guardian",
            "guardian_id": self.guardian.guardian_id,
            "form_id": self.form.id,
            "text_sha256": next(t.sha256 for t in self.form.texts if t.audience == "guardian"),
            "choices": choices,
            "channel": "paper",
        }

    def decide(self, choices: dict[str, str]):
        return record_decision(self.session, STEWARD, DecisionCreate.model_validate(self.body(choices)))

    def status(self) -> dict[str, Status]:
        return student_statuses(self.session, [self.student.subject_id]).rows[self.student.subject_id]

    def withdrawals(self) -> list[Withdrawal]:
        self.session.expire_all()
        return list(
            self.session.execute(
                select(Withdrawal)
                .where(Withdrawal.subject_id == self.student.subject_id)
                .order_by(Withdrawal.id)
            ).scalars()
        )


def jobs_for(session: Session, withdrawal_id: int) -> list[OutboxJob]:
    jobs = session.execute(
        select(OutboxJob).where(OutboxJob.task_name == "erasure.consent_withdrawal")
    ).scalars()
    return [job for job in jobs if job.args == [withdrawal_id]]


@pytest.fixture
def family(db_session, protector):
    return Family(db_session, protector)


def test_a_withdrawal_is_effective_at_the_very_next_status_call(family):
    family.decide({"questionnaires": "granted", "interviews": "granted", "recontact": "granted"})
    assert family.status()["interviews"] is Status.granted
    family.decide({"interviews": "withdrawn", "recontact": "withdrawn"})
    now = family.status()
    assert now["interviews"] is Status.withdrawn
    assert now["recontact"] is Status.withdrawn
    assert now["questionnaires"] is Status.granted, "a withdrawal touches only the purposes named"


def test_a_withdrawal_writes_its_event_and_an_erasure_job_in_the_same_transaction(family, db_session):
    family.decide({"questionnaires": "granted", "interviews": "granted"})
    assert family.withdrawals() == [], "a grant is not a withdrawal"
    recorded = family.decide({"recontact": "withdrawn", "interviews": "withdrawn"})
    (event,) = family.withdrawals()
    assert event.event_id == recorded.event_id
    assert event.purposes == ["interviews", "recontact"]
    assert event.reason == "withdrawn"
    assert (event.subject_kind, event.subject_id) == ("student", family.student.subject_id)
    assert event.effective_at == recorded.recorded_at
    assert event.handled == {}
    (job,) = jobs_for(db_session, event.id)
    assert job.sent_at is None, "sent only once the transaction commits"


def test_a_submission_mixing_grants_and_a_withdrawal_emits_only_the_withdrawn_purposes(family):
    family.decide({"questionnaires": "granted", "interviews": "granted"})
    family.decide({"questionnaires": "granted", "interviews": "withdrawn", "recontact": "declined"})
    (event,) = family.withdrawals()
    assert event.purposes == ["interviews"]


def test_a_consumer_gets_a_pseudonymous_notice_once_even_if_delivered_twice(
    family, register, session_factory
):
    erasure = register(Recorder("test-erasure"))
    family.decide({"questionnaires": "granted", "interviews": "granted"})
    recorded = family.decide({"interviews": "withdrawn"})
    (event,) = family.withdrawals()
    assert withdrawals.deliver(session_factory, event.id) == ["test-erasure"]
    assert withdrawals.deliver(session_factory, event.id) == []
    assert len(erasure.notices) == 1
    notice = erasure.notices[0]
    assert notice == WithdrawalNotice(
        id=event.id,
        event_id=recorded.event_id,
        subject_kind="student",
        subject_id=family.student.subject_id,
        purposes=("interviews",),
        reason=WithdrawalReason.withdrawn,
        effective_at=recorded.recorded_at,
    )
    assert {f.name for f in dataclasses.fields(notice)} == {
        "id",
        "event_id",
        "subject_kind",
        "subject_id",
        "purposes",
        "reason",
        "effective_at",
    }
    for secret in (GUARDIAN_NAME, "Nowak", GUARDIAN_EMAIL, "@", family.guardian.guardian_id):
        assert secret not in repr(notice)
    (after,) = family.withdrawals()
    assert set(after.handled) == {"test-erasure"}
    assert withdrawals.unhandled(family.session) == []


def test_committing_a_withdrawal_hands_it_to_the_consumers(
    family, register, db_session, tasks_in_test_transaction
):
    erasure = register(Recorder("test-erasure"))
    family.decide({"questionnaires": "granted", "interviews": "granted"})
    family.decide({"interviews": "withdrawn"})
    assert erasure.notices == [], "nothing is handed over before the commit"
    db_session.commit()
    assert [n.purposes for n in erasure.notices] == [("interviews",)]
    (event,) = family.withdrawals()
    assert set(event.handled) == {"test-erasure"}
    (job,) = jobs_for(db_session, event.id)
    assert job.sent_at is not None
    assert notify_withdrawal.apply(args=[event.id]).get() == {"confirmed": []}, "a repeated job does nothing"
    assert len(erasure.notices) == 1


def test_a_failing_consumer_is_retried_by_the_sweep_and_the_others_confirmation_is_kept(
    family, register, session_factory, tasks_in_test_transaction
):
    archive = register(Recorder("test-archive", failures=1))
    erasure = register(Recorder("test-erasure"))
    family.decide({"questionnaires": "granted", "interviews": "granted"})
    family.decide({"interviews": "withdrawn"})
    (event,) = family.withdrawals()
    with pytest.raises(RuntimeError, match="dataset store unavailable"):
        withdrawals.deliver(session_factory, event.id)
    (event,) = family.withdrawals()
    assert set(event.handled) == {"test-erasure"}, "the consumer that worked stays confirmed"
    assert withdrawals.unhandled(family.session) == [event.id]
    assert sweep_withdrawals.apply().get() == {"pending": 1, "failed": 0}
    (event,) = family.withdrawals()
    assert set(event.handled) == {"test-archive", "test-erasure"}
    assert len(erasure.notices) == 1, "not called again once confirmed"
    assert (archive.calls, len(archive.notices)) == (2, 1)
    assert withdrawals.unhandled(family.session) == []
    assert sweep_withdrawals.apply().get() == {"pending": 0, "failed": 0}


def test_a_consumer_that_keeps_failing_stays_pending_and_its_work_is_undone(
    family, register, session_factory, tasks_in_test_transaction, db_session
):
    class Broken(Recorder):
        def handle(self, session: Session, notice: WithdrawalNotice) -> None:
            # Work done before the failure must not be kept without its confirmation.
            session.execute(
                Decision.__table__.update().where(Decision.event_id == "none").values(channel="api")
            )
            row = session.get(Withdrawal, notice.id)
            assert row is not None
            row.purposes = ["tampered"]
            session.flush()
            raise RuntimeError("always down")

    register(Broken("test-broken"))
    family.decide({"questionnaires": "granted", "interviews": "granted"})
    family.decide({"interviews": "withdrawn"})
    (event,) = family.withdrawals()
    assert sweep_withdrawals.apply().get() == {"pending": 1, "failed": 1}
    assert sweep_withdrawals.apply().get() == {"pending": 1, "failed": 1}
    (event,) = family.withdrawals()
    assert event.handled == {}
    assert event.purposes == ["interviews"]
    assert withdrawals.unhandled(db_session) == [event.id]


def test_without_consumers_nothing_is_pending(family, register, session_factory):
    family.decide({"questionnaires": "granted"})
    family.decide({"questionnaires": "withdrawn"})
    (event,) = family.withdrawals()
    assert withdrawals.deliver(session_factory, event.id) == []
    assert withdrawals.unhandled(family.session) == []


def test_the_dpo_lists_withdrawals_with_the_consumers_that_handled_them(
    client, family, register, staff_factory, tasks_in_test_transaction
):
    erasure = register(Recorder("test-erasure"))
    steward = auth_headers(client, staff_factory(roles=[Role.data_steward], country="PL"))
    dpo = auth_headers(client, staff_factory(roles=[Role.dpo]))
    granted = client.post(
        "/api/consent/decisions", json=family.body({"questionnaires": "granted"}), headers=steward
    )
    assert granted.status_code == 201, granted.text
    withdrawn = client.post(
        "/api/consent/decisions", json=family.body({"questionnaires": "withdrawn"}), headers=steward
    )
    assert withdrawn.status_code == 201, withdrawn.text
    status = client.get(f"/api/consent/subjects/{family.student.subject_id}/status", headers=steward).json()
    assert status["statuses"]["questionnaires"] == "withdrawn"
    assert len(erasure.notices) == 1, "handed over when the request committed"
    listed = client.get("/api/consent/withdrawals", headers=dpo)
    assert listed.status_code == 200, listed.text
    mine = [w for w in listed.json() if w["subject_id"] == family.student.subject_id]
    assert len(mine) == 1
    assert mine[0]["event_id"] == withdrawn.json()["event_id"]
    assert mine[0]["purposes"] == ["questionnaires"]
    assert mine[0]["reason"] == "withdrawn"
    assert list(mine[0]["handled"]) == ["test-erasure"]
    assert GUARDIAN_EMAIL not in listed.text
    assert client.get("/api/consent/withdrawals", headers=steward).status_code == 403
    assert client.get("/api/consent/withdrawals", params={"limit": 0}, headers=dpo).status_code == 422
