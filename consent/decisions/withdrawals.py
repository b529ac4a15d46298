"""Withdrawal events and the interface of their consumers (the enclave's erasure job is one).

A withdrawal is effective at once: the status engine reads decisions, so the very next status call
answers ``withdrawn``. What must happen downstream (removing the subject's rows from stored datasets,
crypto-shredding old data keys) is slower, so it is driven by a durable event:

1. ``emit_withdrawal`` writes a ``consent_withdrawal`` row in the caller's transaction and enqueues
   ``erasure.consent_withdrawal`` through the job outbox, so the event exists exactly when the
   withdrawal committed.
2. The task hands the event to every registered consumer that has not confirmed it yet, one at a
   time, and records each confirmation in ``handled``. A consumer that raises is retried by the
   periodic sweep; one that confirmed is never called again for that event.

Consumers must be idempotent (an event can be delivered again if a worker dies after the consumer
ran but before its confirmation committed). Register one with ``register_consumer`` at import time
of a module listed in the composition root's task modules.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consent.decisions.models import Withdrawal
from infra.logging import get_logger
from infra.outbox import enqueue

log = get_logger(__name__)

NOTIFY_TASK = "erasure.consent_withdrawal"
SWEEP_TASK = "erasure.consent_withdrawal_sweep"
SWEEP_INTERVAL = timedelta(minutes=10)


class WithdrawalReason(StrEnum):
    """What ended the consent."""

    withdrawn = "withdrawn"
    """The subject (or a guardian) withdrew."""
    erasure = "erasure"
    """An erasure request (Art. 17) was carried out."""
    restriction = "restriction"
    """Processing was restricted (Art. 18) or the subject objected (Art. 21)."""


@dataclass(frozen=True)
class WithdrawalNotice:
    """What a consumer is told: pseudonymous ids, purposes and time; never a name or an email."""

    id: int
    event_id: str
    subject_kind: str
    subject_id: str
    purposes: tuple[str, ...]
    reason: WithdrawalReason
    effective_at: datetime

    @classmethod
    def from_row(cls, row: Withdrawal) -> WithdrawalNotice:
        """The notice of a stored event."""
        return cls(
            id=row.id,
            event_id=row.event_id,
            subject_kind=row.subject_kind,
            subject_id=row.subject_id,
            purposes=tuple(row.purposes),
            reason=WithdrawalReason(row.reason),
            effective_at=row.effective_at,
        )


class WithdrawalConsumer(Protocol):
    """Something that acts on withdrawals (e.g. erases rows); ``handle`` must be idempotent."""

    name: str
    """Stable name, recorded in ``handled`` once the consumer has confirmed an event."""

    def handle(self, session: Session, notice: WithdrawalNotice) -> None:
        """Act on the event in ``session``; it is committed together with the confirmation."""


_CONSUMERS: dict[str, WithdrawalConsumer] = {}


def register_consumer(consumer: WithdrawalConsumer) -> None:
    """Add a consumer; registering the same name again replaces it."""
    _CONSUMERS[consumer.name] = consumer


def unregister_consumer(name: str) -> None:
    """Remove a consumer (tests, or a component switched off)."""
    _CONSUMERS.pop(name, None)


def consumers() -> list[WithdrawalConsumer]:
    """The registered consumers, by name."""
    return [_CONSUMERS[name] for name in sorted(_CONSUMERS)]


def emit_withdrawal(
    session: Session,
    *,
    subject_kind: str,
    subject_id: str,
    purposes: Iterable[str],
    reason: WithdrawalReason,
    effective_at: datetime | None = None,
    event_id: str | None = None,
) -> Withdrawal:
    """Store the event in the caller's transaction and schedule its delivery after commit."""
    row = Withdrawal(
        event_id=event_id or str(uuid.uuid4()),
        subject_kind=subject_kind,
        subject_id=subject_id,
        purposes=sorted(set(purposes)),
        reason=reason.value,
        effective_at=effective_at or datetime.now(UTC),
        handled={},
    )
    session.add(row)
    session.flush()
    enqueue(session, NOTIFY_TASK, row.id)
    log.info("consent.withdrawal_emitted", withdrawal_id=row.id, subject=subject_id, reason=reason.value)
    return row


def deliver(session_factory: sessionmaker[Session], withdrawal_id: int) -> list[str]:
    """Hand one event to each consumer that has not confirmed it; returns the names that confirmed now.

    Each consumer runs in its own transaction with its confirmation, so one failing consumer does not
    undo another's work; the first failure is raised after the others have run.
    """
    confirmed: list[str] = []
    failure: Exception | None = None
    for consumer in consumers():
        with session_factory() as session, session.begin():
            row = session.execute(
                select(Withdrawal).where(Withdrawal.id == withdrawal_id).with_for_update()
            ).scalar_one_or_none()
            if row is None or consumer.name in row.handled:
                continue
            try:
                with session.begin_nested():
                    consumer.handle(session, WithdrawalNotice.from_row(row))
            except Exception as error:  # re-raised after the others ran
                log.warning(
                    "consent.withdrawal_consumer_failed", consumer=consumer.name, withdrawal_id=row.id
                )
                failure = failure or error
                continue
            row.handled = {**row.handled, consumer.name: datetime.now(UTC).isoformat()}
            confirmed.append(consumer.name)
    if failure is not None:
        raise failure
    return confirmed


def unhandled(session: Session, limit: int = 500) -> list[int]:
    """Ids of events some registered consumer has not confirmed yet, oldest first."""
    names = {consumer.name for consumer in consumers()}
    if not names:
        return []
    rows = session.execute(select(Withdrawal.id, Withdrawal.handled).order_by(Withdrawal.id)).all()
    return [row_id for row_id, handled in rows if not names.issubset(handled)][:limit]
