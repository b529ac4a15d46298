"""Eight processes appending at once still make one linear chain with no gap and no fork."""

from __future__ import annotations

from sqlalchemy import func, select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.audit.service import Actor, verify_ledger
from infra.db import make_engine
from infra.migrate import upgrade
from tests.conftest import recreate_database
from tests.support.audit_writers import run_writers


def test_eight_processes_times_500_appends_make_one_verified_chain():
    url = recreate_database("enclave_test_audit_concurrency")
    engine = make_engine(url)
    upgrade(engine)
    try:
        run_writers(url, writers=8, per_writer=500)
        with engine.connect() as connection:
            count, low, high = connection.execute(
                select(func.count(), func.min(AuditEntry.seq), func.max(AuditEntry.seq))
            ).one()
            assert (count, low, high) == (4000, 1, 4000)
            distinct_parents = connection.scalar(select(func.count(func.distinct(AuditEntry.prev_hash))))
            assert distinct_parents == 4000, "two entries share a parent: the chain forked"
            writers = connection.scalar(select(func.count(func.distinct(AuditEntry.actor_id))))
            assert writers == 8
            report = verify_ledger(connection, public_keys={})
        assert report.ok, report.problems[:5]
        assert report.entries == 4000
    finally:
        engine.dispose()


def test_entries_of_committed_requests_are_chained_in_the_background_without_waiting():
    import time

    from access.audit.models import AuditPending
    from access.audit.service import chain_queued, record
    from infra.db import make_session_factory, session_scope
    from tests.support.audit_writers import LOAD_ACTION

    url = recreate_database("enclave_test_audit_sealer")
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    try:
        for i in range(20):
            with session_scope(factory) as session:
                record(session, Actor("acct-bg", Role.system), LOAD_ACTION, target_id=f"bg-{i}")
        deadline = time.monotonic() + 10
        with engine.connect() as connection:
            while connection.scalar(select(func.count()).select_from(AuditEntry)) < 20:
                assert time.monotonic() < deadline, "the background sealer did not chain the entries"
                time.sleep(0.05)
                connection.rollback()
            assert connection.scalar(select(func.count()).select_from(AuditPending)) == 0
            assert verify_ledger(connection, public_keys={}).ok
        # A reader that needs everything this process committed chains it first.
        with session_scope(factory) as session:
            record(session, Actor("acct-bg", Role.system), LOAD_ACTION, target_id="bg-last")
        with factory() as session:
            chain_queued(session)
            assert session.scalar(select(func.max(AuditEntry.seq))) == 21
    finally:
        engine.dispose()


def test_a_background_pass_waits_for_another_sealer_only_when_entries_wait():
    import threading

    import psycopg

    from access.audit.actions import Outcome
    from access.audit.models import AuditPending
    from access.audit.recording import _AUDIT_LOCK_KEY, _INSERT_PENDING, _pending, _row, seal_owed
    from tests.support.audit_writers import LOAD_ACTION

    url = recreate_database("enclave_test_audit_sealer_wait")
    engine = make_engine(url)
    upgrade(engine)
    holder = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        # Another sealer is mid-pass: it holds the chain lock in an open transaction.
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK_KEY,))

        def background_pass() -> tuple[threading.Thread, list[int]]:
            result: list[int] = []
            thread = threading.Thread(target=lambda: result.append(seal_owed(engine, settle=0.01)))
            thread.daemon = True
            thread.start()
            thread.join(timeout=0.5)
            return thread, result

        # Nothing queued: nothing is owed, so the pass returns at once instead of waiting.
        idle, result = background_pass()
        assert not idle.is_alive(), "a pass with nothing to chain waited for the other sealer"
        assert result == [0]

        actor = Actor("acct-wait", Role.system)
        rows = [
            _row(
                _pending(
                    actor=actor, action=LOAD_ACTION, target_type="load", target_id=f"q-{i}",
                    outcome=Outcome.ok, details=None, project_id=None, request_id=None,
                )
            )
            for i in range(5)
        ]  # fmt: skip
        with engine.begin() as connection:
            connection.execute(_INSERT_PENDING, rows)

        # Entries wait: the pass waits for the holder, then chains them after it.
        waiting, result = background_pass()
        assert waiting.is_alive(), "the pass did not wait for the sealer holding the chain"
        holder.rollback()
        waiting.join(timeout=10)
        assert result == [5]
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(AuditPending)) == 0
            report = verify_ledger(connection, public_keys={})
        assert report.ok
        assert report.entries == 5
    finally:
        holder.close()
        engine.dispose()
