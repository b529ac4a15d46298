"""Scheduled life of projects: activation at the start date, expiry after the end date."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from access.projects.decisions import run_lifecycle
from infra.tasks import DatabaseTask, celery_app, register_periodic

LIFECYCLE_TASK = "default.projects_lifecycle"
LIFECYCLE_INTERVAL = timedelta(minutes=15)
"""Dates change once a day; a short interval keeps the lag after midnight (UTC) small."""


@celery_app.task(name=LIFECYCLE_TASK, base=DatabaseTask, bind=True)
def apply_project_lifecycle(self: DatabaseTask) -> dict[str, Any]:
    """Activate and expire projects whose dates say so; running it twice changes nothing more."""
    with self.session() as session:
        result = run_lifecycle(session)
        return {"activated": len(result.activated), "expired": len(result.expired)}


register_periodic("projects-lifecycle", LIFECYCLE_TASK, LIFECYCLE_INTERVAL)
