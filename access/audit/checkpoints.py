"""Signed checkpoints of the ledger's Merkle tree, and inclusion and consistency proofs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from access.audit import canonical
from access.audit.actions import (
    AUDIT_CHECKPOINT_SIGNED,
)
from access.audit.exceptions import InvalidCheckpoint
from access.audit.merkle import RootBuilder, consistency_proof, inclusion_proof
from access.audit.models import AuditCheckpoint, AuditEntry, AuditHead
from access.audit.recording import LOG_ID, SIGNING_KEY, Actor, chain_queued, record, seal
from infra.db import as_utc
from infra.keys import KeyBackend, verify_signature
from infra.logging import get_logger

log = get_logger(__name__)

_STREAM = {"stream_results": True, "yield_per": 20_000}

# --- checkpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as handed to reviewers (and read back from their saved file)."""

    tree_size: int
    root_hash: str
    signed_at: datetime
    key_id: str
    signature: str
    log: str = LOG_ID

    def payload(self) -> bytes:
        """The bytes that were signed."""
        return checkpoint_payload(self.tree_size, self.root_hash, self.signed_at)

    def to_json(self) -> dict[str, Any]:
        """The reviewer's file format."""
        return {
            "log": self.log,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "signed_at": canonical.format_time(self.signed_at),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedCheckpoint:
        """Parse a reviewer's saved checkpoint; InvalidCheckpoint names what is wrong."""
        if not isinstance(data, dict):
            raise InvalidCheckpoint("a checkpoint is a JSON object")
        try:
            checkpoint = cls(
                tree_size=int(data["tree_size"]),
                root_hash=str(data["root_hash"]),
                signed_at=datetime.strptime(str(data["signed_at"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=UTC
                ),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
                log=str(data.get("log", LOG_ID)),
            )
        except KeyError as exc:
            raise InvalidCheckpoint(f"checkpoint lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidCheckpoint(f"checkpoint field has a wrong value: {exc}") from None
        if checkpoint.tree_size < 0 or len(checkpoint.root_hash) != 64:
            raise InvalidCheckpoint("checkpoint tree_size or root_hash is malformed")
        return checkpoint

    @classmethod
    def from_row(cls, row: AuditCheckpoint) -> SignedCheckpoint:
        """From the stored row."""
        return cls(row.tree_size, row.root_hash, as_utc(row.signed_at), row.key_id, row.signature)


def checkpoint_payload(tree_size: int, root_hash: str, signed_at: datetime) -> bytes:
    """Canonical bytes of a checkpoint statement."""
    return canonical.canonical_bytes(
        {
            "log": LOG_ID,
            "tree_size": tree_size,
            "root_hash": root_hash,
            "time": canonical.format_time(signed_at),
        }
    )


def checkpoint_signature_valid(checkpoint: SignedCheckpoint, public_keys: dict[str, bytes]) -> bool:
    """True when the checkpoint is signed by one of the ledger's keys."""
    public_key = public_keys.get(checkpoint.key_id)
    if public_key is None or checkpoint.log != LOG_ID:
        return False
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except ValueError:
        return False
    return verify_signature(public_key, checkpoint.payload(), signature)


def _stream_hashes(connection: Connection, after: int, upto: int) -> Iterator[tuple[int, str]]:
    query = (
        select(AuditEntry.seq, AuditEntry.entry_hash)
        .where(AuditEntry.seq > after, AuditEntry.seq <= upto)
        .order_by(AuditEntry.seq)
    )
    # Per-statement options: Connection.execution_options() would change the caller's connection.
    result = connection.execute(query, execution_options=_STREAM)
    for row in result:
        yield int(row[0]), str(row[1])


def head(session: Session) -> tuple[int, str]:
    """Sequence number and hash of the newest committed entry."""
    row = session.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).one()
    return int(row[0]), str(row[1])


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """The checkpoint covering the most entries."""
    return session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc(), AuditCheckpoint.id.desc()).limit(1)
    ).first()


def create_checkpoint(session: Session, keys: KeyBackend) -> AuditCheckpoint:
    """Sign the current tree size and root (continuing from the last checkpoint's frontier)."""
    chain_queued(session)
    seal(session)
    size, _ = head(session)
    last = latest_checkpoint(session)
    if last is not None and last.tree_size == size:
        return last
    if last is not None:
        builder = RootBuilder.resume(last.tree_size, [bytes.fromhex(h) for h in last.frontier])
    else:
        builder = RootBuilder()
    for _, digest in _stream_hashes(session.connection(), builder.size, size):
        builder.append(canonical.entry_leaf(digest))
    if builder.size != size:
        raise RuntimeError(
            f"ledger has {builder.size} entries up to the head at {size}: run `enclave audit verify`"
        )
    root = builder.root().hex()
    signed_at = datetime.now(UTC)
    signature = keys.sign(SIGNING_KEY, checkpoint_payload(size, root, signed_at))
    checkpoint = AuditCheckpoint(
        tree_size=size,
        root_hash=root,
        signed_at=signed_at,
        key_id=signature.key_id,
        signature=base64.b64encode(signature.signature).decode(),
        frontier=[h.hex() for h in builder.frontier],
    )
    session.add(checkpoint)
    session.flush()
    record(
        session,
        Actor.system(),
        AUDIT_CHECKPOINT_SIGNED,
        target_type="audit_checkpoint",
        target_id=str(checkpoint.id),
        details={"tree_size": size, "root_hash": root, "key_id": signature.key_id},
    )
    return checkpoint


# --- proofs ------------------------------------------------------------------------------------


def leaf_hashes(connection: Connection, size: int) -> list[bytes]:
    """Leaf hashes of the first ``size`` entries."""
    return [canonical.entry_leaf(digest) for _, digest in _stream_hashes(connection, 0, size)]


def prove_inclusion(connection: Connection, seq: int, tree_size: int) -> list[str]:
    """Audit path of entry ``seq`` in the tree of the first ``tree_size`` entries."""
    leaves = leaf_hashes(connection, tree_size)
    if len(leaves) != tree_size:
        raise InvalidCheckpoint(f"the ledger holds {len(leaves)} entries, not {tree_size}")
    if not 1 <= seq <= tree_size:
        raise InvalidCheckpoint(f"entry {seq} is not in a tree of {tree_size} entries")
    return [h.hex() for h in inclusion_proof(seq - 1, leaves)]


def prove_consistency(connection: Connection, first: int, second: int) -> list[str]:
    """Proof that the tree of ``second`` entries extends the tree of ``first`` entries."""
    if not 0 < first <= second:
        raise InvalidCheckpoint(f"no consistency proof from {first} to {second} entries")
    leaves = leaf_hashes(connection, second)
    if len(leaves) != second:
        raise InvalidCheckpoint(f"the ledger holds {len(leaves)} entries, not {second}")
    return [h.hex() for h in consistency_proof(first, leaves)]
