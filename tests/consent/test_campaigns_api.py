"""The campaigns API over HTTP: stewards send within their scope, the DPO reads, counts per campaign."""

from __future__ import annotations

from datetime import date

import pytest

from access.audit.actions import Role
from consent.invitations import service
from consent.rosters.models import Delivery
from tests.support.auth import auth_headers
from tests.support.consent import load_rules, make_form, make_guardian, make_student

CAMPAIGNS = "/api/consent/campaigns"
SCHOOL = "PL-KRK-007"
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _roster(db_session, protector):
    load_rules(db_session)
    make_form(db_session, "PL", "pl")
    today = date.today()
    child = make_student(
        db_session, protector, country="PL", school=SCHOOL, birth_year=today.year - 11, language="pl"
    )
    make_guardian(db_session, protector, [child], language="pl")
    make_guardian(db_session, protector, [child], language="pl").delivery = Delivery.school.value
    make_student(db_session, protector, country="PL", school="PL-WAW-001", language="pl")
    db_session.flush()


@pytest.fixture
def steward(client, staff_factory):
    return auth_headers(client, staff_factory(roles=[Role.data_steward], country="PL", schools=[SCHOOL]))


def test_steward_sends_a_campaign_and_sees_its_counts(client, steward, db_session, components):
    answer = client.post(CAMPAIGNS, json={"school": SCHOOL}, headers=steward)
    assert answer.status_code == 201, answer.text
    sent = answer.json()
    assert sent["emails_queued"] == 1
    assert (sent["invited"], sent["guardians"], sent["students"], sent["emails"], sent["letters"]) == (
        3,
        2,
        1,
        1,
        2,
    )
    assert sent["email_status"]["queued"] == 1
    assert sent["letters_pdf"] == f"{CAMPAIGNS}/{sent['id']}/letters.pdf"

    pdf = client.get(sent["letters_pdf"], headers=steward)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")

    invitation = next(
        i for i in service.campaign_invitations(db_session, sent["id"]) if i.channel == "letter"
    )
    invitation.opened_at = invitation.created_at
    db_session.flush()
    one = client.get(f"{CAMPAIGNS}/{sent['id']}", headers=steward).json()
    assert one["opened"] == 1
    listed = client.get(CAMPAIGNS, headers=steward).json()
    assert [c["id"] for c in listed] == [sent["id"]]


def test_dpo_reads_campaigns_but_cannot_send_one(client, steward, staff_factory):
    campaign = client.post(CAMPAIGNS, json={"school": SCHOOL}, headers=steward).json()
    dpo = auth_headers(client, staff_factory(roles=[Role.dpo]))
    refused = client.post(CAMPAIGNS, json={"school": SCHOOL}, headers=dpo)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert client.get(f"{CAMPAIGNS}/{campaign['id']}", headers=dpo).json()["invited"] == 3
    assert client.get(f"{CAMPAIGNS}/{campaign['id']}/letters.pdf", headers=dpo).status_code == 403


def test_steward_outside_the_scope_gets_404_for_a_campaign(client, steward, staff_factory):
    campaign = client.post(CAMPAIGNS, json={"school": SCHOOL}, headers=steward).json()
    other = auth_headers(
        client, staff_factory(roles=[Role.data_steward], country="PL", schools=["PL-WAW-001"])
    )
    for path in (f"{CAMPAIGNS}/{campaign['id']}", f"{CAMPAIGNS}/{campaign['id']}/letters.pdf"):
        answer = client.get(path, headers=other)
        assert answer.status_code == 404
        assert answer.json()["reason"] == "campaign_not_found"
    assert client.get(CAMPAIGNS, headers=other).json() == []
    spanish = auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))
    assert client.get(f"{CAMPAIGNS}/{campaign['id']}", headers=spanish).status_code == 404


def test_steward_cannot_send_for_another_school(client, steward):
    answer = client.post(CAMPAIGNS, json={"school": "PL-WAW-001"}, headers=steward)
    assert answer.status_code == 403
    assert answer.json()["reason"] == "outside_scope"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"school": "PL-NONE-404"}, "unknown_school"),
        ({"school": SCHOOL, "reason": "reconsent"}, "nobody_to_invite"),
    ],
)
def test_campaign_that_cannot_be_sent_says_why(client, staff_factory, body, reason):
    headers = auth_headers(client, staff_factory(roles=[Role.data_steward], country="PL"))
    answer = client.post(CAMPAIGNS, json=body, headers=headers)
    assert answer.status_code in (409, 422)
    assert answer.json()["reason"] == reason
    assert client.get(CAMPAIGNS, headers=headers).json() == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"school": ""},
        {"school": "PL KRK"},
        {"school": SCHOOL, "reason": "spam"},
        {"school": SCHOOL, "x": 1},
    ],
)
def test_malformed_campaign_requests_are_refused_with_422(client, steward, body):
    answer = client.post(CAMPAIGNS, json=body, headers=steward)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith(PROBLEM)


def test_reminder_replaces_every_unopened_link_of_the_first_campaign(client, steward):
    headers = steward
    sent = client.post(CAMPAIGNS, json={"school": SCHOOL}, headers=headers).json()
    reminder = client.post(CAMPAIGNS, json={"school": SCHOOL, "reason": "reminder"}, headers=headers).json()
    assert reminder["reason"] == "reminder"
    first = client.get(f"{CAMPAIGNS}/{sent['id']}", headers=headers).json()
    assert first["replaced"] == 3  # nobody opened the first links: the reminder replaced them all
    unknown = client.get(f"{CAMPAIGNS}/00000000-0000-0000-0000-000000000000/letters.pdf", headers=headers)
    assert unknown.status_code == 404


def test_a_double_submitted_campaign_is_sent_once(client, steward):
    first = client.post(CAMPAIGNS, json={"school": SCHOOL}, headers=steward)
    again = client.post(CAMPAIGNS, json={"school": SCHOOL}, headers=steward)
    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["reason"] == "campaign_just_sent"
    listed = client.get(CAMPAIGNS, headers=steward).json()
    assert [c["id"] for c in listed] == [first.json()["id"]]
    assert listed[0]["replaced"] == 0
