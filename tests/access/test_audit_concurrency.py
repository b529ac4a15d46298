"""Eight processes appending at once still make one linear chain with no gap and no fork."""

from __future__ import annotations

from sqlalchemy import func, select

from access.audit.models import AuditEntry
from access.audit.service import verify_ledger
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
