"""The consent-forms API over HTTP with real bearer tokens: who may publish, what staff read, problems."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from access.audit.actions import Role
from consent.forms.models import ConsentForm
from consent.forms.service import DEMO_FORMS_DIR
from tests.consent.test_forms import form_bytes
from tests.support.auth import auth_headers
from tests.support.consent import ALL_PURPOSES, load_rules

FORMS = "/api/consent/forms"
PROBLEM = "application/problem+json"


@pytest.fixture
def headers(client, staff_factory, db_session):
    load_rules(db_session)
    made = {}

    def for_role(role: Role) -> dict[str, str]:
        if role not in made:
            made[role] = auth_headers(client, staff_factory(roles=[role]))
        return made[role]

    return for_role


def upload(client, headers, content: bytes, name: str = "bg-bg-v1.md"):
    return client.post(FORMS, files={"file": (name, content, "text/markdown")}, headers=headers)


def _forms(session) -> int:
    return session.scalar(select(func.count()).select_from(ConsentForm))


def test_a_dpo_publishes_a_form_and_the_same_file_again_answers_the_same_version(client, headers):
    content = (DEMO_FORMS_DIR / "bg-bg-v1.md").read_bytes()
    created = upload(client, headers(Role.dpo), content)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["country_code"], body["language"], body["version"]) == ("BG", "bg", 1)
    assert body["source_name"] == "bg-bg-v1.md"
    assert sorted(t["audience"] for t in body["texts"]) == ["adult", "child", "guardian"]
    for text in body["texts"]:
        assert text["sha256"] == hashlib.sha256(text["rendered_html"].encode()).hexdigest()
    again = upload(client, headers(Role.dpo), content)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]


@pytest.mark.parametrize("role", [Role.data_steward, Role.researcher, Role.admin, Role.legal_reviewer])
def test_only_the_dpo_may_publish_a_form(client, headers, db_session, role):
    answer = upload(client, headers(role), form_bytes())
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert _forms(db_session) == 0


def test_any_staff_member_reads_forms_purposes_and_the_current_version(client, headers):
    dpo = headers(Role.dpo)
    first = upload(client, dpo, form_bytes(version=1)).json()
    assert upload(client, dpo, form_bytes("BG", "en", 1), name="bg-en.md").status_code == 201
    second = upload(client, dpo, form_bytes(version=2)).json()
    reader = headers(Role.researcher)

    listed = client.get(FORMS, params={"country": "bg", "language": "bg"}, headers=reader)
    assert listed.status_code == 200
    assert [f["version"] for f in listed.json()] == [1, 2]
    assert "texts" not in listed.json()[0]
    assert len(client.get(FORMS, headers=headers(Role.data_steward)).json()) == 3

    one = client.get(f"{FORMS}/{first['id']}", headers=reader).json()
    assert one["sha256"] == first["sha256"]
    assert {p["purpose"] for p in one["purposes"]} == set(ALL_PURPOSES)
    assert all(t["markdown"].startswith("# ") for t in one["texts"])

    current = client.get(f"{FORMS}/current", params={"country": "BG", "language": "bg"}, headers=reader)
    assert current.json()["id"] == second["id"]
    published = first["published_at"]
    at_first = client.get(
        f"{FORMS}/current", params={"country": "BG", "language": "bg", "on": published}, headers=reader
    )
    assert at_first.json()["id"] == first["id"]

    purposes = client.get(f"{FORMS}/purposes", headers=headers(Role.legal_reviewer))
    assert [p["code"] for p in purposes.json()] == list(ALL_PURPOSES)
    assert [p["special_category"] for p in purposes.json()].count(True) == 1


def test_no_form_before_the_first_publication_or_for_an_unknown_id_is_404(client, headers):
    form = upload(client, headers(Role.dpo), form_bytes()).json()
    reader = headers(Role.researcher)
    before = datetime.fromisoformat(form["published_at"]) - timedelta(seconds=1)
    answer = client.get(
        f"{FORMS}/current",
        params={"country": "BG", "language": "bg", "on": before.isoformat()},
        headers=reader,
    )
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert client.get(f"{FORMS}/{form['id'] + 1000}", headers=reader).status_code == 404
    assert (
        client.get(f"{FORMS}/current", params={"country": "ZZ", "language": "bg"}, headers=reader).status_code
        == 422
    )


@pytest.mark.parametrize(
    "case",
    [
        (form_bytes(purposes=("questionnaires", "marketing")), 422, "unknown_purpose"),
        (form_bytes("BG", "nl"), 422, "language_not_allowed"),
        (form_bytes().replace(b"version: 1", b"version: -1"), 422, "invalid_version"),
        (b"\xff\xfe not utf-8", 422, "not_utf8"),
        (form_bytes(wording={("child", "recontact"): "x " * 140_000}), 413, "file_too_large"),
    ],
    ids=["unknown-purpose", "language", "version", "encoding", "too-large"],
)
def test_a_bad_upload_is_a_problem_naming_the_reason_and_nothing_is_stored(client, headers, db_session, case):
    content, status, reason = case
    answer = upload(client, headers(Role.dpo), content)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert answer.json()["reason"] == reason
    assert _forms(db_session) == 0


def test_publishing_over_a_version_is_a_409_naming_the_existing_hash(client, headers):
    dpo = headers(Role.dpo)
    first = upload(client, dpo, form_bytes(version=2)).json()
    changed = upload(client, dpo, form_bytes(version=2, wording={("adult", "interviews"): "Audio only."}))
    assert changed.status_code == 409
    assert changed.json()["reason"] == "version_taken"
    assert changed.json()["existing_sha256"] == first["sha256"]
    lower = upload(client, dpo, form_bytes(version=1))
    assert lower.status_code == 409
    assert lower.json()["reason"] == "version_not_increasing"


def test_a_request_without_a_file_is_refused_not_crashed(client, headers):
    answer = client.post(FORMS, headers=headers(Role.dpo))
    assert answer.status_code == 422
