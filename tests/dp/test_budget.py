"""Budgets never overspend: concurrent releases on real PostgreSQL, exact decimals, caps, replays.

Releases run in committed transactions on their own connections (one per thread), so the project's
row lock is the real one.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.principal import Principal
from consent.decisions import pseudonyms
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from dp_queries import service
from dp_queries.budget import BudgetExhausted
from dp_queries.consenting import consenting
from dp_queries.models import BudgetSpend, DpRelease
from dp_queries.spec import QuerySpec
from enclave.datasets.frames import frames
from infra.db import session_scope
from tests.dp.conftest import DATASET, DpWorld, make_project, make_researcher, mean_spec
from tests.support.auth import StaffUser

WAIT = 60.0


def principal(user: StaffUser) -> Principal:
    return Principal(account_id=user.account_id, roles=frozenset({Role.researcher}))


def release(world: DpWorld, user: StaffUser, project_id: str, spec: dict) -> service.Released:
    with session_scope(world.sessions) as session:
        return service.release_query(
            session, principal(user), project_id, QuerySpec.model_validate(spec), world.store
        )


def spent(world: DpWorld, project_id: str) -> Decimal:
    with world.sessions() as session:
        total = session.scalar(
            select(func.coalesce(func.sum(BudgetSpend.epsilon), 0)).where(
                BudgetSpend.project_id == project_id
            )
        )
        return Decimal(total)


def releases(world: DpWorld, project_id: str) -> int:
    with world.sessions() as session:
        return session.scalar(select(func.count()).where(DpRelease.project_id == project_id)) or 0


def ledger(world: DpWorld, project_id: str, expected: int) -> list[tuple[str, str, dict]]:
    """The project's DP ledger entries once ``expected`` are chained (the sealer runs in the background)."""
    deadline = time.monotonic() + WAIT
    while True:
        with world.sessions() as session:
            rows = session.execute(
                select(AuditEntry.action, AuditEntry.outcome, AuditEntry.details)
                .where(AuditEntry.project_id == project_id, AuditEntry.action.like("dp.%"))
                .order_by(AuditEntry.seq)
            ).all()
        if len(rows) >= expected or time.monotonic() > deadline:
            return [(a, o, d) for a, o, d in rows]
        time.sleep(0.1)


def test_fifty_concurrent_releases_of_a_tenth_against_a_budget_of_one_exactly_ten_succeed(world):
    owner = make_researcher(world)
    others = tuple(make_researcher(world) for _ in range(4))
    people = (owner, *others)
    project_id = make_project(world, owner, epsilon="1.0", members=others)
    release(world, owner, project_id, mean_spec(upper=4.999, epsilon="0.0001"))  # warms the frame cache
    assert spent(world, project_id) == Decimal("0.0001")
    project_id = make_project(world, owner, epsilon="1.0", members=others)

    start = threading.Barrier(50, timeout=WAIT)
    outcomes: list[str] = []
    problems: list[BaseException] = []
    lock = threading.Lock()

    def one(number: int) -> None:
        # 50 different queries (bounds differ), so none is a replay of another.
        spec = mean_spec(upper=5.0 - number / 100)
        try:
            start.wait()
            release(world, people[number % len(people)], project_id, spec)
            outcome = "released"
        except BudgetExhausted as error:
            outcome = f"{error.code}:{error.extra['remaining_epsilon']}"
        except BaseException as error:
            with lock:
                problems.append(error)
            return
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not problems, problems
    assert outcomes.count("released") == 10
    assert outcomes.count("budget_exhausted:0.0000") == 40
    assert spent(world, project_id) == Decimal("1.0000")
    assert releases(world, project_id) == 10
    entries = ledger(world, project_id, 50)
    assert sum(1 for a, o, _ in entries if (a, o) == ("dp.query_released", "ok")) == 10
    refused = [d for a, o, d in entries if (a, o) == ("dp.query_refused", "denied")]
    assert len(refused) == 40
    assert {d["error"] for d in refused} == {"budget_exhausted"}
    released = [d for a, _, d in entries if a == "dp.query_released"]
    assert {d["epsilon"] for d in released} == {"0.1000"}
    assert all(len(d["spec_hash"]) == 64 for d in released)


def test_budget_arithmetic_is_exact_three_tenths_fit_a_budget_of_three_tenths(world):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="0.3")
    for upper in (4.9, 4.8, 4.7):
        answer = release(world, owner, project_id, mean_spec(upper=upper))
        assert answer.charged == Decimal("0.1000")
    assert spent(world, project_id) == Decimal("0.3000")
    with pytest.raises(BudgetExhausted) as refused:
        release(world, owner, project_id, mean_spec(upper=4.6, epsilon="0.0001"))
    assert refused.value.extra["remaining_epsilon"] == "0.0000"
    assert refused.value.status_code == 409


def test_a_researchers_cap_stops_them_but_not_the_rest_of_the_project(world):
    owner = make_researcher(world)
    member = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0", members=(member,))
    dpo = Principal(account_id=owner.account_id, roles=frozenset({Role.dpo}))
    with session_scope(world.sessions) as session:
        service.set_cap(session, dpo, project_id, member.account_id, Decimal("0.2"))
    release(world, member, project_id, mean_spec(upper=4.9))
    release(world, member, project_id, mean_spec(upper=4.8))
    with pytest.raises(BudgetExhausted) as refused:
        release(world, member, project_id, mean_spec(upper=4.7))
    assert refused.value.code == "researcher_cap_reached"
    assert refused.value.extra["remaining_epsilon"] == "0.0000"
    release(world, owner, project_id, mean_spec(upper=4.7))
    assert spent(world, project_id) == Decimal("0.3000")


def test_an_identical_query_returns_the_stored_release_at_no_cost(world):
    owner = make_researcher(world)
    member = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0", members=(member,))
    first = release(world, owner, project_id, mean_spec(upper=4.5))
    again = release(world, member, project_id, mean_spec(upper=4.5))
    assert not first.reused
    assert again.reused
    assert again.charged == Decimal(0)
    assert again.release.id == first.release.id
    assert again.release.result == first.release.result
    assert spent(world, project_id) == Decimal("0.1000")
    changed = release(world, owner, project_id, mean_spec(upper=4.5, epsilon="0.2"))
    assert not changed.reused
    assert spent(world, project_id) == Decimal("0.3000")
    entries = ledger(world, project_id, 3)
    assert [a for a, _, _ in entries] == ["dp.query_released", "dp.query_replayed", "dp.query_released"]
    assert entries[1][2]["epsilon"] == "0"


def test_a_withdrawal_makes_the_same_query_a_new_release_without_the_child(world):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    first = release(world, owner, project_id, mean_spec(upper=4.2))
    assert release(world, owner, project_id, mean_spec(upper=4.2)).reused
    subject = next(s for s in world.granted if s not in world.withdrawn)
    world.withdrawn.append(subject)
    with session_scope(world.sessions) as session:
        for decider in world.deciders[subject]:
            record_decision(
                session,
                world.steward.actor,
                DecisionCreate(
                    subject_id=subject,
                    decided_by=decider.by,
                    guardian_id=decider.guardian_id,
                    form_id=world.form_id,
                    text_sha256=decider.text_sha256,
                    choices={"questionnaires": "withdrawn"},
                    channel="paper",
                ),
            )
    after = release(world, owner, project_id, mean_spec(upper=4.2))
    assert not after.reused, "the set of consenting subjects changed: a new release, paid for"
    assert after.charged == Decimal("0.1000")
    assert (after.release.version, after.release.consenting_digest) != (
        first.release.version,
        first.release.consenting_digest,
    )
    with world.sessions() as session:
        loaded = frames.get(session, world.store, DATASET, after.release.version)
        kept = consenting(session, loaded)
        pseudonym = pseudonyms.pseudonymise(session, world.store.keys, "letscare-main", [subject])[subject]
    assert kept.digest == after.release.consenting_digest
    assert pseudonym not in kept.frame["pseudonym"].to_list(), "the child is not in the released data"
    assert spent(world, project_id) == Decimal("0.2000")
