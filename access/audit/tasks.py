"""Periodic signing of audit checkpoints."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from access.audit.service import apply_retention, create_checkpoint, seal
from infra.tasks import DatabaseTask, celery_app, register_periodic, task_settings

CHECKPOINT_TASK = "audit.checkpoint"
SEAL_TASK = "audit.seal"


@celery_app.task(name=SEAL_TASK, base=DatabaseTask, bind=True)
def seal_pending(self: DatabaseTask) -> int:
    """Chain entries whose recording process died between its commit and its sealing pass."""
    with self.session() as session:
        return seal(session)


@celery_app.task(name=CHECKPOINT_TASK, base=DatabaseTask, bind=True)
def sign_checkpoint(self: DatabaseTask) -> dict[str, Any]:
    """Sign a checkpoint of the ledger as it is now (nothing new is signed twice)."""
    from infra.keys import key_backend_from_settings

    keys = key_backend_from_settings(task_settings())
    with self.session() as session:
        checkpoint = create_checkpoint(session, keys)
        return {"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash}


RETENTION_TASK = "audit.retention"


@celery_app.task(name=RETENTION_TASK, base=DatabaseTask, bind=True)
def retention(self: DatabaseTask) -> dict[str, Any]:
    """Empty the content of entries past ENCLAVE_AUDIT_RETENTION_DAYS (hashes are kept)."""
    from infra.keys import key_backend_from_settings

    settings = task_settings()
    with self.session() as session:
        result = apply_retention(session, key_backend_from_settings(settings), settings.audit_retention_days)
        return {"pruned": result.pruned, "first_seq": result.first_seq, "last_seq": result.last_seq}


def schedule_checkpoints(interval_seconds: int) -> None:
    """Have beat (or the in-process scheduler) sign a checkpoint every ``interval_seconds``."""
    register_periodic("audit-checkpoint", CHECKPOINT_TASK, timedelta(seconds=interval_seconds))
    register_periodic("audit-seal", SEAL_TASK, timedelta(minutes=1))
    register_periodic("audit-retention", RETENTION_TASK, timedelta(days=1))
