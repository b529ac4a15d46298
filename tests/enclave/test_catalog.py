"""The catalog: declared schemas, refused declarations, and what each role sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from tests.support.auth import auth_headers

NEXT_YEAR = (datetime.now(UTC) + timedelta(days=365)).date().isoformat()


def declaration(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "questionnaire-wave1",
        "title": "Questionnaire, first wave",
        "description": "Engagement, belonging and teacher relationships.",
        "purpose": "questionnaires",
        "domain": "letscare-main",
        "retention_until": NEXT_YEAR,
        "schema": {
            "subject_id_column": "student_ref",
            "school_column": "school",
            "drop_columns": ["name", "email"],
            "variables": [
                {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
                {"name": "engagement", "type": "numeric", "min": 1, "max": 5},
                {"name": "special_needs", "type": "boolean", "special_category": True},
                {"name": "answered_on", "type": "date", "min_date": "2026-01-01", "max_date": "2027-12-31"},
            ],
        },
    }
    body.update(overrides)
    return body


@pytest.fixture
def steward(client, staff_factory):
    return auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))


def test_a_steward_declares_a_dataset_and_a_researcher_sees_its_schema_without_counts(
    client, staff_factory, steward, db_session
):
    created = client.post("/api/datasets", json=declaration(), headers=steward)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["schema"]["subject_id_column"] == "student_ref"
    assert body["special_category_variables"] == ["special_needs"]
    assert body["versions"] == []
    researcher = auth_headers(client, staff_factory(roles=[Role.researcher]))
    seen = client.get("/api/datasets/questionnaire-wave1", headers=researcher)
    assert seen.status_code == 200
    assert seen.json()["versions"] is None, "no counts for researchers"
    assert [d["id"] for d in client.get("/api/datasets", headers=researcher).json()] == [
        "questionnaire-wave1"
    ]
    assert client.post("/api/datasets", json=declaration(id="other"), headers=researcher).status_code == 403
    db_session.commit()
    entry = db_session.execute(
        select(AuditEntry).where(AuditEntry.action == "enclave.dataset_created")
    ).scalar_one()
    assert entry.details["special_category_variables"] == 1


def test_the_same_id_twice_is_a_conflict(client, steward):
    assert client.post("/api/datasets", json=declaration(), headers=steward).status_code == 201
    again = client.post("/api/datasets", json=declaration(title="Another"), headers=steward)
    assert again.status_code == 409
    assert again.json()["reason"] == "dataset_exists"


def variables(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": {"subject_id_column": "student_ref", "school_column": "school", "variables": list(items)}
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (variables({"name": "gender", "type": "categorical"}), "lists its categories"),
        (variables({"name": "gender", "type": "categorical", "categories": ["a", "a"]}), "listed twice"),
        (variables({"name": "score", "type": "numeric", "min": 5, "max": 1}), "min < max"),
        (variables({"name": "score", "type": "numeric"}), "min < max"),
        (variables({"name": "flag", "type": "boolean", "min": 0, "max": 1}), "only numeric"),
        (variables({"name": "student_ref", "type": "boolean"}), "declared twice"),
        (variables({"name": "Bad Name", "type": "boolean"}), "pattern"),
        (
            {"schema": {"subject_id_column": "student_ref", "school_column": "school", "variables": []}},
            "at least 1",
        ),
        ({"purpose": "marketing"}, "not a consent purpose"),
        ({"retention_until": "2020-01-01"}, "must be in the future"),
        ({"id": "Has Spaces"}, "pattern"),
        ({"domain": ""}, "pattern"),
    ],
)
def test_bad_declarations_are_refused_with_a_reason(client, steward, overrides, expected):
    answer = client.post("/api/datasets", json=declaration(**overrides), headers=steward)
    assert answer.status_code == 422, answer.text
    assert expected in answer.text
    assert client.get("/api/datasets", headers=steward).json() == [], "nothing stored"


def test_an_unknown_dataset_is_not_found(client, steward):
    answer = client.get("/api/datasets/nope", headers=steward)
    assert answer.status_code == 404
    assert answer.json()["reason"] == "unknown_dataset"
