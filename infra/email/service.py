"""Queueing, sending and tracking outgoing messages (see the package docstring for the contract)."""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses, parseaddr

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from infra.db import as_utc, session_scope
from infra.email import crypto, transport
from infra.email.models import FINAL_STATUSES, EmailMessage, EmailStatus
from infra.errors import InvalidField, NotFound
from infra.keys import KeyBackend
from infra.logging import get_logger
from infra.outbox import enqueue
from infra.settings import SUPPORTED_LANGUAGES, Settings

log = get_logger(__name__)

SEND_TASK = "email.send"
SWEEP_TASK = "email.sweep"
SWEEP_INTERVAL = timedelta(minutes=1)
SWEEP_BATCH = 200
SWEEP_BUDGET_SECONDS = 45.0
FIRST_DELAY = timedelta(minutes=1)
MAX_DELAY = timedelta(hours=1)

_CATEGORY = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_REFERENCE = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")


class EmailNotFound(NotFound):
    """No message has this id."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"no email message {message_id}", extra={"reason": "email_not_found"})


@dataclass(frozen=True)
class DeliveryStatus:
    """What the rest of the product may know about a message: never its recipient or content."""

    id: str
    category: str
    reference: str
    language: str
    status: EmailStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None
    last_reply_code: int | None


def _now() -> datetime:
    return datetime.now(UTC)


def retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failure: 1 min, 2, 4 ... capped at 1 h, each ±20 % at random."""
    base: timedelta = min(FIRST_DELAY * (2 ** min(max(attempts - 1, 0), 10)), MAX_DELAY)
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


def _validate(to: str, subject: str, language: str, category: str, reference: str) -> None:
    parsed = getaddresses([to])
    address = parsed[0][1] if len(parsed) == 1 else ""
    local, _, domain = address.rpartition("@")
    if not local or "." not in domain or any(c in to for c in "\r\n") or " " in address:
        raise InvalidField("to", "is not a single email address", code="invalid_email_address")
    if not subject.strip() or any(c in subject for c in "\r\n"):
        raise InvalidField("subject", "must be one non-empty line", code="invalid_email_subject")
    if language not in SUPPORTED_LANGUAGES:
        raise InvalidField(
            "language", f"must be one of {', '.join(SUPPORTED_LANGUAGES)}", code="unsupported_language"
        )
    if not _CATEGORY.match(category):
        raise InvalidField(
            "category", "must be a lower-case word such as invitation", code="invalid_category"
        )
    if not _REFERENCE.match(reference):
        raise InvalidField(
            "reference",
            "must be an opaque id (letters, digits, . _ : -), never an address",
            code="invalid_reference",
        )


def queue_email(
    session: Session,
    keys: KeyBackend,
    *,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    language: str,
    category: str,
    reference: str,
) -> EmailMessage:
    """Store a message in the caller's transaction; it is sent only after that transaction commits.

    ``to`` is one address, optionally with a display name. Recipient, subject and bodies are
    encrypted at rest and erased once the message is sent or given up. Only flushes.
    """
    _validate(to, subject, language, category, reference)
    message_id = str(uuid.uuid4())
    now = _now()
    message = EmailMessage(
        id=message_id,
        created_at=now,
        category=category,
        reference=reference,
        language=language,
        status=EmailStatus.queued.value,
        attempts=0,
        next_attempt_at=now,
        recipient_hash=crypto.recipient_hash(session, keys, parseaddr(to)[1]),
        content=crypto.seal(session, keys, message_id, crypto.Content(to, subject, text, html)),
    )
    session.add(message)
    session.flush()
    enqueue(session, SEND_TASK, message_id=message_id)
    log.info("email.queued", message_id=message_id, category=category, reference=reference)
    return message


def _status_of(message: EmailMessage) -> DeliveryStatus:
    return DeliveryStatus(
        id=message.id,
        category=message.category,
        reference=message.reference,
        language=message.language,
        status=EmailStatus(message.status),
        attempts=message.attempts,
        created_at=as_utc(message.created_at),
        next_attempt_at=as_utc(message.next_attempt_at) if message.next_attempt_at else None,
        sent_at=as_utc(message.sent_at) if message.sent_at else None,
        last_error=message.last_error,
        last_reply_code=message.last_reply_code,
    )


def delivery_status(session: Session, message_id: str) -> DeliveryStatus:
    """Where one message is: status, attempts, next attempt, last error (raises EmailNotFound)."""
    message = session.get(EmailMessage, message_id)
    if message is None:
        raise EmailNotFound(message_id)
    return _status_of(message)


def delivery_statuses(session: Session, reference: str) -> list[DeliveryStatus]:
    """Every message about ``reference`` (an invitation id, say), oldest first."""
    rows = session.scalars(
        select(EmailMessage).where(EmailMessage.reference == reference).order_by(EmailMessage.created_at)
    )
    return [_status_of(row) for row in rows]


@dataclass(frozen=True)
class _Claim:
    mime_id: str
    language: str
    content: crypto.Content
    attempts: int
    file_name: str


def _claim(
    session: Session, keys: KeyBackend, settings: Settings, message_id: str, now: datetime
) -> _Claim | None:
    # SKIP LOCKED: a second sender of the same message (a duplicate task, the sweep) moves on
    # instead of waiting, then finds the lease below and leaves the message alone.
    message = session.scalars(
        select(EmailMessage).where(EmailMessage.id == message_id).with_for_update(skip_locked=True)
    ).one_or_none()
    if message is None or message.status in FINAL_STATUSES or message.content is None:
        return None
    if message.next_attempt_at is not None and as_utc(message.next_attempt_at) > now:
        return None  # not due, or leased by a sender that is still working on it
    try:
        content = crypto.open_sealed(session, keys, message.id, message.content)
    except crypto.ContentDecryptFailed as exc:
        # Altered bytes or a lost key: no later attempt can do better. (A key backend that is
        # down raises something else, and the message is simply tried again.)
        message.status = EmailStatus.failed.value
        message.last_error = exc.detail
        message.content = None
        message.next_attempt_at = None
        log.error("email.undecryptable", message_id=message.id)
        return None
    message.attempts += 1
    message.status = EmailStatus.sending.value
    # The lease: if this sender dies mid-way, the sweep tries again once it has passed.
    lease = max(retry_delay(message.attempts), timedelta(seconds=6 * settings.smtp_timeout_seconds))
    message.next_attempt_at = now + lease
    message.smtp_message_id = message.smtp_message_id or f"<{message.id}@{transport.sender_domain(settings)}>"
    return _Claim(message.smtp_message_id, message.language, content, message.attempts, message.id)


def _record(session: Session, settings: Settings, message_id: str, outcome: transport.Outcome) -> EmailStatus:
    message = session.get(EmailMessage, message_id, with_for_update=True)
    if message is None:  # pragma: no cover - rows are never deleted while sending
        return EmailStatus.failed
    now = _now()
    if outcome.delivered:
        message.status = EmailStatus.sent.value
        message.sent_at = now
        message.last_error = None
        message.last_reply_code = None
    else:
        message.last_error = outcome.error
        message.last_reply_code = outcome.reply_code
        if outcome.permanent:
            message.status = EmailStatus.failed.value
        elif message.attempts >= settings.smtp_max_attempts:
            message.status = EmailStatus.gave_up.value
        else:
            message.status = EmailStatus.queued.value
            message.next_attempt_at = now + retry_delay(message.attempts)
    if message.status in FINAL_STATUSES:
        # Nothing will be sent again: the address and the links inside must not linger.
        message.content = None
        message.next_attempt_at = None
    log.info(
        "email.attempted",
        message_id=message.id,
        status=message.status,
        attempts=message.attempts,
        reply_code=outcome.reply_code,
    )
    return EmailStatus(message.status)


def send_message(
    factory: sessionmaker[Session],
    keys: KeyBackend,
    settings: Settings,
    message_id: str,
    *,
    now: datetime | None = None,
) -> EmailStatus | None:
    """Make one attempt at a due message; None when it is not due, already final or being sent.

    The claim is committed before the network is touched, so no row lock is held while the SMTP
    server is slow, and the outcome is committed after. A message already sent is never sent again.
    """
    moment = now or _now()
    with session_scope(factory) as session:
        claim = _claim(session, keys, settings, message_id, moment)
    if claim is None:
        return None
    mime = transport.build_mime(
        settings, claim.content, message_id=claim.mime_id, language=claim.language, date=moment
    )
    try:
        outcome = transport.deliver(settings, mime, parseaddr(claim.content.to)[1], claim.file_name)
    except Exception as exc:  # a full disk, say: recorded like a temporary failure, never lost
        outcome = transport.Outcome(delivered=False, error=transport.scrub(f"{type(exc).__name__}: {exc}"))
    with session_scope(factory) as session:
        return _record(session, settings, message_id, outcome)


def due_messages(session: Session, now: datetime, limit: int = SWEEP_BATCH) -> list[str]:
    """Ids of messages whose next attempt is due (queued, or claimed by a sender that died)."""
    return list(
        session.scalars(
            select(EmailMessage.id)
            .where(
                EmailMessage.status.in_([EmailStatus.queued.value, EmailStatus.sending.value]),
                EmailMessage.next_attempt_at <= now,
            )
            .order_by(EmailMessage.next_attempt_at)
            .limit(limit)
        )
    )


def send_due(
    factory: sessionmaker[Session],
    keys: KeyBackend,
    settings: Settings,
    *,
    now: datetime | None = None,
    budget_seconds: float = SWEEP_BUDGET_SECONDS,
) -> dict[str, int]:
    """Attempt due messages once each, batch after batch, for up to ``budget_seconds``.

    Covers failed attempts, jobs lost to a broker outage and senders that died. A backlog left by
    an SMTP outage drains over several runs; runs that overlap skip each other's messages.
    """
    moment = now or _now()
    deadline = time.monotonic() + budget_seconds
    counts: dict[str, int] = {}
    tried: set[str] = set()
    while time.monotonic() < deadline:
        with factory() as session:
            ids = [i for i in due_messages(session, moment, SWEEP_BATCH) if i not in tried]
        if not ids:
            break
        for message_id in ids:
            tried.add(message_id)
            try:
                status = send_message(factory, keys, settings, message_id, now=moment)
            except Exception:
                log.exception("email.sweep_failed", message_id=message_id)
                continue
            if status is not None:
                counts[status.value] = counts.get(status.value, 0) + 1
            if time.monotonic() >= deadline:
                break
    return counts
