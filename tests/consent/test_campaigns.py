"""Sending campaigns: emails in the invitee's language with a working link, letters as an encrypted
PDF kept a week, reminders that replace earlier links, re-consent invitations."""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta

import pypdfium2 as pdfium
import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.principal import Principal
from consent.decisions.models import ReconsentMark, ReconsentReason
from consent.invitations import messages, sending, service
from consent.invitations.exceptions import LinkNotUsable
from consent.invitations.models import Campaign, Invitation, InvitationReason, InviteeKind
from consent.rosters.models import Delivery
from infra.email import EmailMessage, EmailStatus, delivery_status, send_message
from infra.email.crypto import open_sealed
from infra.errors import Forbidden, InvalidField, ReasonedConflict
from infra.settings import SmtpTls
from tests.consent.test_letters import qr_codes_per_page
from tests.support.consent import load_rules, make_form, make_guardian, make_student, make_teacher
from tests.support.projects import make_principal
from tests.support.smtp import smtp_server  # noqa: F401 - the fixture

SCHOOL = "PL-KRK-007"
BASE = "https://consent.letscare.example"
LINK = re.compile(re.escape(BASE) + r"/f/([A-Za-z0-9_\-]+)")
CODE = re.compile(r"\b([0-9A-Z]{5}-[0-9A-Z]{5})\b")


@pytest.fixture(autouse=True)
def _rules(db_session):
    load_rules(db_session)
    make_form(db_session, "PL", "pl")


@pytest.fixture
def steward(db_session) -> Principal:
    principal = make_principal(db_session, Role.data_steward)
    return Principal(
        account_id=principal.account_id, roles=principal.roles, country="PL", schools=frozenset({SCHOOL})
    )


@pytest.fixture
def send(db_session, components, protector, steward):
    def run(reason=InvitationReason.invitation, *, principal=None, school=SCHOOL):
        return sending.send_campaign(
            db_session,
            principal or steward,
            keys=components.keys,
            protector=protector,
            storage=components.storage,
            links=sending.Links(BASE),
            school=school,
            reason=reason,
        )

    return run


def pupil(db_session, protector, age: int, **kwargs):
    today = date.today()
    return make_student(
        db_session,
        protector,
        country="PL",
        school=SCHOOL,
        birth_year=today.year - age - 1,
        birth_month=12 if today.month < 12 else 1,
        language="pl",
        **kwargs,
    )


def content(db_session, keys, invitation: Invitation):
    message = db_session.get(EmailMessage, invitation.email_message_id)
    return open_sealed(db_session, keys, message.id, message.content)


def invitations_of(db_session, campaign: Campaign) -> list[Invitation]:
    return list(service.campaign_invitations(db_session, campaign.id))


def pdf_text(pdf: bytes) -> str:
    document = pdfium.PdfDocument(pdf)
    try:
        return " ".join(page.get_textpage().get_text_range() for page in document).replace("\u00a0", " ")
    finally:
        document.close()


def test_campaign_queues_one_email_per_email_invitation_in_the_invitees_language(
    db_session, components, protector, send
):
    child = pupil(db_session, protector, 10)
    polish = make_guardian(db_session, protector, [child], language="pl", email="anna@family.example.org")
    french = make_guardian(db_session, protector, [child], language="fr", email="luc@family.example.org")
    make_teacher(db_session, protector, country="PL", school=SCHOOL, language="nl")

    sent = send()

    emails = [i for i in invitations_of(db_session, sent.campaign) if i.channel == "email"]
    assert sent.emails_queued == len(emails) == 3
    by_person = {
        (i.kind, i.guardian_id or i.teacher_id): content(db_session, components.keys, i) for i in emails
    }
    assert by_person["guardian", polish.id].subject == "LET'S CARE: prosimy o Państwa zgodę"
    assert by_person["guardian", french.id].subject == "LET'S CARE : nous vous demandons votre consentement"
    assert by_person["guardian", polish.id].to == "anna@family.example.org"
    teacher_mail = next(c for c in by_person.values() if c.subject.startswith("LET'S CARE: wij"))
    assert "Beste leerkracht" in teacher_mail.text
    for invitation in emails:
        message = db_session.get(EmailMessage, invitation.email_message_id)
        assert (message.category, message.reference) == ("invitation", invitation.id)
        text = content(db_session, components.keys, invitation).text
        assert LINK.search(text)
        assert CODE.search(text)
        assert f"{BASE}/code" in text


def test_the_email_arrives_over_smtp_and_its_link_opens_the_family_session(
    db_session,
    components,
    protector,
    send,
    smtp_server,  # noqa: F811
):
    child = pupil(db_session, protector, 10)
    guardian = make_guardian(db_session, protector, [child], language="bg", email="maria@family.example.org")
    sent = send()
    invitation = next(i for i in invitations_of(db_session, sent.campaign) if i.guardian_id == guardian.id)
    db_session.commit()  # a savepoint of the test's transaction: the sender's session sees it

    mail_settings = components.settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_tls": SmtpTls.none,
            "smtp_from": "LET'S CARE <no-reply@letscare.example.org>",
        }
    )
    status = send_message(
        components.session_factory, components.keys, mail_settings, invitation.email_message_id
    )
    assert status is EmailStatus.sent
    (received,) = smtp_server.received
    assert received.rcpt_tos == ["maria@family.example.org"]
    assert received.message["Subject"] == "LET'S CARE: молим за Вашето съгласие"
    body = received.message.get_body(("plain",)).get_content()
    assert "доброволно" in body
    token = LINK.search(body).group(1)
    opened = service.open_link(db_session, components.keys, token)
    assert opened.invitation.id == invitation.id
    assert delivery_status(db_session, invitation.email_message_id).status is EmailStatus.sent


def test_letters_pdf_holds_a_working_short_code_for_each_letter_invitation(
    db_session, components, protector, send, steward
):
    child = pupil(db_session, protector, 10, ref="P-7A-0042")
    by_letter = make_guardian(db_session, protector, [child], language="pl", name="Jan Kowalski")
    by_letter.delivery = Delivery.school.value
    db_session.flush()

    sent = send()

    letters = [i for i in invitations_of(db_session, sent.campaign) if i.channel == "letter"]
    assert sent.letters == len(letters) == 2  # the guardian and the 10-year-old (assent from 7)
    stored = components.storage.get(sending.letters_object_key(sent.campaign.id))
    assert b"%PDF" not in stored
    assert b"Kowalski" not in stored
    pdf = sending.letters_pdf(
        db_session,
        steward,
        keys=components.keys,
        storage=components.storage,
        campaign=sent.campaign,
        letters=2,
    )
    text = pdf_text(pdf)
    assert "Jan Kowalski" in text
    assert "P-7A-0042" in text
    codes = CODE.findall(text)
    assert len(set(codes)) == 2
    opened = service.enter_code(db_session, components.keys, codes[0], client="203.0.113.9")
    assert opened.invitation.id in {i.id for i in letters}
    # A phone scanning the other letter's QR code gets a link that opens the family pages.
    links = [link for page in qr_codes_per_page(pdf) for link in page]
    assert len(links) == 2
    assert all(link.startswith(f"{BASE.rstrip('/')}/f/") for link in links)
    outcomes = {}
    for link in links:
        try:
            outcomes[link] = service.open_link(
                db_session, components.keys, link.rsplit("/", 1)[1]
            ).invitation.id
        except LinkNotUsable as refused:
            outcomes[link] = refused.reason
    assert sorted(str(v) for v in outcomes.values()) == sorted(
        ["used", *({i.id for i in letters} - {opened.invitation.id})]
    ), "the letter whose code was typed is used; the other opens"
    db_session.commit()  # ledger entries are written when the transaction commits
    downloads = db_session.execute(
        select(AuditEntry).where(AuditEntry.action == "consent.letters_downloaded")
    ).scalars()
    assert [d.target_id for d in downloads] == [sent.campaign.id]


def test_letters_are_deleted_after_seven_days(db_session, components, protector, send, steward):
    child = pupil(db_session, protector, 10)
    make_guardian(db_session, protector, [child]).delivery = Delivery.school.value
    sent = send()
    key = sending.letters_object_key(sent.campaign.id)
    with pytest.raises(sending.LettersGone):
        sending.letters_pdf(
            db_session,
            steward,
            keys=components.keys,
            storage=components.storage,
            campaign=sent.campaign,
            letters=sent.letters,
            now=datetime.now(UTC) + timedelta(days=7, minutes=1),
        )
    assert not components.storage.exists(key)


def test_purge_deletes_letters_files_older_than_seven_days(db_session, components, protector, send):
    child = pupil(db_session, protector, 10)
    make_guardian(db_session, protector, [child]).delivery = Delivery.school.value
    sent = send()
    key = sending.letters_object_key(sent.campaign.id)
    assert sending.purge_expired_letters(components.storage) == 0
    assert components.storage.exists(key)
    assert sending.purge_expired_letters(components.storage, now=datetime.now(UTC) + timedelta(days=8)) == 1
    assert not components.storage.exists(key)


def test_reminder_replaces_the_earlier_links_of_the_undecided(db_session, components, protector, send):
    child = pupil(db_session, protector, 5)
    make_guardian(db_session, protector, [child], language="es")
    first = send()
    (old,) = invitations_of(db_session, first.campaign)
    old_token = LINK.search(content(db_session, components.keys, old).text).group(1)

    reminder = send(InvitationReason.reminder)

    (new,) = invitations_of(db_session, reminder.campaign)
    mail = content(db_session, components.keys, new)
    assert mail.subject == "Recordatorio: LET'S CARE espera su decisión"
    assert "sustituye al anterior" in mail.text
    assert db_session.get(EmailMessage, new.email_message_id).category == "reminder"
    with pytest.raises(LinkNotUsable) as refused:
        service.open_link(db_session, components.keys, old_token)
    assert refused.value.reason == "replaced"
    new_token = LINK.search(mail.text).group(1)
    assert service.open_link(db_session, components.keys, new_token).invitation.id == new.id


def test_reconsent_invites_only_marked_students_and_sets_invited_at(db_session, components, protector, send):
    marked = pupil(db_session, protector, 10)
    guardian = make_guardian(db_session, protector, [marked], language="pl")
    other = pupil(db_session, protector, 10)
    make_guardian(db_session, protector, [other], language="pl")
    make_teacher(db_session, protector, country="PL", school=SCHOOL)
    mark = ReconsentMark(
        student_id=marked.id,
        reason=ReconsentReason.form_change.value,
        due_on=date.today() + timedelta(days=30),
    )
    db_session.add(mark)
    db_session.flush()

    sent = send(InvitationReason.reconsent)

    invited = invitations_of(db_session, sent.campaign)
    assert {(i.kind, i.guardian_id or i.student_id) for i in invited} == {
        (InviteeKind.guardian.value, guardian.id),
        (InviteeKind.student.value, marked.id),
    }
    db_session.refresh(mark)
    assert mark.invited_at is not None
    email = next(i for i in invited if i.channel == "email")
    assert content(db_session, components.keys, email).subject == "LET'S CARE: prosimy o ponowną decyzję"
    assert db_session.get(EmailMessage, email.email_message_id).category == "reconsent"


def test_reconsent_at_the_self_consent_age_invites_the_student_not_the_guardians(
    db_session, components, protector, send
):
    student = pupil(db_session, protector, 15)
    make_guardian(db_session, protector, [student], language="pl")
    db_session.add(
        ReconsentMark(
            student_id=student.id,
            reason=ReconsentReason.self_consent_age.value,
            due_on=date.today() + timedelta(days=20),
        )
    )
    db_session.flush()
    sent = send(InvitationReason.reconsent)
    assert [(i.kind, i.student_id) for i in invitations_of(db_session, sent.campaign)] == [
        (InviteeKind.student.value, student.id)
    ]


def test_steward_cannot_send_for_a_school_outside_their_scope(db_session, protector, send):
    make_student(db_session, protector, country="PL", school="PL-WAW-001")
    with pytest.raises(Forbidden):
        send(school="PL-WAW-001")
    assert db_session.execute(select(Campaign)).first() is None


def test_campaign_for_a_school_not_on_the_roster_is_refused(send, db_session):
    with pytest.raises(InvalidField) as refused:
        send()
    assert refused.value.code == "unknown_school"


def test_campaign_with_nobody_to_invite_is_refused_and_leaves_nothing(db_session, protector, send):
    pupil(db_session, protector, 10)
    with pytest.raises(ReasonedConflict) as refused:
        send(InvitationReason.reconsent)  # nobody is marked
    assert refused.value.code == "nobody_to_invite"
    assert db_session.execute(select(Campaign)).first() is None


@pytest.mark.parametrize(
    ("language", "subject", "phrase"),
    [
        ("en", "LET'S CARE: we ask for your consent", "Taking part is voluntary"),
        ("es", "LET'S CARE: le pedimos su consentimiento", "Participar es voluntario"),
        ("bg", "LET'S CARE: молим за Вашето съгласие", "Участието е доброволно"),
        ("pl", "LET'S CARE: prosimy o Państwa zgodę", "Udział jest dobrowolny"),
        ("fr", "LET'S CARE : nous vous demandons votre consentement", "La participation est volontaire"),
        ("nl", "LET'S CARE: wij vragen uw toestemming", "Meedoen is vrijwillig"),
        ("uk", "LET'S CARE: we ask for your consent", "Taking part is voluntary"),
    ],
)
def test_invitation_email_is_written_in_the_invitees_language(language, subject, phrase):
    mail = messages.compose(
        language=language,
        kind=InviteeKind.guardian,
        reason=InvitationReason.invitation,
        school="ES-SEV-003",
        link=f"{BASE}/f/abc",
        code="ABCDE-FGHJK",
        code_page=f"{BASE}/code",
        expires_on=date(2027, 3, 15),
    )
    assert mail.subject == subject
    assert phrase in mail.text
    assert f"{BASE}/f/abc" in mail.text
    assert "ABCDE-FGHJK" in mail.text
    assert "ES-SEV-003" in mail.text
    assert "2027" in mail.text


def test_hourly_job_deletes_letters_files_older_than_seven_days(db_session, components, protector, send):
    from consent.invitations.tasks import purge_letters

    child = pupil(db_session, protector, 10)
    make_guardian(db_session, protector, [child]).delivery = Delivery.school.value
    sent = send()
    key = sending.letters_object_key(sent.campaign.id)
    assert purge_letters() == {"deleted": 0}
    week_ago = (datetime.now(UTC) - timedelta(days=7, minutes=5)).timestamp()
    os.utime(components.storage.root / key, (week_ago, week_ago))
    assert purge_letters() == {"deleted": 1}
    assert not components.storage.exists(key)
