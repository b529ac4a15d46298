"""Exports of the audit ledger with proofs: every exported entry comes with its inclusion proof
against one signed checkpoint, so a reviewer can check the file offline with nothing but the
ledger's public key.

JSON: one document ``{format, log, exported_at, filters, checkpoint, count, entries: [...]}``; each
entry holds the exact fields its hash commits to (``v``, ``seq``, ``time``…, ``prev_hash``) plus
``entry_hash``, ``pruned_at`` (set when retention emptied the entry: its hash can then no longer
be recomputed, but its proof still holds), ``leaf_index`` and ``inclusion_proof`` (hex hashes, RFC
9162 order).

CSV: one header row, then one row per entry. The checkpoint is repeated in the ``checkpoint_*``
columns of every row, so the file stays a plain table that any tool reads, with nothing to keep
next to it. Cells that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a
carriage return) or that begin with an apostrophe are prefixed with an apostrophe: strip one
leading apostrophe from a text cell to get the stored value back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy.orm import Session, sessionmaker

from access.audit import canonical
from access.audit.actions import AUDIT_EXPORTED
from access.audit.merkle import node_hash
from access.audit.models import AuditEntry
from access.audit.review import EntryFilter, filtered, summarise
from access.audit.service import LOG_ID, SignedCheckpoint, create_checkpoint, leaf_hashes, record
from access.principal import Principal
from infra.keys import KeyBackend

EXPORT_FORMAT = "letscare-audit-export/1"
_STREAM = {"stream_results": True, "yield_per": 2_000}


class ExportFormat(StrEnum):
    """File formats of an export."""

    csv = "csv"
    json = "json"


class ProofTree:
    """Inclusion proofs for many leaves of one tree, from precomputed perfect-subtree hashes.

    ``merkle.inclusion_proof`` rehashes whole subtrees for every proof; an export asks for one proof
    per entry, so the perfect subtrees (which is every left sibling in an RFC 9162 tree) are kept
    level by level and each proof costs O(log² n) hashes instead of O(n).
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.size = len(leaves)
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def subtree(self, start: int, count: int) -> bytes:
        """MTH of leaves start..start+count-1, where start is aligned as RFC 9162 splits imply."""
        if count & (count - 1) == 0:
            level = count.bit_length() - 1
            return self.levels[level][start >> level]
        split = 1 << ((count - 1).bit_length() - 1)
        return node_hash(self.subtree(start, split), self.subtree(start + split, count - split))

    def inclusion(self, index: int) -> list[bytes]:
        """PATH(index, D[size])."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} outside a tree of size {self.size}")
        path: list[bytes] = []
        start, count = 0, self.size
        while count > 1:
            split = 1 << ((count - 1).bit_length() - 1)
            if index < start + split:
                path.append(self.subtree(start + split, count - split))
                count = split
            else:
                path.append(self.subtree(start, split))
                start, count = start + split, count - split
        path.reverse()
        return path


@dataclass(frozen=True)
class ExportPlan:
    """What an export will contain: the checkpoint it proves against and the matching range."""

    filters: EntryFilter
    checkpoint: SignedCheckpoint
    entries: int
    first_seq: int | None
    last_seq: int | None
    exported_at: datetime


def prepare_export(
    session: Session, principal: Principal, keys: KeyBackend, filters: EntryFilter, fmt: ExportFormat
) -> ExportPlan:
    """Choose the checkpoint to prove against (signed now if the ledger grew) and record the export."""
    checkpoint = SignedCheckpoint.from_row(create_checkpoint(session, keys))
    count, first, last = summarise(session.connection(), filters, checkpoint.tree_size)
    record(
        session,
        principal.actor,
        AUDIT_EXPORTED,
        target_type="audit_export",
        target_id=fmt.value,
        details={"entries": count, "first_seq": first, "last_seq": last},
    )
    return ExportPlan(filters, checkpoint, count, first, last, datetime.now(UTC))


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """The entry's hashed document plus its stored hash and, if retention emptied it, when."""
    document = canonical.entry_document(
        seq=entry.seq,
        occurred_at=entry.occurred_at,
        actor_id=entry.actor_id,
        actor_role=entry.actor_role,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        outcome=entry.outcome,
        request_id=entry.request_id,
        project_id=entry.project_id,
        details=entry.details,
        prev_hash=entry.prev_hash,
    )
    document["entry_hash"] = entry.entry_hash
    # Retention may have emptied an old entry: its hash can then no longer be recomputed from the
    # fields, but its inclusion proof (from ``entry_hash``) still places it under the signed root.
    document["pruned_at"] = canonical.format_time(entry.pruned_at) if entry.pruned_at else None
    return document


def _entries_with_proofs(session: Session, plan: ExportPlan) -> Iterator[tuple[AuditEntry, list[str]]]:
    tree = ProofTree(leaf_hashes(session.connection(), plan.checkpoint.tree_size))
    query = filtered(plan.filters, plan.checkpoint.tree_size)
    entry: AuditEntry
    for entry in session.scalars(query, execution_options=_STREAM):
        yield entry, [h.hex() for h in tree.inclusion(entry.seq - 1)]


def stream_export(factory: sessionmaker[Session], plan: ExportPlan, fmt: ExportFormat) -> Iterator[bytes]:
    """The export file in chunks, read in its own session (the request's one has ended by then)."""
    with factory() as session:
        if fmt is ExportFormat.json:
            yield from _json_chunks(session, plan)
        else:
            yield from _csv_chunks(session, plan)


def _json_chunks(session: Session, plan: ExportPlan) -> Iterator[bytes]:
    header = {
        "format": EXPORT_FORMAT,
        "log": LOG_ID,
        "exported_at": canonical.format_time(plan.exported_at),
        "filters": plan.filters.as_json(),
        "checkpoint": plan.checkpoint.to_json(),
        "count": plan.entries,
    }
    # The document is written piecewise so a large range never sits in memory as one string.
    yield orjson.dumps(header)[:-1] + b',"entries":['
    separator = b""
    for entry, proof in _entries_with_proofs(session, plan):
        item = entry_json(entry)
        item["leaf_index"] = entry.seq - 1
        item["inclusion_proof"] = proof
        yield separator + orjson.dumps(item)
        separator = b","
    yield b"]}\n"


CSV_COLUMNS = [
    "seq",
    "time",
    "actor_id",
    "actor_role",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "request_id",
    "project_id",
    "details",
    "prev_hash",
    "entry_hash",
    "pruned_at",
    "leaf_index",
    "inclusion_proof",
    "checkpoint_tree_size",
    "checkpoint_root_hash",
    "checkpoint_signed_at",
    "checkpoint_key_id",
    "checkpoint_signature",
    "checkpoint_log",
]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(value: object) -> str:
    """Text of one CSV cell that no spreadsheet program will evaluate as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_chunks(session: Session, plan: ExportPlan) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    checkpoint = plan.checkpoint.to_json()
    tail = [
        checkpoint["tree_size"],
        checkpoint["root_hash"],
        checkpoint["signed_at"],
        checkpoint["key_id"],
        checkpoint["signature"],
        checkpoint["log"],
    ]
    writer.writerow(CSV_COLUMNS)
    for index, (entry, proof) in enumerate(_entries_with_proofs(session, plan)):
        item = entry_json(entry)
        item["details"] = orjson.dumps(item["details"], option=orjson.OPT_SORT_KEYS).decode()
        item["leaf_index"] = entry.seq - 1
        item["inclusion_proof"] = " ".join(proof)
        cells = [item[name] for name in CSV_COLUMNS if not name.startswith("checkpoint_")] + tail
        writer.writerow([c if isinstance(c, int) else spreadsheet_safe(c) for c in cells])
        if index % 200 == 199:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
