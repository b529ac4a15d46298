"""S3 stopped in the middle of an ingestion: nothing published, a retryable error, a retry completes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import infra.tasks
from access.audit.actions import Role
from enclave.app import create_app
from enclave.datasets import ingest_jobs, ingest_tasks
from enclave.datasets.ingestion import Progress, ingest_stream, load_version
from enclave.datasets.models import DatasetVersion, IngestionJob
from enclave.objects import DataKey, EncryptedStore
from infra.storage import StorageUnavailable
from infra.storage.s3 import S3Storage
from tests.support.auth import auth_headers
from tests.support.seaweedfs import SeaweedFS, random_bucket, start_seaweedfs

DATASET = "questionnaire-wave1"


@pytest.fixture
def own_server(tmp_path) -> Iterator[SeaweedFS]:
    """A server of its own, so stopping it cannot disturb other tests."""
    server = start_seaweedfs(tmp_path / "seaweedfs")
    try:
        yield server
    finally:
        server.stop()
        server.remove_sockets()


@pytest.fixture
def s3(own_server, world) -> Iterator[EncryptedStore]:
    storage = S3Storage.from_settings(own_server.settings(s3_bucket=random_bucket()))
    storage.ensure_bucket()
    world["components"]._storage = storage
    try:
        yield EncryptedStore(None, world["store"].keys, storage)
    finally:
        storage.close()


def test_s3_stopped_between_two_parts_publishes_nothing_and_a_retry_completes(
    own_server, s3, world, db_session
):
    data = world["upload"].write_csv().encode()

    def stop_after_first_part(progress: Progress) -> None:
        if progress.parts == 1 and own_server.process is not None:
            own_server.kill()

    with pytest.raises(StorageUnavailable) as caught:
        ingest_stream(
            db_session,
            world["steward"],
            s3,
            world["protector"],
            dataset_id=DATASET,
            data=data,
            batch_bytes=1024,
            progress=stop_after_first_part,
        )
    assert caught.value.retryable
    assert caught.value.status_code == 503
    assert db_session.execute(select(DatasetVersion)).first() is None
    assert db_session.execute(select(DataKey)).first() is None, (
        "the parts' data keys are gone: they never open"
    )

    own_server.start()
    report = ingest_stream(
        db_session, world["steward"], s3, world["protector"], dataset_id=DATASET, data=data, batch_bytes=1024
    )
    assert report.version == 1
    assert load_version(db_session, s3, DATASET).height == len(world["granted"])
    stored = sorted(info.key.rsplit("/", 1)[1] for info in s3.storage.list(""))
    assert stored == sorted(report.objects), "no stray part of the failed attempt"


def test_an_upload_while_s3_is_down_answers_503_with_retry_after(
    own_server, s3, world, client, staff_factory
):
    steward = auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))
    own_server.kill()
    answer = client.post(
        f"/api/datasets/{DATASET}/versions",
        files={"file": ("wave1.csv", world["upload"].write_csv().encode(), "text/csv")},
        headers=steward,
    )
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"]
    own_server.start()
    again = client.post(
        f"/api/datasets/{DATASET}/versions",
        files={"file": ("wave1.csv", world["upload"].write_csv().encode(), "text/csv")},
        headers=steward,
    )
    assert again.status_code == 201, again.text


@pytest.fixture
def tasks_on_s3(s3, session_factory, monkeypatch) -> EncryptedStore:
    """In-process tasks on the test's database and the S3 store."""
    monkeypatch.setattr(infra.tasks._State, "session_factory", session_factory)
    monkeypatch.setattr(ingest_tasks, "_store", lambda: s3)
    return s3


def test_a_queued_job_whose_store_fails_is_marked_retryable_and_the_resume_publishes_it(
    own_server, tasks_on_s3, world, db_session
):
    s3 = tasks_on_s3
    data = world["upload"].write_csv().encode()
    job = ingest_jobs.start_job(
        db_session, world["steward"], s3, dataset_id=DATASET, chunks=[data[:1000], data[1000:]]
    )
    own_server.kill()
    db_session.commit()  # the job is sent once committed, and runs in-process while S3 is down
    db_session.refresh(job)
    assert job.state == "failed"
    assert job.retryable
    assert job.error["status"] == 503
    version = db_session.execute(select(DatasetVersion)).scalar_one()
    assert version.state == "ingesting", "nothing published; the version number stays reserved"

    own_server.start()
    assert ingest_tasks.resume_jobs.apply().get()["resent"] == 1
    db_session.refresh(job)
    assert job.state == "published", job.error
    assert job.attempts == 2
    assert job.report["rows_stored"] == len(world["granted"])
    db_session.expire_all()  # the version row was read while it was still being ingested
    assert load_version(db_session, s3, DATASET).height == len(world["granted"])
    assert not any("staging" in info.key for info in s3.storage.list(""))
    assert ingest_tasks.resume_jobs.apply().get()["resent"] == 0
    assert db_session.execute(select(IngestionJob.state)).scalar_one() == "published"


@pytest.fixture
def client(world):
    with TestClient(
        create_app(world["components"].settings, world["components"]), raise_server_exceptions=False
    ) as c:
        yield c
