"""Building the MIME message and handing it to the SMTP server (or to the local folder).

Every outcome is one of three: delivered, a temporary failure (tried again later) or a permanent
refusal of the recipient. Error texts keep the reply code and blank out anything shaped like an
address, because they are stored and logged.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from pathlib import Path

from infra.email.crypto import Content
from infra.settings import Environment, Settings, SmtpTls

_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


def scrub(text: str) -> str:
    """``text`` with every address-like token replaced, shortened to what a status page can show."""
    return _ADDRESS.sub("<address>", " ".join(text.split()))[:500]


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt."""

    delivered: bool
    permanent: bool = False
    reply_code: int | None = None
    error: str | None = None


DELIVERED = Outcome(delivered=True)


def mail_folder(settings: Settings) -> Path:
    """Where the embedded default writes messages when no SMTP host is configured."""
    return settings.data_dir / "mail-outbox"


def sender_domain(settings: Settings) -> str:
    """The domain of the sender address (used in ``Message-ID``)."""
    return parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "localhost"


def build_mime(
    settings: Settings, content: Content, *, message_id: str, language: str, date: datetime
) -> MimeMessage:
    """A UTF-8 message: plain text, or multipart/alternative with the HTML body after the text."""
    mime = MimeMessage(policy=SMTP_POLICY)
    mime["From"] = settings.smtp_from
    display, address = parseaddr(content.to)
    local, _, domain = address.rpartition("@")
    mime["To"] = Address(display_name=display, username=local, domain=domain)
    mime["Subject"] = content.subject
    mime["Date"] = format_datetime(date)
    mime["Message-ID"] = message_id
    mime["Auto-Submitted"] = "auto-generated"
    mime.set_content(content.text, charset="utf-8")
    if content.html is not None:
        mime.add_alternative(content.html, subtype="html", charset="utf-8")
    # After the bodies: setting content clears every Content-* header already present.
    mime["Content-Language"] = language
    return mime


def deliver(settings: Settings, mime: MimeMessage, recipient: str, file_name: str) -> Outcome:
    """Send ``mime`` to ``recipient``: through SMTP, or into the local folder when no host is set."""
    if not settings.smtp_host:
        if settings.environment is Environment.production:
            return Outcome(delivered=False, error="ENCLAVE_SMTP_HOST is not set: the message waits for it")
        return _write_to_folder(settings, mime, file_name)
    try:
        with _connect(settings) as smtp:
            smtp.send_message(mime, from_addr=parseaddr(settings.smtp_from)[1], to_addrs=[recipient])
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()), (0, b""))
        return _refused(code, reply, permanent=500 <= code < 600)
    except smtplib.SMTPResponseException as exc:
        # A refused sender, a failed login or a refused DATA: a configuration or server problem
        # that an operator can fix, so the message is tried again.
        return _refused(exc.smtp_code, exc.smtp_error, permanent=False)
    except (OSError, smtplib.SMTPException) as exc:  # refused connection, timeout, dropped link, TLS
        return Outcome(delivered=False, error=scrub(f"{type(exc).__name__}: {exc}"))
    return DELIVERED


def _refused(code: int, reply: bytes | str, *, permanent: bool) -> Outcome:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return Outcome(delivered=False, permanent=permanent, reply_code=code, error=scrub(f"{code} {text}"))


def _connect(settings: Settings) -> smtplib.SMTP:
    timeout = settings.smtp_timeout_seconds
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.smtp_tls is SmtpTls.ssl:
        smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    try:
        smtp.ehlo()
        if settings.smtp_tls is SmtpTls.starttls:
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
    except BaseException:
        smtp.close()
        raise
    return smtp


def _write_to_folder(settings: Settings, mime: MimeMessage, file_name: str) -> Outcome:
    folder = mail_folder(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"{file_name}.eml"
    partial = target.with_suffix(".part")
    partial.write_bytes(mime.as_bytes())
    os.chmod(partial, 0o600)
    partial.replace(target)
    return DELIVERED


def check(settings: Settings) -> str:
    """Readiness of outgoing email: connect, NOOP and quit with a short timeout; never sends."""
    if not settings.smtp_host:
        if settings.environment is Environment.production:
            raise RuntimeError("ENCLAVE_SMTP_HOST is not set: queued emails wait until it is")
        return f"no SMTP host: messages are written to {mail_folder(settings)}"
    short = settings.model_copy(update={"smtp_timeout_seconds": min(settings.smtp_timeout_seconds, 5)})
    with _connect(short) as smtp:
        code, _ = smtp.noop()
        if code != 250:
            raise RuntimeError(f"SMTP server answered NOOP with {code}")
    return f"SMTP server {settings.smtp_host}:{settings.smtp_port} answers ({settings.smtp_tls.value})"
