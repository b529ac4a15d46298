"""The decisions API over HTTP with real bearer tokens: recording paper decisions, idempotency, every
refusal with its reason (never a 500), scoping by country, batch statuses and the ledger."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from consent.decisions import pseudonyms
from consent.decisions.models import Decision
from consent.forms.models import ConsentForm
from tests.support.auth import auth_headers
from tests.support.consent import load_rules, make_form, make_guardian, make_student, make_teacher

DECISIONS = "/api/consent/decisions"
BATCH = "/api/consent/status"
GUARDIAN_NAME = "Agnieszka Kowalska"
GUARDIAN_EMAIL = "agnieszka.kowalska@family.example.org"


def status_url(subject_id: str) -> str:
    return f"/api/consent/subjects/{subject_id}/status"


def history_url(subject_id: str) -> str:
    return f"/api/consent/subjects/{subject_id}/decisions"


def text_hash(form: ConsentForm, audience: str) -> str:
    return next(t.sha256 for t in form.texts if t.audience == audience)


def born_aged(age: int) -> tuple[int, int]:
    """Birth year and month of a student who is ``age`` today and stays so for weeks (born in June or
    December, far from today's month boundary)."""
    today = datetime.now(UTC).date()
    month = 6 if today.month >= 9 or today.month <= 3 else 12
    year = today.year - age - (1 if month >= today.month else 0)
    return year, month


class World:
    """A Polish school with a young pupil (guardians decide alone), a pupil of 17 (decides alone), a
    teacher, the Polish form, and a Bulgarian pupil outside a Polish steward's scope."""

    def __init__(self, session, protector) -> None:
        load_rules(session)
        self.form = make_form(session, "PL", "pl")
        year, month = born_aged(5)
        self.child = make_student(
            session,
            protector,
            country="PL",
            school="PL-WAW-001",
            language="pl",
            birth_year=year,
            birth_month=month,
        )
        self.guardian = make_guardian(
            session, protector, [self.child], name=GUARDIAN_NAME, email=GUARDIAN_EMAIL, language="pl"
        )
        self.other_guardian = make_guardian(session, protector, [], language="pl")
        year, month = born_aged(17)
        self.teen = make_student(
            session,
            protector,
            country="PL",
            school="PL-WAW-001",
            language="pl",
            birth_year=year,
            birth_month=month,
        )
        self.teen_guardian = make_guardian(session, protector, [self.teen], language="pl")
        self.teacher = make_teacher(session, protector, country="PL", school="PL-WAW-001", language="pl")
        self.bg_form = make_form(session, "BG", "bg")
        self.abroad = make_student(session, protector, country="BG", birth_year=2020, birth_month=6)

    def guardian_body(self, **overrides):
        body = {
            "subject_id": self.child.subject_id,
            "decided_by": "guardian",
            "guardian_id": self.guardian.guardian_id,
            "form_id": self.form.id,
            "text_sha256": text_hash(self.form, "guardian"),
            "choices": {"questionnaires": "granted", "interviews": "declined"},
            "channel": "paper",
        }
        body.update(overrides)
        return body


@pytest.fixture
def world(db_session, protector):
    return World(db_session, protector)


@pytest.fixture
def as_role(client, staff_factory):
    made = {}

    def headers(role: Role, country: str | None = "PL") -> dict[str, str]:
        key = (role, country)
        if key not in made:
            user = staff_factory(roles=[role], country=country if role is Role.data_steward else None)
            made[key] = auth_headers(client, user)
        return made[key]

    return headers


@pytest.fixture
def steward(as_role):
    return as_role(Role.data_steward)


def assert_problem(answer, status: int, reason: str | None = None):
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    if reason is not None:
        assert body.get("reason") == reason, body
    return body


# --- recording -----------------------------------------------------------------------------------


def test_a_paper_decision_is_recorded_with_its_event_id_and_choices(client, world, steward):
    answer = client.post(DECISIONS, json=world.guardian_body(), headers=steward)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    uuid.UUID(body["event_id"])
    assert body["choices"] == {"questionnaires": "granted", "interviews": "declined"}
    assert body["subject_id"] == world.child.subject_id
    assert body["guardian_id"] == world.guardian.guardian_id
    assert body["capacity"] == "consent"
    assert body["channel"] == "paper"
    assert body["replayed"] is False


def test_after_a_guardian_grant_the_status_endpoint_shows_granted(client, world, steward):
    before = client.get(status_url(world.child.subject_id), headers=steward).json()
    assert before["statuses"]["questionnaires"] == "pending"
    client.post(DECISIONS, json=world.guardian_body(), headers=steward).raise_for_status()
    after = client.get(status_url(world.child.subject_id), headers=steward)
    assert after.status_code == 200, after.text
    shown = after.json()
    assert shown["statuses"]["questionnaires"] == "granted"
    assert shown["statuses"]["interviews"] == "declined"
    assert shown["statuses"]["recontact"] == "pending"
    assert (shown["country"], shown["age"], shown["regime"]) == ("PL", 5, "guardian")


def test_the_same_idempotency_key_twice_answers_200_with_the_first_recording_and_records_once(
    client, world, steward, db_session
):
    body = world.guardian_body(idempotency_key="paper-form-000123")
    first = client.post(DECISIONS, json=body, headers=steward)
    second = client.post(DECISIONS, json=body, headers=steward)
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.json()["event_id"] == first.json()["event_id"]
    assert second.json()["replayed"] is True
    assert second.json()["recorded_at"] == first.json()["recorded_at"]
    history = client.get(history_url(world.child.subject_id), headers=steward).json()
    assert [event["event_id"] for event in history] == [first.json()["event_id"]]
    rows = db_session.scalar(
        select(func.count()).select_from(Decision).where(Decision.student_id == world.child.id)
    )
    assert rows == 2, "one row per purpose of the single submission"


def test_the_same_idempotency_key_with_other_choices_is_a_conflict(client, world, steward):
    client.post(DECISIONS, json=world.guardian_body(idempotency_key="paper-form-000124"), headers=steward)
    changed = world.guardian_body(idempotency_key="paper-form-000124", choices={"questionnaires": "declined"})
    assert_problem(client.post(DECISIONS, json=changed, headers=steward), 409, "idempotency_key_reused")
    history = client.get(history_url(world.child.subject_id), headers=steward).json()
    assert len(history) == 1
    assert history[0]["choices"]["questionnaires"] == "granted"


def test_an_idempotency_key_used_for_one_pupil_is_not_replayed_for_another(
    client, world, steward, db_session, protector
):
    year, month = born_aged(6)
    sibling = make_student(
        db_session,
        protector,
        country="PL",
        school="PL-WAW-001",
        language="pl",
        birth_year=year,
        birth_month=month,
    )
    make_guardian(db_session, protector, [sibling], language="pl")
    from consent.rosters.models import Guardianship

    db_session.add(Guardianship(student_id=sibling.id, guardian_id=world.guardian.id, relation="mother"))
    db_session.flush()
    first = world.guardian_body(idempotency_key="paper-form-000125")
    client.post(DECISIONS, json=first, headers=steward).raise_for_status()
    for_sibling = world.guardian_body(idempotency_key="paper-form-000125", subject_id=sibling.subject_id)
    assert_problem(client.post(DECISIONS, json=for_sibling, headers=steward), 409, "idempotency_key_reused")
    assert client.get(history_url(sibling.subject_id), headers=steward).json() == []
    other_parent = world.guardian_body(idempotency_key="paper-form-000125")
    db_session.add(
        Guardianship(student_id=world.child.id, guardian_id=world.other_guardian.id, relation="father")
    )
    db_session.flush()
    other_parent["guardian_id"] = world.other_guardian.guardian_id
    assert_problem(client.post(DECISIONS, json=other_parent, headers=steward), 409, "idempotency_key_reused")
    assert len(client.get(history_url(world.child.subject_id), headers=steward).json()) == 1


def test_the_hash_of_another_audiences_text_is_refused(client, world, steward):
    wrong = world.guardian_body(text_sha256=text_hash(world.form, "child"))
    body = assert_problem(client.post(DECISIONS, json=wrong, headers=steward), 422, "text_mismatch")
    assert "text_sha256" in body["detail"]


def test_a_purpose_not_on_the_form_is_refused(client, world, db_session, steward):
    narrow = make_form(db_session, "PL", "pl", version=2, purposes=["questionnaires", "interviews"])
    body = world.guardian_body(
        form_id=narrow.id,
        text_sha256=text_hash(narrow, "guardian"),
        choices={"questionnaires": "granted", "recontact": "granted"},
    )
    problem = assert_problem(client.post(DECISIONS, json=body, headers=steward), 422, "purpose_not_on_form")
    assert "recontact" in problem["detail"]


def test_a_required_purpose_left_unanswered_is_refused_but_a_withdrawal_alone_is_accepted(
    client, world, steward
):
    missing = world.guardian_body(choices={"interviews": "granted"})
    problem = assert_problem(
        client.post(DECISIONS, json=missing, headers=steward), 422, "required_purpose_missing"
    )
    assert "questionnaires" in problem["detail"]
    withdrawal = world.guardian_body(choices={"interviews": "withdrawn"})
    answer = client.post(DECISIONS, json=withdrawal, headers=steward)
    assert answer.status_code == 201, answer.text
    assert answer.json()["choices"] == {"interviews": "withdrawn"}


def test_a_decision_on_a_superseded_form_version_is_a_conflict(client, world, db_session, steward):
    make_form(db_session, "PL", "pl", version=2, published_at=datetime.now(UTC) - timedelta(days=1))
    assert_problem(
        client.post(DECISIONS, json=world.guardian_body(), headers=steward), 409, "form_superseded"
    )
    assert client.get(history_url(world.child.subject_id), headers=steward).json() == []


def test_a_guardian_not_listed_for_the_student_is_refused(client, world, steward):
    stranger = world.guardian_body(guardian_id=world.other_guardian.guardian_id)
    assert_problem(client.post(DECISIONS, json=stranger, headers=steward), 422, "guardian_not_listed")
    unknown = world.guardian_body(guardian_id=str(uuid.uuid4()))
    assert_problem(client.post(DECISIONS, json=unknown, headers=steward), 422, "guardian_not_listed")


def test_a_guardian_cannot_decide_for_a_student_at_self_consent_age(client, world, steward):
    body = world.guardian_body(subject_id=world.teen.subject_id, guardian_id=world.teen_guardian.guardian_id)
    problem = assert_problem(client.post(DECISIONS, json=body, headers=steward), 409, "student_decides_alone")
    assert "17" in problem["detail"]
    own = {
        **body,
        "decided_by": "student",
        "guardian_id": None,
        "text_sha256": text_hash(world.form, "child"),
    }
    answer = client.post(DECISIONS, json=own, headers=steward)
    assert answer.status_code == 201, answer.text
    status = client.get(status_url(world.teen.subject_id), headers=steward).json()
    assert status["statuses"]["questionnaires"] == "granted"
    assert status["regime"] == "self"


def test_staff_cannot_enter_a_web_decision(client, world, steward):
    for channel in ("web", "api"):
        body = world.guardian_body(channel=channel)
        assert_problem(client.post(DECISIONS, json=body, headers=steward), 422, "channel_not_allowed")
    session = world.guardian_body(channel="school_session")
    assert client.post(DECISIONS, json=session, headers=steward).status_code == 201


def test_a_teacher_decides_for_themselves_through_the_api(client, world, steward):
    body = {
        "subject_id": world.teacher.subject_id,
        "decided_by": "teacher",
        "form_id": world.form.id,
        "text_sha256": text_hash(world.form, "adult"),
        "choices": {"questionnaires": "granted"},
        "channel": "paper",
    }
    answer = client.post(DECISIONS, json=body, headers=steward)
    assert answer.status_code == 201, answer.text
    assert answer.json()["subject_kind"] == "teacher"
    status = client.get(status_url(world.teacher.subject_id), headers=steward).json()
    assert (status["subject_kind"], status["statuses"]["questionnaires"]) == ("teacher", "granted")
    for_the_teacher = {**body, "decided_by": "student", "text_sha256": text_hash(world.form, "child")}
    assert_problem(client.post(DECISIONS, json=for_the_teacher, headers=steward), 422, "wrong_decider")
    teacher_for_a_pupil = {**body, "subject_id": world.child.subject_id}
    assert_problem(client.post(DECISIONS, json=teacher_for_a_pupil, headers=steward), 422, "wrong_decider")


def test_no_decision_is_recorded_for_an_erased_subject(client, world, steward, db_session):
    world.child.erased_at = datetime.now(UTC) - timedelta(minutes=1)
    db_session.flush()
    assert_problem(client.post(DECISIONS, json=world.guardian_body(), headers=steward), 409, "subject_erased")


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-11-23T10:00:00+14:00"])
def test_statuses_at_extreme_instants_answer_and_never_fail(client, world, steward, at):
    one = client.get(status_url(world.child.subject_id), params={"at": at}, headers=steward)
    assert one.status_code == 200, one.text
    assert datetime.fromisoformat(one.json()["at"]) == datetime.fromisoformat(at)
    many = client.post(BATCH, json={"subject_ids": [world.child.subject_id], "at": at}, headers=steward)
    assert many.status_code == 200, many.text
    assert many.json()["statuses"][world.child.subject_id]["questionnaires"] == "pending"


def test_an_unknown_subject_is_not_found(client, world, steward):
    body = world.guardian_body(subject_id=str(uuid.uuid4()))
    assert_problem(client.post(DECISIONS, json=body, headers=steward), 404, "unknown_subject")
    assert_problem(client.get(status_url(str(uuid.uuid4())), headers=steward), 404, "unknown_subject")
    assert_problem(client.get(history_url(str(uuid.uuid4())), headers=steward), 404, "unknown_subject")


def test_a_steward_of_another_country_gets_not_found_not_forbidden(client, world, as_role):
    spain = as_role(Role.data_steward, "ES")
    answers = [
        client.post(DECISIONS, json=world.guardian_body(), headers=spain),
        client.get(status_url(world.child.subject_id), headers=spain),
        client.get(history_url(world.child.subject_id), headers=spain),
    ]
    for answer in answers:
        assert_problem(answer, 404, "unknown_subject")
    polish = as_role(Role.data_steward)
    assert client.get(history_url(world.child.subject_id), headers=polish).json() == []


def test_a_school_coordinator_does_not_see_pupils_of_other_schools(client, world, staff_factory):
    other_school = auth_headers(
        client, staff_factory(roles=[Role.data_steward], country="PL", schools=["PL-KRK-009"])
    )
    assert_problem(
        client.post(DECISIONS, json=world.guardian_body(), headers=other_school), 404, "unknown_subject"
    )
    assert_problem(client.get(status_url(world.child.subject_id), headers=other_school), 404)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject_id": "not-a-uuid"}, "subject_id"),
        ({"subject_id": str(uuid.uuid4()).upper()}, "subject_id"),
        ({"choices": {"questionnaires": "maybe"}}, "choices"),
        ({"choices": {}}, "choices"),
        ({"choices": {"Questionnaires!": "granted"}}, "choices"),
        ({"guardian_id": None}, "guardian_id"),
        ({"unexpected": "field"}, "unexpected"),
        ({"decided_by": "neighbour"}, "decided_by"),
        ({"form_id": 0}, "form_id"),
        ({"form_id": 2**40}, "form_id"),
        ({"text_sha256": "abc"}, "text_sha256"),
        ({"channel": "pigeon"}, "channel"),
        ({"idempotency_key": "short"}, "idempotency_key"),
        ({"idempotency_key": "has spaces in it"}, "idempotency_key"),
    ],
)
def test_malformed_decisions_are_refused_with_a_reason(client, world, steward, change, field):
    answer = client.post(DECISIONS, json=world.guardian_body(**change), headers=steward)
    problem = assert_problem(answer, 422)
    assert field in json.dumps(problem), problem


def test_a_body_that_is_not_json_or_misses_fields_is_refused(client, world, steward):
    broken = client.post(
        DECISIONS, content=b"{not json", headers={**steward, "Content-Type": "application/json"}
    )
    assert_problem(broken, 422)
    partial = client.post(DECISIONS, json={"subject_id": world.child.subject_id}, headers=steward)
    problem = assert_problem(partial, 422)
    assert "choices" in json.dumps(problem)
    student_with_guardian = world.guardian_body(decided_by="student")
    assert "guardian_id" in json.dumps(
        assert_problem(client.post(DECISIONS, json=student_with_guardian, headers=steward), 422)
    )


def test_an_unknown_form_and_a_form_of_another_country_are_refused(client, world, steward):
    unknown = world.guardian_body(form_id=999_999)
    assert_problem(client.post(DECISIONS, json=unknown, headers=steward), 422, "unknown_form")
    foreign = world.guardian_body(form_id=world.bg_form.id, text_sha256=text_hash(world.bg_form, "guardian"))
    assert_problem(client.post(DECISIONS, json=foreign, headers=steward), 422, "form_wrong_country")


# --- batch status --------------------------------------------------------------------------------


def test_batch_status_answers_in_scope_subjects_and_lists_the_rest_as_unknown(client, world, steward):
    client.post(DECISIONS, json=world.guardian_body(), headers=steward).raise_for_status()
    nobody = str(uuid.uuid4())
    ids = [
        world.child.subject_id,
        world.abroad.subject_id,
        nobody,
        world.teacher.subject_id,
        world.child.subject_id,
    ]
    answer = client.post(BATCH, json={"subject_ids": ids}, headers=steward)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["statuses"]) == {world.child.subject_id, world.teacher.subject_id}
    assert body["statuses"][world.child.subject_id]["questionnaires"] == "granted"
    assert body["statuses"][world.teacher.subject_id]["questionnaires"] == "pending"
    assert body["unknown"] == [world.abroad.subject_id, nobody]
    assert "questionnaires" in body["purposes"]


def test_batch_status_can_be_asked_for_some_purposes_at_a_past_instant(client, world, steward):
    recorded = client.post(DECISIONS, json=world.guardian_body(), headers=steward).json()
    at = datetime.fromisoformat(recorded["recorded_at"])
    ask = {"subject_ids": [world.child.subject_id], "purposes": ["interviews", "questionnaires"]}
    before = client.post(BATCH, json={**ask, "at": (at - timedelta(seconds=1)).isoformat()}, headers=steward)
    after = client.post(BATCH, json={**ask, "at": at.isoformat()}, headers=steward)
    assert before.json()["purposes"] == ["interviews", "questionnaires"]
    assert before.json()["statuses"][world.child.subject_id] == {
        "interviews": "pending",
        "questionnaires": "pending",
    }
    assert after.json()["statuses"][world.child.subject_id] == {
        "interviews": "declined",
        "questionnaires": "granted",
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"subject_ids": [], "at": "2026-11-23T10:00:00"}, "time zone"),
        ({"subject_ids": [], "purposes": ["astrology"]}, "astrology"),
        ({"subject_ids": [], "domain": "study-a", "pseudonyms": ["a" * 64]}, "either"),
        ({"domain": "study-a"}, "pseudonyms"),
        ({"pseudonyms": ["a" * 64]}, "domain"),
        ({}, "either"),
        ({"subject_ids": ["nope"]}, "subject_ids"),
        ({"domain": "Study A", "pseudonyms": ["a" * 64]}, "domain"),
        ({"domain": "study-a", "pseudonyms": ["xyz"]}, "pseudonyms"),
        ({"subject_ids": [], "extra": 1}, "extra"),
    ],
)
def test_a_malformed_batch_request_is_refused_with_a_reason(client, world, steward, body, words):
    problem = assert_problem(client.post(BATCH, json=body, headers=steward), 422)
    assert words in json.dumps(problem), problem


def test_an_unknown_purpose_in_a_batch_names_the_reason(client, world, steward):
    body = {"subject_ids": [world.child.subject_id], "purposes": ["questionnaires", "astrology"]}
    assert_problem(client.post(BATCH, json=body, headers=steward), 422, "unknown_purpose")


def test_a_timezone_free_instant_on_the_status_endpoint_is_refused(client, world, steward):
    answer = client.get(
        status_url(world.child.subject_id), params={"at": "2026-11-23T10:00:00"}, headers=steward
    )
    assert_problem(answer, 422)
    fine = client.get(
        status_url(world.child.subject_id), params={"at": "2026-11-23T10:00:00Z"}, headers=steward
    )
    assert fine.status_code == 200, fine.text


def test_batch_status_by_pseudonym_answers_with_the_pseudonyms_given(
    client, world, steward, db_session, components
):
    client.post(DECISIONS, json=world.guardian_body(), headers=steward).raise_for_status()
    mapping = pseudonyms.pseudonymise(
        db_session, components.keys, "study-a", [world.child.subject_id, world.abroad.subject_id]
    )
    again = pseudonyms.pseudonymise(db_session, components.keys, "study-a", [world.child.subject_id])
    assert again[world.child.subject_id] == mapping[world.child.subject_id], "stable per domain"
    other_domain = pseudonyms.pseudonymise(db_session, components.keys, "study-b", [world.child.subject_id])
    assert other_domain[world.child.subject_id] != mapping[world.child.subject_id]
    db_session.flush()
    child, abroad = mapping[world.child.subject_id], mapping[world.abroad.subject_id]
    never = "f" * 64
    body = {"domain": "study-a", "pseudonyms": [child, abroad, never]}
    answer = client.post(BATCH, json=body, headers=steward)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert list(result["statuses"]) == [child]
    assert result["statuses"][child]["questionnaires"] == "granted"
    assert result["unknown"] == [abroad, never]
    assert world.child.subject_id not in answer.text, "the answer does not link pseudonym to subject"
    wrong_domain = client.post(BATCH, json={"domain": "study-b", "pseudonyms": [child]}, headers=steward)
    assert wrong_domain.json()["statuses"] == {}
    assert wrong_domain.json()["unknown"] == [child]


# --- ledger and roles ----------------------------------------------------------------------------


def test_the_ledger_records_the_decision_without_names_or_emails(client, world, steward, db_session):
    recorded = client.post(DECISIONS, json=world.guardian_body(), headers=steward).json()
    db_session.commit()
    entry = db_session.execute(
        select(AuditEntry).where(
            AuditEntry.action == "consent.decision_recorded", AuditEntry.target_id == world.child.subject_id
        )
    ).scalar_one()
    assert entry.details["event_id"] == recorded["event_id"]
    assert entry.details["choices"] == {"questionnaires": "granted", "interviews": "declined"}
    assert entry.details["guardian_id"] == world.guardian.guardian_id
    dumped = json.dumps(entry.details)
    for secret in (GUARDIAN_NAME, "Kowalska", GUARDIAN_EMAIL, "@"):
        assert secret not in dumped


def test_the_dpo_reads_statuses_and_history_but_does_not_enter_decisions(client, world, as_role, steward):
    client.post(DECISIONS, json=world.guardian_body(), headers=steward).raise_for_status()
    dpo = as_role(Role.dpo, None)
    assert (
        client.get(status_url(world.child.subject_id), headers=dpo).json()["statuses"]["questionnaires"]
        == "granted"
    )
    assert len(client.get(history_url(world.child.subject_id), headers=dpo).json()) == 1
    abroad = client.post(BATCH, json={"subject_ids": [world.abroad.subject_id]}, headers=dpo).json()
    assert abroad["unknown"] == [], "the DPO sees every country"
    refused = client.post(
        DECISIONS, json=world.guardian_body(choices={"questionnaires": "declined"}), headers=dpo
    )
    assert_problem(refused, 403)
    assert len(client.get(history_url(world.child.subject_id), headers=dpo).json()) == 1


def test_a_researcher_is_refused_every_decisions_endpoint(client, world, as_role):
    researcher = as_role(Role.researcher, None)
    calls = [
        client.post(DECISIONS, json=world.guardian_body(), headers=researcher),
        client.get(status_url(world.child.subject_id), headers=researcher),
        client.get(history_url(world.child.subject_id), headers=researcher),
        client.post(BATCH, json={"subject_ids": [world.child.subject_id]}, headers=researcher),
        client.get("/api/consent/withdrawals", headers=researcher),
        client.get("/api/consent/reconsent", headers=researcher),
    ]
    for answer in calls:
        assert_problem(answer, 403)
