"""Retention: the DPO is warned 30 days ahead once, then the dataset is crypto-shredded on its date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from access.audit.models import AuditEntry
from enclave.datasets import service as catalog
from enclave.datasets.exceptions import DatasetNotFound
from enclave.datasets.ingestion import ingest
from enclave.datasets.models import Dataset, DatasetVersion
from enclave.datasets.retention import run_retention
from enclave.objects.models import DataKey

DATASET = "questionnaire-wave1"


@pytest.fixture
def stored(db_session, world):
    ingest(
        db_session,
        world["steward"],
        world["store"],
        world["protector"],
        dataset_id=DATASET,
        data=world["upload"].write_csv().encode(),
    )
    return world


def test_the_dpo_is_warned_once_when_the_date_is_near(db_session, session_factory, stored):
    dataset = db_session.get(Dataset, DATASET)
    now = datetime.now(UTC)
    dataset.retention_until = (now + timedelta(days=10)).date()
    db_session.flush()
    first = run_retention(session_factory, stored["store"], now=now)
    assert first.warned == [DATASET]
    assert first.destroyed == []
    assert run_retention(session_factory, stored["store"], now=now).warned == [], "warned once"
    db_session.commit()
    assert (
        db_session.execute(select(AuditEntry).where(AuditEntry.action == "enclave.retention_warning"))
        .scalar_one()
        .target_id
        == DATASET
    )


def test_on_its_date_every_version_is_crypto_shredded_and_leaves_the_catalog(
    db_session, session_factory, stored
):
    dataset = db_session.get(Dataset, DATASET)
    now = datetime.now(UTC)
    dataset.retention_until = now.date()
    db_session.flush()
    result = run_retention(session_factory, stored["store"], now=now)
    assert result.destroyed == [DATASET]
    db_session.expire_all()
    assert [v.state for v in db_session.execute(select(DatasetVersion)).scalars()] == ["destroyed"]
    keys = list(db_session.execute(select(DataKey)).scalars())
    assert keys
    assert all(k.destroyed_at is not None and not k.wrapped_key for k in keys)
    assert list(stored["components"].storage.list("")) == []
    with pytest.raises(DatasetNotFound):
        catalog.get_dataset(db_session, stored["steward"], DATASET)
    assert run_retention(session_factory, stored["store"], now=now).destroyed == [], "idempotent"
    db_session.commit()
    proof = db_session.execute(
        select(AuditEntry).where(AuditEntry.action == "enclave.dataset_destroyed")
    ).scalar_one()
    assert proof.details["data_keys_destroyed"] == 1
