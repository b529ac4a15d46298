"""Outgoing email: stored in the caller's transaction, sent after commit, retried, tracked, never lost.

How the rest of the product uses it::

    from infra.email import queue_email, delivery_status

    message = queue_email(
        session, components.keys,
        to="Мария Иванова <maria@example.org>", subject="Покана за съгласие",
        text="...", html="<p>...</p>",          # html is optional
        language="bg", category="invitation", reference=str(invitation.id),
    )
    # ... the request commits; only then is the ``email.send`` job handed to the ``email`` queue.
    delivery_status(session, message.id).status   # queued, sending, sent, failed or gave_up

* ``queue_email`` only flushes. If the caller's transaction rolls back, the message never existed;
  once it commits, ``email.send`` is sent through the job outbox (``infra.outbox``).
* Recipient, subject and bodies are one AES-256-GCM ciphertext (associated data: the message id)
  under a data key wrapped by the key backend's ``email-outbox`` key. ``recipient_hash`` is a keyed
  HMAC of the normalised address, for look-ups without the address. ``reference`` is an opaque id
  of what the message is about (never an address). Once a message is sent, failed or given up the
  ciphertext is erased; the metadata stays.
* ``email.send`` claims the row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), commits the claim, sends
  through SMTP (ENCLAVE_SMTP_*: STARTTLS or SSL, login, timeouts) and records the outcome: ``sent``;
  ``failed`` when the server refuses the recipient with a 5xx reply (the code is kept in
  ``last_reply_code``); otherwise it stays ``queued`` for the next attempt, 1 min, 2, 4 ... up to 1 h
  later (±20 % jitter), and becomes ``gave_up`` after ENCLAVE_SMTP_MAX_ATTEMPTS attempts. A claimed
  message is leased: a duplicate task, or the sweep, leaves it alone until the lease ends, and a
  sent message is never sent again.
* ``email.sweep`` runs every minute and attempts every message whose ``next_attempt_at`` has passed:
  retries, jobs lost to a broker outage and messages whose sender died.
* Without ENCLAVE_SMTP_HOST, development and test write each message as an ``.eml`` file to
  ``<data dir>/mail-outbox``; production keeps the messages queued (``last_error`` says why) and
  readiness reports the email component as failing.
* Messages are MIME in UTF-8 with ``Message-ID`` (the same on every attempt), ``Date``,
  ``Content-Language`` and ``Auto-Submitted``; multipart/alternative when HTML is given.
"""

from infra.email.models import EmailMessage, EmailStatus
from infra.email.service import (
    DeliveryStatus,
    EmailNotFound,
    delivery_status,
    delivery_statuses,
    queue_email,
    send_due,
    send_message,
)

__all__ = [
    "DeliveryStatus",
    "EmailMessage",
    "EmailNotFound",
    "EmailStatus",
    "delivery_status",
    "delivery_statuses",
    "queue_email",
    "send_due",
    "send_message",
]
