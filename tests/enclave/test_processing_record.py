"""The record of processing activities (GDPR Art. 30) exported by ``enclave gdpr record-of-processing``."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from access.audit.actions import Role
from access.projects.decisions import approve_project
from access.projects.service import create_project, submit_project
from enclave.datasets import service as catalog
from enclave.datasets.schemas import DatasetCreate
from enclave.processing_record import (
    DEFAULT_DETAILS,
    RecordFormat,
    RecordOfProcessing,
    build_record,
    load_details,
    render,
)
from tests.support.projects import TODAY, make_principal, proposal, terms

ROOT = Path(__file__).resolve().parents[2]
PROJECT_TITLE = "Attachment and early school leaving in lower secondary"


@pytest.fixture
def declared(db_session):
    """A declared dataset with one special-category variable and a project granted access to it."""
    steward = make_principal(db_session, Role.data_steward)
    catalog.create_dataset(
        db_session,
        steward,
        DatasetCreate.model_validate(
            {
                "id": "wave1_students",
                "title": "Student questionnaire, first wave",
                "purpose": "questionnaires",
                "domain": "letscare-main",
                "retention_until": (TODAY + timedelta(days=900)).isoformat(),
                "schema": {
                    "subject_id_column": "student_ref",
                    "school_column": "school",
                    "drop_columns": ["student_name"],
                    "variables": [
                        {"name": "stage", "type": "categorical", "categories": ["1", "2", "3", "4"]},
                        {"name": "ses_band", "type": "categorical", "categories": ["low", "mid", "high"]},
                        {"name": "special_needs", "type": "boolean", "special_category": True},
                        {"name": "ethnic_minority", "type": "boolean", "special_category": True},
                    ],
                },
            }
        ),
    )
    owner = make_principal(db_session, Role.researcher)
    dpo = make_principal(db_session, Role.dpo)
    project = create_project(db_session, owner, proposal(title=PROJECT_TITLE))
    submit_project(db_session, owner, project.id)
    approved = approve_project(db_session, dpo, project.id, terms("1.0"))
    draft = create_project(db_session, owner, proposal(title="A proposal nobody approved yet"))
    return {"project": approved, "draft": draft}


def test_the_record_lists_a_declared_datasets_special_category_variables(db_session, settings, declared):
    record = build_record(db_session, settings)

    dataset = next(d for d in record.datasets if d.id == "wave1_students")
    assert dataset.special_category_variables == ["special_needs", "ethnic_minority"]
    assert dataset.retention_until == TODAY + timedelta(days=900)
    assert "student_name" in dataset.dropped_identifiers
    markdown = render(record, RecordFormat.markdown)
    assert "Special-category variables (Art. 9): **special_needs, ethnic_minority**" in markdown


def test_the_record_lists_an_approved_project_as_a_recipient_with_its_grounds_and_scope(
    db_session, settings, declared
):
    record = build_record(db_session, settings)

    assert [p.title for p in record.recipients] == [PROJECT_TITLE]
    project = record.recipients[0]
    assert project.project_id == declared["project"].id
    assert project.lawful_basis == "gdpr_6_1_e_public_task"
    assert project.granted_epsilon == "1.0"
    assert project.datasets == ["wave1_students"]
    assert project.variables == ["wave1_students.ses_band", "wave1_students.stage"]
    assert "differentially private" in project.receives


def test_special_category_variables_without_an_article_9_ground_are_points_to_check(
    db_session, settings, declared
):
    assert build_record(db_session, settings).points_to_check == [
        "dataset wave1_students holds special-category variables (special_needs, ethnic_minority) under "
        "the consent purpose 'questionnaires', not 'special_category' (Art. 9(2)(a) explicit consent)"
    ]

    owner = make_principal(db_session, Role.researcher)
    dpo = make_principal(db_session, Role.dpo)
    variables = ["wave1_students.stage", "wave1_students.special_needs"]
    project = create_project(db_session, owner, proposal(variables=variables))
    submit_project(db_session, owner, project.id)
    approve_project(db_session, dpo, project.id, terms("1.0", variables=variables))

    record = build_record(db_session, settings)
    assert record.points_to_check[1] == (
        f"project {project.id} is granted special-category variables (wave1_students.special_needs) "
        "without an Art. 9(2) condition"
    )
    assert "## Points to check (Art. 9)" in render(record, RecordFormat.markdown)


def test_the_record_names_no_researcher(db_session, settings, declared):
    record = build_record(db_session, settings)

    for fmt in RecordFormat:
        text = render(record, fmt)
        assert declared["project"].owner_id not in text
        assert "@staff.example.org" not in text


def test_the_record_lists_the_six_consent_purposes_with_their_grounds(db_session, settings):
    record = build_record(db_session, settings)

    assert [p.code for p in record.purposes] == [
        "questionnaires",
        "school_records",
        "interviews",
        "special_category",
        "recontact",
        "consortium_sharing",
    ]
    special = next(p for p in record.purposes if p.code == "special_category")
    assert "Art. 9(2)(a)" in special.lawful_basis
    assert {s.category for s in record.data_subjects} >= {"students", "guardians", "teachers"}


def test_retention_covers_the_ledger_setting_and_request_deadlines(db_session, settings, declared):
    record = build_record(db_session, settings)

    periods = {r.what: r.period for r in record.retention}
    assert str(settings.audit_retention_days) in periods["audit ledger entries"]
    assert "1 month" in periods["data-subject requests"]
    assert str(TODAY + timedelta(days=900)) in periods["dataset wave1_students"]


def test_the_shipped_details_are_reported_as_placeholders_until_completed(db_session, settings, tmp_path):
    record = build_record(db_session, settings)
    assert "controller.name" in record.placeholders
    assert "dpo.email" in record.placeholders

    completed = tmp_path / "details.toml"
    completed.write_text(
        DEFAULT_DETAILS.read_text(encoding="utf-8")
        .replace("TO BE COMPLETED: legal name of the coordinating institution of LET'S CARE", "University X")
        .replace("TO BE COMPLETED: dpo@…", "dpo@example.org"),
        encoding="utf-8",
    )
    record = build_record(db_session, settings, load_details(completed))
    assert record.controller.name == "University X"
    assert "controller.name" not in record.placeholders
    assert "dpo.email" not in record.placeholders


def test_no_transfer_outside_the_eu_is_stated_unless_one_is_configured(db_session, settings, tmp_path):
    assert build_record(db_session, settings).transfers_statement.startswith("None")

    details = tmp_path / "details.toml"
    details.write_text(
        DEFAULT_DETAILS.read_text(encoding="utf-8").replace(
            "transfers = []",
            'transfers = [{destination = "CH", recipient = "Partner university", '
            'safeguards = "Art. 45 adequacy decision"}]',
        ),
        encoding="utf-8",
    )
    record = build_record(db_session, settings, load_details(details))
    assert record.transfers[0].destination == "CH"
    assert "Art. 45 adequacy decision" in render(record, RecordFormat.markdown)


def test_json_output_validates_against_the_record_model(db_session, settings, declared):
    text = render(build_record(db_session, settings), RecordFormat.json)

    parsed = RecordOfProcessing.model_validate_json(text)
    assert parsed.recipients[0].title == PROJECT_TITLE
    dataset = json.loads(text)["datasets"][0]
    assert dataset["special_category_variables"] == ["special_needs", "ethnic_minority"]


def test_csv_output_is_one_fact_per_row_with_formulas_neutralised(db_session, settings, declared):
    owner = make_principal(db_session, Role.researcher)
    dpo = make_principal(db_session, Role.dpo)
    hostile = create_project(db_session, owner, proposal(title='=HYPERLINK("http://evil")'))
    submit_project(db_session, owner, hostile.id)
    approve_project(db_session, dpo, hostile.id, terms("1.0"))

    rows = list(csv.reader(io.StringIO(render(build_record(db_session, settings), RecordFormat.csv))))

    assert rows[0] == ["section", "item", "field", "value"]
    assert all(len(row) == 4 for row in rows)
    special = ["datasets", "wave1_students", "special_category_variables", "special_needs, ethnic_minority"]
    assert special in rows
    assert ["recipients", declared["project"].id, "title", PROJECT_TITLE] in rows
    titles = [row[3] for row in rows if row[0] == "recipients" and row[2] == "title"]
    assert '\'=HYPERLINK("http://evil")' in titles


def test_a_malformed_details_file_is_refused_naming_the_field(tmp_path):
    details = tmp_path / "details.toml"
    details.write_text('[controller]\nname = "X"\n', encoding="utf-8")

    with pytest.raises(ValueError, match=r"controller\.address"):
        load_details(details)


def _cli(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ENCLAVE_ENVIRONMENT": "test",
        "ENCLAVE_DATA_DIR": str(data_dir),
        "ENCLAVE_DATABASE_URL": database_url,
        "ENCLAVE_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "enclave", "gdpr", "record-of-processing", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def test_the_command_writes_json_that_validates_to_a_file(pg_url, tmp_path):
    out = tmp_path / "record.json"

    result = _cli(pg_url, tmp_path / "data", "--format", "json", "--out", str(out))

    assert result.returncode == 0, result.stderr
    record = RecordOfProcessing.model_validate_json(out.read_text(encoding="utf-8"))
    assert len(record.purposes) == 6
    assert "TO BE COMPLETED" in result.stderr


def test_an_unknown_format_is_a_clear_error_with_exit_code_2(pg_url, tmp_path):
    result = _cli(pg_url, tmp_path / "data", "--format", "xml")

    assert result.returncode == 2
    assert "Invalid value for '--format'" in result.stderr
    assert "'xml' is not one of" in result.stderr
    assert result.stdout == ""


def test_a_missing_details_file_is_a_clear_error_with_exit_code_2(pg_url, tmp_path):
    result = _cli(pg_url, tmp_path / "data", "--details", str(tmp_path / "absent.toml"))

    assert result.returncode == 2
    assert "cannot use the details file" in result.stderr
    assert "absent.toml" in result.stderr


def test_a_database_never_migrated_is_a_clear_error_with_exit_code_1(tmp_path):
    result = _cli(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "data")

    assert result.returncode == 1
    assert "run `enclave db upgrade`" in result.stderr
    assert result.stdout == ""
