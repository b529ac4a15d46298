"""Ingestion: validated, consent-filtered, pseudonymised and encrypted; bad uploads store nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import polars as pl
import pytest
from sqlalchemy import select

from access.audit.actions import Role
from consent.decisions import pseudonyms
from consent.identity import IdentityField, _Purpose
from consent.rosters.models import Student
from enclave.datasets.ingestion import UploadRejected, ingest, load_version
from enclave.datasets.models import DatasetVersion
from infra.errors import EnclaveError

DATASET = "questionnaire-wave1"


def run(db_session, world, data: bytes, fmt: str = "csv"):
    return ingest(
        db_session,
        world["steward"],
        world["store"],
        world["protector"],
        dataset_id=DATASET,
        data=data,
        fmt=fmt,
    )


def test_only_consenting_subjects_are_stored_under_pseudonyms(db_session, world):
    upload: pl.DataFrame = world["upload"]
    report = run(db_session, world, upload.write_csv().encode())
    assert report.rows_in == upload.height
    assert report.rows_stored == len(world["granted"])
    assert report.excluded_without_consent == upload.height - len(world["granted"])
    frame = load_version(db_session, world["store"], DATASET)
    assert frame.columns == ["pseudonym", "gender", "stage", "engagement", "special_needs"]
    expected = pseudonyms.pseudonymise(db_session, world["store"].keys, "letscare-main", world["granted"])
    assert set(frame["pseudonym"]) == set(expected.values())
    assert frame["special_needs"].dtype == pl.Boolean
    version = db_session.execute(select(DatasetVersion)).scalar_one()
    assert version.rows == report.rows_stored


def test_the_stored_object_holds_no_readable_reference_or_value(db_session, world):
    upload: pl.DataFrame = world["upload"]
    run(db_session, world, upload.write_csv().encode())
    storage = world["components"].storage
    [key] = [info.key for info in storage.list("")]
    raw = storage.get(key)
    assert upload["student_ref"][0].encode() not in raw
    assert b"engagement" not in raw, "not even the column names are readable"


def test_parquet_uploads_work_too(db_session, world):
    import io

    buffer = io.BytesIO()
    world["upload"].write_parquet(buffer)
    assert run(db_session, world, buffer.getvalue(), "parquet").rows_stored == len(world["granted"])


def broken(world, edit) -> bytes:
    frame: pl.DataFrame = world["upload"].with_columns(pl.all().cast(pl.String))
    return edit(frame).write_csv().encode()


@pytest.mark.parametrize(
    "case",
    [
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("robot")).otherwise("gender").alias("gender")
            ),
            2,
            "gender",
            "categories",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 1)
                .then(pl.lit("9"))
                .otherwise("engagement")
                .alias("engagement")
            ),
            3,
            "engagement",
            "outside [1, 5]",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 1)
                .then(pl.lit("high"))
                .otherwise("engagement")
                .alias("engagement")
            ),
            3,
            "engagement",
            "not a number",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("2.5")).otherwise("stage").alias("stage")
            ),
            2,
            "stage",
            "whole number",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 2)
                .then(pl.lit(""))
                .otherwise("student_ref")
                .alias("student_ref")
            ),
            4,
            "student_ref",
            "missing subject id",
        ),
        (lambda f: pl.concat([f, f.head(1)]), None, "student_ref", "appears twice"),
        (lambda f: f.with_columns(pl.lit("x").alias("name")), 1, "name", "not declared"),
        (lambda f: f.drop("engagement"), 1, "engagement", "missing column"),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 0)
                .then(pl.lit("P9999999"))
                .otherwise("student_ref")
                .alias("student_ref")
            ),
            2,
            "student_ref",
            "not on the roster",
        ),
    ],
)
def test_a_bad_upload_is_refused_whole_with_each_problem_located(db_session, world, case):
    edit, row, column, reason = case
    with pytest.raises(UploadRejected) as rejected:
        run(db_session, world, broken(world, edit))
    problems = rejected.value.errors
    assert any(
        p.column == column and reason in p.reason and (row is None or p.row == row) for p in problems
    ), problems
    assert rejected.value.status_code == 422
    assert db_session.execute(select(DatasetVersion)).first() is None
    assert list(world["components"].storage.list("")) == [], "nothing stored"


def test_a_file_that_is_not_utf8_is_refused_with_a_reason(db_session, world):
    with pytest.raises(EnclaveError) as refused:
        run(db_session, world, "student_ref;school\nP1;É".encode("latin-1"))
    assert refused.value.status_code == 422
    assert "UTF-8" in refused.value.detail


def test_a_steward_uploads_a_version_over_http_and_a_bad_file_is_refused_with_its_rows(
    client, db_session, world, staff_factory
):
    from tests.support.auth import auth_headers

    steward = auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))
    good = world["upload"].write_csv().encode()
    answer = client.post(
        f"/api/datasets/{DATASET}/versions", files={"file": ("wave1.csv", good, "text/csv")}, headers=steward
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["rows_stored"] == len(world["granted"])
    bad = good.replace(b",female,", b",robot,", 1)
    refused = client.post(
        f"/api/datasets/{DATASET}/versions", files={"file": ("wave1.csv", bad, "text/csv")}, headers=steward
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["column"] == "gender"
    dpo = auth_headers(client, staff_factory(roles=[Role.dpo]))
    assert (
        client.post(
            f"/api/datasets/{DATASET}/versions", files={"file": ("wave1.csv", good, "text/csv")}, headers=dpo
        ).status_code
        == 403
    )


def test_the_batch_blind_index_is_the_per_value_index_the_roster_is_found_by(db_session, world):
    protector = world["protector"]
    first = world["upload"].row(0, named=True)
    values = [f"ES/{first['school']}/{first['student_ref']}", "ES/S-1/P-0002", "ES/ÉCOLE/ñ-3", ""]
    batch = protector.blind_indexes(db_session, IdentityField.student_ref, values)
    assert batch == [protector.blind_index(db_session, IdentityField.student_ref, v) for v in values]
    # Both are the documented formula: HMAC-SHA256 under the lookup key of "field\0value".
    key = protector._data_key(db_session, _Purpose.lookup)
    expected = [hmac.new(key, b"student_ref\x00" + v.encode(), hashlib.sha256).hexdigest() for v in values]
    assert batch == expected
    assert len(set(batch)) == len(values)
    assert db_session.execute(select(Student).where(Student.ref_index == batch[0])).scalar_one()
    other_field = protector.blind_indexes(db_session, IdentityField.guardian_email, values[:1])
    assert other_field != batch[:1], "the field name is part of the hashed value"


def test_a_steward_limited_to_other_schools_cannot_store_this_schools_rows(db_session, world):
    upload: pl.DataFrame = world["upload"]
    school = upload["school"][0]
    limited = dataclasses.replace(world["steward"], schools=frozenset({"another-school"}))
    with pytest.raises(UploadRejected) as rejected:
        ingest(
            db_session,
            limited,
            world["store"],
            world["protector"],
            dataset_id=DATASET,
            data=upload.write_csv().encode(),
        )
    assert rejected.value.error_count == upload.height
    assert {(p.row, p.reason) for p in rejected.value.errors} == {
        (row, "not on the roster of this school (or outside your schools)")
        for row in range(2, upload.height + 2)
    }
    own = dataclasses.replace(world["steward"], schools=frozenset({school}))
    report = ingest(
        db_session,
        own,
        world["store"],
        world["protector"],
        dataset_id=DATASET,
        data=upload.write_csv().encode(),
    )
    assert report.rows_stored == len(world["granted"])
