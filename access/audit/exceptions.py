"""Errors of the audit ledger."""

from __future__ import annotations

from infra.errors import BadRequest, EnclaveError


class UnknownAction(EnclaveError):
    """A programming error: the action was never registered."""

    type_slug = "audit-unknown-action"
    title = "Unknown audit action"


class AuditDetailsRejected(EnclaveError):
    """The details do not fit the action's model (they might carry personal data)."""

    type_slug = "audit-details-rejected"
    title = "Audit details rejected"


class InvalidCheckpoint(BadRequest):
    """A checkpoint given by a reviewer is malformed."""

    type_slug = "audit-invalid-checkpoint"
    title = "Invalid checkpoint"
