"""The audit ledger's public interface: recording, checkpoints, proofs, retention, verification.

Everything other packages need is importable from here; the parts live in ``recording``,
``checkpoints``, ``retention`` and ``verification``.
"""

from access.audit.checkpoints import (
    SignedCheckpoint,
    checkpoint_payload,
    checkpoint_signature_valid,
    create_checkpoint,
    head,
    latest_checkpoint,
    leaf_hashes,
    prove_consistency,
    prove_inclusion,
)
from access.audit.recording import (
    LOG_ID,
    SIGNING_KEY,
    Actor,
    RecordedEntry,
    chain_queued,
    clock,
    install_audit_hooks,
    record,
    record_denied,
    seal,
    write_queued,
)
from access.audit.retention import RetentionResult, apply_retention
from access.audit.verification import Problem, VerificationReport, verify_ledger

__all__ = [
    "LOG_ID",
    "SIGNING_KEY",
    "Actor",
    "Problem",
    "RecordedEntry",
    "RetentionResult",
    "SignedCheckpoint",
    "VerificationReport",
    "apply_retention",
    "chain_queued",
    "checkpoint_payload",
    "checkpoint_signature_valid",
    "clock",
    "create_checkpoint",
    "head",
    "install_audit_hooks",
    "latest_checkpoint",
    "leaf_hashes",
    "prove_consistency",
    "prove_inclusion",
    "record",
    "record_denied",
    "seal",
    "verify_ledger",
    "write_queued",
]
