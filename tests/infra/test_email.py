"""The email outbox: stored with the caller's transaction, sent after commit to a real SMTP server,
retried with back-off, refused recipients failed, contents encrypted and then erased."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from typing import Any

import pytest
from celery.result import AsyncResult
from sqlalchemy import inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker

import infra.tasks
from enclave.readiness import check_all
from infra.db import make_engine, make_session_factory, session_scope
from infra.email import (
    EmailMessage,
    EmailNotFound,
    EmailStatus,
    delivery_status,
    delivery_statuses,
    queue_email,
    send_due,
    send_message,
)
from infra.email.crypto import ContentDecryptFailed, open_sealed
from infra.email.tasks import send
from infra.email.transport import check, mail_folder
from infra.errors import InvalidField
from infra.keys import KeyBackend, key_backend_from_settings
from infra.migrate import downgrade, upgrade
from infra.outbox import OutboxJob, install_session_hooks
from infra.settings import Environment, Settings, SettingsError, SmtpTls, load_settings
from infra.tasks import celery_app, configure_celery
from tests.conftest import recreate_database
from tests.support.smtp import SmtpServer, free_port

ADDRESS = "maria.ivanova@example.org"
SUBJECT_BG = "Покана за участие в проекта LET'S CARE"
TEXT_BG = "Здравейте, моля, отговорете на поканата: https://enclave.example.org/i/tok-123"
HTML_BG = "<p>Здравейте, <a href='https://enclave.example.org/i/tok-123'>отговорете</a></p>"


@dataclass
class Mail:
    """Everything a test needs to queue and send messages."""

    settings: Settings
    keys: KeyBackend
    factory: sessionmaker[Session]
    server: SmtpServer

    def queue(self, session: Session, **overrides: Any) -> EmailMessage:
        fields: dict[str, Any] = {
            "to": f"Мария Иванова <{ADDRESS}>",
            "subject": SUBJECT_BG,
            "text": TEXT_BG,
            "html": HTML_BG,
            "language": "bg",
            "category": "invitation",
            "reference": "inv-42",
        }
        fields.update(overrides)
        return queue_email(session, self.keys, **fields)

    def row(self, session: Session, message_id: str) -> dict[str, Any]:
        return dict(
            session.execute(text("SELECT * FROM email_message WHERE id = :id"), {"id": message_id})
            .mappings()
            .one()
        )


@pytest.fixture
def mail_setup(settings, components, smtp_server, session_factory, monkeypatch):
    """Configure tasks (in-process, in the test's transaction) to send to the loopback SMTP server."""

    def configure(**overrides: Any) -> Mail:
        values: dict[str, Any] = {
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_tls": SmtpTls.none,
            "smtp_from": "LET'S CARE <no-reply@letscare.example.org>",
        }
        values.update(overrides)
        mail_settings = settings.model_copy(update=values)
        configure_celery(mail_settings, engine=components.engine)
        monkeypatch.setattr(infra.tasks._State, "session_factory", session_factory)
        components.settings = mail_settings
        return Mail(mail_settings, components.keys, session_factory, smtp_server)

    return configure


@pytest.fixture
def mail(mail_setup) -> Mail:
    return mail_setup()


def later(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def test_message_is_sent_only_after_the_transaction_commits(mail, db_session):
    message = mail.queue(db_session)
    assert mail.server.received == []
    assert delivery_status(db_session, message.id).status is EmailStatus.queued

    db_session.commit()

    assert len(mail.server.received) == 1
    assert mail.server.received[0].rcpt_tos == [ADDRESS]
    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.sent
    assert status.attempts == 1
    assert status.sent_at is not None


def test_message_of_a_rolled_back_transaction_is_never_sent(mail, db_session):
    message_id = mail.queue(db_session).id
    db_session.rollback()
    assert mail.server.received == []
    with pytest.raises(EmailNotFound):
        delivery_status(db_session, message_id)


def test_received_message_has_the_bulgarian_subject_language_and_both_parts(mail, db_session):
    message = mail.queue(db_session)
    db_session.commit()

    received = mail.server.received[0].message
    assert received["Subject"] == SUBJECT_BG
    assert received["Content-Language"] == "bg"
    assert received["Message-ID"] == f"<{message.id}@letscare.example.org>"
    assert received["Date"]
    assert received["To"].addresses[0].addr_spec == ADDRESS
    assert received["To"].addresses[0].display_name == "Мария Иванова"
    assert received.get_content_type() == "multipart/alternative"
    plain = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().strip() == TEXT_BG
    assert html.get_content().strip() == HTML_BG
    assert plain.get_content_charset() == "utf-8"


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("pl", "Zgoda na udział w badaniu — prośba o odpowiedź (źdźbło)"),
        ("es", "Invitación: ¿participará su hijo o hija en el estudio? Año escolar"),
        ("bg", "Напомняне: съгласие за участие"),
    ],
)
def test_non_ascii_subjects_are_encoded_for_the_wire_and_read_back_intact(
    mail, db_session, language, subject
):
    mail.queue(db_session, subject=subject, language=language, html=None, category="reminder")
    db_session.commit()

    received = mail.server.received[0].message
    raw_subject = received.get("Subject", failobj=None)
    assert str(make_header(decode_header(raw_subject))) == subject
    assert received["Content-Language"] == language
    assert received.get_content_type() == "text/plain"
    assert received.get_content().strip() == TEXT_BG


def test_database_never_holds_the_address_or_body_in_clear_and_erases_the_ciphertext_after_sending(
    mail, db_session
):
    message = mail.queue(db_session)
    db_session.flush()
    queued = mail.row(db_session, message.id)
    stored = " ".join(str(value) for value in queued.values()).lower()
    blob = bytes(queued["content"])
    for secret in (ADDRESS, "maria", "tok-123", "Здравейте", "Покана"):
        assert secret.lower() not in stored
        assert secret.encode() not in blob
    assert len(queued["recipient_hash"]) == 64
    assert open_sealed(db_session, mail.keys, message.id, blob).to == f"Мария Иванова <{ADDRESS}>"

    db_session.commit()

    sent = mail.row(db_session, message.id)
    assert sent["status"] == "sent"
    assert sent["content"] is None
    assert sent["recipient_hash"] == queued["recipient_hash"]
    assert sent["reference"] == "inv-42"


def test_ciphertext_copied_onto_another_message_does_not_decrypt(mail, db_session):
    first = mail.queue(db_session)
    second = mail.queue(db_session, reference="inv-43")
    db_session.flush()
    assert first.content is not None
    with pytest.raises(ContentDecryptFailed):
        open_sealed(db_session, mail.keys, second.id, first.content)


def test_message_whose_stored_content_was_altered_is_failed_not_sent(mail, db_session):
    message = mail.queue(db_session)
    db_session.flush()
    assert message.content is not None
    altered = message.content[:-1] + bytes([message.content[-1] ^ 1])
    db_session.execute(update(EmailMessage).where(EmailMessage.id == message.id).values(content=altered))
    assert send_message(mail.factory, mail.keys, mail.settings, message.id) is None
    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.failed
    assert status.last_error == "stored email content does not decrypt"
    assert mail.row(db_session, message.id)["content"] is None
    assert mail.server.received == []


def test_embedded_default_on_sqlite_writes_the_message_after_commit(tmp_path):
    embedded = load_settings(environment="test", data_dir=tmp_path / "data", log_level="WARNING")
    engine = make_engine(embedded.effective_database_url)
    try:
        upgrade(engine)
        configure_celery(embedded, engine=engine)
        install_session_hooks()
        factory = make_session_factory(engine)
        keys = key_backend_from_settings(embedded)
        with session_scope(factory) as session:
            message = queue_email(
                session,
                keys,
                to=ADDRESS,
                subject="Invitación al estudio",
                text="Hola",
                language="es",
                category="invitation",
                reference="inv-sqlite",
            )
            assert not (mail_folder(embedded) / f"{message.id}.eml").exists()
        assert (mail_folder(embedded) / f"{message.id}.eml").exists()
        with factory() as session:
            status = delivery_status(session, message.id)
            assert status.status is EmailStatus.sent
            assert status.sent_at is not None
            assert status.sent_at.tzinfo is not None
            assert send_due(factory, keys, embedded, now=later(600)) == {}
    finally:
        engine.dispose()


def test_same_address_gets_the_same_recipient_hash_whatever_its_case(mail, db_session):
    first = mail.queue(db_session, to=ADDRESS)
    second = mail.queue(db_session, to=f"  {ADDRESS.upper()} ", reference="inv-43")
    other = mail.queue(db_session, to="someone.else@example.org", reference="inv-44")
    assert first.recipient_hash == second.recipient_hash != other.recipient_hash


def test_message_stays_queued_while_the_server_is_down_and_the_sweep_sends_it_later(mail, db_session):
    mail.server.stop()
    message = mail.queue(db_session)
    db_session.commit()

    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.queued
    assert status.attempts == 1
    assert status.next_attempt_at is not None
    assert status.next_attempt_at > datetime.now(UTC)
    assert status.last_error
    assert "ConnectionRefused" in status.last_error
    assert ADDRESS not in status.last_error
    assert mail.row(db_session, message.id)["content"] is not None

    # Not due yet: the sweep leaves it alone.
    assert send_due(mail.factory, mail.keys, mail.settings) == {}
    mail.server.start()
    assert send_due(mail.factory, mail.keys, mail.settings, now=later(10)) == {"sent": 1}

    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.sent
    assert status.attempts == 2
    assert status.last_error is None
    assert len(mail.server.received) == 1


def test_backlog_left_by_an_outage_is_drained_batch_after_batch(mail, db_session, monkeypatch):
    import infra.email.service

    mail.server.stop()
    ids = [mail.queue(db_session, reference=f"inv-{n}").id for n in range(5)]
    db_session.commit()
    db_session.expire_all()
    assert {delivery_status(db_session, i).status for i in ids} == {EmailStatus.queued}

    monkeypatch.setattr(infra.email.service, "SWEEP_BATCH", 2)
    mail.server.start()
    assert send_due(mail.factory, mail.keys, mail.settings, now=later(10)) == {"sent": 5}
    assert sorted(r.message["Message-ID"].split("@")[0].strip("<") for r in mail.server.received) == sorted(
        ids
    )


def test_recipient_refused_with_550_is_marked_failed_with_the_reply_code(mail, db_session):
    mail.server.refuse_recipients(f"550 5.1.1 <{ADDRESS}>: Recipient address rejected")
    message = mail.queue(db_session)
    db_session.commit()

    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.failed
    assert status.last_reply_code == 550
    assert status.last_error is not None
    assert status.last_error.startswith("550")
    assert ADDRESS not in status.last_error
    assert status.next_attempt_at is None
    assert mail.row(db_session, message.id)["content"] is None

    mail.server.refuse_recipients(None)
    assert send_due(mail.factory, mail.keys, mail.settings, now=later(600)) == {}
    assert mail.server.received == []


def test_recipient_deferred_with_451_is_retried_later(mail, db_session):
    mail.server.refuse_recipients("451 4.3.0 Try again later")
    message = mail.queue(db_session)
    db_session.commit()

    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.queued
    assert status.last_reply_code == 451
    assert status.attempts == 1

    mail.server.refuse_recipients(None)
    assert send_due(mail.factory, mail.keys, mail.settings, now=later(10)) == {"sent": 1}
    assert len(mail.server.received) == 1


def test_running_the_send_task_twice_sends_once(mail, db_session):
    message = mail.queue(db_session)
    db_session.commit()
    assert len(mail.server.received) == 1

    assert send.apply(kwargs={"message_id": message.id}).get()["status"] is None
    assert send_message(mail.factory, mail.keys, mail.settings, message.id, now=later(600)) is None
    assert send_due(mail.factory, mail.keys, mail.settings, now=later(600)) == {}
    assert len(mail.server.received) == 1


def test_message_claimed_by_another_sender_is_left_alone_until_its_lease_ends(mail, db_session):
    message = mail.queue(db_session)
    db_session.flush()
    db_session.execute(
        update(EmailMessage)
        .where(EmailMessage.id == message.id)
        .values(status="sending", attempts=1, next_attempt_at=later(5))
    )
    assert send_message(mail.factory, mail.keys, mail.settings, message.id) is None
    assert mail.server.received == []
    # The other sender died: once its lease has passed, the sweep sends the message.
    assert send_due(mail.factory, mail.keys, mail.settings, now=later(6)) == {"sent": 1}
    assert len(mail.server.received) == 1


def test_message_is_given_up_after_the_maximum_attempts(mail_setup, db_session):
    mail = mail_setup(smtp_max_attempts=3)
    mail.server.stop()
    message = mail.queue(db_session)
    db_session.commit()

    assert send_due(mail.factory, mail.keys, mail.settings, now=later(120)) == {"queued": 1}
    assert send_due(mail.factory, mail.keys, mail.settings, now=later(240)) == {"gave_up": 1}

    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.gave_up
    assert status.attempts == 3
    assert status.next_attempt_at is None
    assert mail.row(db_session, message.id)["content"] is None
    mail.server.start()
    assert send_due(mail.factory, mail.keys, mail.settings, now=later(600)) == {}
    assert mail.server.received == []


def test_back_off_doubles_from_one_minute_up_to_one_hour():
    from infra.email.service import retry_delay

    assert timedelta(seconds=48) <= retry_delay(1) <= timedelta(seconds=72)
    assert timedelta(minutes=3.2) <= retry_delay(3) <= timedelta(minutes=4.8)
    assert timedelta(minutes=48) <= retry_delay(12) <= timedelta(minutes=72)
    assert retry_delay(50) <= timedelta(minutes=72)


def test_embedded_default_writes_the_message_to_the_mail_folder(mail_setup, db_session):
    mail = mail_setup(smtp_host="")
    message = mail.queue(db_session)
    db_session.commit()

    written = mail_folder(mail.settings) / f"{message.id}.eml"
    assert written.exists()
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    from email import message_from_bytes
    from email.policy import default

    parsed = message_from_bytes(written.read_bytes(), policy=default)
    assert parsed["Subject"] == SUBJECT_BG
    assert parsed["To"].addresses[0].addr_spec == ADDRESS
    db_session.expire_all()
    assert delivery_status(db_session, message.id).status is EmailStatus.sent


def test_production_without_an_smtp_host_keeps_messages_queued_and_is_not_ready(mail_setup, db_session):
    mail = mail_setup(smtp_host="", environment=Environment.production)
    message = mail.queue(db_session)
    db_session.commit()

    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.queued
    assert status.last_error is not None
    assert "ENCLAVE_SMTP_HOST" in status.last_error
    assert not mail_folder(mail.settings).exists()
    with pytest.raises(RuntimeError, match="ENCLAVE_SMTP_HOST"):
        check(mail.settings)


def test_readiness_reports_the_smtp_server_and_names_it_when_down(mail, components):
    by_name = {status.name: status for status in check_all(components)}
    assert by_name["email"].ok, by_name["email"].detail
    mail.server.stop()
    by_name = {status.name: status for status in check_all(components)}
    assert not by_name["email"].ok
    assert "ConnectionRefused" in by_name["email"].detail


def test_readiness_leaves_out_email_when_messages_go_to_the_local_folder(components):
    assert "email" not in {status.name for status in check_all(components)}
    assert "mail-outbox" in check(components.settings)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("to", "not-an-address", "invalid_email_address"),
        ("to", "a@example.org\r\nBcc: b@example.org", "invalid_email_address"),
        ("to", "a@example.org, b@example.org", "invalid_email_address"),
        ("subject", "Line one\nBcc: x@example.org", "invalid_email_subject"),
        ("language", "de", "unsupported_language"),
        ("category", "Invitation!", "invalid_category"),
        ("reference", "maria@example.org", "invalid_reference"),
    ],
)
def test_bad_input_is_refused_with_a_reason_and_nothing_is_stored(mail, db_session, field, value, reason):
    with pytest.raises(InvalidField) as refused:
        mail.queue(db_session, **{field: value})
    assert refused.value.extra["reason"] == reason
    assert db_session.scalar(select(EmailMessage.id)) is None


def test_delivery_statuses_lists_every_message_about_a_reference(mail, db_session):
    first = mail.queue(db_session, category="invitation")
    second = mail.queue(db_session, category="reminder")
    mail.queue(db_session, reference="inv-99")
    assert [s.id for s in delivery_statuses(db_session, "inv-42")] == [first.id, second.id]


def test_credentials_over_an_unencrypted_connection_are_refused_outside_development(tmp_path):
    with pytest.raises(SettingsError, match="ENCLAVE_SMTP_TLS"):
        load_settings(
            environment="test",
            data_dir=tmp_path,
            smtp_host="smtp.example.org",
            smtp_tls="none",
            smtp_username="enclave",
            smtp_password="secret-password",
        )
    with pytest.raises(SettingsError, match="ENCLAVE_SMTP_FROM"):
        load_settings(environment="test", data_dir=tmp_path, smtp_from="LET'S CARE")
    with pytest.raises(SettingsError, match="ENCLAVE_SMTP_TLS"):
        load_settings(environment="test", data_dir=tmp_path, smtp_tls="tls1.0")


def test_unreachable_server_on_a_closed_port_is_a_temporary_failure(mail_setup, db_session):
    mail = mail_setup(smtp_port=free_port(), smtp_timeout_seconds=2)
    message = mail.queue(db_session)
    db_session.commit()
    db_session.expire_all()
    status = delivery_status(db_session, message.id)
    assert status.status is EmailStatus.queued
    assert status.attempts == 1


def test_email_outbox_migration_downgrades_and_upgrades():
    engine = make_engine(recreate_database("enclave_test_email_migration"))
    try:
        upgrade(engine)
        assert {"email_message", "email_key"} <= set(inspect(engine).get_table_names())
        downgrade(engine, "0007")
        tables = set(inspect(engine).get_table_names())
        assert "email_message" not in tables
        assert "email_key" not in tables
        assert "consent_decision" in tables
        upgrade(engine)
        assert {"email_message", "email_key"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_email_send_is_consumed_from_the_email_queue_by_a_real_worker(celery_worker):
    worker_settings = celery_worker.settings
    configure_celery(worker_settings)
    install_session_hooks()
    assert celery_app.amqp.router.route({}, "email.send")["queue"].name == "email"
    engine = make_engine(worker_settings.effective_database_url)
    factory = make_session_factory(engine)
    keys = key_backend_from_settings(worker_settings)
    try:
        with session_scope(factory) as session:
            message = queue_email(
                session,
                keys,
                to=ADDRESS,
                subject=SUBJECT_BG,
                text=TEXT_BG,
                language="bg",
                category="invitation",
                reference="inv-worker",
            )
        with factory() as session:
            jobs = session.scalars(select(OutboxJob).where(OutboxJob.task_name == "email.send")).all()
            job = next(j for j in jobs if j.kwargs == {"message_id": message.id})
        assert AsyncResult(job.id, app=celery_app).get(timeout=60) == {
            "message_id": message.id,
            "status": "sent",
        }
        with factory() as session:
            assert delivery_status(session, message.id).status is EmailStatus.sent
        written = mail_folder(worker_settings) / f"{message.id}.eml"
        assert SUBJECT_BG.encode() not in written.read_bytes()  # encoded for the wire
        assert b"Content-Language: bg" in written.read_bytes()
    finally:
        with session_scope(factory) as session:
            session.execute(EmailMessage.__table__.delete())
            session.execute(OutboxJob.__table__.delete())
        engine.dispose()
