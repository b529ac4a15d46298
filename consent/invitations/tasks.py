"""Jobs of invitations: deleting letters files once their week is over."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from consent.invitations.sending import purge_expired_letters
from infra.storage import storage_from_settings
from infra.tasks import celery_app, register_periodic, task_settings

PURGE_LETTERS_TASK = "default.consent_letters_purge"
PURGE_INTERVAL = timedelta(hours=1)


@celery_app.task(name=PURGE_LETTERS_TASK)
def purge_letters() -> dict[str, Any]:
    """Delete the encrypted letters PDFs older than seven days (idempotent)."""
    return {"deleted": purge_expired_letters(storage_from_settings(task_settings()))}


register_periodic("consent-letters-purge", PURGE_LETTERS_TASK, PURGE_INTERVAL)
