"""Retention: entries past the retention period lose their content but keep their hashes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from access.audit import recording
from access.audit.actions import (
    AUDIT_RETENTION_APPLIED,
)
from access.audit.checkpoints import create_checkpoint
from access.audit.models import AuditEntry
from access.audit.recording import Actor, record
from infra.keys import KeyBackend
from infra.logging import get_logger

log = get_logger(__name__)

# --- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionResult:
    """What a retention run emptied."""

    pruned: int
    first_seq: int | None
    last_seq: int | None


def apply_retention(session: Session, keys: KeyBackend, retention_days: int) -> RetentionResult:
    """Empty the content of entries older than the retention period, keeping their hashes.

    A checkpoint is signed first, so every emptied entry is covered by a signed root, and the run is
    itself recorded with the range it emptied. Entries are otherwise kept whatever happens to the
    subjects they name (they hold pseudonyms only), so a subject's erasure never removes them.
    """
    if retention_days < 365:
        raise ValueError("audit entries are kept at least 365 days")
    checkpoint = create_checkpoint(session, keys)
    cutoff = recording.clock() - timedelta(days=retention_days)
    due = (
        AuditEntry.seq <= checkpoint.tree_size,
        AuditEntry.occurred_at < cutoff,
        AuditEntry.pruned_at.is_(None),
    )
    count, first, last = session.execute(
        select(func.count(), func.min(AuditEntry.seq), func.max(AuditEntry.seq)).where(*due)
    ).one()
    if count:
        session.execute(
            update(AuditEntry)
            .where(*due)
            .values(
                pruned_at=recording.clock(),
                actor_id="",
                actor_role="",
                action="",
                target_type=None,
                target_id=None,
                outcome="",
                request_id=None,
                project_id=None,
                details={},
            ),
            execution_options={"synchronize_session": False},
        )
    record(
        session,
        Actor.system(),
        AUDIT_RETENTION_APPLIED,
        target_type="audit_ledger",
        details={"entries": int(count), "first_seq": first, "last_seq": last},
    )
    log.info("audit.retention_applied", pruned=int(count), first_seq=first, last_seq=last)
    return RetentionResult(int(count), first, last)
