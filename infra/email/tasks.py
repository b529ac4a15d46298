"""Celery tasks of the email outbox, on the ``email`` queue: send one message, and the sweep."""

from __future__ import annotations

from typing import Any

from infra.email.service import SEND_TASK, SWEEP_INTERVAL, SWEEP_TASK, send_due, send_message
from infra.keys import KeyBackend
from infra.settings import Settings
from infra.tasks import DatabaseTask, celery_app, register_periodic, task_session_factory, task_settings

_backend: list[tuple[Settings, KeyBackend]] = []


def _keys(settings: Settings) -> KeyBackend:
    """One key backend per configuration of this process (a Vault client is not free to build)."""
    if not _backend or _backend[0][0] is not settings:
        from infra.keys import key_backend_from_settings

        _backend[:] = [(settings, key_backend_from_settings(settings))]
    return _backend[0][1]


@celery_app.task(name=SEND_TASK, base=DatabaseTask, bind=True)
def send(self: DatabaseTask, message_id: str) -> dict[str, Any]:
    """Make one attempt at a message if it is due; a message already sent is left alone."""
    settings = task_settings()
    status = send_message(task_session_factory(), _keys(settings), settings, message_id)
    return {"message_id": message_id, "status": status.value if status else None}


@celery_app.task(name=SWEEP_TASK, base=DatabaseTask, bind=True)
def sweep(self: DatabaseTask) -> dict[str, int]:
    """Attempt every message whose next attempt is due: retries, and sends lost to an outage."""
    settings = task_settings()
    return send_due(task_session_factory(), _keys(settings), settings)


register_periodic("email-sweep", SWEEP_TASK, SWEEP_INTERVAL)
