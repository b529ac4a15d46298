"""Jobs of the decisions sub-area: withdrawal delivery and its sweep, status refresh, the re-consent scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import crontab

from consent.decisions import status_cache, withdrawals
from infra.tasks import DatabaseTask, celery_app, register_periodic, task_session_factory


@celery_app.task(name=withdrawals.NOTIFY_TASK, base=DatabaseTask, bind=True)
def notify_withdrawal(self: DatabaseTask, withdrawal_id: int) -> dict[str, Any]:
    """Hand one withdrawal to every consumer that has not confirmed it (idempotent)."""
    return {"confirmed": withdrawals.deliver(task_session_factory(), withdrawal_id)}


@celery_app.task(name=withdrawals.SWEEP_TASK, base=DatabaseTask, bind=True)
def sweep_withdrawals(self: DatabaseTask) -> dict[str, Any]:
    """Deliver again every withdrawal some consumer has not confirmed (after a failure or an outage)."""
    with self.session() as session:
        pending = withdrawals.unhandled(session)
    failed = 0
    for withdrawal_id in pending:
        try:
            withdrawals.deliver(task_session_factory(), withdrawal_id)
        except Exception:  # logged by deliver; the next sweep tries again
            failed += 1
    return {"pending": len(pending), "failed": failed}


register_periodic("consent-withdrawal-sweep", withdrawals.SWEEP_TASK, withdrawals.SWEEP_INTERVAL)


RECONSENT_TASK = "default.consent_reconsent_scan"
STATUS_REFRESH_TASK = "default.consent_status_refresh"


@celery_app.task(name=STATUS_REFRESH_TASK, base=DatabaseTask, bind=True)
def status_refresh(self: DatabaseTask) -> dict[str, Any]:
    """Recompute the status rows that no longer hold (roster changes, new rules or forms, dates)."""
    now = datetime.now(UTC)
    with self.session() as session:
        due = status_cache.due_for_refresh(session, before=now + timedelta(hours=1), now=now, limit=20_000)
        return {"refreshed": status_cache.refresh(session, due, at=now) if due else 0}


@celery_app.task(name=RECONSENT_TASK, base=DatabaseTask, bind=True)
def reconsent_scan(self: DatabaseTask) -> dict[str, Any]:
    """Mark students nearing self-consent age and refresh status rows about to end (idempotent)."""
    from consent.decisions.reconsent import scan

    with self.session() as session:
        result = scan(session)
        return {"marked": result.marked, "refreshed": result.refreshed}


register_periodic("consent-reconsent-scan", RECONSENT_TASK, crontab(hour=2, minute=15))
register_periodic("consent-status-refresh", STATUS_REFRESH_TASK, timedelta(minutes=10))
