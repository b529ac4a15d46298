"""The registry of auditable actions and the shape of each one's details.

Details are validated per action with a Pydantic model that forbids unknown keys and allows only
identifiers, hashes, numbers, enumerations and dates: there is no field in which a name, an email
address or free text could be written. Packages register their own actions at import time.

A denied or failed attempt carries :class:`FailureDetails` (its reason only), unless its action was
registered with a failure model of its own (``register_action(..., failure=...)``, a subclass of
:class:`FailureDetails`): then that model, and only that model, is what its refusals may carry.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from access.audit.exceptions import AuditDetailsRejected, UnknownAction

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,159}$")]
"""An opaque identifier or pseudonym: no spaces and no @, so no names or email addresses."""
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
DecimalText = Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,12}(\.[0-9]{1,12})?$")]
"""A decimal number as text (e.g. a privacy budget), so its hash never depends on float printing."""

ACTION_NAME = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")


class Outcome(StrEnum):
    """How an attempted action ended."""

    ok = "ok"
    denied = "denied"
    failed = "failed"


class Role(StrEnum):
    """Who acted: staff roles, family roles, or the system itself."""

    admin = "admin"
    dpo = "dpo"
    legal_reviewer = "legal_reviewer"
    data_steward = "data_steward"
    researcher = "researcher"
    guardian = "guardian"
    student = "student"
    teacher = "teacher"
    system = "system"
    anonymous = "anonymous"


class Details(BaseModel):
    """Base of every details model: unknown keys are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoDetails(Details):
    """For actions that carry nothing beyond actor, target and outcome."""


class FailureDetails(Details):
    """Details of a denied or failed attempt: a machine-readable reason only."""

    error: Identifier


_ACTIONS: dict[str, type[Details]] = {}
_FAILURES: dict[str, type[FailureDetails]] = {}


def register_action(
    name: str, details: type[Details] = NoDetails, *, failure: type[FailureDetails] = FailureDetails
) -> str:
    """Declare an auditable action and the model its details must satisfy; returns the name.

    ``failure`` is the model of its denied and failed entries: :class:`FailureDetails` (the reason
    only) unless the action needs more, e.g. what a refused request asked for.
    """
    if not ACTION_NAME.match(name):
        raise ValueError(f"action names are dotted lower-case words, not {name!r}")
    if not (isinstance(failure, type) and issubclass(failure, FailureDetails)):
        raise ValueError(f"the failure model of {name!r} extends FailureDetails")
    existing = _ACTIONS.get(name)
    if existing is not None and existing is not details:
        raise ValueError(f"action {name!r} is already registered with {existing.__name__}")
    existing_failure = _FAILURES.get(name, FailureDetails)
    if existing is not None and existing_failure is not failure:
        raise ValueError(f"action {name!r} is already registered with {existing_failure.__name__}")
    _ACTIONS[name] = details
    if failure is not FailureDetails:
        _FAILURES[name] = failure
    return name


def failure_model(action: str) -> type[FailureDetails]:
    """The model of an action's denied and failed entries (:class:`FailureDetails` unless registered)."""
    return _FAILURES.get(action, FailureDetails)


def registered_actions() -> dict[str, type[Details]]:
    """Every known action and its details model."""
    return dict(_ACTIONS)


def validate_details(
    action: str, outcome: Outcome, details: dict[str, Any] | Details | None
) -> dict[str, Any]:
    """Check the details of one entry against its action's model; return them as plain JSON values."""
    model = _ACTIONS.get(action)
    if model is None:
        raise UnknownAction(f"unknown audit action {action!r}")
    if outcome is not Outcome.ok:
        model = failure_model(action)
        if isinstance(details, Details):
            if not isinstance(details, model):
                raise AuditDetailsRejected(f"details of a refused {action} must be {model.__name__}")
            # Validated again as the action's own model: a subclass's extra fields are refused.
            details = details.model_dump(mode="json", exclude_none=True)
    if isinstance(details, Details):
        if not isinstance(details, model):
            raise AuditDetailsRejected(f"details of {action} must be {model.__name__}")
        return details.model_dump(mode="json", exclude_none=True)
    try:
        return model.model_validate(details or {}).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) or "details" for err in exc.errors())
        raise AuditDetailsRejected(f"details of {action} rejected ({fields})") from None


class CheckpointDetails(Details):
    """A signed checkpoint."""

    tree_size: int
    root_hash: Sha256Hex
    key_id: Identifier


class VerificationDetails(Details):
    """A verification run and its result."""

    entries: int
    ok: bool
    first_bad_seq: int | None = None


class ReadDetails(Details):
    """A read of the ledger (reading the audit trail is itself audited)."""

    entries: int
    first_seq: int | None = None
    last_seq: int | None = None


AUDIT_CHECKPOINT_SIGNED = register_action("audit.checkpoint_signed", CheckpointDetails)
AUDIT_VERIFIED = register_action("audit.verified", VerificationDetails)
AUDIT_READ = register_action("audit.read", ReadDetails)
AUDIT_EXPORTED = register_action("audit.exported", ReadDetails)
AUDIT_RETENTION_APPLIED = register_action("audit.retention_applied", ReadDetails)
