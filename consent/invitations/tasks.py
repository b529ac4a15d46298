"""Jobs of invitations: daily re-consent invitations, and deleting letters files after their week."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab

from consent.invitations.automatic import send_reconsent_invitations
from consent.invitations.sending import Links, purge_expired_letters
from infra.keys import key_backend_from_settings
from infra.storage import storage_from_settings
from infra.tasks import celery_app, register_periodic, task_session_factory, task_settings

PURGE_LETTERS_TASK = "default.consent_letters_purge"
PURGE_INTERVAL = timedelta(hours=1)


@celery_app.task(name=PURGE_LETTERS_TASK)
def purge_letters() -> dict[str, Any]:
    """Delete the encrypted letters PDFs older than seven days (idempotent)."""
    return {"deleted": purge_expired_letters(storage_from_settings(task_settings()))}


register_periodic("consent-letters-purge", PURGE_LETTERS_TASK, PURGE_INTERVAL)


RECONSENT_INVITATIONS_TASK = "email.consent_reconsent_invitations"


@celery_app.task(name=RECONSENT_INVITATIONS_TASK)
def reconsent_invitations() -> dict[str, Any]:
    """Invite the students the re-consent scan marked, school by school (after the 02:15 scan)."""
    settings = task_settings()
    result = send_reconsent_invitations(
        task_session_factory(),
        keys=key_backend_from_settings(settings),
        storage=storage_from_settings(settings),
        links=Links(settings.public_url),
    )
    return {"invited": result.invited, "skipped": result.skipped}


register_periodic("consent-reconsent-invitations", RECONSENT_INVITATIONS_TASK, crontab(hour=2, minute=45))
