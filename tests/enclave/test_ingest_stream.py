"""Streaming ingestion: batches of a large file, duplicates across batches, quarantine, queued jobs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import infra.tasks
from access.audit.actions import Role
from enclave.app import create_app
from enclave.datasets import ingest_tasks
from enclave.datasets.ingest_jobs import purge_quarantine
from enclave.datasets.ingest_source import csv_batches, memory_chunks
from enclave.datasets.ingestion import UploadRejected, ingest, ingest_stream, load_version
from enclave.datasets.models import DatasetVersion, IngestionJob
from enclave.objects.store import ObjectDestroyed
from infra.settings import load_settings
from tests.support.auth import auth_headers

DATASET = "questionnaire-wave1"
SMALL_BATCH = 1024  # bytes: the test school's file (a few kB) is read in several batches


def stream(db_session, world, data: bytes, **options):
    return ingest_stream(
        db_session,
        world["steward"],
        world["store"],
        world["protector"],
        dataset_id=DATASET,
        data=data,
        batch_bytes=SMALL_BATCH,
        **options,
    )


def test_a_file_read_in_many_batches_is_stored_as_parts_equal_to_a_one_shot_ingestion(db_session, world):
    upload: pl.DataFrame = world["upload"]
    data = upload.write_csv().encode()
    seen = []
    report = stream(db_session, world, data, progress=lambda p: seen.append((p.bytes_read, p.rows_read)))
    assert len(report.objects) > 2, "one part per batch"
    assert report.objects[:2] == ["part-0000.parquet", "part-0001.parquet"]
    assert report.rows_stored == len(world["granted"])
    assert seen[-1] == (len(data), upload.height)
    assert [b for b, _ in seen] == sorted(b for b, _ in seen)
    streamed = load_version(db_session, world["store"], DATASET).sort("pseudonym")
    again = ingest(
        db_session, world["steward"], world["store"], world["protector"], dataset_id=DATASET, data=data
    )
    assert again.objects == ["part-0000.parquet"]
    whole = load_version(db_session, world["store"], DATASET, again.version).sort("pseudonym")
    assert streamed.equals(whole)


def test_a_duplicate_in_a_later_batch_is_refused_with_both_row_numbers(db_session, world):
    upload: pl.DataFrame = world["upload"].with_columns(pl.all().cast(pl.String))
    doubled = pl.concat([upload, upload.head(1)])
    with pytest.raises(UploadRejected) as rejected:
        stream(db_session, world, doubled.write_csv().encode())
    [problem] = rejected.value.errors
    assert problem.row == doubled.height + 1
    assert "appears twice (first in row 2)" in problem.reason
    assert db_session.execute(select(DatasetVersion)).first() is None
    assert list(world["components"].storage.list("")) == [], "the parts already written were removed"


def test_row_numbers_of_problems_are_those_of_the_whole_file(db_session, world):
    upload: pl.DataFrame = world["upload"].with_columns(pl.all().cast(pl.String))
    last = upload.height - 1
    broken = upload.with_columns(
        pl.when(pl.int_range(pl.len()) == last).then(pl.lit("9")).otherwise("engagement").alias("engagement")
    )
    with pytest.raises(UploadRejected) as rejected:
        stream(db_session, world, broken.write_csv().encode())
    assert [(p.row, p.column) for p in rejected.value.errors] == [(upload.height + 1, "engagement")]


def test_quoted_values_with_line_ends_survive_batch_cuts():
    header = "a,b\n"
    rows = [f'{i},"line one\nline ""two"" of {i}"\n' for i in range(200)]
    data = (header + "".join(rows)).encode()
    batches = list(csv_batches(memory_chunks(data, read_size=7), batch_bytes=100))
    assert len(batches) > 10
    frame = pl.concat([b.frame for b in batches])
    assert frame["a"].to_list() == [str(i) for i in range(200)]
    assert frame["b"][3] == 'line one\nline "two" of 3'
    assert [b.offset for b in batches] == [
        sum(x.frame.height for x in batches[:i]) for i in range(len(batches))
    ]


def broken_upload(world) -> pl.DataFrame:
    """The school's upload with three bad rows: a bad category, a reference nobody has, a duplicate."""
    upload: pl.DataFrame = world["upload"].with_columns(pl.all().cast(pl.String))
    broken = upload.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("robot")).otherwise("gender").alias("gender"),
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit("P9999999"))
        .otherwise("student_ref")
        .alias("student_ref"),
    )
    return pl.concat([broken, broken.slice(2, 1)])


def test_quarantine_stores_the_good_rows_and_reports_the_bad_ones_encrypted(db_session, world):
    broken = broken_upload(world)
    report = stream(db_session, world, broken.write_csv().encode(), quarantine=True)
    assert report.quarantined == 3
    granted = set(world["granted"])
    stored = load_version(db_session, world["store"], DATASET)
    assert report.rows_stored == stored.height
    assert report.rows_stored + report.excluded_without_consent + report.quarantined == broken.height
    assert 0 < stored.height <= len(granted)
    version = db_session.execute(select(DatasetVersion)).scalar_one()
    assert version.quarantined == 3
    assert version.quarantine_object == "quarantine.csv"
    assert "quarantine.csv" not in version.objects
    raw = [
        world["components"].storage.get(info.key)
        for info in world["components"].storage.list("")
        if info.key.endswith("quarantine.csv")
    ]
    assert raw
    assert b"P9999999" not in raw[0], "the report is encrypted"
    text = world["store"].read_object(db_session, _quarantine_ctx(version.version))
    lines = pl.read_csv(io.BytesIO(text), infer_schema=False)
    assert lines.columns[:3] == ["row", "column", "reason"]
    assert lines.select("row", "column").rows() == [
        ("2", "gender"),
        ("3", "student_ref"),
        (str(broken.height + 1), "student_ref"),
    ]
    assert lines["student_ref"][1] == "P9999999", "the original values are kept for the steward"

    assert purge_quarantine(db_session, world["store"], now=datetime.now(UTC) + timedelta(days=29)) == 0
    assert purge_quarantine(db_session, world["store"], now=datetime.now(UTC) + timedelta(days=31)) == 1
    with pytest.raises(ObjectDestroyed):
        world["store"].read_object(db_session, _quarantine_ctx(version.version))
    assert version.quarantine_object is None
    assert version.quarantined == 3, "the count stays"


def _quarantine_ctx(version: int):
    from enclave.objects.store import ObjectContext

    return ObjectContext(DATASET, version, "quarantine.csv")


def test_quarantine_of_every_row_stores_nothing(db_session, world):
    upload: pl.DataFrame = world["upload"].with_columns(pl.lit("robot").alias("gender"))
    with pytest.raises(UploadRejected, match="problem"):
        stream(db_session, world, upload.write_csv().encode(), quarantine=True)
    assert db_session.execute(select(DatasetVersion)).first() is None


def test_a_missing_column_is_refused_even_with_quarantine(db_session, world):
    with pytest.raises(UploadRejected) as rejected:
        stream(db_session, world, world["upload"].drop("gender").write_csv().encode(), quarantine=True)
    assert rejected.value.errors[0].row == 1


@pytest.fixture
def job_client(world, monkeypatch, session_factory):
    """An app on which every upload is queued (threshold 0); tasks run in-process on the test's database."""
    components = world["components"]
    settings = load_settings(
        environment="test",
        data_dir=components.settings.data_dir,
        database_url=components.settings.effective_database_url,
        log_json=True,
        log_level="WARNING",
        ingest_async_threshold_bytes=0,
    )
    monkeypatch.setattr(infra.tasks._State, "session_factory", session_factory)
    monkeypatch.setattr(ingest_tasks, "_store", lambda: world["store"])
    with TestClient(create_app(settings, components), raise_server_exceptions=False) as client:
        yield client


def test_a_large_upload_is_queued_stored_encrypted_and_published_by_the_worker(
    job_client, db_session, world, staff_factory
):
    steward = auth_headers(job_client, staff_factory(roles=[Role.data_steward], country="ES"))
    data = world["upload"].write_csv().encode()
    answer = job_client.post(
        f"/api/datasets/{DATASET}/uploads?quarantine=true",
        content=data,
        headers={**steward, "Content-Type": "text/csv"},
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()
    status = job_client.get(job["status_url"], headers=steward)
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["state"] == "published", body
    assert body["report"]["rows_stored"] == len(world["granted"])
    assert body["report"]["quarantined"] == 0
    keys = [info.key for info in world["components"].storage.list("")]
    assert not any("staging" in key for key in keys), "the staging object is destroyed once published"
    frame = load_version(db_session, world["store"], DATASET)
    assert frame.height == len(world["granted"])
    other = auth_headers(job_client, staff_factory(roles=[Role.data_steward], country="PT"))
    assert job_client.get(job["status_url"], headers=other).status_code == 404
    researcher = auth_headers(job_client, staff_factory(roles=[Role.researcher]))
    assert job_client.get(job["status_url"], headers=researcher).status_code == 403


def test_a_queued_upload_with_bad_rows_fails_with_its_problems_and_leaves_nothing(
    job_client, db_session, world, staff_factory
):
    steward = auth_headers(job_client, staff_factory(roles=[Role.data_steward], country="ES"))
    bad = world["upload"].write_csv().encode().replace(b",female,", b",robot,", 1)
    answer = job_client.post(
        f"/api/datasets/{DATASET}/versions",
        files={"file": ("wave1.csv", bad, "text/csv")},
        headers=steward,
    )
    assert answer.status_code == 202, answer.text
    body = job_client.get(answer.json()["status_url"], headers=steward).json()
    assert body["state"] == "failed"
    assert body["retryable"] is False
    assert body["error"]["status"] == 422
    assert body["error"]["errors"][0]["column"] == "gender"
    versions = db_session.execute(select(DatasetVersion)).scalars().all()
    assert [v.state for v in versions] == ["failed"]
    assert list(world["components"].storage.list("")) == []
    assert db_session.execute(select(IngestionJob)).scalar_one().attempts == 1


def test_the_quarantine_report_is_read_by_a_steward_of_the_country_only(
    client, db_session, world, staff_factory
):
    steward = auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))
    bad = world["upload"].write_csv().encode().replace(b",female,", b",robot,", 1)
    answer = client.post(
        f"/api/datasets/{DATASET}/versions?quarantine=true",
        files={"file": ("wave1.csv", bad, "text/csv")},
        headers=steward,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["quarantined"] == 1
    version = answer.json()["version"]
    report = client.get(f"/api/datasets/{DATASET}/versions/{version}/quarantine", headers=steward)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    assert b"robot" in report.content
    for roles, country, status in (
        ([Role.data_steward], "PT", 404),
        ([Role.researcher], None, 403),
        ([Role.dpo], None, 403),
    ):
        other = auth_headers(client, staff_factory(roles=roles, country=country))
        url = f"/api/datasets/{DATASET}/versions/{version}/quarantine"
        assert client.get(url, headers=other).status_code == status


MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from enclave.datasets.ingest_source import batches
    from enclave.datasets.ingestion import check_rows
    from enclave.datasets.schemas import DatasetSchema
    def status(field):  # this process's own figures (ru_maxrss would include the parent's before exec)
        line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
        return int(line.split()[1]) * 1024
    start = status("VmRSS")
    schema = DatasetSchema.model_validate(json.loads(sys.argv[2]))
    rows = 0
    for batch in batches("csv", path=Path(sys.argv[1]), batch_bytes=8 * 1024 * 1024):
        assert not check_rows(batch.frame, schema, batch.offset)
        rows += batch.frame.height
    print(json.dumps({"rows": rows, "start": start, "peak": status("VmHWM")}))
    """
)


def test_a_large_file_is_read_and_validated_with_bounded_memory(tmp_path):
    from enclave.synthetic import generate

    frame = generate(students=300_000, schools=60, seed=3).questionnaire.select(
        "student_ref", "school", "gender", "stage", "engagement", "special_needs"
    )
    big = pl.concat([frame] * 3).with_columns(pl.all().cast(pl.String) + pl.lit(" " * 40))
    path = tmp_path / "big.csv"
    big.write_csv(path)
    size = path.stat().st_size
    assert size > 200 * 1024 * 1024
    schema = {
        "subject_id_column": "student_ref",
        "school_column": "school",
        "variables": [
            {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
            {"name": "stage", "type": "integer", "min": 1, "max": 4},
            {"name": "engagement", "type": "numeric", "min": 1, "max": 5},
            {"name": "special_needs", "type": "boolean"},
        ],
    }
    del big, frame
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path), json.dumps(schema)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(probe.stdout)
    assert result["rows"] == 900_000
    growth = result["peak"] - result["start"]
    assert growth < size / 2, f"memory grew by {growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"


def test_an_uploaded_file_is_never_spooled_to_disk_in_plaintext(
    client, db_session, world, staff_factory, monkeypatch
):
    import tempfile

    spooled: list[object] = []
    real = tempfile.TemporaryFile

    def on_disk(*args, **kwargs):  # type: ignore[no-untyped-def]
        spooled.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", on_disk)
    steward = auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))
    csv_text = world["upload"].write_csv()
    header, rows = csv_text.split("\n", 1)
    large = (header + "\n" + rows * (2 * 2**20 // len(rows) + 1)).encode()
    assert len(large) > 2 * 2**20, "larger than Starlette's 1 MiB spooling threshold"
    answer = client.post(
        f"/api/datasets/{DATASET}/versions", files={"file": ("wave1.csv", large, "text/csv")}, headers=steward
    )
    # Repeated rows are refused as duplicates; what matters is where the upload was kept meanwhile.
    assert answer.status_code in (202, 422), answer.text
    assert spooled == [], "the identified upload went to a temporary file on disk"
