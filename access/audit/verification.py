"""Verification: recompute every hash, link, Merkle root and signature, streaming."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Text, cast, func, select

from access.audit import canonical
from access.audit.actions import (
    AUDIT_RETENTION_APPLIED,
)
from access.audit.checkpoints import _STREAM, SignedCheckpoint, checkpoint_signature_valid
from access.audit.merkle import RootBuilder
from access.audit.models import GENESIS_HASH, AuditCheckpoint, AuditEntry, AuditHead
from access.audit.recording import PENDING_NAMES
from infra.db import as_utc
from infra.logging import get_logger

log = get_logger(__name__)

# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing verification found wrong; ``seq`` is the first entry it concerns."""

    kind: str
    seq: int | None
    message: str


@dataclass
class VerificationReport:
    """Result of recomputing the chain, the tree and every checkpoint."""

    entries: int = 0
    root_hash: str = ""
    checkpoints_checked: int = 0
    pruned: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        """The smallest sequence number named by any problem."""
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None


# The hashed fields in the order ``PENDING_NAMES`` gives them, between the sequence number and the
# stored hashes. Details come as stored text, parsed with orjson: several times faster than the
# driver's JSON decoding.
_HASHED_COLUMNS = tuple(
    cast(AuditEntry.details, Text) if name == "details" else getattr(AuditEntry, name)
    for name in PENDING_NAMES
)
_ENTRY_COLUMNS = (
    AuditEntry.seq,
    *_HASHED_COLUMNS,
    AuditEntry.prev_hash,
    AuditEntry.entry_hash,
    AuditEntry.pruned_at,
)
_TIME = 1 + PENDING_NAMES.index("occurred_at")
_DETAILS = 1 + PENDING_NAMES.index("details")
_PREV, _HASH, _PRUNED = (len(_ENTRY_COLUMNS) - 3, len(_ENTRY_COLUMNS) - 2, len(_ENTRY_COLUMNS) - 1)

# PostgreSQL formats each time exactly as the canonical encoding does, on its own core, so the
# verifier neither builds datetime objects nor formats them.
_PG_TIME = func.to_char(func.timezone("UTC", AuditEntry.occurred_at), canonical.PG_TIME_FORMAT)


def _entry_columns(connection: Connection) -> tuple[Any, ...]:
    if connection.dialect.name == "postgresql":
        return (*_ENTRY_COLUMNS[:_TIME], _PG_TIME, *_ENTRY_COLUMNS[_TIME + 1 :])
    return _ENTRY_COLUMNS


MAX_PROBLEMS = 100


class _Verifier:
    """One streaming pass over the ledger; keeps O(log n) state whatever its size."""

    def __init__(
        self, targets: dict[int, list[tuple[str, SignedCheckpoint]]], report: VerificationReport
    ) -> None:
        self.targets = targets
        self.report = report
        self.builder = RootBuilder()
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.last_good_checkpoint = 0
        self.retention_ranges: list[tuple[int, int]] = []
        self.first_unattested_pruned: int | None = None

    def problem(self, kind: str, seq: int | None, message: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(Problem(kind, seq, message))

    def check_row(self, row: tuple[Any, ...]) -> None:
        seq = row[0]
        stored_prev, stored_hash = row[_PREV], row[_HASH]
        if row[_PRUNED] is not None:
            # Retention removed the content, so the hash cannot be recomputed; it is attested by the
            # next signed checkpoint's root instead, and must lie in a range a retention entry names.
            intact = True
            self.report.pruned += 1
            if self.first_unattested_pruned is None:
                self.first_unattested_pruned = seq
            if not any(low <= seq <= high for low, high in self.retention_ranges):
                self.problem("unexplained_pruning", seq, f"entry {seq} was emptied outside any retention run")
        else:
            values = dict(zip(PENDING_NAMES, row[1:_PREV], strict=True))
            values["details"] = orjson.loads(row[_DETAILS])
            document = canonical.entry_document(seq=seq, prev_hash=stored_prev, **values)
            intact = canonical.entry_hash(document) == stored_hash
        if seq != self.expected_seq:
            if seq > self.expected_seq:
                self.problem(
                    "missing_entries",
                    self.expected_seq,
                    f"entries {self.expected_seq}..{seq - 1} are missing",
                )
            else:
                self.problem("out_of_order", seq, f"entry {seq} appears after entry {self.expected_seq - 1}")
        elif stored_prev != self.prev_hash and intact:
            # This entry is as it was written, so the one before it was rewritten together with its
            # own hash (a moved or inserted entry, or a naive rewrite, fails its own hash instead).
            self.problem("broken_link", max(seq - 1, 1), f"entry {seq} does not link to entry {seq - 1}")
        if not intact:
            self.problem(
                "modified_entry", seq, f"entry {seq} does not match its hash: it was changed or moved"
            )
        self.builder.append(canonical.entry_leaf(stored_hash))
        self.prev_hash = stored_hash
        self.expected_seq = seq + 1
        if self.builder.size in self.targets:
            self.check_roots(self.builder.size)

    def check_roots(self, size: int) -> None:
        root = self.builder.root().hex()
        for kind, checkpoint in self.targets.pop(size):
            if checkpoint.root_hash != root:
                first = self.last_good_checkpoint + 1
                self.problem(
                    f"{kind}_root_mismatch",
                    first,
                    f"the first {size} entries no longer have the root of the {kind} signed at "
                    f"{canonical.format_time(checkpoint.signed_at)}: entries {first}..{size} were rewritten",
                )
            elif kind == "checkpoint":
                self.last_good_checkpoint = size
                self.first_unattested_pruned = None

    def finish(self, head_seq: int, head_hash: str) -> None:
        entries = self.report.entries = self.builder.size
        if self.first_unattested_pruned is not None:
            self.problem(
                "unattested_pruning",
                self.first_unattested_pruned,
                f"entry {self.first_unattested_pruned} was emptied but no signed checkpoint covers it",
            )
        self.report.root_hash = self.builder.root().hex()
        for size in sorted(self.targets):
            for kind, checkpoint in self.targets[size]:
                self.problem(
                    f"{kind}_truncated",
                    entries + 1,
                    f"the {kind} signed at {canonical.format_time(checkpoint.signed_at)} covers {size} "
                    f"entries, the ledger holds {entries}: entries {entries + 1}..{size} were removed",
                )
        if head_seq != entries or (entries and head_hash != self.prev_hash):
            self.problem(
                "head_mismatch",
                min(head_seq, entries) + 1,
                f"the chain head says {head_seq} entries, the ledger holds {entries}",
            )


def verify_ledger(
    connection: Connection,
    public_keys: dict[str, bytes],
    saved: SignedCheckpoint | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerificationReport:
    """Recompute every entry hash, the chain links, the Merkle tree and every checkpoint, streaming."""
    report = VerificationReport()
    targets: dict[int, list[tuple[str, SignedCheckpoint]]] = {}
    verifier = _Verifier(targets, report)
    verifier.retention_ranges = [
        (int(d.get("first_seq") or 0), int(d.get("last_seq") or 0))
        for d in connection.scalars(
            select(AuditEntry.details).where(AuditEntry.action == AUDIT_RETENTION_APPLIED)
        )
        if isinstance(d, dict)
    ]
    # Plain rows on the caller's connection: an ORM session here would take over (and on closing,
    # end) a transaction that belongs to the caller.
    rows = connection.execute(
        select(
            AuditCheckpoint.tree_size,
            AuditCheckpoint.root_hash,
            AuditCheckpoint.signed_at,
            AuditCheckpoint.key_id,
            AuditCheckpoint.signature,
        ).order_by(AuditCheckpoint.tree_size, AuditCheckpoint.id)
    )
    checkpoints = [
        SignedCheckpoint(int(size), str(root), as_utc(signed_at), str(key_id), str(signature))
        for size, root, signed_at, key_id, signature in rows
    ]
    for checkpoint in checkpoints:
        if not checkpoint_signature_valid(checkpoint, public_keys):
            verifier.problem(
                "checkpoint_signature",
                checkpoint.tree_size,
                f"checkpoint of {checkpoint.tree_size} entries is not signed by a ledger key "
                f"({checkpoint.key_id})",
            )
        targets.setdefault(checkpoint.tree_size, []).append(("checkpoint", checkpoint))
    if saved is not None:
        if not checkpoint_signature_valid(saved, public_keys):
            verifier.problem(
                "saved_checkpoint_signature", saved.tree_size, "the saved checkpoint is not validly signed"
            )
        targets.setdefault(saved.tree_size, []).append(("saved", saved))
    report.checkpoints_checked = len(checkpoints) + (saved is not None)

    for row in connection.execute(
        select(*_entry_columns(connection)).order_by(AuditEntry.seq), execution_options=_STREAM
    ):
        verifier.check_row(tuple(row))
        if progress is not None and not verifier.builder.size % 10_000:
            progress(verifier.builder.size)
    head_seq, head_hash = connection.execute(
        select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)
    ).one()
    verifier.finish(int(head_seq), str(head_hash))
    if progress is not None:
        progress(report.entries)
    return report
