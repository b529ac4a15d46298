"""Pydantic shapes of the audit review API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from access.audit.models import AuditEntry, AuditSignoff
from access.audit.review import MAX_COMMENT, ReviewVerification
from access.audit.review_export import entry_json
from access.audit.service import SignedCheckpoint


class EntryOut(BaseModel):
    """One ledger entry: the fields its hash commits to, and that hash."""

    v: int
    seq: int
    time: str
    actor_id: str
    actor_role: str
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    request_id: str | None
    project_id: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str
    pruned_at: str | None = Field(None, description="When retention emptied this entry's content.")

    @classmethod
    def of(cls, entry: AuditEntry) -> EntryOut:
        """From the stored row."""
        return cls.model_validate(entry_json(entry))


class EntryPageOut(BaseModel):
    """A page of entries, oldest first."""

    entries: list[EntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")
    ledger_size: int = Field(description="The number of entries the paginated snapshot covers.")


class CheckpointOut(BaseModel):
    """A signed checkpoint in the reviewer's file format: save it and send it back later."""

    log: str
    tree_size: int
    root_hash: str
    signed_at: str
    key_id: str
    signature: str

    @classmethod
    def of(cls, checkpoint: SignedCheckpoint) -> CheckpointOut:
        """From the service's checkpoint."""
        return cls.model_validate(checkpoint.to_json())


class ProblemOut(BaseModel):
    """One thing verification found wrong."""

    kind: str
    seq: int | None
    message: str


class ConsistencyOut(BaseModel):
    """Proof that the ledger now extends the saved checkpoint (RFC 9162 consistency proof)."""

    from_size: int
    to_size: int
    to_root: str
    proof: list[str]
    ok: bool


class VerificationOut(BaseModel):
    """Result of recomputing every hash, link, root and checkpoint signature."""

    ok: bool
    entries: int
    root: str
    checkpoints_checked: int
    pruned: int = Field(description="Entries whose content retention removed (their hashes remain).")
    first_bad_seq: int | None
    problems: list[ProblemOut]
    consistency: ConsistencyOut | None = None

    @classmethod
    def of(cls, result: ReviewVerification) -> VerificationOut:
        """From the service's result."""
        report = result.report
        consistency = result.consistency
        return cls(
            ok=report.ok and (consistency is None or consistency.ok),
            entries=report.entries,
            root=report.root_hash,
            checkpoints_checked=report.checkpoints_checked,
            pruned=report.pruned,
            first_bad_seq=report.first_bad_seq,
            problems=[ProblemOut(kind=p.kind, seq=p.seq, message=p.message) for p in report.problems],
            consistency=ConsistencyOut.model_validate(vars(consistency)) if consistency else None,
        )


class SignoffIn(BaseModel):
    """A reviewed range to sign off."""

    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)
    comment: str = Field("", max_length=MAX_COMMENT)


class SignoffOut(BaseModel):
    """A stored sign-off."""

    id: int
    reviewer_id: str
    reviewer_role: str
    first_seq: int
    last_seq: int
    tree_size: int
    root_hash: str
    comment: str
    signed_at: datetime

    @classmethod
    def of(cls, row: AuditSignoff) -> SignoffOut:
        """From the stored row."""
        return cls(
            id=row.id,
            reviewer_id=row.reviewer_id,
            reviewer_role=row.reviewer_role,
            first_seq=row.first_seq,
            last_seq=row.last_seq,
            tree_size=row.tree_size,
            root_hash=row.root_hash,
            comment=row.comment,
            signed_at=row.signed_at,
        )
